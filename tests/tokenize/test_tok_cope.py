"""DESIGN §5.8 cope warp (the Δ-residual's prediction): C++ (core.tok.cope_warp) against the numpy reference,
bit for bit, on random frames and motion fields (quarter-pel grids, arbitrary floats, vectors far outside the
frame, ±inf), plus its error and NaN contracts."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _tok import FAST, ref, tok


@FAST
@given(h=st.integers(1, 37), w=st.integers(1, 37), c=st.sampled_from([1, 3]), extra_h=st.integers(-3, 2),
       extra_w=st.integers(-3, 2), kind=st.sampled_from(["quarter", "normal", "large", "inf"]),
       seed=st.integers(0, 2**32 - 1))
def test_cope_warp_matches_reference(h, w, c, extra_h, extra_w, kind, seed):
    rng = np.random.default_rng(seed)
    ref_img = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    fh, fw = max(1, (h + 3) // 4 + extra_h), max(1, (w + 3) // 4 + extra_w)  # fields smaller or larger than cells
    if kind == "quarter":
        field = rng.integers(-40, 41, (fh, fw, 2)).astype(np.float32) / 4
    elif kind == "normal":
        field = (rng.standard_normal((fh, fw, 2)) * 6).astype(np.float32)
    elif kind == "large":
        field = (rng.standard_normal((fh, fw, 2)) * 1e4).astype(np.float32)
    else:
        field = rng.choice(np.array([-np.inf, np.inf, 0.5, -1.25], np.float32), (fh, fw, 2))
    got = tok.cope_warp(ref_img, field)
    assert got.dtype == np.uint8 and got.shape == ref_img.shape
    with np.errstate(invalid="ignore"):
        want = ref.cope_warp(ref_img, field)
    assert np.array_equal(got, want)


def test_cope_warp_translation_and_nan():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    field = np.zeros((3, 4, 2), np.float32)
    field[..., 1] = -1  # content came from one row above
    out = tok.cope_warp(img, field)
    assert np.array_equal(out[1:], img[:-1]) and np.array_equal(out[0], img[0])  # row 0 clamps to itself
    field[1, 2] = np.nan  # a NaN component counts as no motion (the reference would index with garbage)
    out = tok.cope_warp(img, field)
    assert np.array_equal(out[4:8, 8:12], img[4:8, 8:12])


def test_cope_warp_rejects_bad_shapes():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError):
        tok.cope_warp(img[..., 0], np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError):
        tok.cope_warp(img, np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError):
        tok.cope_warp(img, np.zeros((0, 2, 2), np.float32))
    with pytest.raises(ValueError):
        tok.cope_warp(np.zeros((0, 8, 3), np.uint8), np.zeros((2, 2, 2), np.float32))
