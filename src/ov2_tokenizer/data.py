"""Training-side data loading: a map-style dataset of token jobs and a packing collate function.

``VideoTokenDataset`` tokenizes one video per ``__getitem__`` (paths, or a JSON-lines manifest with per-item
mode and config overrides); ``collate_visual_tokens`` packs several :class:`~ov2_tokenizer.VisualTokens` into
one varlen sequence (``cu_seqlens`` per sample, per-token segment ids for sample / group / window), the layout
FlashAttention-style varlen encoders and the ov2 model consume::

    >>> import torch, ov2_tokenizer as ov2
    >>> from ov2_tokenizer.data import VideoTokenDataset, collate_visual_tokens
    >>> ds = VideoTokenDataset([ov2.sample_video()] * 2, mode="frames", num_frames=8, max_pixels=50176)
    >>> batch = collate_visual_tokens([ds[0], ds[1]])
    >>> batch.cu_seqlens.tolist(), batch.grid_thw.tolist()
    ([0, 1920, 3840], [[8, 12, 20], [8, 12, 20]])
    >>> batch.window_ids.unique().tolist()      # 8 canvases per sample -> 2 windows of 4 canvases each
    [0, 1, 2, 3]

DataLoader workers: both ``fork`` and ``spawn`` are safe (docs/ecosystem.md explains why). ov2 keeps no thread
alive between calls -- every reader's decode threads are joined before its frames iterator finishes -- and
holds no process-global lock, so a forked worker never inherits a half-held mutex or a dead pool (the
failure mode of PyAV's thread pool under fork). Give each worker ``num_threads=1`` (the dataset's default):
the DataLoader already parallelises across videos, and decode threads on top only oversubscribe the cores.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from .config import MODES, TokenizerConfig
from .errors import ConfigError, Ov2Error, VideoOpenError
from .tokens import VisualTokens

__all__ = [
    "TokenJob",
    "TokenFailure",
    "VideoTokenDataset",
    "PackedVisualTokens",
    "collate_visual_tokens",
    "read_manifest",
]

PathLike = Union[str, "os.PathLike[str]"]
_ON_FAILURE = ("raise", "skip")


@dataclass(frozen=True)
class TokenJob:
    """One item of a :class:`VideoTokenDataset`: a video, its mode and its config overrides.

    ``extra`` holds the manifest line's other keys (labels, captions, ids); they travel with the sample into
    ``VisualTokens.meta["dataset"]`` and the packed batch's per-sample metadata.
    """

    source: str
    mode: str = "codec_stream"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenFailure:
    """A typed failure record returned in place of a sample when ``on_failure="skip"``.

    ``error`` is the class name of the :class:`~ov2_tokenizer.errors.Ov2Error` (``"CorruptVideoError"``, ...),
    ``cause`` its message without the file name. Picklable, so it crosses DataLoader worker boundaries.
    """

    index: int
    source: str
    mode: str
    error: str
    cause: str

    def __str__(self) -> str:
        return f"{self.source}: {self.error}: {self.cause}"


def read_manifest(path: PathLike, default_mode: str = "codec_stream") -> List[TokenJob]:
    """Reads a JSON-lines manifest: one object per line with ``"path"`` (relative paths resolve against the
    manifest's directory), optional ``"mode"``, optional ``"config"`` (a dict of :class:`TokenizerConfig`
    overrides) and any other keys (kept as ``extra``). Blank lines and lines starting with ``#`` are skipped.

    Raises :class:`~ov2_tokenizer.errors.ConfigError` naming the manifest line for malformed entries.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise VideoOpenError(str(path), f"cannot read the manifest: {cause}") from exc
    jobs: List[TokenJob] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(where, f"not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("path"), str):
            raise ConfigError(where, 'each line must be an object with a string "path"')
        src = obj.pop("path")
        if not os.path.isabs(src):
            src = str(path.parent / src)
        mode = obj.pop("mode", default_mode)
        cfg = obj.pop("config", {})
        if not isinstance(cfg, dict):
            raise ConfigError(where, '"config" must be an object of TokenizerConfig fields')
        jobs.append(_make_job(src, mode, cfg, obj, where))
    return jobs


def _make_job(source: Any, mode: str, overrides: Mapping[str, Any], extra: Mapping[str, Any], where: str) -> TokenJob:
    if mode not in MODES:
        raise ConfigError(where, f"mode must be one of {MODES}, got {mode!r}")
    ov = dict(overrides)
    for k, v in ov.items():  # JSON has no tuples; TokenizerConfig's tuple fields take lists
        if isinstance(v, list):
            ov[k] = tuple(v)
    try:
        TokenizerConfig().replace(**ov)  # validate now, not in a worker halfway through an epoch
    except ConfigError as exc:
        raise ConfigError(where, f"config field {exc.source}: {exc.cause}") from exc
    return TokenJob(source=os.fspath(source), mode=mode, overrides=ov, extra=dict(extra))


class VideoTokenDataset(torch.utils.data.Dataset):
    """Map-style dataset: item ``i`` is ``tokenize_video(job.source, job.mode, config + job.overrides)``.

    Args:
        items: a manifest path (``.jsonl`` / ``.json`` lines, see :func:`read_manifest`), or a sequence of paths,
            :class:`TokenJob` objects or dicts with the manifest's keys.
        mode: default mode of items that do not name one.
        config: base :class:`TokenizerConfig` (default: the library defaults).
        on_failure: ``"raise"`` -- an :class:`~ov2_tokenizer.errors.Ov2Error` propagates (the DataLoader re-raises
            it in the main process, naming the file); ``"skip"`` -- ``__getitem__`` returns a
            :class:`TokenFailure` record, which :func:`collate_visual_tokens` moves to ``batch.failures``.
        num_threads: decode threads per item (default 1, the right choice inside DataLoader workers; ``None``
            lets the reader use up to 4 cores). A per-item ``num_threads`` override wins.
        **overrides: TokenizerConfig fields applied to every item (before per-item overrides).

    Tokenization is deterministic, so iteration order, worker count and start method never change the samples.
    """

    def __init__(
        self,
        items: Union[PathLike, Sequence[Union[PathLike, TokenJob, Mapping[str, Any]]]],
        mode: str = "codec_stream",
        config: Optional[TokenizerConfig] = None,
        on_failure: str = "raise",
        num_threads: Optional[int] = 1,
        **overrides: Any,
    ) -> None:
        if on_failure not in _ON_FAILURE:
            raise ConfigError("on_failure", f"must be one of {_ON_FAILURE}, got {on_failure!r}")
        if mode not in MODES:
            raise ConfigError("mode", f"must be one of {MODES}, got {mode!r}")
        base = config if config is not None else TokenizerConfig()
        if not isinstance(base, TokenizerConfig):
            raise ConfigError("config", f"must be a TokenizerConfig, got {type(base).__name__}")
        if num_threads is not None:
            overrides = {"num_threads": num_threads, **overrides}
        self.config = base.replace(**overrides) if overrides else base
        self.mode = mode
        self.on_failure = on_failure
        if isinstance(items, (str, os.PathLike)):
            self.jobs: List[TokenJob] = read_manifest(items, default_mode=mode)
        else:
            self.jobs = [self._job(i, it) for i, it in enumerate(items)]

    def _job(self, i: int, item: Union[PathLike, TokenJob, Mapping[str, Any]]) -> TokenJob:
        if isinstance(item, TokenJob):
            return _make_job(item.source, item.mode, item.overrides, item.extra, f"item {i}")
        if isinstance(item, Mapping):
            d = dict(item)
            if "path" not in d:
                raise ConfigError(f"item {i}", 'a dict item needs a "path"')
            src, mode, cfg = d.pop("path"), d.pop("mode", self.mode), d.pop("config", {})
            return _make_job(src, mode, cfg, d, f"item {i}")
        if isinstance(item, (str, os.PathLike)):
            return TokenJob(source=os.fspath(item), mode=self.mode)
        raise ConfigError(f"item {i}", f"must be a path, a TokenJob or a dict, got {type(item).__name__}")

    def __len__(self) -> int:
        return len(self.jobs)

    def config_of(self, index: int) -> TokenizerConfig:
        """The effective config of item ``index`` (base config + the item's overrides)."""
        job = self.jobs[index]
        return self.config.replace(**job.overrides) if job.overrides else self.config

    def __getitem__(self, index: int) -> Union[VisualTokens, TokenFailure]:
        from .tokenize import tokenize_video

        index = int(index)
        if index < 0:
            index += len(self.jobs)
        job = self.jobs[index]
        try:
            vt = tokenize_video(job.source, mode=job.mode, config=self.config_of(index))
        except Ov2Error as exc:
            if self.on_failure == "raise":
                raise
            return TokenFailure(index=index, source=job.source, mode=job.mode, error=type(exc).__name__,
                                cause=exc.cause)
        vt.meta["dataset"] = {"index": index, "source": job.source, **dict(job.extra)}
        return vt


@dataclass
class PackedVisualTokens:
    """Several samples packed into one token sequence (the output of :func:`collate_visual_tokens`).

    Token-level tensors (length ΣN, samples concatenated, each sample's tokens in its own block order):

    - ``pixel_values`` float ``[ΣN, 3·p·p]``: normalised patches (``VisualTokens.patches()``).
    - ``pos_thw`` int64 ``[ΣN, 3]``: 3D RoPE coordinates (the model's ``patch_positions``).
    - ``sample_ids`` / ``group_ids`` / ``window_ids`` / ``canvas_ids`` int64 ``[ΣN]``: segment ids, unique across
      the batch. ``group_ids`` are the codec groups κ (renumbered densely per sample, then offset, exactly as
      ``ov2_model.visual_tokens_to_inputs`` does); ``window_ids`` are runs of ``frame_windows_size`` canvases
      (the released encoder's four-slice attention windows); ``canvas_ids`` are global canvas numbers.
    - ``frame`` int32 / ``t_s`` float32 ``[ΣN]``: source frame index and time (-1 / NaN for padding).

    Sample-level: ``grid_thw`` int64 ``[B, 3]`` (canvases, Hc/p, Wc/p); ``cu_seqlens`` int32 ``[B+1]`` (token
    offsets of the samples); ``group_cu_seqlens`` / ``window_cu_seqlens`` int32 (offsets of the group / window
    segments, for varlen attention kernels); ``num_tokens`` merged LLM tokens per sample (N / m²);
    ``metadata`` one dict per sample (``groups``: the sample's ``VisualTokens.groups``, 1-D tables as lists,
    larger arrays such as cope's Δ tensors as tensors); ``failures`` the :class:`TokenFailure` records dropped
    from the batch.
    """

    pixel_values: torch.Tensor
    grid_thw: torch.Tensor
    pos_thw: torch.Tensor
    cu_seqlens: torch.Tensor
    sample_ids: torch.Tensor
    group_ids: torch.Tensor
    window_ids: torch.Tensor
    canvas_ids: torch.Tensor
    group_cu_seqlens: torch.Tensor
    window_cu_seqlens: torch.Tensor
    frame: torch.Tensor
    t_s: torch.Tensor
    canvas_kind: torch.Tensor
    num_tokens: List[int]
    metadata: List[Dict[str, Any]]
    failures: List[TokenFailure]
    frame_windows_size: int = 4
    modality: str = "video"

    @property
    def batch_size(self) -> int:
        return int(self.grid_thw.shape[0])

    def __len__(self) -> int:
        return self.batch_size

    def to(self, device: Union[str, torch.device], non_blocking: bool = False) -> "PackedVisualTokens":
        """A copy with every tensor on ``device`` (``metadata`` and ``failures`` shared)."""
        kw = {}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            kw[name] = v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
        return PackedVisualTokens(**kw)

    def pin_memory(self) -> "PackedVisualTokens":
        """Pinned copy (``DataLoader(pin_memory=True)`` calls this on custom batch types)."""
        kw = {n: (getattr(self, n).pin_memory() if isinstance(getattr(self, n), torch.Tensor) else getattr(self, n))
              for n in self.__dataclass_fields__}
        return PackedVisualTokens(**kw)

    def model_kwargs(self, groups: str = "explicit") -> Dict[str, torch.Tensor]:
        """Keyword arguments for ``LlavaOnevision2ForConditionalGeneration.forward`` (DESIGN §5.9):
        ``pixel_values_videos`` / ``video_grid_thw`` (or the image names for image batches), ``patch_positions``
        and, with ``groups="explicit"``, ``video_group_ids`` (the codec groups as attention segments);
        ``groups="windows"`` leaves them out so the encoder cuts ``frame_windows_size``-canvas windows itself."""
        if groups not in ("explicit", "windows"):
            raise ConfigError("groups", f"must be 'explicit' or 'windows', got {groups!r}")
        pre = "video" if self.modality == "video" else "image"
        out = {
            ("pixel_values_videos" if pre == "video" else "pixel_values"): self.pixel_values,
            f"{pre}_grid_thw": self.grid_thw,
            "patch_positions": self.pos_thw,
        }
        if groups == "explicit":
            out[f"{pre}_group_ids"] = self.group_ids
        return out


def _runs_cu(ids: torch.Tensor) -> torch.Tensor:
    """int32 offsets of the runs of equal consecutive values of ``ids`` (``[0, ..., len]``)."""
    if ids.numel() == 0:
        return torch.zeros(1, dtype=torch.int32)
    _, counts = torch.unique_consecutive(ids, return_counts=True)
    return torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)]).to(torch.int32)


