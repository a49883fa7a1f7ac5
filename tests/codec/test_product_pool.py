"""Products off the decoding thread (csrc/codec/product_pool.h, docs/decoding.md): with ``num_threads >= 2`` a
frame's RGB, dense motion, coding cost, residual and block scores are computed by pool threads, on one-GOP videos
(the consumer decodes ahead, helpers compute) and on many-GOP videos (parallel workers run each other's products).
Whichever thread computes a product, outputs, their order and the errors raised are those of one thread."""
from __future__ import annotations

import numpy as np
import pytest

ov2 = pytest.importorskip("ov2_tokenizer")
from ov2_tokenizer import errors  # noqa: E402
from ov2_tokenizer._native import core  # noqa: E402

from _codec_util import frame_digest  # noqa: E402

HEAVY = dict(with_luma=True, with_mvs=True, with_residual=True, with_coding_cost=True, with_rgb=True,
             rgb_size=(96, 128))
SCORE = dict(canvas_h=112, canvas_w=140, patch=14, merge=2, beta=0.5)


def _read(path, threads, indices=None, **kw):
    r = ov2.open_video(path, num_threads=threads)
    out = []
    for f in r.frames(indices, **kw):
        rgb = None if f.rgb is None else f.rgb.tobytes()
        scores = None if getattr(f, "scores", None) is None else np.asarray(f.scores).tobytes()
        out.append((frame_digest(f), rgb, scores))
    return out, dict(r.stats)


@pytest.mark.parametrize("threads", [2, 3])
def test_one_gop_pipeline_equals_one_thread(int_motion_clip, threads):
    ref, _ = _read(int_motion_clip.path, 1, **HEAVY)
    got, stats = _read(int_motion_clip.path, threads, **HEAVY)
    assert not stats["parallel"] and stats["pooled_products"], stats  # one GOP: one decoder, products on helpers
    assert len(ref) == int_motion_clip.num_frames
    assert got == ref
    assert all(rgb is not None for _, rgb, _ in got)


@pytest.mark.parametrize("threads", [2, 4])
def test_many_gops_pool_equals_one_thread(bframe_clip, threads):
    """Every frame's products on two threads: one decoder + a product thread (docs/decoding.md); four threads,
    or selected frames: segment decoders sharing the pool."""
    ref, _ = _read(bframe_clip.path, 1, **HEAVY)
    got, stats = _read(bframe_clip.path, threads, **HEAVY)
    assert stats["pooled_products"] and stats["parallel"] == (threads > 2), stats
    assert got == ref
    idx = list(range(0, bframe_clip.num_frames, 2))
    got, stats = _read(bframe_clip.path, threads, indices=idx, **HEAVY)
    assert stats["pooled_products"] and stats["parallel"] and stats["segments"] >= 2, stats
    assert got == ref[::2]


@pytest.mark.parametrize("clip", ["int_motion_clip", "bframe_clip"])
def test_block_scores_on_pool_threads(request, clip):
    """The post hook (block scores) runs on pool threads: the scores equal one thread's."""
    path = request.getfixturevalue(clip).path
    ref, stats = _read(path, 1, with_luma=False, block_scores=SCORE)
    assert not stats["pooled_products"]
    for threads in (2, 3):
        got, stats = _read(path, threads, with_luma=False, block_scores=SCORE)
        assert got == ref, threads
        assert stats["pooled_products"], stats
    assert all(s is not None for _, _, s in ref)
    assert len({s for _, _, s in ref}) > 2  # the scores really differ between frames


def test_selected_indices_through_the_pool(int_motion_clip):
    idx = [0, 3, 4, 11, 12, 23]
    full, _ = _read(int_motion_clip.path, 1, **HEAVY)
    got, _ = _read(int_motion_clip.path, 2, indices=idx, **HEAVY)
    assert got == [full[i] for i in idx]


def test_early_stop_and_close(int_motion_clip, bframe_clip):
    """Leaving the loop with products in flight neither hangs nor leaks the pool threads."""
    import threading

    before = threading.active_count()
    for path in (int_motion_clip.path, bframe_clip.path):
        for _ in range(3):
            it = ov2.open_video(path, num_threads=3).frames(**HEAVY)
            next(iter(it))
            del it
    r = core.Reader(str(int_motion_clip.path), "clip", -1, 2, "skip", 0.0, 1 << 20)
    it = r.frames(None, True, True, True, True, True, 64, 48)
    next(it)
    it.close()
    assert threading.active_count() == before  # native threads are joined (Python's count is a smoke check)


def test_truncated_raise_through_the_pool(tmp_path, faststart_clip):
    """A decoding error met while decoding ahead is raised after the frames before it, as with one thread."""
    data = faststart_clip.path.read_bytes()
    p = tmp_path / "cut.mp4"
    p.write_bytes(data[: int(len(data) * 0.6)])

    def run(threads):
        r = ov2.open_video(p, num_threads=threads, on_error="raise")
        seen = []
        with pytest.raises(errors.CorruptVideoError) as ei:
            for f in r.frames(with_residual=True, with_coding_cost=True, with_mvs=True):
                seen.append(frame_digest(f))
        return seen, str(ei.value)

    one, msg1 = run(1)
    two, msg2 = run(2)
    r = ov2.open_video(p, num_threads=2)
    for _ in r.frames(with_residual=True):
        pass
    assert r.stats["pooled_products"] and not r.stats["parallel"], r.stats
    assert 0 < len(one) < faststart_clip.num_frames
    assert two == one
    assert msg2 == msg1


@pytest.mark.parametrize("budget", [1, 64 << 20])
def test_reordering_budget_never_changes_outputs(monkeypatch, bframe_clip, budget):
    """Parallel segments queue decoded frames for the consumer within max_buffer_bytes (docs/decoding.md): the
    segments ahead share it, the consumer's segment has as much of its own, and a frame always fits an empty queue.
    A scored read queues what the frame keeps (its scores; the vectors and residual its task drops are not
    counted). Whatever the budget, even one byte (every queue holds one frame), reads finish and equal one
    thread's."""
    import ov2_tokenizer.video as video

    plain = core.Reader

    class Budgeted(plain):
        def __init__(self, *a, **k):
            super().__init__(*a, max_buffer_bytes=budget, **k)

    idx = list(range(0, bframe_clip.num_frames, 3))
    ref_heavy, _ = _read(bframe_clip.path, 1, indices=idx, **HEAVY)
    ref_score, _ = _read(bframe_clip.path, 1, indices=idx, with_luma=False, with_rgb=True, rgb_size=(96, 128),
                         block_scores=SCORE)
    monkeypatch.setattr(video.core, "Reader", Budgeted)
    for threads in (2, 4):
        got, stats = _read(bframe_clip.path, threads, indices=idx, **HEAVY)
        assert stats["parallel"] and stats["pooled_products"], stats
        assert got == ref_heavy
        got, stats = _read(bframe_clip.path, threads, indices=idx, with_luma=False, with_rgb=True,
                           rgb_size=(96, 128), block_scores=SCORE)
        assert stats["parallel"] and stats["pooled_products"], stats
        assert got == ref_score
