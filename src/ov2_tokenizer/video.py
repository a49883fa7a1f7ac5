"""Reading a compressed video: stream info, packets (bit-cost) and decoded frames with codec products.

This is the thin Python face of the C++ core in ``csrc/codec`` (DESIGN §3.1, §4). Arrays are numpy arrays
that own the C++ buffers (no copies). Nothing here materialises the whole video: ``frames()`` streams.

Example::

    >>> import ov2_tokenizer as ov2
    >>> path = ov2.sample_video()                     # a small generated clip
    >>> with ov2.open_video(path) as video:
    ...     print(video.info.codec, video.info.width, video.info.height)
    ...     pk = video.packets()
    ...     for frame in video.frames(indices=[0, 10], with_mvs=True, with_residual=True):
    ...         print(frame.index, frame.pict_type, frame.luma.shape, frame.mv_field.shape)
    h264 640 360
    0 I (360, 640) (90, 160, 4)
    10 P (360, 640) (90, 160, 4)
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from . import errors
from ._native import HAS_FFMPEG, core
from .config import check_num_threads, is_int

__all__ = ["open_video", "VideoReader", "VideoInfo", "Packets", "Frame", "VideoSource", "MV_COLUMNS"]

#: Column names of ``Frame.motion_vectors`` (FFmpeg's AVMotionVector order without ``flags``).
MV_COLUMNS = ("source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "motion_x", "motion_y", "motion_scale")

VideoSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, io.IOBase]

_ON_ERROR = ("skip", "raise", "repeat")
_THREADING = ("auto", "segments", "frames")


@dataclass(frozen=True)
class VideoInfo:
    """Stream information. ``num_frames`` is the decoded count when known, else the number of packets
    (never the container's claim, which is kept apart as ``num_frames_header``)."""

    codec: str
    width: int
    height: int
    fps: float
    time_base: Fraction
    duration_s: float
    start_s: float
    has_b_frames: bool
    pix_fmt: str
    bit_depth: int
    container: str
    stream_index: int
    motion_source: str  # "codec": the decoder exports vectors; "estimated": block matching; "none"
    num_frames_header: Optional[int]
    num_frames: Optional[int] = None
    #: How ``Frame.rgb`` is made (docs/decoding.md, "Frame RGB"), from the stream's declaration: "bt709" or "bt601"
    #: (every other matrix is converted as BT.601), "none" for RGB / palette / grey formats; "full" or "limited".
    color_matrix: str = "bt601"
    color_range: str = "limited"


@dataclass(frozen=True)
class Packets:
    """Packets of the video stream in decode order (demux only, nothing decoded)."""

    pts_s: np.ndarray  # float64 seconds, NaN where missing
    dts_s: np.ndarray  # float64 seconds, NaN where missing
    size: np.ndarray  # int64 bytes (the bit-cost of the packet)
    keyframe: np.ndarray  # bool, the container's key flag
    pict_type: np.ndarray  # 'S1': b'I', b'P', b'B' from the codec's parser, b'?' where unknown
    reference: np.ndarray  # int8: 1 used for reference, 0 not, -1 unknown (H.264 / HEVC NAL headers)
    truncated: bool
    read_errors: int

    def __len__(self) -> int:
        return int(self.size.shape[0])


class Frame:
    """One decoded frame in presentation order. Optional products are ``None`` unless requested.

    With ``with_mvs=True`` the dense motion products (``mv_field``, ``intra_mask``, ``mv_flags``) are made from the
    rows on first access (by the core, exactly as the decoder threads make them when a residual or coding cost is
    requested too), so reading only ``motion_vectors`` costs no more than the rows.
    """

    __slots__ = ("index", "pts_s", "pict_type", "keyframe", "luma", "rgb", "motion_vectors", "_mv_field",
                 "_intra_mask", "_mv_flags", "residual", "coding_cost", "scores", "width", "height")

    def __init__(
        self,
        index: int,
        pts_s: float,
        pict_type: str,
        keyframe: bool,
        luma: Optional[np.ndarray],
        rgb: Optional[np.ndarray] = None,
        motion_vectors: Optional[np.ndarray] = None,
        mv_field: Optional[np.ndarray] = None,
        intra_mask: Optional[np.ndarray] = None,
        mv_flags: Optional[np.ndarray] = None,
        residual: Optional[np.ndarray] = None,
        coding_cost: Optional[np.ndarray] = None,
        scores: Optional[np.ndarray] = None,
        width: int = 0,
        height: int = 0,
    ):
        self.index = index
        self.pts_s = pts_s
        self.pict_type = pict_type  # 'I', 'P', 'B' ('?' when the decoder does not say)
        self.keyframe = keyframe
        self.luma = luma  # uint8 H x W
        self.rgb = rgb  # uint8 H x W x 3 (with_rgb=True)
        self.motion_vectors = motion_vectors  # int32 N x 10, see MV_COLUMNS
        self._mv_field = mv_field
        self._intra_mask = intra_mask
        self._mv_flags = mv_flags
        self.residual = residual  # int16 H x W, motion-compensated prediction residual
        self.coding_cost = coding_cost  # float32 ceil(H/4) x ceil(W/4) in [0, 1]
        self.scores = scores  # float32 block scores (frames(block_scores=...))
        self.width = width
        self.height = height

    def _densify(self) -> None:
        if self._mv_field is None and self.motion_vectors is not None and self.width > 0 and self.height > 0:
            self._mv_field, self._intra_mask, self._mv_flags = core.densify_motion(
                self.motion_vectors, self.width, self.height, self.pict_type == "I")

    @property
    def mv_field(self) -> Optional[np.ndarray]:
        """float32 ceil(H/4) x ceil(W/4) x 4: L0 dx, dy, L1 dx, dy (pixels)."""
        self._densify()
        return self._mv_field

    @mv_field.setter
    def mv_field(self, value: Optional[np.ndarray]) -> None:
        self._mv_field = value

    @property
    def intra_mask(self) -> Optional[np.ndarray]:
        """bool ceil(H/4) x ceil(W/4): cells without any vector (all of an I-frame)."""
        self._densify()
        return self._intra_mask

    @intra_mask.setter
    def intra_mask(self, value: Optional[np.ndarray]) -> None:
        self._intra_mask = value

    @property
    def mv_flags(self) -> Optional[np.ndarray]:
        """uint8 ceil(H/4) x ceil(W/4): bit 0 has an L0 vector, bit 1 has an L1 vector."""
        self._densify()
        return self._mv_flags

    @mv_flags.setter
    def mv_flags(self, value: Optional[np.ndarray]) -> None:
        self._mv_flags = value

    def __repr__(self) -> str:
        have = [k for k in ("luma", "rgb", "motion_vectors", "residual", "coding_cost", "scores")
                if getattr(self, k) is not None]
        return (f"Frame(index={self.index}, pts_s={self.pts_s:.4f}, pict_type={self.pict_type!r}, "
                f"{self.width}x{self.height}, products={have})")


def _source_args(source: VideoSource) -> tuple[object, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source), os.fspath(source)
    read = getattr(source, "read", None)
    if callable(read):
        name = getattr(source, "name", None)
        label = f"<file-like {name}>" if isinstance(name, str) else "<file-like>"
        try:
            if hasattr(source, "seek"):
                source.seek(0)
            data = read()
        except (OSError, ValueError) as exc:
            raise errors.VideoOpenError(label, f"cannot read the file-like object: {exc}") from exc
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise errors.VideoOpenError(label, "the file-like object must be opened in binary mode")
        return bytes(data), label
    raise errors.VideoOpenError(f"<{type(source).__name__}>", "source must be a path, bytes or a binary file-like "
                                f"object, not {type(source).__name__}")


def _frame_indices(indices: Optional[Sequence[int]]) -> Optional[np.ndarray]:
    """``frames(indices=...)`` as int64, or ConfigError for anything but a 1-D sequence of integers >= 0."""
    if indices is None:
        return None
    try:
        raw = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices))
    except (TypeError, ValueError) as exc:
        raise errors.ConfigError("indices", f"must be a sequence of frame indices ({exc})") from exc
    if raw.size == 0:
        return np.zeros(0, np.int64)
    if raw.ndim != 1 or not np.issubdtype(raw.dtype, np.integer):
        raise errors.ConfigError("indices", f"must be a 1-D sequence of integers, got {raw.dtype} of shape {raw.shape}")
    idx = raw.astype(np.int64)
    if idx.min() < 0:
        raise errors.ConfigError("indices", "frame indices must be >= 0")
    return idx


