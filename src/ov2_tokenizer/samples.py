"""Synthetic videos with known content: the demo clip and a small generator for tests.

``sample_video()`` writes (once, cached) an 8-second 640x360 H.264 clip:
textured objects moving at known speeds (0–4 s), a scene cut at 4 s, a burst of periodic motion
(an oscillating block, period 0.4 s) from 5.5 s to 6.5 s, then a static tail.

Encoding uses PyAV (``pip install av``), which ships libx264.

    >>> from ov2_tokenizer.samples import sample_video, SAMPLE_EVENTS
    >>> p = sample_video()
    >>> SAMPLE_EVENTS["scene_cut_s"]
    4.0
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np

__all__ = ["sample_video", "encode_video", "texture", "SAMPLE_EVENTS"]

SAMPLE_FPS = 30
SAMPLE_SIZE = (360, 640)  # H, W
SAMPLE_SECONDS = 8.0
#: Ground truth of the sample clip.
SAMPLE_EVENTS = {
    "objects": [
        {"name": "square", "size": 64, "start_xy": (40, 60), "velocity_px_per_frame": (4, 0), "until_s": 4.0},
        {"name": "disc", "size": 48, "start_xy": (500, 40), "velocity_px_per_frame": (-2, 2), "until_s": 4.0},
    ],
    "scene_cut_s": 4.0,
    "burst": {"start_s": 5.5, "end_s": 6.5, "period_s": 0.4, "amplitude_px": 24},
}


def texture(height: int, width: int, seed: int, smooth: int = 2) -> np.ndarray:
    """A deterministic textured RGB image (smoothed noise with a colour tint), uint8 H x W x 3."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 256, size=(height + 2 * smooth, width + 2 * smooth)).astype(np.float32)
    if smooth:
        k = 2 * smooth + 1
        c = np.cumsum(np.cumsum(np.pad(g, ((1, 0), (1, 0))), 0), 1)
        g = (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)
        g = g[: height, : width]
    g = (g - g.min()) / max(1e-6, float(g.max() - g.min())) * 255.0
    tint = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
    return np.clip(g[..., None] * tint, 0, 255).astype(np.uint8)


def encode_video(
    path: str | os.PathLike,
    num_frames: int,
    render: Callable[[int], np.ndarray],
    *,
    fps: int = 30,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: Optional[Mapping[str, str]] = None,
    container_options: Optional[Mapping[str, str]] = None,
) -> Path:
    """Encodes ``render(i) -> uint8 H x W x 3 RGB`` for i in range(num_frames) with PyAV.

    ``options`` go to the encoder (e.g. ``{"x264-params": "ref=1:bframes=0", "qp": "8"}``).
    """
    try:
        import av
    except ImportError as exc:  # pragma: no cover - exercised only without PyAV
        raise RuntimeError("encoding sample videos needs PyAV: pip install av") from exc
    path = Path(path)
    first = render(0)
    h, w = first.shape[:2]
    with av.open(str(path), mode="w", options=dict(container_options or {})) as out:
        st = out.add_stream(codec, rate=fps)
        st.width, st.height, st.pix_fmt = w, h, pix_fmt
        if options:
            st.options = dict(options)
        for i in range(num_frames):
            img = first if i == 0 else render(i)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = i
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    return path


def _paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    H, W = canvas.shape[:2]
    h, w = patch.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = patch[y0 - y : y1 - y, x0 - x : x1 - x]


def _render_sample(i: int, _cache: dict = {}) -> np.ndarray:  # noqa: B006 - per-process texture cache
    H, W = SAMPLE_SIZE
    if not _cache:
        _cache["bg1"] = texture(H, W, seed=1)
        _cache["bg2"] = texture(H, W, seed=2, smooth=3)
        _cache["square"] = texture(64, 64, seed=3, smooth=1)
        disc = texture(48, 48, seed=4, smooth=1)
        yy, xx = np.mgrid[:48, :48]
        _cache["disc_mask"] = (yy - 23.5) ** 2 + (xx - 23.5) ** 2 <= 24**2
        _cache["disc"] = disc
        _cache["osc"] = texture(56, 56, seed=5, smooth=1)
    t = i / SAMPLE_FPS
    ev = SAMPLE_EVENTS
    if t < ev["scene_cut_s"]:
        img = _cache["bg1"].copy()
        sq = ev["objects"][0]
        _paste(img, _cache["square"], sq["start_xy"][0] + sq["velocity_px_per_frame"][0] * i, sq["start_xy"][1])
        dc = ev["objects"][1]
        x = dc["start_xy"][0] + dc["velocity_px_per_frame"][0] * i
        y = dc["start_xy"][1] + dc["velocity_px_per_frame"][1] * i
        region = img[max(0, y) : y + 48, max(0, x) : x + 48]
        if region.shape[:2] == (48, 48):
            region[_cache["disc_mask"]] = _cache["disc"][_cache["disc_mask"]]
        return img
    img = _cache["bg2"].copy()
    b = ev["burst"]
    dx = 0
    if b["start_s"] <= t < b["end_s"]:
        dx = int(round(b["amplitude_px"] * np.sin(2 * np.pi * (t - b["start_s"]) / b["period_s"])))
    _paste(img, _cache["osc"], 300 + dx, 150)
    return img


def sample_video(path: Optional[str | os.PathLike] = None) -> Path:
    """Returns the path of the demo clip, generating it on first use (cached in the temp directory)."""
    key = hashlib.sha1(repr((SAMPLE_EVENTS, SAMPLE_SIZE, SAMPLE_FPS, SAMPLE_SECONDS, 1)).encode()).hexdigest()[:10]
    target = Path(path) if path else Path(tempfile.gettempdir()) / f"ov2_sample_{key}.mp4"
    if target.exists() and target.stat().st_size > 0:
        return target
    tmp = target.with_name(target.stem + f".{os.getpid()}.tmp.mp4")
    encode_video(tmp, int(SAMPLE_SECONDS * SAMPLE_FPS), _render_sample, fps=SAMPLE_FPS,
                 options={"preset": "veryfast", "crf": "23", "g": "120"})
    os.replace(tmp, target)
    return target
