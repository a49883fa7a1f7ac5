"""Known motion on generated libx264 videos (fixtures in conftest.py): the vectors, motion field and residual
that ov2 reports must match what the construction of the video implies.

Sign convention (FFmpeg's AVMotionVector): src = dst + motion / motion_scale, so content that moves by +d
pixels per frame has L0 motion -d (it came from -d in the previous picture).
"""
from __future__ import annotations

import numpy as np
import pytest

ov2 = pytest.importorskip("ov2_tokenizer")
pytest.importorskip("av")

from _codec_util import block_cells, h264_packet_references, h264_residual, h264_residual_p, pyav_frames  # noqa: E402


def _frames(clip, **products):
    r = ov2.open_video(clip.path, num_threads=1)
    frames = list(r.frames(**products))
    assert len(frames) == clip.num_frames
    return frames


def test_single_reference_clip_is_ippp(int_motion_clip):
    types = [f.pict_type for f in _frames(int_motion_clip, with_luma=False)]
    assert types == ["I"] + ["P"] * (int_motion_clip.num_frames - 1)


def test_integer_translation_vectors_are_exact(int_motion_clip):
    """Every partition lying inside the moving block has motion exactly -velocity (in the codec's units), and the
    dense field says the same in pixels."""
    clip = int_motion_clip
    vx, vy = clip.truth["velocity"]
    (sx, sy), size = clip.truth["start"], clip.truth["block"]
    checked = 0
    for f in _frames(clip, with_mvs=True, with_luma=False)[1:]:
        x0, y0 = sx + vx * f.index, sy + vy * f.index
        rows = block_cells(f.motion_vectors, x0, y0, x0 + size, y0 + size)
        assert len(rows) > 0, f"frame {f.index}: no partition inside the block"
        np.testing.assert_array_equal(rows[:, 7], -vx * rows[:, 9], err_msg=f"frame {f.index} motion_x")
        np.testing.assert_array_equal(rows[:, 8], -vy * rows[:, 9], err_msg=f"frame {f.index} motion_y")
        # src = dst + motion / scale
        np.testing.assert_array_equal(rows[:, 3], rows[:, 5] - vx)
        np.testing.assert_array_equal(rows[:, 4], rows[:, 6] - vy)
        # The dense field carries the same motion, in pixels, on the cells of those partitions.
        for row in rows:
            w, h, dx, dy = (int(v) for v in row[[1, 2, 5, 6]])
            cells = f.mv_field[(dy - h // 2) // 4 : (dy + h // 2) // 4, (dx - w // 2) // 4 : (dx + w // 2) // 4]
            assert cells.size and np.all(cells[..., 0] == -vx) and np.all(cells[..., 1] == -vy), f"frame {f.index}"
            assert not f.intra_mask[(dy - h // 2) // 4 : (dy + h // 2) // 4, (dx - w // 2) // 4 : (dx + w // 2) // 4].any()
        checked += len(rows)
    assert checked >= 10 * (clip.num_frames - 1)


@pytest.mark.parametrize("clip_name", ["qpel_clip_a", "qpel_clip_b"])
def test_quarter_pel_translation_within_quarter_pel(clip_name, request):
    """A band-limited texture translated by a known sub-pixel displacement per frame: >= 90% of the partitions
    inside the block carry a vector within 1/4 pel of -displacement (each component)."""
    clip = request.getfixturevalue(clip_name)
    vx, vy = clip.truth["velocity"]
    size = clip.truth["size"]
    good = total = 0
    for f in _frames(clip, with_mvs=True, with_luma=False)[1:]:
        x0, y0 = clip.truth["pos"][f.index]
        rows = block_cells(f.motion_vectors, x0 + 2, y0 + 2, x0 + size - 2, y0 + size - 2)
        ex = rows[:, 7] / rows[:, 9] + vx
        ey = rows[:, 8] / rows[:, 9] + vy
        good += int(np.count_nonzero((np.abs(ex) <= 0.25) & (np.abs(ey) <= 0.25)))
        total += len(rows)
    assert total >= 10 * (clip.num_frames - 1)
    assert good >= 0.9 * total, f"{good}/{total} partitions within 1/4 pel of ({-vx}, {-vy})"


def test_quarter_pel_all_sub_sample_positions(qpel_grid_clip):
    """16 blocks moving by (c/4, r/4): vectors within 1/4 pel for >= 90% of partitions of every block, and the
    stream really uses all 16 quarter-sample positions (so the residual test below exercises each of them)."""
    clip = qpel_grid_clip
    frames = _frames(clip, with_mvs=True, with_luma=False)[1:]
    positions = set()
    for k, b in enumerate(clip.truth["blocks"]):
        vx, vy = b["velocity"]
        s = b["size"]
        good = total = 0
        for f in frames:
            x0, y0 = b["pos"][f.index]
            rows = block_cells(f.motion_vectors, x0 + 2, y0 + 2, x0 + s - 2, y0 + s - 2)
            ex, ey = rows[:, 7] / rows[:, 9] + vx, rows[:, 8] / rows[:, 9] + vy
            good += int(np.count_nonzero((np.abs(ex) <= 0.25) & (np.abs(ey) <= 0.25)))
            total += len(rows)
            positions |= set(zip((rows[:, 7] & 3).tolist(), (rows[:, 8] & 3).tolist()))
        assert total > 0 and good >= 0.9 * total, f"block {k} velocity {b['velocity']}: {good}/{total}"
    assert len(positions) == 16, sorted(positions)


@pytest.mark.parametrize("clip_name", ["int_motion_clip", "qpel_clip_a", "qpel_clip_b"])
def test_residual_small_inside_moving_block(clip_name, request):
    """ref=1, no B-frames, no weighted prediction, no loop filter, qp 8: the motion-compensated residual inside
    the moving textured block (4 px margin, so that no 4x4 cell straddles its edge) stays <= 2 grey levels."""
    clip = request.getfixturevalue(clip_name)
    frames = _frames(clip, with_mvs=True, with_residual=True, with_luma=False)
    assert not np.any(frames[0].residual)  # I-frame
    size = clip.truth.get("block", clip.truth.get("size"))
    for f in frames[1:]:
        if "pos" in clip.truth:
            x0, y0 = clip.truth["pos"][f.index]
        else:
            x0 = clip.truth["start"][0] + clip.truth["velocity"][0] * f.index
            y0 = clip.truth["start"][1] + clip.truth["velocity"][1] * f.index
        inner = f.residual[y0 + 4 : y0 + size - 4, x0 + 4 : x0 + size - 4]
        assert f.residual.dtype == np.int16 and f.residual.shape == (clip.height, clip.width)
        assert np.abs(inner.astype(np.float64)).mean() <= 2.0, f"frame {f.index}"


def test_new_object_large_residual_exactly_where_it_appears(int_motion_clip):
    clip = int_motion_clip
    t = clip.truth
    k, (ox, oy), s = t["new_at"], t["new_xy"], t["new_size"]
    frames = _frames(clip, with_mvs=True, with_residual=True, with_luma=False)
    H, W = clip.height, clip.width
    obj = np.zeros((H, W), bool)
    obj[oy : oy + s, ox : ox + s] = True
    res = np.abs(frames[k].residual.astype(np.float64))
    assert frames[k].pict_type == "P"
    assert res[obj].mean() >= 20, res[obj].mean()
    assert res[~obj].mean() <= 2.0, res[~obj].mean()
    # Per 16x16 macroblock: every macroblock inside the object is large, every large one touches the object.
    mb = res.reshape(H // 16, 16, W // 16, 16).mean(axis=(1, 3))
    touches = obj.reshape(H // 16, 16, W // 16, 16).any(axis=(1, 3))
    inside = obj.reshape(H // 16, 16, W // 16, 16).all(axis=(1, 3))
    assert inside.any()
    assert np.all(mb[inside] >= 20), mb[inside]
    large = mb >= 20
    assert np.all(touches[large]), np.argwhere(large & ~touches)
    # Before it appears, and once it is there (static), that region is predicted well.
    for j in (k - 1, k + 1):
        assert np.abs(frames[j].residual[obj].astype(np.float64)).mean() <= 2.0, f"frame {j}"


@pytest.mark.parametrize("clip_name", ["int_motion_clip", "qpel_clip_a", "qpel_grid_clip"])
def test_residual_equals_independent_h264_prediction(clip_name, request):
    """With one reference, no weighting and no loop filter the prediction is exact: ov2's residual equals
    decoded luma (PyAV) minus an independent numpy implementation of H.264's luma interpolation driven by
    PyAV's exported vectors, pixel for pixel, on every P-frame."""
    clip = request.getfixturevalue(clip_name)
    r = ov2.open_video(clip.path, num_threads=1)
    prev = None
    n = 0
    for f, ref in zip(r.frames(with_residual=True), pyav_frames(clip.path, r.info.stream_index)):
        assert np.array_equal(f.luma, ref["luma"])
        if f.pict_type == "P":
            expect = h264_residual_p(ref["luma"], prev, ref["rows"])
            if not np.array_equal(f.residual, expect):
                bad = np.argwhere(f.residual != expect)
                y, x = bad[0]
                pytest.fail(f"frame {f.index}: {len(bad)} pixels differ, first at (y={y}, x={x}): "
                            f"ov2 {f.residual[y, x]} expected {expect[y, x]}")
            n += 1
        prev = ref["luma"]
    assert n == clip.num_frames - 1


def _bpyramid_expectations(clip):
    """Per frame (presentation order): PyAV's luma and rows, and the residual docs/residual.md defines, with the
    references picked by its rule from the packets' decode order and ``nal_ref_idc`` (read independently of ov2):
    L0 the nearest reference before the frame in presentation order, L1 the nearest after it, among the
    references decoded before it, within its closed GOP."""
    import av

    with av.open(str(clip.path)) as c:
        tb = float(c.streams.video[0].time_base)
    sent = h264_packet_references(clip.path, 0)
    frames = list(pyav_frames(clip.path, 0))
    by_pts = {round(f["pts_s"] / tb): f for f in frames}
    out, facts = [], {"bi": 0, "p_after_ref_b": 0}
    for f in frames:
        pts = round(f["pts_s"] / tb)
        order, _ = sent[pts]
        if f["pict_type"] == "I":
            out.append((f, np.zeros(f["luma"].shape, np.int16)))
            continue
        gop = max(p for p, (o, _r) in sent.items() if by_pts[p]["pict_type"] == "I" and o <= order)
        refs = [p for p, (o, r) in sent.items() if r and o < order and p >= gop]
        before = [p for p in refs if p < pts]
        after = [p for p in refs if p > pts]
        r0 = by_pts[max(before)]["luma"] if before else None
        r1 = by_pts[min(after)]["luma"] if after else None
        if f["pict_type"] == "P" and any(p < pts and p > max(before) and sent[p][1] for p in sent if p >= gop):
            facts["p_after_ref_b"] += 1  # a reference B-picture shown between its reference and it
        if r0 is not None and r1 is not None and np.any(f["rows"][:, 0] > 0):
            facts["bi"] += 1
        out.append((f, h264_residual(f["luma"], r0, r1, f["rows"])))
    return out, facts


def test_bpyramid_residual_equals_independent_prediction(bpyramid_clip):
    """B-frames predict from both references, and a P-picture shown after a reference B-picture (decoded after
    it) predicts from the reference before that B: on a B-pyramid stream ov2's residual equals the independent
    numpy prediction of every frame, pixel for pixel."""
    expect, facts = _bpyramid_expectations(bpyramid_clip)
    assert facts["bi"] >= 8 and facts["p_after_ref_b"] >= 3, facts  # the clip exercises both rules
    r = ov2.open_video(bpyramid_clip.path, num_threads=1)
    frames = list(r.frames(with_residual=True, with_mvs=True))
    assert len(frames) == len(expect) == bpyramid_clip.num_frames
    for f, (ref, want) in zip(frames, expect):
        assert f.pict_type == ref["pict_type"] and np.array_equal(f.luma, ref["luma"])
        np.testing.assert_array_equal(f.motion_vectors, ref["rows"])
        if not np.array_equal(f.residual, want):
            bad = np.argwhere(f.residual != want)
            y, x = bad[0]
            pytest.fail(f"frame {f.index} ({f.pict_type}): {len(bad)} pixels differ, first at (y={y}, x={x}): "
                        f"ov2 {f.residual[y, x]} expected {want[y, x]}")


def test_bpyramid_residual_is_small_inside_the_moving_block(bpyramid_clip):
    """With the right references the prediction is good on every inter frame, B and P alike."""
    clip = bpyramid_clip
    size = clip.truth["size"]
    for f in ov2.open_video(clip.path, num_threads=1).frames(with_luma=False, with_residual=True):
        if f.pict_type == "I":
            continue
        x0, y0 = clip.truth["pos"][f.index]
        inner = np.abs(f.residual[y0 + 8 : y0 + size - 8, x0 + 8 : x0 + size - 8].astype(np.float64))
        assert inner.mean() <= 2.0, (f.index, f.pict_type, inner.mean())


@pytest.mark.parametrize("pick", ["b_frames", "last_is_b", "p_after_ref_b"])
def test_bpyramid_sparse_reads_equal_the_full_read(bpyramid_clip, pick):
    """A requested B-picture waits for its L1 reference even when that picture is not requested (and when it is
    the last one requested); num_threads 1, 2 and 4 give the full read's products."""
    path = bpyramid_clip.path
    full = list(ov2.open_video(path, num_threads=1).frames(with_residual=True, with_mvs=True, with_luma=False))
    types = [f.pict_type for f in full]
    if pick == "b_frames":
        idx = [i for i, t in enumerate(types) if t == "B"]
    elif pick == "last_is_b":
        idx = [i for i, t in enumerate(types) if t == "B"][:2]  # the first B shows before the P it predicts from
    else:
        idx = [i for i, t in enumerate(types) if t == "P"][1:3]
    for threads in (1, 2, 4):
        got = list(ov2.open_video(path, num_threads=threads).frames(indices=idx, with_residual=True, with_mvs=True,
                                                                    with_luma=False))
        assert [f.index for f in got] == idx
        for f in got:
            np.testing.assert_array_equal(f.residual, full[f.index].residual, err_msg=f"frame {f.index} {threads}")
            np.testing.assert_array_equal(f.motion_vectors, full[f.index].motion_vectors)


def test_bframes_l1_vectors_and_monotonic_pts(bframe_clip):
    clip = bframe_clip
    r = ov2.open_video(clip.path, num_threads=1)
    assert r.info.has_b_frames
    frames = list(r.frames(with_mvs=True, with_luma=False))
    assert len(frames) == clip.num_frames
    assert [f.index for f in frames] == list(range(clip.num_frames))
    pts = np.array([f.pts_s for f in frames])
    assert np.all(np.diff(pts) > 0), pts
    np.testing.assert_allclose(pts - pts[0], np.arange(clip.num_frames) / clip.fps, atol=1e-6)
    types = [f.pict_type for f in frames]
    assert "B" in types and "P" in types and types[0] == "I"
    l1_frames = 0
    for f in frames:
        src = f.motion_vectors[:, 0]
        if f.pict_type in ("I", "P"):
            assert not np.any(src > 0), f"frame {f.index} ({f.pict_type}) has L1 vectors"
            assert not np.any(f.mv_field[..., 2:]), f"frame {f.index} L1 field not zero"
        if f.pict_type == "B" and np.any(src > 0):
            l1_frames += 1
            # The L1 half of the field is filled where L1 rows are.
            assert np.any(f.mv_field[..., 2:] != 0) or np.all(f.motion_vectors[src > 0][:, 7:9] == 0)
    assert l1_frames >= 1
    # The moving block's L1 vectors point forward (+velocity direction): content at dst is found later at dst + d.
    vx, vy = clip.truth["velocity"]
    fwd = 0
    for f in frames:
        if f.pict_type != "B":
            continue
        x0, y0 = 20 + vx * f.index, 40 + vy * f.index
        rows = block_cells(f.motion_vectors, x0, y0, x0 + 48, y0 + 48, source_sign=1)
        fwd += int(np.count_nonzero((rows[:, 7] > 0)))
    assert fwd > 0
