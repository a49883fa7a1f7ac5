"""vLLM video loader plug-in: ``Ov2VideoLoader.load_bytes(data, num_frames=-1, **kwargs) -> (frames, metadata)``.

vLLM decodes request videos through a loader class looked up by name in
``vllm.multimodal.video.VIDEO_LOADER_REGISTRY`` (``VLLM_VIDEO_LOADER_BACKEND=ov2``, or per request
``--media-io-kwargs '{"video": {"video_backend": "ov2"}}'``). Its protocol: a classmethod
``load_bytes(data: bytes, num_frames: int = -1, **kwargs)`` returning ``frames`` (uint8 ``[T, H, W, 3]`` RGB)
and a metadata dict in ``transformers``' ``VideoMetadata`` format (``total_num_frames``, ``fps``, ``duration``,
``video_backend``, ``frames_indices``) plus ``do_sample_frames`` (False: the loader already chose the frames).

ov2 returns the canvases of the chosen mode as the frames (codec-stream: I/P canvases; ``frames``: the sampled
frames), one ``frames_indices`` entry per canvas (the earliest source frame it carries), and the token records
under ``metadata["ov2"]`` so a model processor can rebuild the exact :class:`VisualTokens` with
:func:`tokens_from_loader_output`::

    >>> import ov2_tokenizer as ov2
    >>> from ov2_tokenizer.serving import Ov2VideoLoader, tokens_from_loader_output
    >>> data = open(ov2.sample_video(), "rb").read()
    >>> frames, md = Ov2VideoLoader.load_bytes(data, num_frames=8, max_pixels=50176, num_candidates=32)
    >>> frames.shape, frames.dtype.name, md["video_backend"], md["do_sample_frames"]
    ((8, 168, 280, 3), 'uint8', 'ov2', False)
    >>> tokens_from_loader_output(frames, md).num_tokens
    1920

``num_frames`` is the number of arrays returned: the canvas budget (``max_canvases``) in codec-stream mode, the
frame count in ``frames`` mode; ``-1`` keeps the config's default. Other keyword arguments are
:class:`TokenizerConfig` fields, ``mode``, and ``num_candidates`` (codec-stream candidate frames); keys meant for
other backends (``fps``/``max_duration`` of vLLM's dynamic loaders are honoured as ``fps``) that ov2 does not
know are listed in ``metadata["ov2"]["ignored_kwargs"]`` instead of failing the request.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .config import MODES, TokenizerConfig
from .errors import ConfigError
from .tokens import VisualTokens

__all__ = ["Ov2VideoLoader", "tokens_from_loader_output", "register_vllm_loader", "LOADER_NAME"]

LOADER_NAME = "ov2"
_CONFIG_FIELDS = {f.name for f in fields(TokenizerConfig)}
_RECORDS = ("canvas", "frame", "t_s", "can_hw", "src_hw", "group", "pos_thw")


class Ov2VideoLoader:
    """vLLM ``VideoLoader`` protocol over :func:`~ov2_tokenizer.tokenize_video` (see the module docstring).

    Class attributes set the defaults a deployment wants (subclass to change them): ``mode`` and ``config``.
    """

    mode: str = "codec_stream"
    config: TokenizerConfig = TokenizerConfig(num_threads=1)

    @classmethod
    def load_bytes(cls, data: bytes, num_frames: int = -1, **kwargs: Any) -> Tuple[np.ndarray, Dict[str, Any]]:
        """Tokenizes the video ``data`` and returns ``(frames uint8 [T, H, W, 3], metadata)``.

        Raises :class:`~ov2_tokenizer.errors.Ov2Error` (a ``ValueError`` for configuration mistakes) naming the
        cause; vLLM turns loader exceptions into a failed request.
        """
        from .tokenize import tokenize_video
        from .video import open_video

        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ConfigError("data", f"load_bytes takes the video's bytes, got {type(data).__name__}")
        if not isinstance(num_frames, int) or (num_frames < 1 and num_frames != -1):
            raise ConfigError("num_frames", f"must be -1 or a positive integer, got {num_frames!r}")
        kwargs = dict(kwargs)
        kwargs.pop("video_backend", None)  # vLLM's own selector key
        mode = kwargs.pop("mode", cls.mode)
        if mode not in MODES or mode == "image":
            raise ConfigError("mode", f"must be a video mode of {MODES}, got {mode!r}")
        num_candidates = kwargs.pop("num_candidates", None)
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in _CONFIG_FIELDS}
        if overrides.get("fps") is not None and float(overrides["fps"]) <= 0:  # vLLM passes fps=-1 for "all"
            overrides.pop("fps")
        ignored = sorted(kwargs)
        cfg = cls.config.replace(**overrides) if overrides else cls.config
        if mode == "codec_stream":
            if num_frames != -1:
                cfg = cfg.replace(max_canvases=num_frames)
            if num_candidates is not None:
                cfg = cfg.replace(num_frames=int(num_candidates), fps=None)
        elif num_frames != -1:
            cfg = cfg.replace(num_frames=num_frames, fps=None)
        raw = bytes(data)
        info = open_video(raw, num_threads=1).info
        if mode == "codec_stream" and cfg.fps is not None:  # candidates per second (vLLM's dynamic loaders)
            dur = info.duration_s or (info.num_frames or 1) / (info.fps or 25.0)
            cfg = cfg.replace(num_frames=max(cfg.max_canvases, int(round(dur * cfg.fps))), fps=None)
        vt = tokenize_video(raw, mode=mode, config=cfg)
        frames = vt.canvases.permute(0, 2, 3, 1).contiguous().numpy()
        real = vt.frame >= 0
        per_canvas = []
        for c in range(vt.num_canvases):
            f = vt.frame[(vt.canvas == c) & real]
            per_canvas.append(int(f.min()) if f.numel() else (per_canvas[-1] if per_canvas else 0))
        t_by_frame = {int(f): float(t) for f, t in zip(vt.frame[real].tolist(), vt.t_s[real].tolist())}
        metadata: Dict[str, Any] = {
            "total_num_frames": int(info.num_frames or 0),
            "fps": float(info.fps),
            "duration": float(info.duration_s),
            "video_backend": LOADER_NAME,
            "frames_indices": per_canvas,
            "timestamps": [t_by_frame.get(f, float("nan")) for f in per_canvas],
            "do_sample_frames": False,
            "ov2": {
                "mode": mode,
                "canvas_kind": vt.canvas_kind.numpy(),
                "records": {k: getattr(vt, k).numpy() for k in _RECORDS},
                "groups": {k: v.numpy() for k, v in vt.groups.items()},
                "patch_size": vt.patch_size,
                "merge_size": vt.merge_size,
                "image_mean": list(cfg.image_mean),
                "image_std": list(cfg.image_std),
                "ignored_kwargs": ignored,
            },
        }
        return frames, metadata


def tokens_from_loader_output(frames: np.ndarray, metadata: Dict[str, Any]) -> VisualTokens:
    """Rebuilds the :class:`VisualTokens` of a :meth:`Ov2VideoLoader.load_bytes` result (frames + records)."""
    o = metadata.get("ov2") if isinstance(metadata, dict) else None
    if not isinstance(o, dict) or "records" not in o:
        raise ConfigError("metadata", "not produced by Ov2VideoLoader (no 'ov2' records)")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ConfigError("frames", f"expected [T, H, W, 3], got {frames.shape}")
    rec = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in o["records"].items()}
    vt = VisualTokens(
        canvases=torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))),
        canvas_kind=torch.from_numpy(np.asarray(o["canvas_kind"], dtype=np.int8)),
        groups={k: torch.from_numpy(np.asarray(v)) for k, v in o.get("groups", {}).items()},
        meta={"mode": o["mode"], "patch_size": o["patch_size"], "merge_size": o["merge_size"],
              "config": {"image_mean": o["image_mean"], "image_std": o["image_std"]}},
        **rec,
    )
    problem = vt._layout_problem()  # frames cut or reordered by the serving stack, or records of another request
    if problem:
        raise ConfigError("metadata", f"the frames do not match the ov2 records: {problem}")
    return vt


def register_vllm_loader(registry: Optional[Any] = None, name: str = LOADER_NAME) -> bool:
    """Registers :class:`Ov2VideoLoader` under ``name`` in vLLM's ``VIDEO_LOADER_REGISTRY`` (or ``registry``).

    Returns False when no registry is given and vLLM is not importable. Idempotent. Called on import of this
    module; a vLLM deployment imports ``ov2_tokenizer.serving`` (or lists it as a ``vllm.general_plugins``
    entry point) before the engine starts.
    """
    if registry is None:
        try:
            from vllm.multimodal.video import VIDEO_LOADER_REGISTRY as registry  # type: ignore[no-redef]
        except ImportError:
            return False
    registry.register(name)(Ov2VideoLoader)
    return True


def vllm_plugin() -> None:
    """Entry point for vLLM's ``vllm.general_plugins`` group: registers the ``ov2`` video loader."""
    register_vllm_loader()


_REGISTERED = register_vllm_loader()
