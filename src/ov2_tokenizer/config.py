"""``TokenizerConfig``: every default of DESIGN §5 as a validated field.

    >>> from ov2_tokenizer import TokenizerConfig
    >>> cfg = TokenizerConfig(max_canvases=16, num_frames=128)
    >>> cfg.k_target
    4
    >>> TokenizerConfig(patch_size=0)
    Traceback (most recent call last):
    ...
    ov2_tokenizer.errors.ConfigError: patch_size: must be a positive integer, got 0
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Optional, Tuple

from .errors import ConfigError

#: The most decoding threads a reader or tokenizer takes (more are refused: each is an OS thread and a decoder).
MAX_THREADS = 256


def is_int(v) -> bool:
    """An integer (Python or numpy), not a bool."""
    import numbers

    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and type(v).__name__ != "bool_"


def check_num_threads(v, default_zero: bool = False) -> None:
    """ConfigError unless ``v`` is None or 1..MAX_THREADS (or 0, the default, where ``default_zero``)."""
    if v is not None and not (is_int(v) and (0 if default_zero else 1) <= v <= MAX_THREADS):
        allowed = "None, 0 (the default) or" if default_zero else "None or"
        raise ConfigError("num_threads", f"must be {allowed} 1..{MAX_THREADS}, got {v!r}")

__all__ = ["TokenizerConfig", "OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "MODES"]

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MODES = ("codec_stream", "frames", "image", "ovenc_topk", "cope")


@dataclass(frozen=True)
class TokenizerConfig:
    """Configuration of every tokenization mode. Field names follow DESIGN §5 (and qwen-vl-utils /
    HF processors where they exist: ``min_pixels``, ``max_pixels``, ``num_frames``, ``fps``)."""

    # 5.1 geometry
    patch_size: int = 14
    merge_size: int = 2
    min_pixels: int = 3136
    max_pixels: int = 313600
    # 5.2 candidates
    num_frames: int = 256
    fps: Optional[float] = None  # alternative to num_frames: candidates per second (qwen-vl-utils style)
    accumulate: str = "none"  # "none" | "interval"
    # 5.3 GOP partition
    bin_s: float = 0.5
    energy: str = "linear"  # "linear" | "log1p"
    t_min_s: float = 1.5
    t_max_s: float = 6.0
    valley_radius: int = 3
    # 5.4 / 5.5 saliency and block score
    percentile: float = 95.0
    beta: float = 0.5
    # codec_stream schedule (docs/streaming.md): "global" = DESIGN §5 with whole-video quantities (default);
    # "stream" = the causal schedule of StreamTokenizer (candidates at candidate_fps, running θ, per-group counts)
    schedule: str = "global"
    candidate_fps: float = 2.0  # stream: candidate frames per second (the first frame at or after each slot)
    stream_group_s: float = 4.0  # stream: θ_k = mean bin energy so far × stream_group_s / bin_s
    stream_p_canvases: int = 3  # stream: P-canvases of a group whose bit-cost equals θ_k
    stream_max_p_canvases: int = 6  # stream: P-canvases per group are clamped to [1, stream_max_p_canvases]
    # 5.6 budget and allocation
    max_canvases: int = 32
    anchor: str = "first"  # "first" | "center"
    lam: float = 0.35
    alpha_peak: float = 0.35
    # 5.8 frames mode
    sampling: str = "uniform"  # "uniform" | "chunk"
    training: bool = False  # chunk sampling: random frame per chunk when training, centre otherwise
    seed: int = 0
    # 3.2 token records
    temporal_coord: str = "frame"  # "frame" (source frame index) | "slot" (candidate slot index)
    # pixels
    image_mean: Tuple[float, float, float] = OPENAI_CLIP_MEAN
    image_std: Tuple[float, float, float] = OPENAI_CLIP_STD
    # ovenc_topk (OneVision-Encoder released preprocessing)
    ovenc_slots: int = 64
    ovenc_size: int = 576
    ovenc_patch: int = 16
    ovenc_topk: int = 10368
    # cope
    cope_fusion: int = 1  # P-frames fused per Δ-step
    cope_max_bytes: int = 2 << 30  # the Δ tensors' budget: at most this // (H·W·6.5) steps (num_frames caps them too)
    # decoding
    num_threads: Optional[int] = None
    on_error: str = "skip"
    timeout_s: float = 0.0

    def __post_init__(self) -> None:
        def pos_int(name: str) -> None:
            v = getattr(self, name)
            if not is_int(v) or v <= 0:
                raise ConfigError(name, f"must be a positive integer, got {v!r}")

        def pos_float(name: str) -> None:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise ConfigError(name, f"must be a positive number, got {v!r}")

        def choice(name: str, options: tuple) -> None:
            if getattr(self, name) not in options:
                raise ConfigError(name, f"must be one of {options}, got {getattr(self, name)!r}")

        for n in ("patch_size", "merge_size", "min_pixels", "max_pixels", "num_frames", "max_canvases",
                  "valley_radius", "ovenc_slots", "ovenc_size", "ovenc_patch", "ovenc_topk", "cope_fusion",
                  "cope_max_bytes", "stream_p_canvases", "stream_max_p_canvases"):
            pos_int(n)
        for n in ("bin_s", "t_min_s", "t_max_s", "candidate_fps", "stream_group_s"):
            pos_float(n)
        choice("schedule", ("global", "stream"))
        if self.stream_p_canvases > self.stream_max_p_canvases:
            raise ConfigError("stream_p_canvases", f"must be <= stream_max_p_canvases ({self.stream_max_p_canvases}), "
                                                   f"got {self.stream_p_canvases}")
        if self.fps is not None:
            pos_float("fps")
        if self.min_pixels > self.max_pixels:
            raise ConfigError("min_pixels", f"must be <= max_pixels ({self.max_pixels}), got {self.min_pixels}")
        side = self.merge_size * self.patch_size
        if self.max_pixels < side * side:
            raise ConfigError("max_pixels", f"must be at least one merge block ({side}x{side}), got {self.max_pixels}")
        if self.t_min_s > self.t_max_s:
            raise ConfigError("t_min_s", f"must be <= t_max_s ({self.t_max_s}), got {self.t_min_s}")
        if self.t_max_s / self.bin_s > 1e9:  # the partition's bound on a group's bins
            raise ConfigError("bin_s", f"t_max_s / bin_s must be <= 1e9, got {self.t_max_s} / {self.bin_s}")
        if not 0 < self.percentile <= 100:
            raise ConfigError("percentile", f"must be in (0, 100], got {self.percentile}")
        for n in ("beta", "lam", "alpha_peak"):
            v = getattr(self, n)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(n, f"must be a finite number >= 0, got {v!r}")
        if self.max_canvases < 2:
            raise ConfigError("max_canvases", f"must be >= 2 (one I- and one P-canvas), got {self.max_canvases}")
        choice("accumulate", ("none", "interval"))
        choice("energy", ("linear", "log1p"))
        choice("anchor", ("first", "center"))
        choice("sampling", ("uniform", "chunk"))
        choice("temporal_coord", ("frame", "slot"))
        choice("on_error", ("skip", "raise", "repeat"))
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or any(s <= 0 for s in self.image_std):
            raise ConfigError("image_std", "image_mean and image_std need three values, std > 0")
        if self.ovenc_size % self.ovenc_patch:
            raise ConfigError("ovenc_size", f"must be a multiple of ovenc_patch ({self.ovenc_patch})")
        # ovenc_topk's arrays grow with slots x cells and its mosaics with ovenc_topk: bounded like the decoder's
        # pixel cap, and no more rows than the slots hold (the released format pads a short selection by repeating)
        if self.ovenc_size > 8192:
            raise ConfigError("ovenc_size", f"must be <= 8192 (2^26 pixels per square), got {self.ovenc_size}")
        cells = self.ovenc_slots * (self.ovenc_size // self.ovenc_patch) ** 2
        if cells > 1 << 24:
            raise ConfigError("ovenc_slots", f"slots x (ovenc_size / ovenc_patch)^2 must be <= 2^24 cells, got {cells}")
        if self.ovenc_topk > cells:
            raise ConfigError("ovenc_topk", f"must be <= ovenc_slots x (ovenc_size / ovenc_patch)^2 ({cells}), "
                                            f"got {self.ovenc_topk}")
        check_num_threads(self.num_threads)

    # -- derived ------------------------------------------------------------------------------------------
    @property
    def block_pixels(self) -> int:
        """Side of one merge block in pixels (m * p)."""
        return self.merge_size * self.patch_size

    @property
    def k_target(self) -> int:
        """K_tar = max_canvases / 4 (DESIGN §5.6), at least 1."""
        return max(1, self.max_canvases // 4)

    def replace(self, **changes) -> "TokenizerConfig":
        d = asdict(self)
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigError(name, unknown_field_cause(name))
        d.update(changes)
        return TokenizerConfig(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def unknown_field_cause(name: str) -> str:
    """``"unknown TokenizerConfig field"``, with the closest field names when there are some.

        >>> unknown_field_cause("max_canvas")
        "unknown TokenizerConfig field (did you mean 'max_canvases'?)"
    """
    import difflib

    close = difflib.get_close_matches(str(name), [f.name for f in fields(TokenizerConfig)], n=2, cutoff=0.75)
    hint = " or ".join(repr(c) for c in close)
    return "unknown TokenizerConfig field" + (f" (did you mean {hint}?)" if close else "")
