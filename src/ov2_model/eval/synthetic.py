"""JumpScore-style synthetic videos: a figure skipping rope with a chosen period, with ground-truth cycle starts.

The scene (RGB, drawn with numpy, encoded with PyAV + libx264 to ``.mp4``):

* a textured background, static or panning horizontally at ``pan_speed`` px/s;
* a red figure (body and head) that jumps once per cycle: its height above the ground is
  ``jump_height * sin(pi * phase)``, ``phase`` in [0, 1) within the cycle, so it touches the ground (lowest point,
  fastest vertical motion) exactly at each cycle start;
* a black rope from the hands around the figure, its far point at angle ``2 pi phase + 0.8 sin(2 pi phase)`` on
  a vertical circle (fast under the feet, slow over the head): at a cycle start the rope is at the bottom, behind
  the legs (JumpScore's definition of a cycle start);
* optionally a blue distractor ball bouncing in a corner with an unrelated period (``distractor_period``).

Cycle ``k`` starts at ``t_k = t_0 + sum_{i<k} T_i`` with ``t_0 ~ U[0, period)`` and
``T_i = period * clip(1 + period_jitter * N(0, 1), 0.5, 1.5)``; everything (texture, offsets, periods) is
drawn from ``numpy.random.default_rng(seed)``, so frames and annotations are deterministic given the seed.
The ``.mp4`` is encoded single-threaded from those frames (RGB to YUV 4:2:0 done here, not by the scaler) and
is byte-identical across runs in practice, but libx264 does not promise it: rarely two runs differ by a few
encoding decisions (the decoded pictures still match the rendered frames to coding precision).

Annotation JSON written next to the video (format ``"ov2-jumpscore-synthetic/1"``, see ``docs/eval.md``)::

    {"format": "ov2-jumpscore-synthetic/1", "id": "clip", "video": "clip.mp4", "prompt": "<JumpScore prompt>",
     "timestamps": [0.173, 0.573, ...],   # cycle starts in seconds (rounded to 1 ms), ascending, in [0, duration)
     "frames": [5, 17, ...],              # index of the frame nearest to each cycle start
     "duration": 30.0, "fps": 30, "num_frames": 900, "width": 320, "height": 240,
     "generator": {"period": 0.4, "seed": 0, ...}}   # every parameter of SyntheticSpec

    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     ann = generate_video(os.path.join(d, "clip.mp4"), SyntheticSpec(duration=1.0, period=0.4, seed=1))
    ...     os.path.exists(os.path.join(d, "clip.json")), ann["num_frames"], len(ann["timestamps"])
    (True, 30, 2)
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, Iterator

import numpy as np

from .jumpscore import JUMPSCORE_PROMPT

__all__ = ["SyntheticSpec", "cycle_starts", "render_frames", "rgb_to_yuv420p", "generate_video", "ANNOTATION_FORMAT"]

ANNOTATION_FORMAT = "ov2-jumpscore-synthetic/1"

_RED = np.array([220, 30, 30], dtype=np.uint8)
_ROPE = np.array([15, 15, 15], dtype=np.uint8)
_BLUE = np.array([30, 60, 220], dtype=np.uint8)
#: rope angle = 2 pi phase + _ROPE_WHIP sin(2 pi phase): the rope turns 1.8x faster than average under the
#: feet (around a cycle start) and 0.2x over the head, like a wrist-driven rope
_ROPE_WHIP = 0.8


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of a synthetic clip (all lengths in pixels, times in seconds)."""

    duration: float = 10.0
    period: float = 0.4
    fps: int = 30
    width: int = 320
    height: int = 240
    seed: int = 0
    period_jitter: float = 0.0
    pan_speed: float = 0.0
    distractor: bool = False
    distractor_period: float = 1.37
    jump_height: float | None = None  # default: 12 % of the height
    crf: int = 23
    preset: str = "veryfast"
    gop: int | None = None  # libx264 keyint; None = encoder default

    def __post_init__(self) -> None:
        if not (self.duration > 0 and self.period > 0 and self.fps > 0):
            raise ValueError("duration, period and fps must be > 0")
        if self.width < 64 or self.height < 64 or self.width % 2 or self.height % 2:
            raise ValueError("width and height must be even and >= 64")
        if not 0 <= self.period_jitter <= 0.5:
            raise ValueError("period_jitter must be in [0, 0.5]")

    @property
    def num_frames(self) -> int:
        return int(round(self.duration * self.fps))


