"""Fixtures of tests/gpu: small videos made once per session."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def small_videos(tmp_path_factory) -> list:
    """Three short distinct H.264 clips (moving square on textured backgrounds), as paths."""
    from ov2_tokenizer._native import HAS_FFMPEG

    if not HAS_FFMPEG:
        pytest.skip("the compiled core has no FFmpeg (OV2_FFMPEG=OFF): videos cannot be decoded")
    pytest.importorskip("av", reason="PyAV is needed to encode the test clips")
    from ov2_tokenizer.samples import encode_video

    out = []
    d = tmp_path_factory.mktemp("gpu_videos")
    for k, (h, w, n, speed) in enumerate([(96, 128, 45, 3), (120, 160, 60, 5), (64, 224, 30, 2)]):
        rng = np.random.default_rng(k)
        bg = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        sq = rng.integers(0, 255, size=(24, 24, 3), dtype=np.uint8)

        def render(i, bg=bg, sq=sq, h=h, w=w, speed=speed):
            f = np.roll(bg, i, axis=1).copy()
            x = (8 + speed * i) % (w - 24)
            y = (10 + i) % (h - 24)
            f[y:y + 24, x:x + 24] = sq
            return f

        p = d / f"clip{k}.mp4"
        encode_video(p, n, render, fps=30, options={"preset": "veryfast", "g": "30"})
        out.append(p)
    return out