def _sample_metadata(vt: VisualTokens) -> Dict[str, Any]:
    real = vt.frame >= 0
    frames, first = np.unique(vt.frame[real].numpy(), return_index=True) if bool(real.any()) else (np.zeros(0), np.zeros(0))
    times = vt.t_s[real].numpy()[first] if frames.size else np.zeros(0)
    md: Dict[str, Any] = {
        "source": vt.meta.get("source"),
        "mode": vt.meta.get("mode"),
        "num_canvases": vt.num_canvases,
        "canvas_hw": list(vt.canvases.shape[-2:]),
        "frames_indices": [int(f) for f in frames],
        "timestamps": [float(t) for t in times],
    }
    if vt.groups:
        # Per-group / per-step tables (1-D) as lists; larger arrays (cope's ``delta_motion`` [P, H/4, W/4, 2] and
        # ``delta_residual`` [P, H, W, 3]) stay tensors: as nested lists they took ~100 MB and seconds per 720p
        # sample in the collate function and were pickled element by element from the DataLoader workers.
        md["groups"] = {k: (v.tolist() if v.dim() <= 1 else v) for k, v in vt.groups.items()}
    if "dataset" in vt.meta:
        md["dataset"] = dict(vt.meta["dataset"])
    return md


def collate_visual_tokens(
    batch: Iterable[Union[VisualTokens, TokenFailure]],
    frame_windows_size: int = 4,
    dtype: torch.dtype = torch.float32,
) -> PackedVisualTokens:
    """Packs samples into one sequence (see :class:`PackedVisualTokens`); use as ``DataLoader(collate_fn=...)``.

    :class:`TokenFailure` records are dropped from the tensors and listed in ``failures``. All samples must share
    patch size and modality (videos and images are packed separately, as the model takes them). Token order
    inside a sample is preserved, so m×m merge blocks stay consecutive. A batch with no sample left (all failed)
    gives empty tensors.
    """
    if not isinstance(frame_windows_size, int) or frame_windows_size < 1:
        raise ConfigError("frame_windows_size", f"must be a positive integer, got {frame_windows_size!r}")
    items = list(batch)
    failures = [b for b in items if isinstance(b, TokenFailure)]
    samples = [b for b in items if not isinstance(b, TokenFailure)]
    for i, s in enumerate(samples):
        if not isinstance(s, VisualTokens):
            raise ConfigError("batch", f"item {i} is a {type(s).__name__}, expected VisualTokens or TokenFailure")
    patch = {s.patch_size for s in samples}
    if len(patch) > 1:
        raise ConfigError("batch", f"samples have different patch sizes {sorted(patch)}")
    kinds = {"image" if bool((s.canvas_kind == 3).all()) else "video" for s in samples}
    if len(kinds) > 1:
        raise ConfigError("batch", "samples mix images and videos; pack each modality in its own batch")
    p = patch.pop() if patch else 14

    pos, sid, gid, wid, cid, frm, ts, kinds_t, grids, counts, md = [], [], [], [], [], [], [], [], [], [], []
    cu = [0]
    g_off = c_off = w_off = 0
    # every sample's patches are written straight into its rows of the batch's pixel values (no concatenation)
    pixel_values = torch.empty((sum(vt.num_tokens for vt in samples), 3 * p * p), dtype=dtype)
    for b, vt in enumerate(samples):
        n = vt.num_tokens
        s, _, hc, wc = vt.canvases.shape
        vt.patches(dtype=dtype, out=pixel_values[cu[-1]:cu[-1] + n])
        pos.append(vt.pos_thw.to(torch.int64))
        sid.append(torch.full((n,), b, dtype=torch.int64))
        _, dense = torch.unique(vt.group.to(torch.int64), return_inverse=True)
        gid.append(dense + g_off)
        g_off += int(dense.max()) + 1 if n else 0
        canvas = vt.canvas.to(torch.int64)
        cid.append(canvas + c_off)
        c_off += s
        wid.append(canvas // frame_windows_size + w_off)
        w_off += -(-s // frame_windows_size)
        frm.append(vt.frame.to(torch.int32))
        ts.append(vt.t_s.to(torch.float32))
        kinds_t.append(vt.canvas_kind.to(torch.int8))
        grids.append([s, hc // p, wc // p])
        counts.append(n // max(1, vt.merge_size ** 2))
        cu.append(cu[-1] + n)
        md.append(_sample_metadata(vt))

    def cat(parts: List[torch.Tensor], empty: torch.Tensor) -> torch.Tensor:
        return torch.cat(parts) if parts else empty

    i64 = torch.zeros(0, dtype=torch.int64)
    group_ids = cat(gid, i64)
    window_ids = cat(wid, i64)
    return PackedVisualTokens(
        pixel_values=pixel_values,
        grid_thw=torch.tensor(grids, dtype=torch.int64).reshape(-1, 3),
        pos_thw=cat(pos, torch.zeros(0, 3, dtype=torch.int64)),
        cu_seqlens=torch.tensor(cu, dtype=torch.int32),
        sample_ids=cat(sid, i64),
        group_ids=group_ids,
        window_ids=window_ids,
        canvas_ids=cat(cid, i64),
        group_cu_seqlens=_runs_cu(group_ids),
        window_cu_seqlens=_runs_cu(window_ids),
        frame=cat(frm, torch.zeros(0, dtype=torch.int32)),
        t_s=cat(ts, torch.zeros(0, dtype=torch.float32)),
        canvas_kind=cat(kinds_t, torch.zeros(0, dtype=torch.int8)),
        num_tokens=counts,
        metadata=md,
        failures=failures,
        frame_windows_size=frame_windows_size,
        modality=kinds.pop() if kinds else "video",
    )
