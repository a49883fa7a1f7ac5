"""Per-frame products: shapes and dtypes, the dense field and intra mask against an independent densification of
the exported rows, residual zero on I-frames, coding-cost range and semantics (DESIGN §4.4), and ``indices``."""
from __future__ import annotations

import numpy as np
import pytest

ov2 = pytest.importorskip("ov2_tokenizer")

from _codec_util import densify, field_from_dense, frame_digest, shared_video_paths  # noqa: E402

ALL = dict(with_mvs=True, with_residual=True, with_coding_cost=True)


def _check_frame(f, H, W):
    ch, cw = (H + 3) // 4, (W + 3) // 4
    assert f.luma.shape == (H, W) and f.luma.dtype == np.uint8
    assert f.width == W and f.height == H
    assert f.motion_vectors.dtype == np.int32 and f.motion_vectors.shape[1:] == (10,)
    assert f.mv_field.shape == (ch, cw, 4) and f.mv_field.dtype == np.float32
    assert f.intra_mask.shape == (ch, cw) and f.intra_mask.dtype == bool
    assert f.residual.shape == (H, W) and f.residual.dtype == np.int16
    assert f.coding_cost.shape == (ch, cw) and f.coding_cost.dtype == np.float32
    assert np.all(np.isfinite(f.coding_cost))
    assert f.coding_cost.min() >= 0.0 and f.coding_cost.max() <= 1.0
    assert f.pict_type in ("I", "P", "B")


def _field_semantics(f):
    H, W = f.luma.shape
    dense = densify(f.motion_vectors, H, W)
    field, intra = field_from_dense(*dense)
    np.testing.assert_array_equal(f.mv_field, field, err_msg=f"frame {f.index} mv_field")
    if f.pict_type == "I":
        assert f.intra_mask.all(), f"frame {f.index}: I-frame cells must all be intra"
        assert not np.any(f.residual), f"frame {f.index}: I-frame residual must be 0"
    else:
        np.testing.assert_array_equal(f.intra_mask, intra, err_msg=f"frame {f.index} intra_mask")
    # A cell flagged intra has no motion at all.
    assert not np.any(f.mv_field[f.intra_mask])


def _sample_videos():
    """Short real videos with different features (B-frames, cropping, 10-bit, full range, MPEG-4)."""
    keep = {"tc_h264_10bits.mp4", "tc_bt709_full_range.mp4", "ytb_XwB-dkS5BVM.mp4", "mvx_mpeg4_part2_720p.mp4"}
    vids = [p for p in shared_video_paths() if p.name in keep]
    return [pytest.param(p, id=p.name) for p in vids] or [
        pytest.param(None, marks=pytest.mark.skip(reason="../shared/videos absent"))]


@pytest.mark.parametrize("path", _sample_videos())
def test_products_on_real_videos(path):
    r = ov2.open_video(path, num_threads=1)
    H, W = r.info.height, r.info.width
    n = 0
    for f in r.frames(range(0, 10_000, 7), **ALL):  # every 7th frame keeps this quick on 720p
        _check_frame(f, H, W)
        _field_semantics(f)
        n += 1
    assert n > 0


@pytest.mark.parametrize("clip_name", ["int_motion_clip", "bframe_clip"])
def test_products_on_generated_clips(clip_name, request):
    clip = request.getfixturevalue(clip_name)
    r = ov2.open_video(clip.path, num_threads=1)
    for f in r.frames(**ALL):
        _check_frame(f, clip.height, clip.width)
        _field_semantics(f)


