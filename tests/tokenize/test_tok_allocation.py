"""DESIGN §5.6 budget, groups and stratified allocation (paper Eq. 5–6) and §5.7 packing:
C++ against the reference (identical plans and records) plus the invariants of the issue."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _tok import FAST, SLOW, assert_same, ref, tok


@st.composite
def plans(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    delta = 0.5
    B = draw(st.integers(1, 80))
    # a contiguous partition of the bins with random costs (zeros and ties included)
    cuts = sorted(set(rng.choice(np.arange(1, B), size=min(B - 1, draw(st.integers(0, 30))), replace=False).tolist())) if B > 1 else []
    bounds = [0] + cuts + [B]
    gs = np.asarray(bounds[:-1], np.int64)
    ge = np.asarray(bounds[1:], np.int64) - 1
    cost_mode = draw(st.sampled_from(["random", "zero", "ties"]))
    if cost_mode == "random":
        gc = rng.integers(0, 100000, len(gs)).astype(np.float64)
    elif cost_mode == "zero":
        gc = np.zeros(len(gs))
    else:
        gc = rng.integers(1, 3, len(gs)).astype(np.float64) * 1000
    T = draw(st.one_of(st.integers(1, 8), st.integers(20, 150)))
    tmode = draw(st.sampled_from(["uniform", "random", "dups", "outside"]))
    if tmode == "uniform":
        ct = (np.arange(T) + 0.5) * B * delta / T
    elif tmode == "random":
        ct = np.sort(rng.uniform(0, B * delta, T))
    elif tmode == "dups":
        ct = np.sort(rng.integers(0, max(1, B), T) * delta)
    else:
        ct = np.sort(rng.uniform(-1.0, B * delta + 1.0, T))
    nbh, nbw = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    smode = draw(st.sampled_from(["random", "ties", "zero", "negative", "sparse"]))
    if smode == "random":
        sc = rng.random((T, nbh, nbw)).astype(np.float32)
    elif smode == "ties":
        sc = (rng.integers(0, 3, (T, nbh, nbw)) / 4).astype(np.float32)
    elif smode == "zero":
        sc = np.zeros((T, nbh, nbw), np.float32)
    elif smode == "negative":
        sc = rng.normal(0, 1, (T, nbh, nbw)).astype(np.float32)
    else:
        sc = np.where(rng.random((T, nbh, nbw)) < 0.9, 0.0, rng.random((T, nbh, nbw))).astype(np.float32)
    if draw(st.booleans()):  # padding blocks (letterbox): −∞, never selected
        pad = rng.random((nbh, nbw)) < 0.3
        sc[:, pad] = -np.inf
    kw = dict(max_canvases=draw(st.integers(2, 40)), lam=draw(st.sampled_from([0.35, 0.0, 2.0])),
              alpha_peak=draw(st.sampled_from([0.35, 0.0, 1.0])), anchor=draw(st.sampled_from(["first", "center"])),
              rank=draw(st.sampled_from(["rank", "fraction"])), t0=0.0, delta=delta)
    return gs, ge, gc, ct, sc, kw


def check_plan_invariants(plan, gs, ge, ct, sc, kw):
    T, nbh, nbw = sc.shape
    nb = nbh * nbw
    M = kw["max_canvases"]
    G = len(plan["group_start"])
    kind, cg = plan["canvas_kind"], plan["canvas_group"]
    S = len(kind)
    # merged groups: contiguous, cover the same bins, within budget, none empty
    assert plan["group_start"][0] == gs[0] and plan["group_end"][-1] == ge[-1]
    assert np.all(plan["group_start"][1:] == plan["group_end"][:-1] + 1)
    assert set(plan["group_start"].tolist()) <= set(gs.tolist()) and set(plan["group_end"].tolist()) <= set(ge.tolist())
    assert 2 * G <= M and np.all(plan["group_num_frames"] >= 1)
    # every candidate's group matches its time
    assert np.array_equal(plan["cand_group"], tok.group_of_time(ct, plan["group_start"], plan["group_end"], 0.0, kw["delta"]))
    # canvas count: exactly the budget when there are enough candidates, never more
    cap = plan["group_capacity"]
    assert S <= M
    assert S == min(M, G + int(cap.sum()))
    if G + int(cap.sum()) >= M:
        assert S == M
    # per group: one I-canvas (the anchor) then m_k P-canvases r = 0..m_k−1; m_k ≥ 1 whenever it has blocks
    m = plan["group_num_p"]
    assert np.all(m <= cap) and np.all((m >= 1) | (cap == 0))
    assert int(m.sum()) == min(M - G, int(cap.sum()))
    s = 0
    for k in range(G):
        fr = np.flatnonzero(plan["cand_group"] == k)
        anchor = fr[0] if kw["anchor"] == "first" else fr[(len(fr) - 1) // 2]
        assert kind[s] == 0 and cg[s] == k and plan["canvas_frame"][s] == anchor == plan["group_anchor"][k]
        s += 1
        used = set()
        for r in range(m[k]):
            assert kind[s] == 1 and cg[s] == k and plan["canvas_rank"][s] == r
            o0, o1 = plan["canvas_offset"][s], plan["canvas_offset"][s + 1]
            blocks = list(zip(plan["block_t"][o0:o1].tolist(), plan["block_i"][o0:o1].tolist(), plan["block_j"][o0:o1].tolist()))
            assert len(blocks) <= nb
            assert blocks == sorted(blocks)  # (t, i, j) order
            for (t, i, j) in blocks:
                assert plan["cand_group"][t] == k and t != anchor  # from the group, never the anchor
                assert np.isfinite(sc[t, i, j])  # never padding
                assert (t, i, j) not in used  # no block twice in a group
                used.add((t, i, j))
            strata = plan["cand_stratum"][[t for t, _, _ in blocks]]
            if plan["canvas_widen"][s] == 0:
                assert np.all(strata == r)  # P-canvas r draws from stratum r
            else:
                # widening is recorded and only happens when stratum r lacked unused blocks
                lo, hi = plan["canvas_lo"][s], plan["canvas_hi"][s]
                assert lo <= hi
            if len(blocks) < nb:  # short canvas: every usable block of its range was taken
                lo, hi = plan["canvas_lo"][s], plan["canvas_hi"][s]
                for t in range(lo, hi + 1):
                    if t == anchor or plan["cand_group"][t] != k:
                        continue
                    for i in range(nbh):
                        for j in range(nbw):
                            if np.isfinite(sc[t, i, j]):
                                assert (t, i, j) in used
            s += 1
        # F is the cumulative share of w over the group's non-anchor frames, ending at 1
        z = [t for t in fr if t != anchor]
        if m[k] > 0 and z:
            F = plan["cand_cum"][z]
            assert np.all(np.diff(F) >= 0) and F[-1] == 1.0
            assert np.array_equal(plan["cand_stratum"][z], np.minimum(m[k] - 1, np.floor(F * m[k]).astype(np.int32)))
    assert s == S


def check_largest_remainder(plan, kw):
    """When every group has spare capacity: one each, the rest ∝ cost, each within 1 of its quota."""
    G = len(plan["group_start"])
    cap, m, c = plan["group_capacity"], plan["group_num_p"], plan["group_cost"]
    R = kw["max_canvases"] - 2 * G
    if np.all(cap >= kw["max_canvases"]) and R >= 0:
        q = R * c / c.sum() if c.sum() > 0 else np.full(G, R / G)
        assert np.all(np.abs((m - 1) - q) < 1.0 + 1e-9)
        assert int(m.sum()) == kw["max_canvases"] - G


@SLOW
@given(plans())
def test_allocate_matches_reference(args):
    gs, ge, gc, ct, sc, kw = args
    got = tok.allocate(gs, ge, gc, ct, sc, **kw)
    exp = ref.allocate(gs, ge, gc, ct, sc, **kw)
    assert_same(got, exp)
    check_plan_invariants(got, gs, ge, ct, sc, kw)
    check_largest_remainder(got, kw)
    again = tok.allocate(gs, ge, gc, ct, sc, **kw)
    assert_same(got, again)  # deterministic


@SLOW
@given(plans(), st.sampled_from(["frame", "slot"]), st.booleans())
def test_pack_records_and_pixels_match_reference(args, tcoord, center_tiles):
    gs, ge, gc, ct, sc, kw = args
    T, nbh, nbw = sc.shape
    patch, merge = 2, 2
    f = patch * merge
    hc, wc = nbh * f, nbw * f
    plan = tok.allocate(gs, ge, gc, ct, sc, **kw)
    cand_frame = (np.arange(T) * 3 + 1).astype(np.int32)
    rec = tok.pack_records(plan, cand_frame, ct, hc, wc, patch, merge, tcoord)
    assert_same(rec, ref.pack_records(plan, cand_frame, ct, hc, wc, patch, merge, tcoord))
    frames = np.random.default_rng(T).integers(1, 256, (T, hc, wc, 3)).astype(np.uint8)
    px = tok.pack_canvases(plan, frames, patch, merge)
    assert np.array_equal(px, ref.pack_canvases(plan, frames, patch, merge))
    # --- invariants of the records (DESIGN §3.2) ---
    S = len(plan["canvas_kind"])
    per = (hc // patch) * (wc // patch)
    assert len(rec["canvas"]) == S * per
    assert np.array_equal(rec["canvas"], np.repeat(np.arange(S, dtype=np.int32), per))
    # 2×2-block order: the m² tokens of a block are consecutive and share frame, block and canvas block
    blk = lambda a: a.reshape(-1, merge * merge, *a.shape[1:])  # noqa: E731
    assert np.all(blk(rec["frame"]) == blk(rec["frame"])[:, :1])
    assert np.all(blk(rec["can_hw"]) // merge == (blk(rec["can_hw"]) // merge)[:, :1])
    real = rec["frame"] >= 0
    real_blocks = blk(real)[:, 0]
    src_blocks = blk(rec["src_hw"])[real_blocks] // merge
    assert np.all(src_blocks == src_blocks[:, :1])
    # every token's group matches its source time; padding only in P-canvases, at their ends
    kap = tok.group_of_time(ct, plan["group_start"], plan["group_end"], 0.0, kw["delta"])
    pos_of_frame = {int(fr): i for i, fr in enumerate(cand_frame)}
    for n in np.flatnonzero(real):
        assert rec["group"][n] == kap[pos_of_frame[int(rec["frame"][n])]]
        assert rec["t_s"][n] == np.float32(ct[pos_of_frame[int(rec["frame"][n])]])
    assert np.all(plan["canvas_kind"][rec["canvas"][~real]] == 1)
    assert np.all(rec["src_hw"][~real] == -1)
    for s in range(S):
        fr_s = rec["frame"][s * per:(s + 1) * per]
        pad = np.flatnonzero(fr_s < 0)
        if len(pad):
            assert pad[0] == per - len(pad)
        if plan["canvas_kind"][s] == 0:  # I-canvas: the whole anchor image, source = canvas position
            assert np.all(fr_s == cand_frame[plan["canvas_frame"][s]])
            assert np.array_equal(rec["src_hw"][s * per:(s + 1) * per], rec["can_hw"][s * per:(s + 1) * per])
            assert np.array_equal(px[s], frames[plan["canvas_frame"][s]].transpose(2, 0, 1))
    # pos_thw = (temporal coordinate, source row, source column)
    t_expect = rec["frame"][real] if tcoord == "frame" else np.asarray([pos_of_frame[int(x)] for x in rec["frame"][real]], np.int32)
    assert np.array_equal(rec["pos_thw"][real, 0], t_expect)
    assert np.array_equal(rec["pos_thw"][real, 1:], rec["src_hw"][real].astype(np.int32))
    # pixels follow the records: each real P token's patch equals the source patch
    for n in np.flatnonzero(real)[:: max(1, real.sum() // 50)]:
        s, (ch, cw), (sh, sw) = rec["canvas"][n], rec["can_hw"][n], rec["src_hw"][n]
        t = pos_of_frame[int(rec["frame"][n])]
        assert np.array_equal(px[s][:, ch * patch:(ch + 1) * patch, cw * patch:(cw + 1) * patch],
                              frames[t, sh * patch:(sh + 1) * patch, sw * patch:(sw + 1) * patch].transpose(2, 0, 1))
    for n in np.flatnonzero(~real):  # zero fill
        s, (ch, cw) = rec["canvas"][n], rec["can_hw"][n]
        assert not px[s][:, ch * patch:(ch + 1) * patch, cw * patch:(cw + 1) * patch].any()


def test_default_budget_gives_ippp_groups():
    # 60 s, 8 natural groups, 256 candidates: 32 canvases, every group exactly [I, P, P, P]
    rng = np.random.default_rng(3)
    fps = 30.0
    pts = np.arange(1800) / fps
    size = rng.integers(200, 400, 1800)
    pt = np.where(np.arange(1800) % 250 == 0, ord("I"), ord("P")).astype(np.uint8)
    gop = tok.gop_partition(pts, size, pt, None, k_tar=tok.k_target(32), duration_s=60.0)
    idx = tok.candidate_frames(pts, 256)
    ct = pts[idx]
    sc = rng.random((len(idx), 13, 23)).astype(np.float32)
    plan = tok.allocate(gop["start"], gop["end"], gop["cost"], ct, sc, max_canvases=32)
    G = len(plan["group_start"])
    assert len(plan["canvas_kind"]) == 32
    if G == 8:
        assert list(plan["canvas_kind"]) == [0, 1, 1, 1] * 8
    assert 2 * G <= 32


def test_stratified_allocation_spreads_over_time():
    # one group, one frame with a huge response: without strata a global top-K would take only that frame
    T, nbh, nbw = 12, 2, 2
    sc = np.full((T, nbh, nbw), 0.1, np.float32)
    sc[5] = 50.0
    ct = np.arange(T) * 0.25
    plan = tok.allocate(np.array([0]), np.array([5]), np.array([1.0]), ct, sc, max_canvases=4)
    assert list(plan["canvas_kind"]) == [0, 1, 1, 1]
    frames_per_canvas = [set(plan["block_t"][plan["canvas_offset"][s]:plan["canvas_offset"][s + 1]].tolist())
                         for s in range(1, 4)]
    assert 5 in frames_per_canvas[0] or 5 in frames_per_canvas[1] or 5 in frames_per_canvas[2]
    assert len(set().union(*frames_per_canvas)) >= 4
    # Eq. 5: the heavy frame's blocks are attenuated by rank
    assert plan["cand_weight"][5] == pytest.approx(50 * sum(1 / math.sqrt(1 + 0.35 * r) for r in range(4)) + 0.35 * 50)


def test_allocate_errors():
    sc = np.zeros((2, 1, 1), np.float32)
    with pytest.raises(ValueError):
        tok.allocate(np.array([0]), np.array([3]), np.array([1.0]), np.array([1.0, 0.5]), sc)  # unsorted times
    with pytest.raises(ValueError):
        tok.allocate(np.array([0]), np.array([3]), np.array([1.0]), np.array([0.5, 1.0]), sc, max_canvases=1)
    with pytest.raises(ValueError):
        tok.allocate(np.array([0, 5]), np.array([3, 7]), np.array([1.0, 1.0]), np.array([0.5, 1.0]), sc)  # gap
    with pytest.raises(ValueError):
        tok.allocate(np.array([0]), np.array([3]), np.array([1.0]), np.array([0.5, 1.0]), sc, rank="log")
