"""ov2_tokenizer: codec-aligned video tokenization on FFmpeg's libavcodec.

Quick tour::

    import ov2_tokenizer as ov2
    video = ov2.open_video("clip.mp4")
    video.info, video.packets()                         # stream info, packet sizes (bit-cost)
    for f in video.frames(with_mvs=True, with_residual=True, with_coding_cost=True):
        f.mv_field, f.residual, f.coding_cost
"""
from __future__ import annotations

from . import errors
from .errors import (
    ConfigError,
    CorruptVideoError,
    DecodeTimeout,
    NoVideoStreamError,
    Ov2Error,
    TokensFileError,
    UnsupportedCodecError,
    VideoOpenError,
)
from .config import TokenizerConfig
from .samples import sample_video
from .video import MV_COLUMNS, Frame, Packets, VideoInfo, VideoReader, open_video

__version__ = "0.1.0"

# The token API needs torch; it is imported on first use so that the codec core (open_video) stays light
# (no torch import in processes that only read codec data).
_LAZY = {"tokenize_video": ".tokenize", "tokenize_image": ".tokenize", "VisualTokens": ".tokens",
         "tokenize_batch": ".tokenize",
         "build_info": "._build_info", "StreamTokenizer": ".stream"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ov2_tokenizer' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))

__all__ = [
    "open_video",
    "tokenize_video",
    "tokenize_image",
    "tokenize_batch",
    "StreamTokenizer",
    "TokenizerConfig",
    "VisualTokens",
    "VideoReader",
    "VideoInfo",
    "Packets",
    "Frame",
    "MV_COLUMNS",
    "sample_video",
    "build_info",
    "errors",
    "Ov2Error",
    "VideoOpenError",
    "NoVideoStreamError",
    "UnsupportedCodecError",
    "CorruptVideoError",
    "ConfigError",
    "DecodeTimeout",
    "TokensFileError",
]
