"""DESIGN §5.4 saliency and §5.5 block score: C++ against the reference (bit-identical), plus invariants."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _tok import FAST, ref, tok


@st.composite
def frame_signals(draw):
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    h, w = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    h4, w4 = (h + 3) // 4 + draw(st.integers(0, 1)), (w + 3) // 4 + draw(st.integers(0, 1))
    mv = None
    flags = None
    if draw(st.integers(0, 3)) > 0:
        pan = rng.normal(0, 4, 2)
        mv = np.empty((h4, w4, 4), np.float32)
        mv[..., 0:2] = pan + rng.normal(0, draw(st.sampled_from([0.0, 0.25, 3.0])), (h4, w4, 2))
        mv[..., 2:4] = rng.normal(0, 2, (h4, w4, 2))
        # Codec grids (1/4, 1/2, 1 px: many exact ties; the C++ selects on integers there), a grid finer than
        # 1/8 and raw floats (both take the C++'s general weighted-quickselect path), and huge vectors.
        q = draw(st.sampled_from([4, 4, 2, 1, 16, None]))
        if q is not None:
            mv = np.round(mv * q) / q
        if draw(st.integers(0, 9)) == 0:
            mv[..., 0] += draw(st.sampled_from([8191.75, -8192.0, 9000.5]))
        mode = draw(st.sampled_from(["none", "l0", "mixed", "all_intra"]))
        if mode == "l0":
            flags = np.ones((h4, w4), np.uint8)
        elif mode == "mixed":
            flags = rng.integers(0, 4, (h4, w4)).astype(np.uint8)
        elif mode == "all_intra":
            flags = np.zeros((h4, w4), np.uint8)
        if draw(st.booleans()):
            # partitions: runs of cells with the same bytes along a row (the C++ computes per run), some of them
            # non-finite (no vector) and runs that end at the frame's last, narrower cell column
            rep = draw(st.sampled_from([2, 4, 16]))
            cols = np.minimum(np.arange(w4) // rep * rep, w4 - 1)
            mv = mv[:, cols]
            if flags is not None:
                flags = flags[:, cols]
            if draw(st.booleans()):
                bad = rng.random((h4, w4)) < 0.1
                mv[bad & (rng.random((h4, w4)) < 0.5), 1] = np.nan
                mv[bad & (rng.random((h4, w4)) < 0.5), 3] = np.inf
        if not draw(st.booleans()):
            mv, flags = None, None
    res = None
    if draw(st.booleans()):
        scale = draw(st.sampled_from([0, 1, 3, 40, 32767]))
        res = rng.integers(-scale, scale + 1, (h, w)).astype(np.int16)
        if scale == 32767:
            res.flat[0] = -32768
        if draw(st.booleans()):  # mostly zeros, like a real residual (the C++ skips runs of eight zeros)
            res[rng.random((h, w)) < 0.9] = 0
    return h, w, mv, flags, res, draw(st.booleans()) and draw(st.booleans())


@FAST
@given(frame_signals())
def test_saliency_bit_identical(sig):
    h, w, mv, flags, res, intra = sig
    s = tok.saliency(h, w, mv, flags, res, intra)
    assert s.dtype == np.float32 and s.shape == (h, w)
    assert np.array_equal(s, ref.saliency(h, w, mv, flags, res, intra))
    assert np.all(s >= 0) and np.all(s <= 1)
    if intra or (mv is None and res is None):
        assert not s.any()


def test_saliency_median_compensation_and_floors():
    h, w = 32, 32
    mv = np.zeros((8, 8, 4), np.float32)
    mv[..., 0] = 5.0  # global pan: compensated away
    mv[2:4, 2:4, 0] = 9.0  # a moving object
    s = tok.saliency(h, w, mv, np.ones((8, 8), np.uint8), None)
    assert np.all(s[8:16, 8:16] == 0.5) and s.sum() == 0.5 * 64
    # a static frame: M̄ = 0 (floor 1e-6 avoids 0/0), |r| ≤ 1 is divided by the floor 1 of R
    z = tok.saliency(h, w, np.zeros((8, 8, 4), np.float32), None, np.ones((h, w), np.int16))
    assert np.all(z == 0.5)
    # L1 is used where a cell has only L1
    mv2 = np.zeros((8, 8, 4), np.float32)
    mv2[0, 0, 2] = 3.0
    fl = np.ones((8, 8), np.uint8)
    fl[0, 0] = 2
    s2 = tok.saliency(h, w, mv2, fl, None)
    assert np.all(s2[:4, :4] == 0.5) and s2[4:, 4:].sum() == 0
    with pytest.raises(ValueError):
        tok.saliency(32, 32, np.zeros((7, 8, 4), np.float32))


@FAST
@given(n=st.integers(1, 300), q=st.floats(0, 100), seed=st.integers(0, 2**31))
def test_percentile_definition(n, q, seed):
    v = np.round(np.random.default_rng(seed).normal(0, 3, n), 1)
    got = tok.percentile(v, q)
    assert got == ref.percentile(v, q)
    assert np.isclose(got, np.percentile(v, q), rtol=1e-12, atol=1e-12)


@st.composite
def canvas_maps(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    patch, merge = draw(st.sampled_from([(2, 2), (3, 2), (4, 1), (2, 3), (14, 2)]))
    f = patch * merge
    nbh, nbw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    hc, wc = nbh * f, nbw * f
    s = rng.random((hc, wc)).astype(np.float32)
    if draw(st.booleans()):
        s[: hc // 2] = 0.25  # equal blocks: ties
    cost = rng.random((hc, wc)).astype(np.float32) if draw(st.booleans()) else None
    valid = None
    if draw(st.booleans()):
        y0, x0 = draw(st.integers(0, hc)), draw(st.integers(0, wc))
        valid = (y0, x0, draw(st.integers(y0, hc)), draw(st.integers(x0, wc)))
    beta = draw(st.sampled_from([0.0, 0.5, 1.25]))
    return s, cost, patch, merge, beta, valid


@FAST
@given(canvas_maps())
def test_block_score_bit_identical(args):
    s, cost, patch, merge, beta, valid = args
    a = tok.block_score(s, cost, patch, merge, beta, valid)
    assert a.dtype == np.float32
    assert np.array_equal(a, ref.block_score(s, cost, patch, merge, beta, valid))
    f = patch * merge
    # definition check in plain numpy (up to rounding): mean of patch means + β · mean cost
    blocks = s.reshape(s.shape[0] // f, f, s.shape[1] // f, f).astype(np.float64).mean(axis=(1, 3))
    if cost is not None:
        blocks = blocks + beta * cost.reshape(blocks.shape[0], f, blocks.shape[1], f).astype(np.float64).mean(axis=(1, 3))
    fin = np.isfinite(a)
    assert np.allclose(a[fin], blocks[fin], rtol=1e-5, atol=1e-6)
    if valid is not None:
        y0, x0, y1, x1 = valid
        for i in range(a.shape[0]):
            for j in range(a.shape[1]):
                outside = not (i * f < y1 and i * f + f > y0 and j * f < x1 and j * f + f > x0)
                assert (a[i, j] == -np.inf) == outside


@FAST
@given(frame_signals(), st.integers(1, 4), st.integers(1, 4), st.booleans())
def test_score_frame_bit_identical(sig, nbh, nbw, with_cost):
    h, w, mv, flags, res, intra = sig
    patch, merge = 4, 2
    hc, wc = nbh * 8, nbw * 8
    cost = np.random.default_rng(h * 131 + w).random(((h + 3) // 4, (w + 3) // 4)).astype(np.float32) if with_cost else None
    a = tok.score_frame(hc, wc, h, w, mv, flags, res, cost, intra, patch, merge, 0.5)
    assert np.array_equal(a, ref.score_frame(hc, wc, h, w, mv, flags, res, cost, intra, patch, merge, 0.5))
    if intra:
        assert not a.any()
