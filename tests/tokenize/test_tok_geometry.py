"""DESIGN §5.1 geometry and §5.2 candidates: C++ (core.tok) against the numpy reference, plus invariants."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _tok import FAST, ref, tok


@FAST
@given(h=st.integers(1, 5000), w=st.integers(1, 5000), patch=st.sampled_from([14, 16]), merge=st.sampled_from([1, 2, 3]),
       lo=st.integers(0, 20_000), extra=st.integers(0, 2_000_000))
def test_canvas_size_matches_reference(h, w, patch, merge, lo, extra):
    f = patch * merge
    min_pixels, max_pixels = lo, max(lo, f * f) + extra
    try:
        expected = ref.canvas_size(h, w, patch, merge, min_pixels, max_pixels)
    except ValueError:
        with pytest.raises(ValueError):
            tok.canvas_size(h, w, patch, merge, min_pixels, max_pixels)
        return
    hc, wc = tok.canvas_size(h, w, patch, merge, min_pixels, max_pixels)
    assert (hc, wc) == expected
    assert hc % f == 0 and wc % f == 0 and hc >= f and wc >= f
    assert min_pixels <= hc * wc <= max_pixels


def test_canvas_size_defaults():
    assert tok.canvas_size(360, 640) == (364, 644)  # within bounds: each side rounded to a multiple of 28
    hc, wc = tok.canvas_size(1080, 1920)
    assert hc * wc <= 313_600 and hc % 28 == 0 and wc % 28 == 0
    assert abs(wc / hc - 1920 / 1080) < 0.1
    with pytest.raises(ValueError):
        tok.canvas_size(100, 100, 14, 2, 500_000, 400_000)  # min > max
    with pytest.raises(ValueError):
        tok.canvas_size(0, 100)


@FAST
@given(h=st.integers(1, 40), w=st.integers(1, 40), c=st.sampled_from([1, 3]), oh=st.integers(1, 60),
       ow=st.integers(1, 60), seed=st.integers(0, 2**31))
def test_resize_bilinear_bit_identical(h, w, c, oh, ow, seed):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    out = tok.resize_bilinear(img, oh, ow)
    assert out.dtype == np.uint8 and out.shape == (oh, ow, c)
    assert np.array_equal(out, ref.resize_bilinear(img, oh, ow))


def test_resize_bilinear_identity_and_constant():
    img = np.random.default_rng(1).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    assert np.array_equal(tok.resize_bilinear(img, 17, 23), img)
    const = np.full((9, 13, 3), 77, np.uint8)
    assert np.all(tok.resize_bilinear(const, 31, 5) == 77)


@FAST
@given(h=st.integers(1, 40), w=st.integers(1, 40), oh=st.integers(1, 50), ow=st.integers(1, 50),
       seed=st.integers(0, 2**31))
def test_resize_area_bit_identical(h, w, oh, ow, seed):
    x = np.random.default_rng(seed).normal(0, 5, (h, w)).astype(np.float32)
    out = tok.resize_area(x, oh, ow)
    assert out.dtype == np.float32 and out.shape == (oh, ow)
    assert np.array_equal(out, ref.resize_area(x, oh, ow))
    # area averaging preserves the mean (weights of each output cell sum to 1, every source cell is covered
    # with total weight sh·sw/(oh·ow)/(sh/oh·sw/ow) = 1)
    assert abs(float(out.astype(np.float64).mean()) - float(x.astype(np.float64).mean())) < 1e-4 * (1 + np.abs(x).max())


def test_resize_area_integer_factor_is_block_mean():
    x = np.arange(16 * 12, dtype=np.float32).reshape(16, 12)
    out = tok.resize_area(x, 4, 3)
    assert np.allclose(out, x.reshape(4, 4, 3, 4).mean(axis=(1, 3)))


@FAST
@given(n=st.integers(0, 400), num=st.integers(1, 300), seed=st.integers(0, 2**31),
       kind=st.sampled_from(["regular", "jitter", "dups", "nan", "unsorted"]))
def test_candidate_frames(n, num, seed, kind):
    rng = np.random.default_rng(seed)
    pts = np.arange(n) / 30.0 + 0.033
    if kind == "jitter":
        pts = np.sort(pts + rng.uniform(0, 0.05, n))
    elif kind == "dups" and n:
        pts = np.sort(rng.integers(0, max(1, n // 3), n) / 10.0)
    elif kind == "nan" and n:
        pts[rng.integers(0, n)] = np.nan
    elif kind == "unsorted" and n > 1:
        pts = rng.permutation(pts)
    got = tok.candidate_frames(pts, num)
    assert np.array_equal(got, ref.candidate_frames(pts, num))
    assert got.dtype == np.int64 and len(got) == min(n, num)
    if len(got):
        assert got[0] >= 0 and got[-1] < n and np.all(np.diff(got) > 0)


def test_candidate_frames_uniform_by_time():
    # frames at 30 fps for 10 s, then a 10 s gap-free 3 fps stretch: candidates follow time, not index
    pts = np.concatenate([np.arange(300) / 30.0, 10.0 + np.arange(30) / 3.0])
    got = tok.candidate_frames(pts, 20)
    times = pts[got]
    assert np.all(np.abs(np.diff(times) - np.diff(times).mean()) < 0.4)
    with pytest.raises(ValueError):
        tok.candidate_frames(pts, 0)