def _schedule(spec: SyntheticSpec) -> tuple[np.ndarray, np.random.Generator]:
    """Cycle boundaries covering [0, duration] (first one < 0 included) and the rng for what follows."""
    rng = np.random.default_rng(spec.seed)
    t0 = float(rng.uniform(0.0, spec.period))
    bounds = [t0 - spec.period, t0]
    while bounds[-1] <= spec.duration + spec.period:
        f = 1.0 + spec.period_jitter * float(rng.standard_normal())
        bounds.append(bounds[-1] + spec.period * min(1.5, max(0.5, f)))
    return np.asarray(bounds), rng


def cycle_starts(spec: SyntheticSpec) -> list[float]:
    """Ground-truth cycle starts (seconds, exact) in ``[0, num_frames / fps)``.

    >>> cycle_starts(SyntheticSpec(duration=1.0, period=0.4, seed=1))[:2] == cycle_starts(
    ...     SyntheticSpec(duration=1.0, period=0.4, seed=1))[:2]
    True
    """
    bounds, _ = _schedule(spec)
    end = spec.num_frames / spec.fps
    return [float(b) for b in bounds if 0.0 <= b < end]


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    cell = 8
    gh, gw = h // cell + 2, w // cell + 2
    base = rng.uniform(70, 170, size=(gh, gw, 1)) * np.array([0.85, 1.0, 0.8])  # greyish green tiles
    big = np.repeat(np.repeat(base, cell, axis=0), cell, axis=1)[:h, :w]
    fine = rng.normal(0.0, 6.0, size=(h, w, 1))
    return np.clip(big + fine, 0, 255).astype(np.uint8)


def _stamp_line(img: np.ndarray, p: tuple[float, float], q: tuple[float, float], color: np.ndarray, r: int) -> None:
    h, w = img.shape[:2]
    n = int(max(abs(q[0] - p[0]), abs(q[1] - p[1]))) + 2
    xs = np.rint(np.linspace(p[0], q[0], n)).astype(np.int64)
    ys = np.rint(np.linspace(p[1], q[1], n)).astype(np.int64)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            x, y = xs + dx, ys + dy
            ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            img[y[ok], x[ok]] = color


