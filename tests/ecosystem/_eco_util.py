"""Helpers of the ecosystem tests: small generated clips, a job list, an RSS-recording dataset, comparisons.

Importable by DataLoader workers under spawn (pytest puts this directory on ``sys.path`` and spawn passes the
parent's ``sys.path`` to its children).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List

import numpy as np
import torch

from ov2_tokenizer.data import PackedVisualTokens, VideoTokenDataset
from ov2_tokenizer.samples import encode_video, texture

#: Shared videos that tokenize in well under 0.3 s each with the small configs of these tests.
FAST_SHARED = ("tc_h264_10bits.mp4", "tc_h265_10bits.mp4", "tc_h265_video.mp4", "tc_av1_video.mkv",
               "tc_nasa_13013.mp4")
SMALL = dict(num_frames=32, max_canvases=8, max_pixels=50176)


def moving_clip(path: Path, seed: int, frames: int = 36, hw: tuple = (128, 176), gop: int = 12) -> Path:
    """A textured background with a square moving at a seed-dependent speed (H.264, no B-frames)."""
    if path.exists():
        return path
    h, w = hw
    bg = texture(h, w, seed=seed)
    sq = texture(32, 32, seed=seed + 100, smooth=1)
    speed = 2 + seed % 4

    def render(i: int) -> np.ndarray:
        img = bg.copy()
        x = (10 + speed * i) % (w - 32)
        img[40:72, x:x + 32] = sq
        return img

    return encode_video(path, frames, render, fps=12, options={"g": str(gop), "bf": "0", "preset": "ultrafast"})


def generated_clips(directory: Path, n: int = 3) -> List[Path]:
    return [moving_clip(directory / f"eco_clip_{i}.mp4", seed=i) for i in range(n)]


def shared_fast(shared_dir: Path | None) -> List[Path]:
    if shared_dir is None:
        return []
    return [shared_dir / n for n in FAST_SHARED if (shared_dir / n).exists()]


def _trim_heap() -> None:
    """Returns glibc's free heap pages to the OS (malloc_trim), where glibc is the C library."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RssDataset(VideoTokenDataset):
    """Records the worker's pid and resident set size after each item in ``meta["dataset"]``.

    The heap's free pages are returned to the OS first (``malloc_trim``): glibc may keep tens of MB of freed 720p
    buffers in its arenas for a while (one spawn worker once went 391 -> 452 MiB between the first and the last 50
    items that way), which is allocator caching, not memory the items hold. Live memory still counts."""

    def __getitem__(self, index: int):
        import psutil

        vt = super().__getitem__(index)  # no gc.collect(): ov2 must not rely on the cycle collector
        _trim_heap()
        vt.meta["dataset"]["pid"] = os.getpid()
        vt.meta["dataset"]["rss"] = psutil.Process().memory_info().rss
        return vt


def batch_signature(batch: PackedVisualTokens) -> dict:
    """Everything a batch carries except timings (compared across start methods)."""
    sig = {}
    for name in batch.__dataclass_fields__:
        v = getattr(batch, name)
        if isinstance(v, torch.Tensor):
            sig[name] = (v.dtype, tuple(v.shape), v.numpy().tobytes())
    sig["metadata"] = [{k: v for k, v in m.items()} for m in batch.metadata]
    sig["failures"] = [(f.index, f.source, f.error) for f in batch.failures]
    sig["num_tokens"] = list(batch.num_tokens)
    return sig


def png_size(path: Any) -> tuple:
    """(width, height) from a PNG's IHDR chunk; asserts the signature."""
    data = Path(path).read_bytes()[:32]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
