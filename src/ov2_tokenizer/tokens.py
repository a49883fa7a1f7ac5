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

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import torch

__all__ = ["VisualTokens", "CANVAS_I", "CANVAS_P", "CANVAS_FRAME", "CANVAS_IMAGE"]

CANVAS_I, CANVAS_P, CANVAS_FRAME, CANVAS_IMAGE = 0, 1, 2, 3
_KIND_NAMES = {CANVAS_I: "I", CANVAS_P: "P", CANVAS_FRAME: "frame", CANVAS_IMAGE: "image"}

_RECORDS = ("canvas", "frame", "t_s", "can_hw", "src_hw", "group", "pos_thw")
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
        path = Path(path)
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            from safetensors.numpy import load_file

            arrays = load_file(str(path))
            with safe_open(str(path), framework="numpy") as fh:
                meta = json.loads((fh.metadata() or {}).get("meta", "{}"))
        else:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays.pop("__meta__").tobytes().decode())
        groups = {k.split(".", 1)[1]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("groups.")}
        t = {k: torch.from_numpy(np.ascontiguousarray(arrays[k])) for k in ("canvases", "canvas_kind") + _RECORDS}
        return cls(groups=groups, meta=meta, **t)

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
