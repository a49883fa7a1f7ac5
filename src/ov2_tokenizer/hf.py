"""A Hugging Face-style processor: ``processor(videos=..., images=..., return_tensors="pt")``.

``Ov2VideoProcessor`` is a drop-in for the video processor of a Qwen-VL / LLaVA pipeline. It takes compressed
videos (paths, bytes, binary file-like objects -- the codec-stream mode needs the bitstream, not decoded
frames) and images (RGB arrays, PIL images, paths, bytes) and returns the released model's inputs::

    >>> import ov2_tokenizer as ov2
    >>> from ov2_tokenizer.hf import Ov2VideoProcessor
    >>> proc = Ov2VideoProcessor(num_frames=32, max_canvases=8, max_pixels=50176)
    >>> out = proc(videos=[ov2.sample_video()], return_tensors="pt")
    >>> out["video_grid_thw"].tolist(), tuple(out["pixel_values_videos"].shape)
    ([[8, 12, 20]], (1920, 588))
    >>> md = out["video_metadata"][0]
    >>> md.total_num_frames, md.fps, len(md.frames_indices) == len(md.timestamps)
    (240, 30.0, True)

Keys: ``pixel_values_videos`` [ΣN, 3·p·p], ``video_grid_thw`` [B, 3], ``video_group_ids`` [ΣN] (ov2's codec
groups; drop the key to get the released four-canvas windows), ``pixel_values`` / ``image_grid_thw`` /
``image_group_ids`` for images, ``patch_positions`` [N, 3] (images first, then videos -- the order the model
splits them in), ``video_metadata`` (one :class:`Ov2VideoMetadata` per video), ``video_num_tokens`` /
``image_num_tokens`` (merged placeholders per item = ``grid_thw.prod(-1) // merge_size**2``).

qwen-vl-utils knobs: ``fps`` xor ``num_frames`` (candidate frames; ``min_frames`` / ``max_frames`` bound what
``fps`` gives), ``min_pixels`` / ``max_pixels`` (canvas area). ``max_canvases`` is the codec-stream budget.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from .config import MODES, TokenizerConfig
from .errors import ConfigError
from .tokens import VisualTokens

__all__ = ["Ov2VideoProcessor", "Ov2VideoMetadata", "video_metadata_of"]


@dataclass
class Ov2VideoMetadata(Mapping):
    """Per-video metadata with the field names of ``transformers.video_utils.VideoMetadata``.

    ``frames_indices`` are the source frames whose pixels the tokens carry (sorted, padding excluded) and
    ``timestamps`` their presentation times in seconds from the stream (pts), not ``index / fps``.
    ``total_num_frames`` is the decoded frame count (packet table), ``fps`` the stream's average rate.
    Behaves as a read-only mapping like HF's class; :meth:`to_hf` converts when transformers is installed.
    """

    total_num_frames: int
    fps: Optional[float] = None
    width: Optional[int] = None
    height: Optional[int] = None
    duration: Optional[float] = None
    video_backend: Optional[str] = "ov2"
    frames_indices: Optional[List[int]] = None
    timestamps: List[float] = field(default_factory=list)
    mode: str = "codec_stream"
    canvas_frames: List[List[int]] = field(default_factory=list)  # source frames per canvas (I: one, P: several)

    def __iter__(self) -> Iterator[str]:
        return (f.name for f in fields(self))

    def __len__(self) -> int:
        return len(fields(self))

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

    @property
    def sampled_fps(self) -> float:
        """Frames carried per second of video (HF's ``sampled_fps``)."""
        if not self.frames_indices or not self.duration:
            return float(self.fps or 0.0)
        return len(self.frames_indices) / self.duration

    def to_hf(self):
        """The same metadata as ``transformers.video_utils.VideoMetadata`` (its ``timestamps`` property then
        recomputes ``index / fps``; keep this object where exact pts matter)."""
        from transformers.video_utils import VideoMetadata

        return VideoMetadata(total_num_frames=self.total_num_frames, fps=self.fps, width=self.width,
                             height=self.height, duration=self.duration, video_backend=self.video_backend,
                             frames_indices=list(self.frames_indices or []))


def video_metadata_of(vt: VisualTokens, info: Any = None) -> Ov2VideoMetadata:
    """:class:`Ov2VideoMetadata` of a tokenized video; ``info`` is the ``VideoInfo`` of its stream (optional)."""
    real = vt.frame >= 0
    frame = vt.frame[real].numpy()
    frames, first = np.unique(frame, return_index=True)
    times = vt.t_s[real].numpy()[first]
    canvas = vt.canvas[real].numpy()
    per_canvas = [sorted(set(frame[canvas == c].tolist())) for c in range(vt.num_canvases)]
    return Ov2VideoMetadata(
        total_num_frames=int(info.num_frames) if info is not None and info.num_frames is not None else -1,
        fps=float(info.fps) if info is not None and info.fps else None,
        width=int(info.width) if info is not None else None,
        height=int(info.height) if info is not None else None,
        duration=float(info.duration_s) if info is not None and info.duration_s else None,
        frames_indices=[int(f) for f in frames],
        timestamps=[float(t) for t in times],
        mode=str(vt.meta.get("mode", "?")),
        canvas_frames=per_canvas,
    )


def _batch_feature(data: Dict[str, Any]):
    try:
        from transformers import BatchFeature
    except ImportError:  # plain dict with the same keys
        return dict(data)
    # metadata lists are not tensors: BatchFeature keeps them as they are
    return BatchFeature(data=data, tensor_type=None)


class Ov2VideoProcessor:
    """Hugging Face call shape over :func:`~ov2_tokenizer.tokenize_video` / :func:`~ov2_tokenizer.tokenize_image`.

    Args:
        mode: tokenization mode of videos (``"codec_stream"`` default, ``"frames"``, ...).
        config: base :class:`TokenizerConfig`.
        fps / num_frames: candidate frames per second xor in total (qwen-vl-utils); ``min_frames`` /
            ``max_frames`` bound the count ``fps`` yields.
        min_pixels / max_pixels: canvas area bounds; ``max_canvases``: codec-stream budget.
        group_ids: also return ``video_group_ids`` / ``image_group_ids`` (codec groups as attention segments).
        num_threads: decode threads per video.
        **overrides: any other TokenizerConfig field.

    Each call also accepts these knobs as keyword arguments (per-call override, as HF processors do).
    """

    model_input_names = ["pixel_values_videos", "video_grid_thw", "patch_positions", "pixel_values", "image_grid_thw"]
    _KNOBS = ("fps", "num_frames", "min_frames", "max_frames")

    def __init__(
        self,
        mode: str = "codec_stream",
        config: Optional[TokenizerConfig] = None,
        *,
        fps: Optional[float] = None,
        num_frames: Optional[int] = None,
        min_frames: int = 4,
        max_frames: int = 768,
        min_pixels: Optional[int] = None,
        max_pixels: Optional[int] = None,
        max_canvases: Optional[int] = None,
        group_ids: bool = True,
        num_threads: Optional[int] = None,
        **overrides: Any,
    ) -> None:
        if mode not in MODES or mode in ("image",):
            raise ConfigError("mode", f"must be a video mode of {MODES}, got {mode!r}")
        self.mode = mode
        for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels), ("max_canvases", max_canvases),
                     ("num_threads", num_threads)):
            if v is not None:
                overrides[k] = v
        base = config if config is not None else TokenizerConfig()
        self.config = base.replace(**overrides) if overrides else base
        self.fps, self.num_frames, self.min_frames, self.max_frames = fps, num_frames, min_frames, max_frames
        self._check_knobs(fps, num_frames, min_frames, max_frames)
        self.group_ids = group_ids

    @staticmethod
    def _check_knobs(fps, num_frames, min_frames, max_frames) -> None:
        if fps is not None and num_frames is not None:
            raise ConfigError("fps", "give fps or num_frames, not both (qwen-vl-utils semantics)")
        if fps is not None and not (isinstance(fps, (int, float)) and fps > 0):
            raise ConfigError("fps", f"must be > 0, got {fps!r}")
        if num_frames is not None and not (isinstance(num_frames, int) and num_frames > 0):
            raise ConfigError("num_frames", f"must be a positive integer, got {num_frames!r}")
        if not (isinstance(min_frames, int) and isinstance(max_frames, int) and 1 <= min_frames <= max_frames):
            raise ConfigError("min_frames", f"need 1 <= min_frames <= max_frames, got {min_frames}, {max_frames}")

    @property
    def merge_size(self) -> int:
        """Spatial merge m (HF video processors expose it: placeholders per video = grid_thw.prod() // m**2)."""
        return self.config.merge_size

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    # -- per item -----------------------------------------------------------------------------------------
    def _video_config(self, info: Any, knobs: Dict[str, Any], cfg: TokenizerConfig) -> TokenizerConfig:
        fps, num_frames = knobs["fps"], knobs["num_frames"]
        if num_frames is not None:
            return cfg.replace(num_frames=int(num_frames), fps=None)
        if fps is not None:
            dur = info.duration_s if info.duration_s and info.duration_s > 0 else (info.num_frames or 1) / (info.fps or 25.0)
            n = int(round(dur * float(fps)))
            n = max(knobs["min_frames"], min(knobs["max_frames"], n))
            return cfg.replace(num_frames=n, fps=None)
        return cfg

    def tokenize(self, video: Any, **kwargs: Any) -> tuple[VisualTokens, Ov2VideoMetadata]:
        """One video → (VisualTokens, metadata), with this processor's knobs and ``kwargs`` overrides."""
        from .tokenize import tokenize_video
        from .video import open_video

        knobs, cfg, mode = self._resolve(kwargs)
        if isinstance(video, np.ndarray) or isinstance(video, torch.Tensor) or isinstance(video, (list, tuple)):
            raise ConfigError("videos", "ov2 tokenizes compressed videos: pass a path, bytes or a binary file-like "
                                        "object, not decoded frames")
        if hasattr(video, "read") and hasattr(video, "seek"):
            video = video.read()
        reader = open_video(video, num_threads=1)
        info = reader.info
        vcfg = self._video_config(info, knobs, cfg)
        vt = tokenize_video(video, mode=mode, config=vcfg)
        return vt, video_metadata_of(vt, info)

    def _resolve(self, kwargs: Dict[str, Any]) -> tuple[Dict[str, Any], TokenizerConfig, str]:
        kwargs = dict(kwargs)
        mode = kwargs.pop("mode", self.mode)
        knobs = {"fps": self.fps, "num_frames": self.num_frames, "min_frames": self.min_frames,
                 "max_frames": self.max_frames}
        if "fps" in kwargs or "num_frames" in kwargs:  # a per-call choice replaces the other knob
            knobs["fps"] = knobs["num_frames"] = None
        for k in self._KNOBS:
            if k in kwargs:
                knobs[k] = kwargs.pop(k)
        self._check_knobs(knobs["fps"], knobs["num_frames"], knobs["min_frames"], knobs["max_frames"])
        for k in ("return_metadata", "return_tensors", "do_sample_frames", "video_metadata"):
            kwargs.pop(k, None)
        cfg = self.config.replace(**kwargs) if kwargs else self.config
        return knobs, cfg, mode

    # -- the HF call --------------------------------------------------------------------------------------
    def __call__(
        self,
        images: Any = None,
        videos: Any = None,
        return_tensors: Optional[str] = "pt",
        return_metadata: bool = True,
        **kwargs: Any,
    ):
        """Processes ``videos`` and/or ``images`` (one item or a list) into model inputs (module docstring).

        ``return_tensors``: ``"pt"`` (torch) or ``"np"`` (numpy). Returns a ``transformers.BatchFeature`` when
        transformers is installed, else a dict with the same keys.
        """
        from .data import collate_visual_tokens
        from .tokenize import tokenize_image

        if return_tensors not in ("pt", "np", None):
            raise ConfigError("return_tensors", f"must be 'pt' or 'np', got {return_tensors!r}")
        if images is None and videos is None:
            raise ConfigError("videos", "give videos and/or images")
        out: Dict[str, Any] = {}
        positions: List[torch.Tensor] = []
        if images is not None:
            _, cfg, _ = self._resolve(kwargs)
            imgs = [_as_image(im) for im in _as_list(images, single=(np.ndarray, torch.Tensor))]
            packed = collate_visual_tokens([tokenize_image(im, config=cfg) for im in imgs])
            out["pixel_values"] = packed.pixel_values
            out["image_grid_thw"] = packed.grid_thw
            if self.group_ids:
                out["image_group_ids"] = packed.group_ids
            out["image_num_tokens"] = torch.tensor(packed.num_tokens, dtype=torch.int64)
            positions.append(packed.pos_thw)
        if videos is not None:
            items = _as_list(videos, single=())
            results = [self.tokenize(v, **kwargs) for v in items]
            packed = collate_visual_tokens([vt for vt, _ in results])
            out["pixel_values_videos"] = packed.pixel_values
            out["video_grid_thw"] = packed.grid_thw
            if self.group_ids:
                out["video_group_ids"] = packed.group_ids
            out["video_num_tokens"] = torch.tensor(packed.num_tokens, dtype=torch.int64)
            positions.append(packed.pos_thw)
            if return_metadata:
                out["video_metadata"] = [md for _, md in results]
        out["patch_positions"] = torch.cat(positions)
        if return_tensors == "np":
            out = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}
        return _batch_feature(out)

    def __repr__(self) -> str:
        c = self.config
        knob = f"fps={self.fps}" if self.fps is not None else f"num_frames={self.num_frames or c.num_frames}"
        return (f"Ov2VideoProcessor(mode={self.mode!r}, {knob}, max_canvases={c.max_canvases}, "
                f"min_pixels={c.min_pixels}, max_pixels={c.max_pixels})")


def _as_list(x: Any, single: tuple) -> list:
    if isinstance(x, (str, bytes, bytearray, memoryview, os.PathLike)) or (single and isinstance(x, single)):
        return [x]
    if hasattr(x, "read"):
        return [x]
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _as_image(im: Any) -> Any:
    """RGB uint8 H x W x 3 array, or a path / bytes for FFmpeg's image decoders."""
    if isinstance(im, (str, bytes, bytearray, os.PathLike)):
        return im
    if isinstance(im, torch.Tensor):
        im = im.detach().cpu().numpy()
        if im.ndim == 3 and im.shape[0] == 3 and im.shape[-1] != 3:  # C, H, W
            im = np.transpose(im, (1, 2, 0))
    arr = np.asarray(im.convert("RGB") if hasattr(im, "convert") else im)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ConfigError("images", f"an image must be RGB H x W x 3, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)