def _rgb_size(rgb_size: Optional[Sequence[int]]) -> tuple[int, int]:
    """``frames(rgb_size=...)`` as (height, width): None or (0, 0) for the visible size, else two positive integers
    of at most 2^26 pixels together (the decoder's own cap)."""
    if rgb_size is None:
        return 0, 0
    try:
        h, w = rgb_size
    except (TypeError, ValueError):
        raise errors.ConfigError("rgb_size", f"must be (height, width), got {rgb_size!r}") from None
    if not (is_int(h) and is_int(w)):
        raise errors.ConfigError("rgb_size", f"must be two integers, got {rgb_size!r}")
    h, w = int(h), int(w)
    if (h, w) != (0, 0) and (h < 1 or w < 1 or h * w > 1 << 26):
        raise errors.ConfigError("rgb_size", f"must be (0, 0) or positive with at most 2^26 pixels, got {(h, w)}")
    return h, w


#: The keys ``frames(block_scores=...)`` needs, by kind.
_SCORE_KEYS = {"ovenc": ("size", "patch", "percentile"), "block": ("canvas_h", "canvas_w", "patch", "merge", "beta")}


def _check_block_scores(block_scores: Optional[dict]) -> None:
    if block_scores is None:
        return
    if not isinstance(block_scores, dict):
        raise errors.ConfigError("block_scores", f"must be a dict, got {type(block_scores).__name__}")
    kind = block_scores.get("kind", "block")
    if kind not in _SCORE_KEYS:
        raise errors.ConfigError("block_scores", f"kind must be 'ovenc' or absent, got {kind!r}")
    missing = [k for k in _SCORE_KEYS[kind] if k not in block_scores]
    if missing:
        raise errors.ConfigError("block_scores", f"missing {missing}")
    for k in _SCORE_KEYS[kind]:
        v = block_scores[k]
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise errors.ConfigError("block_scores", f"{k} must be a number, got {v!r}")


