"""Skipping (csrc/codec/reader.cpp SkipPlan, docs/decoding.md): a sparse request on H.264 never sends the packets
of non-reference pictures it does not need to the decoder. Nothing references them, so every requested frame —
pixels, vectors, residual, coding cost, RGB, block scores — equals the same frame of a full read, for any
num_threads; indices are pts ranks, checked on every decoded frame, and a file that breaks that model is read
again without skipping."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

ov2 = pytest.importorskip("ov2_tokenizer")
from ov2_tokenizer import errors  # noqa: E402

from _codec_util import SHARED_VIDEOS, frame_digest  # noqa: E402

HEAVY = dict(with_luma=True, with_mvs=True, with_residual=True, with_coding_cost=True, with_rgb=True,
             rgb_size=(48, 64))


def _read(path, threads, indices=None, **kw):
    r = ov2.open_video(path, num_threads=threads)
    out = [(f.index, f.pts_s, f.pict_type, frame_digest(f), None if f.rgb is None else f.rgb.tobytes())
           for f in r.frames(indices, **kw)]
    return out, dict(r.stats)


def _nonref_ranks(path):
    pk = ov2.open_video(path).packets()
    order = np.argsort(pk.pts_s, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return set(rank[pk.reference == 0].tolist()), order.size


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_sparse_read_equals_full_read(bframe_clip, threads):
    nonref, n = _nonref_ranks(bframe_clip.path)
    assert nonref, "the fixture must have non-reference B-frames"
    full, _ = _read(bframe_clip.path, 1, **HEAVY)
    assert len(full) == n
    for idx in ([3, 11, 17, 26], list(range(0, n, 4)), [n - 1], sorted(nonref)[:3]):
        got, st = _read(bframe_clip.path, threads, idx, **HEAVY)
        assert got == [full[i] for i in idx]
        # every non-reference frame that is not requested and comes before the last requested one is skipped
        last = max(idx)
        must_skip = {k for k in nonref if k < last and k not in idx}
        assert st["skipped_frames"] >= len(must_skip), (st, must_skip)
        assert st["frames_decoded"] + st["skipped_frames"] <= n
        assert not st["skip_fallback"]


def test_skipping_saves_decoding_and_stats_match_across_threads(bframe_clip):
    nonref, n = _nonref_ranks(bframe_clip.path)
    idx = [0, n // 2, n - 1]
    stats = [_read(bframe_clip.path, t, idx)[1] for t in (1, 2, 4)]
    assert stats[0]["skipped_frames"] > 0
    assert stats[0]["frames_decoded"] < n
    for s in stats[1:]:
        assert (s["skipped_frames"], s["frames_decoded"]) == (stats[0]["skipped_frames"], stats[0]["frames_decoded"])


def test_requested_nonref_frames_are_decoded(bframe_clip):
    nonref, n = _nonref_ranks(bframe_clip.path)
    want = sorted(nonref)
    full, _ = _read(bframe_clip.path, 1, with_mvs=True)
    got, st = _read(bframe_clip.path, 2, want, with_mvs=True)
    assert [g[0] for g in got] == want and got == [full[i] for i in want]
    assert all(g[2] == "B" for g in got)


def test_full_reads_and_other_codecs_do_not_skip(bframe_clip, int_motion_clip):
    _, st = _read(bframe_clip.path, 2)
    assert st["skipped_frames"] == 0
    _, st = _read(int_motion_clip.path, 1, [1, 5])  # no B-frames: nothing to skip
    assert st["skipped_frames"] == 0


def test_on_error_repeat_does_not_skip(bframe_clip):
    r = ov2.open_video(bframe_clip.path, on_error="repeat")
    list(r.frames([2, 20]))
    assert r.stats["skipped_frames"] == 0


def test_plan_that_does_not_fit_falls_back_deterministically(bframe_clip, tmp_path):
    """A copy whose later packets were zeroed: the decoder drops frames, decoded frames leave their pts ranks, the
    reader notices and reads the rest again without skipping. Outputs are the same for every num_threads, and the
    frames before the damage equal the undamaged file's."""
    data = bytearray(bframe_clip.path.read_bytes())
    pk = ov2.open_video(bframe_clip.path).packets()
    # zero the payload of a reference P packet in the middle (mdat payloads follow ftyp/moov in this layout)
    import av

    with av.open(str(bframe_clip.path)) as c:
        spans = [(p.pos, p.size) for p in c.demux(video=0) if p.size and p.pos is not None]
    mid = [i for i in range(len(spans)) if pk.reference[i] == 1 and not pk.keyframe[i] and i > len(spans) // 2][0]
    pos, size = spans[mid]
    data[pos + 4 : pos + size] = bytes(size - 4)
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    n = len(spans)
    idx = list(range(0, n, 3))
    outs = []
    for t in (1, 2, 3):
        try:
            outs.append(_read(bad, t, idx, with_mvs=True, with_residual=True))
        except errors.Ov2Error as e:  # pragma: no cover - the damage is concealed, not raised, with on_error=skip
            outs.append((type(e).__name__, {}))
    assert all(o[0] == outs[0][0] for o in outs)
    assert all(o[1]["skip_fallback"] for o in outs), [o[1] for o in outs]
    assert outs[0][0], "frames before the damage must come out"
    clean, _ = _read(bframe_clip.path, 1, idx, with_mvs=True, with_residual=True)
    mid_rank = int(np.argsort(np.argsort(pk.pts_s, kind="stable"), kind="stable")[mid])
    before = [k for k, i in enumerate(idx) if i < mid_rank - 3]  # B-frames just before it reference it
    assert before and outs[0][0][: len(before)] == clean[: len(before)]


@pytest.mark.skipif(not SHARED_VIDEOS.is_dir(), reason="shared videos absent")
@pytest.mark.parametrize("name", ["ytb_XwB-dkS5BVM.mp4", "tc_nasa_13013.mp4", "tc_h264_10bits.mp4"])
def test_shared_b_frame_videos(name):
    path = SHARED_VIDEOS / name
    nonref, n = _nonref_ranks(path)
    full, _ = _read(path, 1, with_mvs=True, with_residual=True, with_coding_cost=True)
    idx = np.unique(np.linspace(0, n - 1, 24).astype(int)).tolist()
    for t in (1, 2):
        got, st = _read(path, t, idx, with_mvs=True, with_residual=True, with_coding_cost=True)
        assert got == [full[i] for i in idx]
        assert st["skipped_frames"] > 0 and not st["skip_fallback"]
