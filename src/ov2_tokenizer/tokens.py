"""``VisualTokens``: the unified output of every tokenization mode (DESIGN §3.2, LLaVA-OV-2 Eq. 1).

Structure of arrays, torch tensors (CPU or CUDA). Token records are in m×m-block order: the m² patches of a
merge block are consecutive, as the encoder's merger expects.

    >>> import torch
    >>> from ov2_tokenizer.tokens import VisualTokens
    >>> vt = VisualTokens.empty_like_geometry(num_canvases=1, canvas_hw=(28, 28), patch_size=14, merge_size=2)
    >>> vt.num_tokens, vt.grid_thw.tolist()
    (4, [[1, 2, 2]])
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import torch

from . import errors

__all__ = ["VisualTokens", "CANVAS_I", "CANVAS_P", "CANVAS_FRAME", "CANVAS_IMAGE"]

CANVAS_I, CANVAS_P, CANVAS_FRAME, CANVAS_IMAGE = 0, 1, 2, 3
_KIND_NAMES = {CANVAS_I: "I", CANVAS_P: "P", CANVAS_FRAME: "frame", CANVAS_IMAGE: "image"}

_RECORDS = ("canvas", "frame", "t_s", "can_hw", "src_hw", "group", "pos_thw")
#: dtype and trailing shape of every array (records have N rows, canvas_kind S, canvases [S, 3, Hc, Wc]).
_LAYOUT = {"canvases": (torch.uint8, (3, None, None)), "canvas_kind": (torch.int8, ()), "canvas": (torch.int32, ()),
           "frame": (torch.int32, ()), "t_s": (torch.float32, ()), "can_hw": (torch.int16, (2,)),
           "src_hw": (torch.int16, (2,)), "group": (torch.int32, ()), "pos_thw": (torch.int32, (3,))}
_FORMATS = ("npz", "safetensors")
_GROUP_FIELDS = ("start_s", "end_s", "bit_cost", "num_p")


@dataclass
class VisualTokens:
    """Canvases and token records of one video or image.

    Attributes:
        canvases: uint8 [S, 3, Hc, Wc] RGB canvases, all of one size.
        canvas_kind: int8 [S]: 0 = I, 1 = P, 2 = frame, 3 = image.
        canvas: int32 [N] canvas of each token.
        frame: int32 [N] source frame index (-1 for padding).
        t_s: float32 [N] source timestamp in seconds (NaN for padding).
        can_hw: int16 [N, 2] patch cell (row, col) in the canvas.
        src_hw: int16 [N, 2] patch cell (row, col) in the source frame's grid.
        group: int32 [N] group id κ.
        pos_thw: int32 [N, 3] 3D RoPE coordinates (temporal, row, column).
        groups: per-group tensors ``start_s``, ``end_s``, ``bit_cost`` (float64) and ``num_p`` (int32).
        meta: mode, config, geometry, timings and decoding statistics.
    """

    canvases: torch.Tensor
    canvas_kind: torch.Tensor
    canvas: torch.Tensor
    frame: torch.Tensor
    t_s: torch.Tensor
    can_hw: torch.Tensor
    src_hw: torch.Tensor
    group: torch.Tensor
    pos_thw: torch.Tensor
    groups: Dict[str, torch.Tensor] = field(default_factory=dict)
    meta: Dict[str, Any] = field(default_factory=dict)

    # -- geometry -----------------------------------------------------------------------------------------
    @property
    def patch_size(self) -> int:
        return int(self.meta.get("patch_size", 14))

    @property
    def merge_size(self) -> int:
        return int(self.meta.get("merge_size", 2))

    @property
    def num_tokens(self) -> int:
        return int(self.canvas.shape[0])

    @property
    def num_canvases(self) -> int:
        return int(self.canvases.shape[0])

    @property
    def grid_thw(self) -> torch.Tensor:
        """int64 [1, 3]: (canvases, Hc/p, Wc/p) — the released model's ``video_grid_thw`` row."""
        p = self.patch_size
        s, _, h, w = self.canvases.shape
        return torch.tensor([[s, h // p, w // p]], dtype=torch.int64)

    @property
    def device(self) -> torch.device:
        return self.canvases.device

    # -- conversions --------------------------------------------------------------------------------------
    def to(self, device: Union[str, torch.device]) -> "VisualTokens":
        """A copy on ``device`` (tensors moved, meta shared)."""
        mv = lambda t: t.to(device)  # noqa: E731
        return VisualTokens(
            canvases=mv(self.canvases), canvas_kind=mv(self.canvas_kind), canvas=mv(self.canvas),
            frame=mv(self.frame), t_s=mv(self.t_s), can_hw=mv(self.can_hw), src_hw=mv(self.src_hw),
            group=mv(self.group), pos_thw=mv(self.pos_thw), groups={k: mv(v) for k, v in self.groups.items()},
            meta=self.meta,
        )

    def patches(self, dtype: torch.dtype = torch.float32, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """float [N, 3·p·p]: each token's p×p RGB patch (C, H, W order), scaled to [0, 1] and normalised with
        the config's ``image_mean`` / ``image_std``, in token (block) order — the encoder's ``pixel_values``.
        ``out`` (a contiguous [N, 3·p·p] tensor of ``dtype``, e.g. a slice of a batch's pixel values) receives
        them instead of a new tensor."""
        p = self.patch_size
        s, c, h, w = self.canvases.shape
        grid = self.canvases.reshape(s, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # S, gh, gw, C, p, p
        sel = grid[self.canvas.long(), self.can_hw[:, 0].long(), self.can_hw[:, 1].long()]  # N, C, p, p
        cfg = self.meta.get("config", {})
        mean = torch.tensor(cfg.get("image_mean", (0.48145466, 0.4578275, 0.40821073)), dtype=dtype, device=sel.device)
        std = torch.tensor(cfg.get("image_std", (0.26862954, 0.26130258, 0.27577711)), dtype=dtype, device=sel.device)
        if out is None:
            x = sel.to(dtype)  # a new tensor: the steps below run in place (the same operations, no temporaries)
        else:
            if out.shape != (sel.shape[0], c * p * p) or out.dtype != dtype or not out.is_contiguous():
                raise ValueError(f"out must be a contiguous {dtype} tensor of shape {(sel.shape[0], c * p * p)}")
            x = out.view(sel.shape[0], c, p, p)
            x.copy_(sel)
        x.div_(255.0).sub_(mean.view(1, 3, 1, 1)).div_(std.view(1, 3, 1, 1))
        return x.reshape(x.shape[0], c * p * p)

    def model_inputs(self) -> Dict[str, torch.Tensor]:
        """The released model's inputs for this item (DESIGN §5.9): ``pixel_values`` [N, 3·p·p],
        ``grid_thw`` [1, 3], ``patch_positions`` [N, 3] and per-token ``group_ids`` [N]."""
        return {
            "pixel_values": self.patches(),
            "grid_thw": self.grid_thw,
            "patch_positions": self.pos_thw.long(),
            "group_ids": self.group.long(),
        }

    # -- persistence --------------------------------------------------------------------------------------
    def _arrays(self) -> Dict[str, np.ndarray]:
        d = {k: getattr(self, k).detach().cpu().numpy() for k in ("canvases", "canvas_kind") + _RECORDS}
        for k, v in self.groups.items():
            d[f"groups.{k}"] = v.detach().cpu().numpy()
        return d

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Writes ``.npz`` or ``.safetensors`` (by extension); meta is stored as JSON."""
        path = Path(path)
        arrays = self._arrays()
        meta = json.dumps(self.meta, default=_json_default)
        if path.suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path), metadata={"meta": meta})
        else:
            with open(path, "wb") as fh:
                np.savez(fh, __meta__=np.frombuffer(meta.encode(), dtype=np.uint8), **arrays)
        return path

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "VisualTokens":
        """Reads what :meth:`save` wrote (``.safetensors`` by extension, else ``.npz``). A file that is missing,
        not a tokens file, damaged or inconsistent raises :class:`~ov2_tokenizer.errors.TokensFileError` naming it."""
        path = Path(path)
        if not path.is_file():
            raise errors.TokensFileError(str(path), "no such file" if not path.exists() else "not a regular file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise errors.TokensFileError(str(path), exc.strerror or str(exc)) from exc
        return cls.from_bytes(data, "safetensors" if path.suffix == ".safetensors" else "npz", name=str(path))

    @classmethod
    def from_bytes(cls, data: Union[bytes, bytearray, memoryview], fmt: str = "npz",
                   name: str = "<bytes>") -> "VisualTokens":
        """:meth:`load` of a file's bytes (``fmt``: ``"npz"`` or ``"safetensors"``), e.g. a webdataset sample.

            >>> import tempfile
            >>> vt = VisualTokens.empty_like_geometry(num_canvases=1, canvas_hw=(28, 28))
            >>> with tempfile.TemporaryDirectory() as d:
            ...     data = vt.save(Path(d) / "tokens.npz").read_bytes()
            >>> VisualTokens.from_bytes(data, "npz").equal(vt)
            True
        """
        if fmt not in _FORMATS:
            raise errors.ConfigError("format", f"must be one of {_FORMATS}, got {fmt!r}")
        try:
            if fmt == "safetensors":
                from safetensors.numpy import load as st_load

                arrays = st_load(bytes(data))
                (n,) = np.frombuffer(bytes(data[:8]), dtype="<u8")
                header = json.loads(bytes(data[8:8 + int(n)]).decode("utf-8"))
                meta = json.loads((header.get("__metadata__") or {}).get("meta", "{}"))
            else:
                with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
                if "__meta__" not in arrays:
                    raise errors.TokensFileError(name, "not a VisualTokens file (no __meta__ entry)")
                meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
        except errors.Ov2Error:
            raise
        except Exception as exc:  # numpy's, zipfile's, safetensors' and json's errors for damaged or foreign bytes
            cause = f"not a readable {fmt} tokens file ({type(exc).__name__}: {exc})"
            raise errors.TokensFileError(name, cause) from exc
        missing = [k for k in _LAYOUT if k not in arrays]
        if missing:
            raise errors.TokensFileError(name, f"not a VisualTokens file (no arrays {missing})")
        if not isinstance(meta, dict):
            raise errors.TokensFileError(name, "meta is not a JSON object")
        try:
            groups = {k.split(".", 1)[1]: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()
                      if k.startswith("groups.")}
            t = {k: torch.from_numpy(np.ascontiguousarray(arrays[k])) for k in _LAYOUT}
        except TypeError as exc:  # a dtype torch has no tensor for
            raise errors.TokensFileError(name, f"unsupported array type ({exc})") from exc
        vt = cls(groups=groups, meta=meta, **t)
        problem = vt._layout_problem()
        if problem:
            raise errors.TokensFileError(name, problem)
        return vt

    def _layout_problem(self) -> Optional[str]:
        """None when dtypes, shapes and indices fit together (every token on a patch cell of a canvas), else what
        does not."""
        if not isinstance(self.meta, dict):
            return "meta is not a dict"
        for k, (dtype, tail) in _LAYOUT.items():
            a = getattr(self, k)
            if not isinstance(a, torch.Tensor) or a.dtype != dtype or a.ndim != 1 + len(tail) or any(
                    want is not None and got != want for got, want in zip(a.shape[1:], tail)):
                shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
                want = ", ".join(["n", *map(str, tail)])
                return f"{k}: {getattr(a, 'dtype', '?')} {shape}, expected {dtype} [{want}]"
        p, m = self.meta.get("patch_size", 14), self.meta.get("merge_size", 2)
        if not (isinstance(p, int) and isinstance(m, int) and p >= 1 and m >= 1):
            return f"patch_size {p!r} / merge_size {m!r} must be positive integers"
        s, _, h, w = self.canvases.shape
        if h % p or w % p:
            return f"canvases of {h}x{w} are not a whole number of {p}-pixel patches"
        if self.canvas_kind.shape[0] != s:
            return f"canvas_kind has {self.canvas_kind.shape[0]} entries for {s} canvases"
        n = self.canvas.shape[0]
        for k in _RECORDS[1:]:
            if getattr(self, k).shape[0] != n:
                return f"{k} has {getattr(self, k).shape[0]} rows for {n} tokens"
        if n:
            canvas, hw = self.canvas.cpu(), self.can_hw.cpu().to(torch.int64)
            if int(canvas.min()) < 0 or int(canvas.max()) >= s:
                return f"a token's canvas index is outside 0..{s - 1}"
            if int(hw.min()) < 0 or int(hw[:, 0].max()) >= h // p or int(hw[:, 1].max()) >= w // p:
                return "a token's patch cell is outside its canvas"
            if int(self.frame.min()) < -1:
                return "a frame index is below -1"
        for k, v in self.groups.items():
            if not isinstance(v, torch.Tensor):
                return f"groups.{k} is not an array"
        return None

    # -- inspection ---------------------------------------------------------------------------------------
    def summary(self) -> str:
        """A short human-readable description."""
        s, _, h, w = self.canvases.shape
        kinds = {name: int((self.canvas_kind == k).sum()) for k, name in _KIND_NAMES.items()}
        kinds = ", ".join(f"{v} {k}" for k, v in kinds.items() if v)
        pad = int((self.frame < 0).sum())
        lines = [
            f"VisualTokens[{self.meta.get('mode', '?')}] {self.num_tokens} tokens "
            f"({self.num_tokens // max(1, self.merge_size ** 2)} after {self.merge_size}x{self.merge_size} merge), "
            f"{s} canvases of {h}x{w} ({kinds}), {pad} padding tokens",
        ]
        if self.groups:
            n = len(self.groups.get("start_s", []))
            lines.append(f"  {n} groups:")
            for k in list(range(min(n, 6))) + ([n - 1] if n > 6 else []):
                if k == n - 1 and n > 6:
                    lines.append(f"    ... {n - 7} more")
                lines.append(
                    f"    κ={k}: {float(self.groups['start_s'][k]):7.2f}–{float(self.groups['end_s'][k]):7.2f} s  "
                    f"bit-cost {float(self.groups['bit_cost'][k]):10.0f} B  P-canvases {int(self.groups['num_p'][k])}"
                )
        if "timings" in self.meta:
            lines.append("  timings: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in self.meta["timings"].items()))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary().splitlines()[0]

    def equal(self, other: "VisualTokens") -> bool:
        """Bit-identical arrays (meta timings ignored)."""
        a, b = self._arrays(), other._arrays()
        return a.keys() == b.keys() and all(
            a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a
        )

    @classmethod
    def empty_like_geometry(
        cls, num_canvases: int, canvas_hw: Sequence[int], patch_size: int = 14, merge_size: int = 2
    ) -> "VisualTokens":
        """Blank canvases with padding records in block order (used for tests and short inputs)."""
        from .records import block_order_cells

        h, w = canvas_hw
        gh, gw = h // patch_size, w // patch_size
        cells = block_order_cells(gh, gw, merge_size)  # [n, 2]
        n = num_canvases * cells.shape[0]
        canvas = np.repeat(np.arange(num_canvases, dtype=np.int32), cells.shape[0])
        can_hw = np.tile(cells, (num_canvases, 1)).astype(np.int16)
        return cls(
            canvases=torch.zeros(num_canvases, 3, h, w, dtype=torch.uint8),
            canvas_kind=torch.full((num_canvases,), CANVAS_FRAME, dtype=torch.int8),
            canvas=torch.from_numpy(canvas),
            frame=torch.full((n,), -1, dtype=torch.int32),
            t_s=torch.full((n,), float("nan"), dtype=torch.float32),
            can_hw=torch.from_numpy(can_hw),
            src_hw=torch.from_numpy(can_hw.copy()),
            group=torch.zeros(n, dtype=torch.int32),
            pos_thw=torch.zeros(n, 3, dtype=torch.int32),
            meta={"patch_size": patch_size, "merge_size": merge_size, "mode": "empty"},
        )


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray,)):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    return str(o)
