"""The core's output buffers (residual, luma, RGB, ...) come from a small pool that numpy arrays give their memory
back to (csrc/codec/buffer_pool.h): freed blocks are reused for the next frame, and what the pool holds stays
bounded (4 blocks, 16 MiB) whatever was read before."""
from __future__ import annotations

import gc

import numpy as np
import pytest

ov2 = pytest.importorskip("ov2_tokenizer")
from ov2_tokenizer._native import core  # noqa: E402

LIMIT = 16 << 20


def test_pool_reuses_and_stays_bounded(int_motion_clip):
    path = int_motion_clip.path
    first = [f.residual.copy() for f in ov2.open_video(path).frames(with_luma=True, with_residual=True)]
    gc.collect()
    held = core.buffer_pool_cached_bytes()
    assert 0 < held <= LIMIT  # the frames' residual and luma blocks (320x240: 150 KiB) came back to the pool
    # Reading again gives the same values from reused (not zeroed) memory: every sample is written.
    again = [f.residual.copy() for f in ov2.open_video(path).frames(with_luma=True, with_residual=True)]
    assert len(again) == len(first) and all(np.array_equal(a, b) for a, b in zip(first, again))
    # Kept arrays keep their memory: the pool never hands out a block a live array still uses.
    kept = list(ov2.open_video(path).frames(with_luma=True, with_residual=True))
    ids = {f.residual.__array_interface__["data"][0] for f in kept} | {f.luma.__array_interface__["data"][0] for f in kept}
    assert len(ids) == 2 * len(kept)
    assert all(np.array_equal(f.residual, r) for f, r in zip(kept, first))
    del kept
    gc.collect()
    assert core.buffer_pool_cached_bytes() <= LIMIT


def test_pool_bounded_after_large_frames(shared_videos):
    p = shared_videos / "mvx_h264_720p.mp4"
    if not p.exists():
        pytest.skip("mvx_h264_720p.mp4 absent")
    for _ in ov2.open_video(p).frames(list(range(8)), with_luma=True, with_rgb=True, with_residual=True):
        pass
    gc.collect()
    assert core.buffer_pool_cached_bytes() <= LIMIT
