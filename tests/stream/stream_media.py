"""Generated test videos for tests/stream (cached in the temp directory, keyed by their parameters)."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from ov2_tokenizer.samples import encode_video, texture

CACHE = Path(tempfile.gettempdir()) / "ov2_stream_tests"


def make_video(seconds: float, *, fps: int = 30, size=(96, 160), container: str = "ts",
               movflags: Optional[str] = None, gop: int = 60) -> Path:
    """A clip with a moving textured square whose speed varies (so bins differ in bit-cost) and a background
    change every 20 s (scene cuts). ``container``: "ts" (MPEG-TS) or "mp4" (``movflags`` e.g. "+faststart",
    "frag_keyframe+empty_moov"; None = moov at the end)."""
    h, w = size
    key = hashlib.sha1(repr((seconds, fps, size, container, movflags, gop, 2)).encode()).hexdigest()[:12]
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / f"clip_{key}.{container}"
    if target.exists() and target.stat().st_size > 0:
        return target
    bgs = [texture(h, w, seed=s) for s in (11, 12, 13)]
    obj = texture(h // 4, h // 4, seed=14, smooth=1)
    side = obj.shape[0]

    def render(i: int) -> np.ndarray:
        t = i / fps
        img = bgs[int(t // 20) % len(bgs)].copy()
        speed = 1 + 3 * (1 + np.sin(2 * np.pi * t / 7.0))  # px per frame, 1..7, period 7 s
        x = int(t * fps * speed) % (w - side)
        y = int((h - side) / 2 * (1 + np.sin(2 * np.pi * t / 3.0)))
        img[y:y + side, x:x + side] = obj
        return img

    tmp = target.with_name(target.stem + f".{os.getpid()}.tmp.{container}")
    copts = {"movflags": movflags} if movflags else None
    encode_video(tmp, int(round(seconds * fps)), render, fps=fps,
                 options={"preset": "ultrafast", "g": str(gop), "bf": "2"}, container_options=copts)
    os.replace(tmp, target)
    return target