def _default_threads() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))


class VideoReader:
    """A video opened for reading. Use :func:`open_video` to create one.

    ``num_threads`` (default: the usable CPUs, at most 4; 1 to 256) decodes independent closed GOPs in parallel
    and computes per-frame products (RGB, residual, coding cost, block scores) off the decoding thread
    (``stats["parallel"]``, ``stats["pooled_products"]``); results never depend on it, nor on threads the system
    refuses to start (they are helpers fewer). ``threading`` says how:
    ``"auto"`` (default) uses closed-GOP segments, or FFmpeg's frame threads for an H.264 stream without
    re-ordering whose GOPs are too few to split (``stats["frame_threads"]``; guarded, see docs/decoding.md);
    ``"segments"`` never uses frame threads; ``"frames"`` uses them whenever the stream allows. Planning them
    may demux the packets once up front (``stats["packet_prepass"]``; skipped when the container's index shows
    nothing to split).
    ``on_error``: ``"skip"`` (default) skips damaged packets and counts them in :attr:`stats`, ``"raise"`` raises
    :class:`~ov2_tokenizer.errors.CorruptVideoError`. ``timeout_s`` bounds
    opening and decoding (:class:`~ov2_tokenizer.errors.DecodeTimeout`).
    """

    def __init__(
        self,
        source: VideoSource,
        *,
        num_threads: Optional[int] = None,
        on_error: str = "skip",
        timeout_s: float = 0.0,
        stream_index: Optional[int] = None,
        threading: str = "auto",
    ) -> None:
        if not HAS_FFMPEG:
            raise errors.UnsupportedCodecError("ov2", "this build of ov2 has no FFmpeg core (built with OV2_FFMPEG=OFF)")
        if on_error not in _ON_ERROR:
            raise errors.ConfigError("on_error", f"must be one of {_ON_ERROR}, got {on_error!r}")
        check_num_threads(num_threads, default_zero=True)
        threads = _default_threads() if num_threads in (None, 0) else int(num_threads)
        if threading not in _THREADING:
            raise errors.ConfigError("threading", f"must be one of {_THREADING}, got {threading!r}")
        src, self.name = _source_args(source)
        self._reader = core.Reader(
            src, self.name, -1 if stream_index is None else int(stream_index), threads, on_error, float(timeout_s),
            threading=threading,
        )
        self.num_threads = threads
        self.on_error = on_error
        d = self._reader.info()
        self._info = VideoInfo(
            codec=d["codec"],
            width=d["width"],
            height=d["height"],
            fps=d["fps"],
            time_base=Fraction(*d["time_base"]),
            duration_s=d["duration_s"],
            start_s=d["start_s"],
            has_b_frames=d["has_b_frames"],
            pix_fmt=d["pix_fmt"],
            bit_depth=d["bit_depth"],
            container=d["container"],
            stream_index=d["stream_index"],
            motion_source=d["motion_source"],
            num_frames_header=None if d["num_frames_header"] < 0 else d["num_frames_header"],
            color_matrix=d["color_matrix"],
            color_range=d["color_range"],
        )
        self._packets: Optional[Packets] = None
        self._decoded_count: Optional[int] = None
        self.stats: dict = {}

    # -- metadata -------------------------------------------------------------------------------------------
    @property
    def info(self) -> VideoInfo:
        """Stream information; ``num_frames`` is filled from the packet table (read once, demux only)."""
        if self._info.num_frames is None:
            n = self._decoded_count if self._decoded_count is not None else len(self.packets())
            self._info = _replace(self._info, num_frames=n)
        return self._info

    def packets(self) -> Packets:
        """All packets of the video stream (demux only; cached)."""
        if self._packets is None:
            d = self._reader.packets()
            self._packets = Packets(**d)
        return self._packets

    # -- frames ---------------------------------------------------------------------------------------------
    def frames(
        self,
        indices: Optional[Sequence[int]] = None,
        *,
        with_luma: bool = True,
        with_rgb: bool = False,
        with_mvs: bool = False,
        with_residual: bool = False,
        with_coding_cost: bool = False,
        rgb_size: Optional[tuple[int, int]] = None,
        block_scores: Optional[dict] = None,
    ) -> Iterator[Frame]:
        """Yields decoded frames in presentation order.

        ``indices`` selects which frames (presentation-order indices) are materialised; every frame up to the
        last selected one is still decoded (P/B frames depend on earlier ones), unselected ones cost no copies.
        Decoding stops after the last selected frame. Order and repeats do not matter (each selected frame comes
        once, in presentation order) and indices past the last frame select nothing; anything but non-negative
        integers raises :class:`~ov2_tokenizer.errors.ConfigError`. ``with_rgb`` adds the visible picture as
        RGB24, resized to ``rgb_size=(height, width)`` when given: YUV pictures are resized as 4:4:4 (swscale,
        bilinear, bit-exact mode) and converted with the frame's matrix (BT.709 or BT.601) and range in fixed
        point — the same bytes on any CPU (docs/decoding.md, "Frame RGB").
        ``block_scores=dict(canvas_h=, canvas_w=, patch=, merge=, beta=)`` computes each frame's codec-stream
        block scores (DESIGN §5.4–5.5) on the decoding threads into ``Frame.scores`` and drops the products
        they were made from (unless ``keep_products=True``).
        A read of every frame without pixels (``with_luma=False``, no RGB, residual or block scores) decodes H.264
        without its deblocking filter, ~15-25 % faster, with the same vectors, coding cost, types and times (damage
        makes it read on with deblocking; ``stats["loop_filter_skipped"]``, docs/decoding.md).
        """
        idx = _frame_indices(indices)
        rh, rw = _rgb_size(rgb_size)
        _check_block_scores(block_scores)
        it = self._reader.frames(idx, with_luma, with_mvs, with_residual, with_coding_cost, with_rgb, rw, rh, block_scores,
                                 mvs_dense=False)
        return self._iterate(it, complete=idx is None)

    def _iterate(self, it, complete: bool) -> Iterator[Frame]:
        count = 0
        try:
            for d in it:
                count += 1
                yield Frame(
                    index=d["index"],
                    pts_s=d["pts_s"],
                    pict_type=d["pict_type"],
                    keyframe=d["keyframe"],
                    luma=d.get("luma"),
                    rgb=d.get("rgb"),
                    motion_vectors=d.get("motion_vectors"),
                    mv_field=d.get("mv_field"),
                    intra_mask=d.get("intra_mask"),
                    mv_flags=d.get("mv_flags"),
                    residual=d.get("residual"),
                    coding_cost=d.get("coding_cost"),
                    scores=d.get("scores"),
                    width=d["width"],
                    height=d["height"],
                )
            if complete:
                self._decoded_count = count
                if self._info.num_frames is not None and self._info.num_frames != count:
                    self._info = _replace(self._info, num_frames=count)
        finally:
            self.stats = it.stats()
            it.close()

    # -- context manager ------------------------------------------------------------------------------------
    def close(self) -> None:
        self._packets = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self._info
        return f"VideoReader({self.name!r}, {i.codec} {i.width}x{i.height} @ {i.fps:.3g} fps)"


def _replace(info: VideoInfo, **kw) -> VideoInfo:
    from dataclasses import replace

    return replace(info, **kw)


def open_video(
    source: VideoSource,
    *,
    num_threads: Optional[int] = None,
    on_error: str = "skip",
    timeout_s: float = 0.0,
    stream_index: Optional[int] = None,
    threading: str = "auto",
) -> VideoReader:
    """Opens a video from a path, bytes or a binary file-like object (read into memory).

    Raises a subclass of :class:`ov2_tokenizer.errors.Ov2Error` naming the source and the cause when the input
    is missing, not a video, has no video stream or cannot be decoded.
    """
    return VideoReader(source, num_threads=num_threads, on_error=on_error, timeout_s=timeout_s,
                       stream_index=stream_index, threading=threading)
