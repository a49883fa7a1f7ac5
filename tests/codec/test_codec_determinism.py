"""Results never depend on ``num_threads``: vectors, motion field, residual and coding cost of every frame are
identical for 1, 2 and 4 threads on every shared video (the B-frame ones included, where FFmpeg's frame
threading is known to change the exported vectors) and on a generated B-frame clip with many closed GOPs.
Frames are compared by hash to keep memory low."""
from __future__ import annotations

import numpy as np
import pytest

ov2 = pytest.importorskip("ov2_tokenizer")

from _codec_util import reader_digests, shared_video_paths  # noqa: E402

PRODUCTS = dict(with_luma=True, with_mvs=True, with_residual=True, with_coding_cost=True)


def _videos():
    vids = shared_video_paths()
    return [pytest.param(p, id=p.name) for p in vids] or [
        pytest.param(None, marks=pytest.mark.skip(reason="../shared/videos absent"))]


@pytest.mark.slow
@pytest.mark.parametrize("path", _videos())
def test_threads_do_not_change_results(path):
    ref, stats1 = reader_digests(path, num_threads=1, **PRODUCTS)
    assert len(ref) > 0 and stats1["frames_decoded"] == len(ref)
    for threads in (2, 4):
        got, stats = reader_digests(path, num_threads=threads, **PRODUCTS)
        assert len(got) == len(ref), f"{threads} threads: {len(got)} frames vs {len(ref)}"
        bad = [i for i, (a, b) in enumerate(zip(ref, got)) if a != b]
        assert not bad, f"{threads} threads: {len(bad)} frames differ, first {bad[0]}"
        assert stats["frames_decoded"] == stats1["frames_decoded"]


def test_parallel_decoding_is_exercised(shared_videos):
    """The comparison above is only meaningful if the B-frame videos really are split into parallel segments."""
    split = {}
    for p in shared_video_paths():
        r = ov2.open_video(p, num_threads=4)
        for _ in r.frames([0], with_luma=False):
            pass
        split[p.name] = (r.stats["parallel"], r.stats["segments"])
        if r.info.has_b_frames and r.info.motion_source == "codec" and r.info.num_frames > 300:
            assert r.stats["parallel"] and r.stats["segments"] >= 2, (p.name, r.stats)
    assert any(par for par, _ in split.values()), split


def test_threads_bframe_clip_with_many_gops(bframe_clip):
    ref, _ = reader_digests(bframe_clip.path, num_threads=1, **PRODUCTS)
    assert len(ref) == bframe_clip.num_frames
    for threads in (2, 3, 4, 8):
        got, stats = reader_digests(bframe_clip.path, num_threads=threads, **PRODUCTS)
        assert got == ref, f"{threads} threads"
        if threads == 2:  # products for every frame on two threads: one decoder + a product thread
            assert not stats["parallel"] and stats["pooled_products"], stats
        else:
            assert stats["parallel"] and stats["segments"] >= 2, stats
    got, stats = reader_digests(bframe_clip.path, num_threads=2, with_luma=True, with_mvs=True)
    assert stats["parallel"] and stats["segments"] >= 2, stats  # light products: two segment decoders
    assert got == reader_digests(bframe_clip.path, num_threads=1, with_luma=True, with_mvs=True)[0]


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_threads_with_index_selection(bframe_clip, threads):
    idx = [0, 4, 9, 10, 17, 29]
    full, _ = reader_digests(bframe_clip.path, num_threads=1, **PRODUCTS)
    got, _ = reader_digests(bframe_clip.path, num_threads=threads, indices=idx, **PRODUCTS)
    assert got == [full[i] for i in idx]


def test_repeated_runs_identical(bframe_clip):
    a, _ = reader_digests(bframe_clip.path, num_threads=4, **PRODUCTS)
    b, _ = reader_digests(bframe_clip.path, num_threads=4, **PRODUCTS)
    assert a == b
    assert len(set(a)) == len(a)  # frames really differ from each other (hashes are not trivially equal)
    assert np.all(np.array([len(x) for x in a]) == 40)
