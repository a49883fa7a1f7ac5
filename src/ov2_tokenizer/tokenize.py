"""``tokenize_video`` and ``tokenize_image``: a video or an image in, :class:`VisualTokens` out.

    >>> import ov2_tokenizer as ov2
    >>> vt = ov2.tokenize_video(ov2.sample_video(), mode="codec_stream",
    ...                         config=ov2.TokenizerConfig(max_canvases=8, num_frames=64))
    >>> vt.num_canvases, vt.canvas_kind.tolist()[:4]
    (8, [0, 1, 1, 1])
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

from .config import MODES, TokenizerConfig
from .errors import ConfigError
from .tokens import VisualTokens
from .video import VideoSource, open_video

__all__ = ["tokenize_video", "tokenize_image", "tokenize_batch"]


def _config(config: Optional[TokenizerConfig], overrides: dict) -> TokenizerConfig:
    cfg = config if config is not None else TokenizerConfig()
    if not isinstance(cfg, TokenizerConfig):
        raise ConfigError("config", f"must be a TokenizerConfig, got {type(cfg).__name__}")
    return cfg.replace(**overrides) if overrides else cfg


def tokenize_video(
    source: VideoSource,
    mode: str = "codec_stream",
    config: Optional[TokenizerConfig] = None,
    device: str = "cpu",
    **overrides,
) -> VisualTokens:
    """Tokenizes a video (path, bytes or binary file-like object).

    Modes (DESIGN §5): ``"codec_stream"`` (LLaVA-OV-2 codec-stream canvases), ``"frames"`` (uniform or
    chunk-wise frames), ``"image"`` (the first frame as an image), ``"ovenc_topk"`` (OneVision-Encoder codec
    patchification) and ``"cope"`` (CoPE Δ-encoder inputs). ``overrides`` replace fields of ``config``.
    Raises :class:`~ov2_tokenizer.errors.Ov2Error` subclasses naming the file and the cause.
    """
    if mode not in MODES:
        raise ConfigError("mode", f"must be one of {MODES}, got {mode!r}")
    if str(device) not in ("cpu",) and not str(device).startswith("cuda"):
        raise ConfigError("device", f"must be 'cpu' or 'cuda[:N]', got {device!r}")
    cfg = _config(config, overrides)
    if mode == "codec_stream" and cfg.schedule == "stream":  # the causal schedule of StreamTokenizer (docs/streaming.md)
        from .stream import tokenize_stream

        vt = tokenize_stream(source, cfg)
        return vt if str(device) == "cpu" else vt.to(device)
    if mode == "codec_stream" and str(device).startswith("cuda"):  # the GPU path (docs/gpu.md)
        from .gpu import tokenize_codec_stream_cuda

        return tokenize_codec_stream_cuda(source, cfg, device)
    video = open_video(source, num_threads=cfg.num_threads, on_error=cfg.on_error, timeout_s=cfg.timeout_s)
    if mode == "codec_stream":
        from .codec_stream import tokenize_codec_stream

        vt = tokenize_codec_stream(video, cfg)
    elif mode == "frames":
        from .frames_mode import tokenize_frames

        vt = tokenize_frames(video, cfg)
    elif mode == "image":
        from .frames_mode import tokenize_rgb_image

        first = next(iter(video.frames(indices=[0], with_luma=False, with_rgb=True)), None)
        if first is None:
            from .errors import CorruptVideoError

            raise CorruptVideoError(video.name, "no frame could be decoded")
        vt = tokenize_rgb_image(first.rgb, cfg, video.name)
    elif mode == "ovenc_topk":
        from .ovenc_topk import tokenize_ovenc_topk

        vt = tokenize_ovenc_topk(video, cfg)
    else:
        from .cope import tokenize_cope

        vt = tokenize_cope(video, cfg)
    return vt if str(device) == "cpu" else vt.to(device)


def tokenize_image(
    source: Union[VideoSource, np.ndarray], config: Optional[TokenizerConfig] = None, device: str = "cpu", **overrides
) -> VisualTokens:
    """Tokenizes an image at native resolution within [min_pixels, max_pixels]: an RGB uint8 H x W x 3 array (numpy,
    a CPU or CUDA torch tensor, or anything with ``__array_interface__`` such as an RGB ``PIL.Image``), or a path /
    bytes of an image file FFmpeg can decode (PNG, JPEG, ...) or of a video (first frame)."""
    from .frames_mode import tokenize_rgb_image

    cfg = _config(config, overrides)
    if isinstance(source, torch.Tensor):
        source = source.detach().cpu().numpy()
    elif not isinstance(source, np.ndarray) and hasattr(source, "__array_interface__"):
        source = np.asarray(source)
    if isinstance(source, np.ndarray):
        vt = tokenize_rgb_image(source, cfg)
    else:
        vt = tokenize_video(source, mode="image", config=cfg)
    return vt if str(device) == "cpu" else vt.to(device)


def tokenize_batch(
    sources, mode: str = "codec_stream", config: Optional[TokenizerConfig] = None, device: str = "cpu", **kwargs
) -> list:
    """Tokenizes a sequence of videos; returns their :class:`VisualTokens` in order.

    ``device="cpu"``: a thread pool of ``tokenize_video`` calls. ``device="cuda"``: CPU decode threads fill pinned
    buffers while the GPU tokenizes (codec_stream), outputs are CUDA tensors. Keyword options of
    :func:`ov2_tokenizer.gpu.tokenize_batch` (``workers``, ``prefetch``, ``return_exceptions``) and config
    overrides are accepted.
    """
    from .gpu import tokenize_batch as _tokenize_batch

    return _tokenize_batch(sources, mode=mode, config=config, device=device, **kwargs)
