"""Generated videos with known content for the codec tests (encoded once per session with libx264 via PyAV).

Each fixture returns a ``Clip`` holding the path and the ground truth of its construction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from _codec_util import BandLimitedTexture, paste, textured  # noqa: E402

# Exact motion-compensation conditions of the issue: one reference, no B-frames, no weighted prediction,
# loop filter off, no scene-cut I-frames (the new-object frame must stay a P-frame), constant qp <= 10.
EXACT_X264 = "ref=1:bframes=0:weightp=0:no-deblock=1:scenecut=0:keyint=250:me=esa:merange=16"


@dataclass
class Clip:
    path: Path
    num_frames: int
    fps: int
    width: int
    height: int
    truth: dict = field(default_factory=dict)


def _encode(path: Path, n: int, render, *, fps: int = 25, options=None, container_options=None) -> Path:
    pytest.importorskip("av", reason="generated test videos are encoded with PyAV (pip install av)")
    from ov2_tokenizer.samples import encode_video

    return encode_video(path, n, render, fps=fps, codec="libx264", options=options or {},
                        container_options=container_options)


@pytest.fixture(scope="session")
def int_motion_clip(generated_dir) -> Clip:
    """320x240: static textured background, a 64x64 textured block moving by exactly (+4, -2) px per frame,
    and at frame 12 a new 48x48 textured object appearing (and staying) at (240, 160).
    Encoded with the exact-prediction settings at qp 8."""
    W, H, n, fps = 320, 240, 24, 25
    vel = (4, -2)
    start = (40, 120)
    new_at, new_xy, new_size = 12, (240, 160), 48
    bg = textured(H, W, seed=11, smooth=1)
    block = textured(64, 64, seed=12, smooth=1)
    obj = 255 - textured(new_size, new_size, seed=13, smooth=0)

    def render(i):
        img = bg.copy()
        paste(img, block, start[0] + vel[0] * i, start[1] + vel[1] * i)
        if i >= new_at:
            paste(img, obj, *new_xy)
        return img

    path = _encode(generated_dir / "int_motion.mp4", n, render, fps=fps,
                   options={"x264-params": EXACT_X264, "qp": "8", "preset": "medium"})
    return Clip(path, n, fps, W, H, truth={
        "velocity": vel, "start": start, "block": 64,
        "new_at": new_at, "new_xy": new_xy, "new_size": new_size,
    })


def _qpel_clip(generated_dir, name: str, vel: tuple[float, float], seed: int) -> Clip:
    W, H, n, fps = 320, 240, 16, 25
    size = 96
    start = (96.0, 72.0)
    bg = textured(H, W, seed=seed, smooth=1)
    tex = BandLimitedTexture(256, 384, seed=seed + 1)

    def pos(i):
        return start[0] + vel[0] * i, start[1] + vel[1] * i

    def render(i):
        px, py = pos(i)
        content = tex.shifted(px, py)  # content moves with the block: value at (x, y) = T(x - px, y - py)
        x0, y0 = int(round(px)), int(round(py))
        img = bg.copy()
        patch = content[y0 : y0 + size, x0 : x0 + size]
        paste(img, np.repeat(patch[..., None], 3, axis=2), x0, y0)
        return img

    path = _encode(generated_dir / f"{name}.mp4", n, render, fps=fps,
                   options={"x264-params": EXACT_X264, "qp": "8", "preset": "medium"})
    return Clip(path, n, fps, W, H, truth={"velocity": vel, "size": size,
                                           "pos": [tuple(int(round(v)) for v in pos(i)) for i in range(n)]})


@pytest.fixture(scope="session")
def qpel_clip_a(generated_dir) -> Clip:
    """A band-limited texture block moving by (+1.25, -0.75) px per frame (quarter-pel)."""
    return _qpel_clip(generated_dir, "qpel_a", (1.25, -0.75), seed=21)


@pytest.fixture(scope="session")
def qpel_clip_b(generated_dir) -> Clip:
    """A band-limited texture block moving by (-2.5, +1.75) px per frame (half- and quarter-pel)."""
    return _qpel_clip(generated_dir, "qpel_b", (-2.5, 1.75), seed=31)


@pytest.fixture(scope="session")
def qpel_grid_clip(generated_dir) -> Clip:
    """320x240, 10 frames: 16 band-limited textured 40x40 blocks, block (r, c) moving by (c/4, r/4) px per frame,
    so the encoder's vectors use every one of H.264's 16 quarter-sample positions."""
    W, H, n, fps, size = 320, 240, 10, 25, 40
    bg = textured(H, W, seed=61, smooth=1)
    blocks = []
    for r in range(4):
        for c in range(4):
            blocks.append({"start": (16 + 76 * c, 12 + 56 * r), "velocity": (c / 4, r / 4),
                           "tex": BandLimitedTexture(128, 128, seed=100 + 4 * r + c, cutoff=0.3)})

    def pos(b, i):
        return b["start"][0] + b["velocity"][0] * i, b["start"][1] + b["velocity"][1] * i

    def render(i):
        img = bg.copy()
        for b in blocks:
            px, py = pos(b, i)
            x0, y0 = int(round(px)), int(round(py))
            t = b["tex"].shifted(px, py)  # periodic: value at (x, y) is T((x - px) mod 128, (y - py) mod 128)
            patch = t[np.ix_(np.arange(y0, y0 + size) % 128, np.arange(x0, x0 + size) % 128)]
            paste(img, np.repeat(patch[..., None], 3, axis=2), x0, y0)
        return img

    path = _encode(generated_dir / "qpel_grid.mp4", n, render, fps=fps,
                   options={"x264-params": EXACT_X264, "qp": "8", "preset": "medium"})
    truth = [{"velocity": b["velocity"], "size": size,
              "pos": [tuple(int(round(v)) for v in pos(b, i)) for i in range(n)]} for b in blocks]
    return Clip(path, n, fps, W, H, truth={"blocks": truth})


@pytest.fixture(scope="session")
def bframe_clip(generated_dir) -> Clip:
    """240x160, 30 frames, a textured block moving by (+3, +1) px per frame, libx264 with 3 B-frames and a
    short GOP (several closed GOPs, so parallel decoding has segments)."""
    W, H, n, fps = 240, 160, 30, 30
    bg = textured(H, W, seed=41, smooth=2)
    block = textured(48, 48, seed=42, smooth=1)

    def render(i):
        img = bg.copy()
        paste(img, block, 20 + 3 * i, 40 + i)
        return img

    path = _encode(generated_dir / "bframes.mp4", n, render, fps=fps,
                   options={"x264-params": "bframes=3:b-adapt=0:keyint=10:min-keyint=10:scenecut=0", "crf": "20",
                            "preset": "fast"})
    return Clip(path, n, fps, W, H, truth={"velocity": (3, 1)})


@pytest.fixture(scope="session")
def bpyramid_clip(generated_dir) -> Clip:
    """320x240, 24 frames, a band-limited texture block moving by (+1.25, -0.75) px per frame over a textured
    background; libx264 with the exact-prediction settings (one reference per list, no weighted prediction, loop
    filter off, qp 8) but 3 B-frames in a pyramid: the middle B-picture of each run is a reference, decoded after
    the P-picture shown after it. GOPs of 12 (two closed GOPs)."""
    W, H, n, fps, size = 320, 240, 24, 25, 96
    vel, start = (1.25, -0.75), (96.0, 72.0)
    bg = textured(H, W, seed=71, smooth=1)
    tex = BandLimitedTexture(256, 384, seed=72)

    def pos(i):
        return start[0] + vel[0] * i, start[1] + vel[1] * i

    def render(i):
        px, py = pos(i)
        content = tex.shifted(px, py)
        x0, y0 = int(round(px)), int(round(py))
        img = bg.copy()
        paste(img, np.repeat(content[y0 : y0 + size, x0 : x0 + size][..., None], 3, axis=2), x0, y0)
        return img

    params = ("ref=1:bframes=3:b-pyramid=normal:b-adapt=0:weightb=0:weightp=0:no-deblock=1:scenecut=0:"
              "keyint=12:min-keyint=12:me=esa:merange=16")
    path = _encode(generated_dir / "bpyramid.mp4", n, render, fps=fps,
                   options={"x264-params": params, "qp": "8", "preset": "medium"})
    return Clip(path, n, fps, W, H, truth={"velocity": vel, "size": size,
                                           "pos": [tuple(int(round(v)) for v in pos(i)) for i in range(n)]})


@pytest.fixture(scope="session")
def faststart_clip(generated_dir) -> Clip:
    """160x128, 40 frames, moov atom at the front (``movflags=+faststart``), GOP 10, no B-frames: cutting the file
    keeps a valid index, so the frames before the cut stay decodable."""
    W, H, n, fps = 160, 128, 40, 25
    bg = textured(H, W, seed=51, smooth=2)
    block = textured(32, 32, seed=52, smooth=1)

    def render(i):
        img = bg.copy()
        paste(img, block, 10 + 2 * i, 30)
        return img

    path = _encode(generated_dir / "faststart.mp4", n, render, fps=fps,
                   options={"x264-params": "bframes=0:keyint=10:min-keyint=10:scenecut=0", "crf": "18",
                            "preset": "fast"},
                   container_options={"movflags": "+faststart"})
    return Clip(path, n, fps, W, H)
