"""Typed errors of ov2 (DESIGN §5.10).

Every error names the file (or ``<bytes>`` / ``<file-like>``) and the cause::

    >>> from ov2_tokenizer import errors
    >>> try:
    ...     raise errors.VideoOpenError("clip.mp4", "no such file")
    ... except errors.Ov2Error as e:
    ...     print(e)
    clip.mp4: no such file
"""
from __future__ import annotations

__all__ = [
    "Ov2Error",
    "VideoOpenError",
    "NoVideoStreamError",
    "UnsupportedCodecError",
    "CorruptVideoError",
    "ConfigError",
    "DecodeTimeout",
    "TokensFileError",
]


class Ov2Error(Exception):
    """Base class of every error ov2 raises on bad input or configuration."""

    def __init__(self, source: str, cause: str = ""):
        # ``cause`` defaults so that frameworks re-raising with one message (torch's DataLoader workers) keep the
        # exception type; the message is then the whole first argument.
        self.source = str(source)
        self.cause = str(cause)
        super().__init__(f"{self.source}: {self.cause}" if cause else self.source)

    def __reduce__(self):  # picklable across DataLoader workers
        return (type(self), (self.source, self.cause))


class VideoOpenError(Ov2Error):
    """The source cannot be opened or is not a media container (missing file, directory, empty, junk)."""


class NoVideoStreamError(Ov2Error):
    """The container opened but holds no video stream (e.g. audio only)."""


class UnsupportedCodecError(Ov2Error):
    """The video stream's codec cannot be decoded by this FFmpeg build."""


class CorruptVideoError(Ov2Error):
    """The data is damaged (truncated, bad packets) and the error policy is ``"raise"``, or nothing decodes."""


class ConfigError(Ov2Error, ValueError):
    """A configuration field is invalid; ``source`` is the name of the offending field."""


class DecodeTimeout(Ov2Error, TimeoutError):
    """Decoding ran past the caller's ``timeout_s``."""


class TokensFileError(Ov2Error):
    """A saved ``VisualTokens`` file (``.npz`` / ``.safetensors``) that is missing, not a tokens file, damaged, or
    whose arrays do not fit together."""
