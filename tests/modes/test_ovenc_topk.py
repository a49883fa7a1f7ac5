"""``ovenc_topk`` (OneVision-Encoder codec patchification, DESIGN §5.8): released row format, slot frames,
mosaics, top-K rule, determinism, selection on known motion, and every shared video."""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest

from _modes_util import SHARED_VIDEOS, shared_video_paths

ov2 = pytest.importorskip("ov2_tokenizer")
from ov2_tokenizer import ovenc_topk as O  # noqa: E402

YTB = ["ytb_XwB-dkS5BVM.mp4", "ytb_YVQwAEKZpaU.mp4"]
G, P, S = 36, 16, 576


@functools.lru_cache(maxsize=None)
def ovenc(path: str, **kw):
    return ov2.tokenize_video(path, mode="ovenc_topk", **kw)


def ytb_path(name: str) -> Path:
    p = SHARED_VIDEOS / name
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return p


def decoded_count(path) -> int:
    return sum(1 for _ in ov2.open_video(path).frames(with_luma=False))


# --------------------------------------------------------------------------------------------- released format
@pytest.mark.parametrize("name", YTB)
def test_ytb_released_format(name):
    path = ytb_path(name)
    vt = ovenc(str(path))
    rows = vt.pos_thw.numpy()
    # exactly 8 x 1,296 rows: slot 0 whole (1,296, raster) then 9,072 top-K rows, time-major then raster
    assert rows.dtype == np.int32 and rows.shape == (8 * 1296, 3)
    hh, ww = np.divmod(np.arange(1296), G)
    assert np.array_equal(rows[:1296], np.stack([np.zeros(1296), hh, ww], 1))
    rest = rows[1296:]
    key = rest[:, 0].astype(np.int64) * 1296 + rest[:, 1] * G + rest[:, 2]
    assert np.all(np.diff(key) > 0), "top-K rows must be strictly time-major then raster, without repeats"
    assert rest[:, 0].min() >= 1 and rest[:, 0].max() <= 63
    # 360x640 portrait: letterbox 576x324 at left 126 -> whole-patch columns 8..27 only
    lb = vt.meta["letterbox"]
    assert (lb["hn"], lb["wn"], lb["top"], lb["left"]) == (576, 324, 0, 126)
    assert rest[:, 2].min() >= 8 and rest[:, 2].max() <= 27 and vt.meta["num_valid_cells"] == 720
    # slot -> frame ids: floor(linspace) over the decoded frame count
    n = decoded_count(path)
    slots = np.floor(np.linspace(0, n - 1, 64)).astype(np.int64)
    assert vt.meta["slot_frames"] == slots.tolist()
    assert np.array_equal(vt.frame.numpy(), slots[rows[:, 0]])
    # records: canvases, cells, patch size, kinds
    assert tuple(vt.canvases.shape) == (8, 3, S, S) and vt.canvases.dtype.is_floating_point is False
    assert vt.canvas_kind.tolist() == [2] * 8
    assert vt.meta["patch_size"] == 16 and vt.meta["merge_size"] == 1
    j = np.arange(rows.shape[0])
    assert np.array_equal(vt.canvas.numpy(), j // 1296)
    assert np.array_equal(vt.can_hw.numpy(), np.stack(np.divmod(j % 1296, G), 1))
    assert np.array_equal(vt.src_hw.numpy(), rows[:, 1:])
    assert vt.patches().shape == (rows.shape[0], 3 * 16 * 16)


@pytest.mark.parametrize("name", YTB)
def test_ytb_mosaics_hold_letterboxed_patches(name):
    path = ytb_path(name)
    vt = ovenc(str(path))
    rows = vt.pos_thw.numpy()
    slots = vt.meta["slot_frames"]
    rng = np.random.default_rng(0)
    sample = np.concatenate([[0, 1295, 1296, rows.shape[0] - 1], rng.choice(rows.shape[0], 60, replace=False)])
    need = sorted({slots[rows[n, 0]] for n in sample})
    squares = {}
    ts = {}
    for f in ov2.open_video(path).frames(indices=need, with_luma=False, with_rgb=True, rgb_size=(576, 324)):
        sq = np.zeros((S, S, 3), np.uint8)
        sq[:, 126:126 + 324] = f.rgb  # letterbox placed by hand: 576x324 at column 126
        squares[f.index] = sq
        ts[f.index] = f.pts_s
    canv = vt.canvases.numpy()
    for n in sample:
        t, h, w = rows[n]
        m, cell = divmod(int(n), 1296)
        cy, cx = divmod(cell, G)
        got = canv[m, :, cy * P:(cy + 1) * P, cx * P:(cx + 1) * P].transpose(1, 2, 0)
        want = squares[slots[t]][h * P:(h + 1) * P, w * P:(w + 1) * P]
        assert np.array_equal(got, want), f"row {n} (t={t}, h={h}, w={w})"
        assert vt.t_s[n].item() == pytest.approx(ts[slots[t]], abs=1e-4)
    # mosaic 0 is slot 0's whole letterboxed frame, padding black
    assert np.array_equal(canv[0].transpose(1, 2, 0), squares[slots[0]])
    assert canv[0][:, :, :126].max() == 0


def test_ytb_deterministic_across_runs_and_threads():
    path = str(ytb_path(YTB[0]))
    a = ov2.tokenize_video(path, mode="ovenc_topk", num_threads=1)
    b = ov2.tokenize_video(path, mode="ovenc_topk", num_threads=2)
    c = ovenc(path)
    assert a.equal(b) and a.equal(c)


# ------------------------------------------------------------------------------------------------ algorithms
def test_slot_frame_ids_floor_linspace():
    assert O.slot_frame_ids(487).tolist() == np.floor(np.linspace(0, 486, 64)).astype(int).tolist()
    assert O.slot_frame_ids(487)[-1] == 486 and O.slot_frame_ids(487)[1] == 7  # 486/63 = 7.71 -> 7 (floor)
    ids = O.slot_frame_ids(10)
    assert ids.size == 64 and ids[0] == 0 and ids[-1] == 9 and np.all(np.diff(ids) >= 0)


def test_letterbox_geometry_and_valid_cells():
    lb = O.letterbox_geometry(720, 1280)
    assert (lb.hn, lb.wn, lb.top, lb.left) == (324, 576, 126, 0)
    v = O.valid_cell_mask(lb, 16)
    assert v.sum() == 20 * 36 and v[8].all() and not v[7].any() and v[27].all() and not v[28].any()
    sq = O.letterbox_geometry(128, 128)
    assert (sq.hn, sq.wn, sq.top, sq.left) == (576, 576, 0, 0) and O.valid_cell_mask(sq).all()


@pytest.mark.parametrize("seed", range(6))
def test_select_rows_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    t, g = 7, 6
    # coarse values so that ties are frequent
    scores = rng.integers(0, 4, size=(t, g * g)).astype(np.float64)
    valid = np.ones((g, g), bool)
    valid[:, :1] = False
    total = g * g + int(rng.integers(1, (t - 1) * valid.sum()))
    rows = O.select_rows(scores, valid, total)
    cand = [(-scores[tt, h * g + w], tt, h, w) for tt in range(1, t) for h in range(g) for w in range(g) if valid[h, w]]
    best = sorted(cand)[: total - g * g]
    want = sorted((tt, h, w) for _, tt, h, w in best)
    assert rows[: g * g, 0].max() == 0
    assert [tuple(r) for r in rows[g * g:].tolist()] == want


def test_select_rows_pads_with_last_row_when_short():
    scores = np.ones((2, 4))
    valid = np.array([[True, False], [False, False]])
    rows = O.select_rows(scores, valid, 8)
    assert rows.shape == (8, 3)
    assert rows[4].tolist() == [1, 0, 0] and (rows[5:] == rows[4]).all()


def test_patch_summer_equals_pixel_domain_letterbox():
    rng = np.random.default_rng(3)
    for h, w in ((640, 360), (101, 230), (128, 128)):
        lb = O.letterbox_geometry(h, w)
        r = rng.random((h, w), dtype=np.float32)
        m = rng.random((-(-h // 4), -(-w // 4)), dtype=np.float32)
        got = O.PatchSummer(h, w, lb).scores(m, r)
        want = O.patch_scores(O.letterbox_map(m, r, lb, h, w))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_fused_saliency_percentiles():
    f = ov2.video.Frame(index=1, pts_s=0.0, pict_type="P", keyframe=False, luma=None, width=8, height=8)
    res = np.arange(64, dtype=np.int16).reshape(8, 8) - 32
    f.residual = res
    f.mv_field = np.zeros((2, 2, 4), np.float32)
    f.mv_field[0, 0, 0] = 8.0
    f.mv_flags = np.ones((2, 2), np.uint8)
    mn, rn = O.fused_saliency(f)
    a = np.percentile(np.abs(res.astype(np.float64)), 95)
    np.testing.assert_allclose(rn, np.clip(np.abs(res) / a, 0, 1), rtol=1e-6)
    # median compensation per component: medians are 0 -> |v| / p95(|v|)
    mag = np.array([[8.0, 0], [0, 0]])
    np.testing.assert_allclose(mn, np.clip(mag / max(np.percentile(mag, 95), 1e-6), 0, 1), rtol=1e-6)
    f.pict_type = "I"
    assert O.fused_saliency(f) == (None, None)


def _ref_scores(h, w, mv_field, mv_flags, residual, pict="P"):
    f = ov2.video.Frame(index=1, pts_s=0.0, pict_type=pict, keyframe=False, luma=None, width=w, height=h)
    f.mv_field, f.mv_flags, f.residual = mv_field, mv_flags, residual
    return O.PatchSummer(h, w, O.letterbox_geometry(h, w)).scores(*O.fused_saliency(f))


@pytest.mark.parametrize("h,w", [(720, 1280), (360, 640), (101, 230), (128, 128), (17, 9), (600, 37)])
def test_native_patch_scores_equal_numpy_reference(h, w):
    """csrc/tokenize/ovenc_saliency.cpp (the production path, on the product threads) computes the numpy
    reference fused_saliency + PatchSummer in double: equal to float32 rounding."""
    rng = np.random.default_rng(h * 7 + w)
    h4, w4 = -(-h // 4), -(-w // 4)
    mv = (rng.integers(-64, 64, size=(h4, w4, 4)) / 4.0).astype(np.float32)
    flags = rng.integers(0, 4, size=(h4, w4)).astype(np.uint8)
    res = rng.integers(-200, 200, size=(h, w)).astype(np.int16)
    res[rng.random((h, w)) < 0.6] = 0  # mostly small, like a real residual
    for args in ((mv, flags, res), (mv, None, res), (None, None, res), (mv, flags, None)):
        want = _ref_scores(h, w, *args)
        got = ov2._native.core.tok.ovenc_patch_scores(h, w, *args)
        assert got.dtype == np.float64 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(want).max())))
    assert not ov2._native.core.tok.ovenc_patch_scores(h, w, mv, flags, res, is_intra=True).any()
    lb = O.letterbox_geometry(h, w)
    # outside the letterboxed content nothing is scored
    g = 576 // 16
    got = ov2._native.core.tok.ovenc_patch_scores(h, w, mv, flags, res).reshape(g, g)
    rows = np.arange(g) * 16
    outside_r = (rows + 16 <= lb.top) | (rows >= lb.top + lb.hn)
    outside_c = (rows + 16 <= lb.left) | (rows >= lb.left + lb.wn)
    assert not got[outside_r].any() and not got[:, outside_c].any()


@pytest.mark.parametrize("h,w,n_rows", [(720, 1280, 10368), (640, 360, 10368), (50, 70, 3000), (576, 576, 1296)])
def test_native_mosaics_equal_numpy_reference(h, w, n_rows):
    """csrc/tokenize/ovenc_mosaic.cpp cuts the patches from each slot's content; the reference builds the
    letterboxed squares (letterbox_rgb) and tiles them (build_mosaics). Bit-identical, padding cells included."""
    rng = np.random.default_rng(h + w)
    lb = O.letterbox_geometry(h, w)
    content = [rng.integers(0, 256, size=(lb.hn, lb.wn, 3), dtype=np.uint8) for _ in range(5)]
    slot_frame = rng.integers(0, 5, size=64).astype(np.int64)
    rows = np.stack([rng.integers(0, 64, n_rows), rng.integers(0, G, n_rows), rng.integers(0, G, n_rows)], 1)
    rows[:G * G] = np.stack([np.zeros(G * G, int), *np.divmod(np.arange(G * G), G)], 1)  # slot 0 whole
    rows = rows.astype(np.int32)
    want = O.build_mosaics([O.letterbox_rgb(content[k], lb) for k in slot_frame], rows)
    got = ov2._native.core.tok.ovenc_mosaics(content, slot_frame, rows, lb.size, lb.hn, lb.wn, lb.top, lb.left, 16)
    assert got.dtype == np.uint8 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # threads write disjoint mosaics: any count (more threads than mosaics included) gives the same bytes
    for threads in (2, 3, 16):
        np.testing.assert_array_equal(ov2._native.core.tok.ovenc_mosaics(
            content, slot_frame, rows, lb.size, lb.hn, lb.wn, lb.top, lb.left, 16, num_threads=threads), want)


def test_native_mosaics_reject_bad_input():
    tok = ov2._native.core.tok
    lb = O.letterbox_geometry(64, 64)
    c = [np.zeros((lb.hn, lb.wn, 3), np.uint8)]
    ok = np.zeros((1, 3), np.int32)
    with pytest.raises(ValueError):
        tok.ovenc_mosaics(c, np.array([1]), ok, lb.size, lb.hn, lb.wn, lb.top, lb.left, 16)  # no content 1
    with pytest.raises(ValueError):
        tok.ovenc_mosaics(c, np.array([0]), np.array([[1, 0, 0]], np.int32), lb.size, lb.hn, lb.wn, lb.top, lb.left)
    with pytest.raises(ValueError):
        tok.ovenc_mosaics(c, np.array([0]), np.array([[0, G, 0]], np.int32), lb.size, lb.hn, lb.wn, lb.top, lb.left)
    with pytest.raises(ValueError):
        tok.ovenc_mosaics([np.zeros((3, 3, 3), np.uint8)], np.array([0]), ok, lb.size, lb.hn, lb.wn, lb.top, lb.left)


def test_native_patch_scores_reject_bad_input():
    tok = ov2._native.core.tok
    with pytest.raises(ValueError):
        tok.ovenc_patch_scores(8, 8, np.zeros((1, 2, 4), np.float32))  # grid smaller than ceil(frame / 4)
    with pytest.raises(ValueError):
        tok.ovenc_patch_scores(8, 8, residual=np.zeros((8, 7), np.int16))
    with pytest.raises(ValueError):
        tok.ovenc_patch_scores(8, 8, size=8, patch=16)
    with pytest.raises(ValueError):
        tok.ovenc_patch_scores(8, 8, residual=np.zeros((8, 8), np.int16), percentile=101.0)


@pytest.mark.skipif(not SHARED_VIDEOS.is_dir(), reason="shared videos absent")
def test_native_patch_scores_on_ytb_frames_equal_reference():
    """On real frames (vectors and residual of the core), the rows a tokenization picks are a top-K of the numpy
    reference's scores. Saturated patches (every pixel at 1) tie in exact arithmetic, and float rounding orders
    such ties differently in the two, so the check is on scores, not on identities: every picked cell scores
    within float rounding of the K-th best reference score."""
    path = SHARED_VIDEOS / "ytb_XwB-dkS5BVM.mp4"
    cfg = ov2.TokenizerConfig()
    vt = ov2.tokenize_video(path, mode="ovenc_topk", config=cfg)
    slots = vt.meta["slot_frames"]
    uniq = sorted(set(slots))
    ref = {}
    for f in ov2.open_video(path).frames(indices=uniq, with_luma=False, with_mvs=True, with_residual=True):
        ref[f.index] = _ref_scores(f.height, f.width, f.mv_field, f.mv_flags, f.residual, f.pict_type)
    scores = np.stack([ref[s] for s in slots])
    info = ov2.open_video(path).info
    lb = O.letterbox_geometry(info.height, info.width)
    valid = O.valid_cell_mask(lb)
    rows = O.select_rows(scores, valid, cfg.ovenc_topk)
    got = vt.pos_thw.numpy()
    assert got.shape == rows.shape
    np.testing.assert_array_equal(got[: G * G], rows[: G * G])  # slot 0 whole
    flat = scores.reshape(len(slots), G, G)
    picked = flat[got[G * G :, 0], got[G * G :, 1], got[G * G :, 2]]
    kth = flat[rows[G * G :, 0], rows[G * G :, 1], rows[G * G :, 2]].min()
    assert (got[G * G :, 0] > 0).all() and valid[got[G * G :, 1], got[G * G :, 2]].all()
    assert picked.min() >= kth - 1e-4 * flat.max(), (picked.min(), kth)
    assert abs(picked.sum() - flat[rows[G * G :, 0], rows[G * G :, 1], rows[G * G :, 2]].sum()) <= 1e-6 * picked.sum() * 100


# --------------------------------------------------------------------------------------- known moving block
def test_topk_concentrates_on_moving_block(moving_block_clip):
    path, tr = moving_block_clip
    k_rest = 63 * 16
    vt = ov2.tokenize_video(path, mode="ovenc_topk", ovenc_topk=1296 + k_rest)
    rows = vt.pos_thw.numpy()[1296:]
    assert rows.shape[0] == k_rest
    lb = vt.meta["letterbox"]
    sc = lb["scale"]
    slots = vt.meta["slot_frames"]
    inside = 0
    for t, h, w in rows:
        fr = slots[t]
        assert fr % tr["gop"] != 0, "an I-frame slot has saliency 0 and must not be selected"
        i = fr % tr["gop"]
        # union of the block's current and previous positions (the residual trail), in square pixels
        x0 = (tr["start"][0] + tr["vel"][0] * max(0, i - 1)) * sc + lb["left"]
        x1 = (tr["start"][0] + tr["vel"][0] * i + tr["size"]) * sc + lb["left"]
        y0 = (tr["start"][1] + tr["vel"][1] * max(0, i - 1)) * sc + lb["top"]
        y1 = (tr["start"][1] + tr["vel"][1] * i + tr["size"]) * sc + lb["top"]
        if w * P < x1 + P and (w + 1) * P > x0 - P and h * P < y1 + P and (h + 1) * P > y0 - P:
            inside += 1
    assert inside / rows.shape[0] >= 0.9, f"only {inside}/{rows.shape[0]} rows on the moving block"


# ----------------------------------------------------------------------------------------- every shared video
@pytest.mark.parametrize("path", shared_video_paths(), ids=lambda p: p.name)
def test_runs_on_every_shared_video(path):
    vt = ovenc(str(path))
    rows = vt.pos_thw.numpy()
    assert rows.shape == (10368, 3) and tuple(vt.canvases.shape) == (8, 3, 576, 576)
    assert (rows[:1296, 0] == 0).all() and rows[:, 1:].max() < 36 and rows[:, 0].max() < 64
    n = vt.meta["num_decoded_frames"]
    assert vt.meta["slot_frames"] == np.floor(np.linspace(0, n - 1, 64)).astype(int).tolist()
    assert vt.meta["motion_source"] in ("codec", "estimated")
    assert math.isfinite(float(vt.t_s.float().sum()))