def render_frames(spec: SyntheticSpec) -> Iterator[np.ndarray]:
    """The clip's frames, ``(height, width, 3)`` uint8 RGB, frame ``i`` showing time ``i / fps``."""
    bounds, rng = _schedule(spec)
    w, h = spec.width, spec.height
    extra = int(math.ceil(abs(spec.pan_speed) * spec.duration)) + 2
    tex = _texture(rng, h, w + extra)
    d_phase0 = float(rng.uniform(0.0, 1.0))
    yy, xx = np.mgrid[0:h, 0:w]
    ground = int(0.88 * h)
    amp = float(spec.jump_height if spec.jump_height is not None else 0.12 * h)
    body_w, body_h = max(6, int(0.07 * w)), int(0.26 * h)
    leg_h = int(0.10 * h)
    head_r = max(4, int(0.045 * h))
    cx = w // 2
    rope_r = 0.5 * (body_h + leg_h) + head_r + 0.06 * h
    for i in range(spec.num_frames):
        t = i / spec.fps
        k = int(np.searchsorted(bounds, t, side="right")) - 1
        phase = (t - bounds[k]) / (bounds[k + 1] - bounds[k])
        lift = int(round(amp * math.sin(math.pi * phase)))
        off = int(round(spec.pan_speed * t))
        x0 = off if spec.pan_speed >= 0 else extra - 2 + off
        img = tex[:, x0:x0 + w].copy()
        feet = ground - lift
        hip = feet - leg_h
        shoulder = hip - body_h
        head_c = shoulder - head_r - 1
        hands = ((cx - body_w, hip - body_h // 3), (cx + body_w, hip - body_h // 3))
        # rope: lowest point on a vertical circle around the figure's middle, at the bottom when phase = 0
        mid_y = 0.5 * (feet + head_c)
        theta = 2.0 * math.pi * phase + _ROPE_WHIP * math.sin(2.0 * math.pi * phase)
        rope_pt = (float(cx), mid_y + rope_r * math.cos(theta))
        behind = math.cos(theta) > 0  # lower half of the turn: the rope passes behind the legs
        if behind:
            for hand in hands:
                _stamp_line(img, hand, rope_pt, _ROPE, 1)
        img[hip:feet, cx - body_w // 2:cx - 1] = _RED  # legs
        img[hip:feet, cx + 1:cx + body_w // 2] = _RED
        img[shoulder:hip, cx - body_w // 2:cx + body_w // 2] = _RED  # body
        img[(yy - head_c) ** 2 + (xx - cx) ** 2 <= head_r ** 2] = _RED
        _stamp_line(img, (cx - body_w // 2, shoulder + 2), hands[0], _RED, 1)  # arms
        _stamp_line(img, (cx + body_w // 2 - 1, shoulder + 2), hands[1], _RED, 1)
        if not behind:
            for hand in hands:
                _stamp_line(img, hand, rope_pt, _ROPE, 1)
        if spec.distractor:
            dp = (t / spec.distractor_period + d_phase0) % 1.0
            bx = int(0.12 * w + 0.10 * w * math.sin(2 * math.pi * dp))
            by = int(0.30 * h - 0.12 * h * abs(math.sin(math.pi * dp)))
            br = max(3, int(0.03 * h))
            img[(yy - by) ** 2 + (xx - bx) ** 2 <= br * br] = _BLUE
        yield img


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """RGB ``(h, w, 3)`` uint8 to planar YUV 4:2:0 ``(h * 3 // 2, w)`` (BT.601, limited range, 2x2 chroma mean).

    Done here rather than by the encoder's scaler so that the encoded bytes depend on the frames only.

    >>> rgb_to_yuv420p(np.full((2, 2, 3), 255, np.uint8)).ravel().tolist()  # Y Y Y Y U V
    [235, 235, 235, 235, 128, 128]
    """
    h, w = rgb.shape[:2]
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16.0 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    u = 128.0 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    v = 128.0 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    sub = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    planes = [np.rint(c).clip(0, 255).astype(np.uint8).ravel() for c in (y, sub(u), sub(v))]
    return np.concatenate(planes).reshape(h * 3 // 2, w)


def generate_video(path: str, spec: SyntheticSpec = SyntheticSpec(), annotation_path: str | None = None) -> dict[str, Any]:
    """Render ``spec`` to an H.264 ``.mp4`` at ``path`` and write its annotation JSON.

    ``annotation_path`` defaults to ``path`` with the extension replaced by ``.json``. Returns the annotation.
    Needs PyAV with libx264.
    """
    import av  # noqa: PLC0415

    ann_path = annotation_path or os.path.splitext(path)[0] + ".json"
    container = av.open(path, mode="w")
    try:
        stream = container.add_stream("libx264", rate=Fraction(spec.fps))
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        opts = {"crf": str(spec.crf), "preset": spec.preset, "threads": "1"}  # 1 thread: reproducible in practice
        if spec.gop is not None:
            opts["x264-params"] = f"keyint={int(spec.gop)}"
        stream.options = opts
        stream.codec_context.thread_count = 1
        for i, arr in enumerate(render_frames(spec)):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(arr), format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, spec.fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()
    starts = cycle_starts(spec)
    n = spec.num_frames
    ann: dict[str, Any] = {
        "format": ANNOTATION_FORMAT,
        "id": os.path.splitext(os.path.basename(path))[0],
        "video": os.path.basename(path),
        "prompt": JUMPSCORE_PROMPT,
        "timestamps": [round(s, 3) for s in starts],
        "frames": [min(n - 1, int(round(s * spec.fps))) for s in starts],
        "duration": n / spec.fps,
        "fps": spec.fps,
        "num_frames": n,
        "width": spec.width,
        "height": spec.height,
        "generator": asdict(spec),
    }
    with open(ann_path, "w", encoding="utf-8") as f:
        json.dump(ann, f, indent=1)
        f.write("\n")
    return ann