def test_coding_cost_semantics(int_motion_clip):
    """Constant qp: on the I-frame every cell is intra with the same QP, so the cost is uniform (= 1 after the
    per-frame normalisation). On P-frames the cost of inter cells never decreases with the number of motion
    partitions of their macroblock (counted independently from the exported rows), intra cells share one cost,
    and the frame where a new object appears costs most there."""
    clip = int_motion_clip
    r = ov2.open_video(clip.path, num_threads=1)
    frames = list(r.frames(with_mvs=True, with_coding_cost=True, with_luma=False))
    first = frames[0]
    assert first.pict_type == "I"
    assert np.all(first.coding_cost == first.coding_cost.flat[0]) and first.coding_cost.flat[0] == 1.0
    for f in frames[1:]:
        H, W = clip.height, clip.width
        mbh, mbw = H // 16, W // 16
        parts = np.zeros((mbh, mbw), int)
        seen = set()
        for row in f.motion_vectors:
            w, h, dx, dy = (int(v) for v in row[[1, 2, 5, 6]])
            key = (dx, dy, w, h)
            if key in seen:
                continue
            seen.add(key)
            parts[(dy - h // 2) // 16, (dx - w // 2) // 16] += 1
        cell_parts = np.repeat(np.repeat(parts, 4, axis=0), 4, axis=1)
        inter = ~f.intra_mask
        cost = f.coding_cost
        # monotone: a macroblock with more partitions never costs less (constant QP)
        order = np.argsort(cell_parts[inter], kind="stable")
        c_sorted, p_sorted = cost[inter][order], cell_parts[inter][order]
        for a, b in zip(np.unique(p_sorted)[:-1], np.unique(p_sorted)[1:]):
            assert c_sorted[p_sorted == a].max() <= c_sorted[p_sorted == b].min(), f"frame {f.index}"
        # equal partitions, equal cost
        for p in np.unique(p_sorted):
            assert np.ptp(c_sorted[p_sorted == p]) == 0, f"frame {f.index}"
        if f.intra_mask.any():
            assert np.ptp(cost[f.intra_mask]) == 0
    k = clip.truth["new_at"]
    (ox, oy), s = clip.truth["new_xy"], clip.truth["new_size"]
    c = frames[k].coding_cost
    obj = c[oy // 4 : (oy + s) // 4, ox // 4 : (ox + s) // 4]
    rest = np.ones_like(c, bool)
    rest[oy // 4 : (oy + s) // 4, ox // 4 : (ox + s) // 4] = False
    assert obj.mean() > np.median(c[rest]), (obj.mean(), np.median(c[rest]))



def _expected_coding_cost(f, intra_cost: float = 8.0) -> np.ndarray:
    """DESIGN §4.4 without QP scaling, from the exported rows alone: a cell with a vector holds the number of exported
    blocks whose top-left corner lies in its macroblock (the larger count of the two lists), an intra cell the intra
    cost; divided by the frame's 95th percentile (numpy's linear rule, evaluated as the core does: float32 order
    statistics, their difference in float32, the interpolation in float64) and clipped to 1."""
    H, W = f.height, f.width
    ch, cw, mbh, mbw = (H + 3) // 4, (W + 3) // 4, (H + 15) // 16, (W + 15) // 16
    counts = np.zeros((2, mbh, mbw), np.int64)
    for row in f.motion_vectors if f.motion_vectors is not None else []:
        src, w, h, dx, dy, scale = (int(row[i]) for i in (0, 1, 2, 5, 6, 9))
        x0, y0 = dx - w // 2, dy - h // 2
        if w <= 0 or h <= 0 or scale <= 0 or x0 < 0 or y0 < 0 or x0 // 16 >= mbw or y0 // 16 >= mbh:
            continue
        counts[1 if src > 0 else 0, y0 // 16, x0 // 16] += 1
    parts = np.minimum(counts.max(axis=0), 255)
    cell_parts = np.repeat(np.repeat(parts, 4, axis=0), 4, axis=1)[:ch, :cw]
    has = f.mv_flags != 0 if f.pict_type != "I" else np.zeros((ch, cw), bool)
    raw = np.where(has, cell_parts, intra_cost).astype(np.float32)
    v = np.sort(raw, axis=None)
    pos = 0.95 * (v.size - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, v.size - 1)
    a, b = v[lo], v[hi]
    p95 = np.float32(float(a) + float(np.float32(b - a)) * (pos - lo))
    if not p95 > 0:
        p95 = raw.max()
    if not p95 > 0:
        return np.zeros_like(raw)
    return np.minimum(np.float32(1.0), raw / p95)


def test_coding_cost_normalisation_is_exact(int_motion_clip):
    """Without QP scaling (constant QP: H.264 exports per-block QP, every delta 0) the per-frame 95th-percentile
    normalisation equals an independent numpy evaluation bit for bit on every frame, I-frame included (the core counts
    the unscaled values instead of selecting among them). Streams whose blocks change QP (MPEG-4 part 2's per-MB
    qscale, H.264 with adaptive quantisation) keep the selection, held bit-identical by the determinism tests."""
    r = ov2.open_video(int_motion_clip.path, num_threads=2)
    n = 0
    for f in r.frames(with_mvs=True, with_coding_cost=True, with_luma=False):
        want = _expected_coding_cost(f)
        assert np.array_equal(f.coding_cost, want), (f.index, np.abs(f.coding_cost - want).max())
        n += 1
    assert n == int_motion_clip.num_frames

def test_indices_select_exactly_those_frames(bframe_clip):
    full = [frame_digest(f) for f in ov2.open_video(bframe_clip.path, num_threads=1).frames(**ALL)]
    n = len(full)
    for idx in ([0], [n - 1], [5, 1, 17, 17, 3], list(range(0, n, 4)), np.array([2, 29], dtype=np.int32)):
        r = ov2.open_video(bframe_clip.path, num_threads=1)
        got = list(r.frames(idx, **ALL))
        want = sorted(set(int(i) for i in idx))
        assert [f.index for f in got] == want
        assert [frame_digest(f) for f in got] == [full[i] for i in want]
    # Out-of-range indices select nothing beyond the end.
    got = list(ov2.open_video(bframe_clip.path, num_threads=1).frames([3, n + 5], **ALL))
    assert [f.index for f in got] == [3]
    assert list(ov2.open_video(bframe_clip.path, num_threads=1).frames([], **ALL)) == []


def test_products_are_opt_in(int_motion_clip):
    f = next(iter(ov2.open_video(int_motion_clip.path).frames([1])))
    assert f.luma is not None
    assert f.motion_vectors is None and f.mv_field is None and f.residual is None and f.coding_cost is None
    f = next(iter(ov2.open_video(int_motion_clip.path).frames([1], with_luma=False, with_mvs=True)))
    assert f.luma is None and f.motion_vectors is not None and f.residual is None


def test_reader_is_reusable(int_motion_clip):
    r = ov2.open_video(int_motion_clip.path, num_threads=2)
    a = [frame_digest(f) for f in r.frames(**ALL)]
    b = [frame_digest(f) for f in r.frames(**ALL)]
    assert a == b
    assert r.info.num_frames == len(a) == int_motion_clip.num_frames


def test_abandoned_iterators_do_not_hang(bframe_clip):
    """Stopping early (break) in sequential and parallel mode releases the decoder threads."""
    for threads in (1, 4):
        r = ov2.open_video(bframe_clip.path, num_threads=threads)
        for _ in range(20):
            it = r.frames(**ALL)
            next(it)
            it.close()
        first = next(iter(r.frames([25], **ALL)))
        assert first.index == 25


def test_dense_motion_on_access_equals_decoder_made(bframe_clip):
    """with_mvs alone hands over the rows; the dense field, intra mask and flags made on first access equal the
    ones the decoder threads make when a residual is requested too (B-frames: L0 and L1 cells)."""
    path = str(bframe_clip.path)
    eager = list(ov2.open_video(path).frames(with_luma=False, with_mvs=True, with_residual=True))
    lazy = list(ov2.open_video(path).frames(with_luma=False, with_mvs=True))
    assert len(eager) == len(lazy) > 0
    assert any(f.pict_type == "B" for f in lazy) and any(f.pict_type == "I" for f in lazy)
    for e, f in zip(eager, lazy):
        assert f._mv_field is None  # nothing dense was made before access
        np.testing.assert_array_equal(f.motion_vectors, e.motion_vectors)
        np.testing.assert_array_equal(f.mv_field, e.mv_field)
        np.testing.assert_array_equal(f.intra_mask, e.intra_mask)
        np.testing.assert_array_equal(f.mv_flags, e.mv_flags)
        assert f.intra_mask.dtype == bool and f.mv_flags.dtype == np.uint8


def test_densify_motion_rejects_bad_rows():
    from ov2_tokenizer._native import core

    with pytest.raises(ov2.errors.ConfigError):
        core.densify_motion(np.zeros((3, 9), np.int32), 16, 16)
    with pytest.raises(ov2.errors.ConfigError):
        core.densify_motion(np.zeros((0, 10), np.int32), 0, 16)
    field, mask, flags = core.densify_motion(np.zeros((0, 10), np.int32), 17, 9, True)
    assert field.shape == (3, 5, 4) and mask.all() and not flags.any()
    # Any picture the reader delivers: at most 2^26 pixels of any aspect (a 92000 x 64 H.264 stream decodes; its
    # frames' mv_field used to raise ConfigError on access: fuzz_tokenize_crash-076e40b9...)
    field, _, _ = core.densify_motion(np.zeros((0, 10), np.int32), 92000, 64)
    assert field.shape == (16, 23000, 4)
    with pytest.raises(ov2.errors.ConfigError, match="2\\^26"):
        core.densify_motion(np.zeros((0, 10), np.int32), 1 << 14, (1 << 12) + 1)
