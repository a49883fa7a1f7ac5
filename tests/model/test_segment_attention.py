"""Group-visible attention: the Triton kernel (under TRITON_INTERPRET=1) and the torch reference against a
dense-mask implementation written from the definition; dispatch rules."""

from __future__ import annotations

import os

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ov2_model.attention import (  # noqa: E402
    get_attention_backend,
    resolve_backend,
    segment_attention,
    segment_ids_from_cu_seqlens,
    set_attention_backend,
)

TOL = 1e-3
TRITON_MODE = os.environ.get("OV2_TEST_TRITON_MODE", "unavailable")  # set by conftest.py
DEVICE = "cuda" if TRITON_MODE == "cuda" else "cpu"
needs_triton = pytest.mark.skipif(
    TRITON_MODE == "unavailable",
    reason="triton missing, or imported before TRITON_INTERPRET=1 could be set on this CPU-only machine",
)


def dense_attention(q, k, v, seg, win=None):
    """softmax(q k^T / sqrt(d) + mask) v with mask(i, j) = same segment (and same window), float64."""
    q, k, v = q.double(), k.double(), v.double()
    s = torch.einsum("nhd,mhd->hnm", q, k) / q.shape[-1] ** 0.5
    allowed = seg[:, None] == seg[None, :]
    if win is not None:
        allowed &= win[:, None] == win[None, :]
    s = s.masked_fill(~allowed, float("-inf"))
    return torch.einsum("hnm,mhd->nhd", torch.softmax(s, -1), v)


def _check(seg, win, heads, head_dim, backend, block=16, seed=0, segment_arg="ids"):
    g = torch.Generator().manual_seed(seed)
    n = seg.numel()
    q, k, v = (torch.randn(n, heads, head_dim, generator=g).to(DEVICE).requires_grad_() for _ in range(3))
    do = torch.randn(n, heads, head_dim, generator=g).to(DEVICE)
    seg = seg.to(DEVICE)
    win = win.to(DEVICE) if win is not None else None
    kwargs = dict(window_ids=win, backend=backend, block_m=block, block_n=block)
    if segment_arg == "cu":
        change = torch.ones(n, dtype=torch.bool)
        change[1:] = seg[1:] != seg[:-1]
        starts = torch.nonzero(change).flatten().tolist()
        kwargs["cu_seqlens"] = torch.tensor(starts + [n], dtype=torch.int32, device=DEVICE)
    else:
        kwargs["segment_ids"] = seg
    out = segment_attention(q, k, v, **kwargs)
    grads = torch.autograd.grad(out, (q, k, v), do)
    ref = dense_attention(q, k, v, seg, win)
    ref_grads = torch.autograd.grad(ref, (q, k, v), do.double())
    assert out.dtype == q.dtype and out.shape == q.shape
    assert (out.double() - ref).abs().max().item() < TOL
    for name, a, b in zip("qkv", grads, ref_grads):
        assert (a.double() - b).abs().max().item() < TOL, f"d{name}"


@st.composite
def layouts(draw):
    """Packed segment layouts: many short segments (length 1 included), lengths off the block size."""
    lengths = draw(st.lists(st.integers(1, 37), min_size=1, max_size=6))
    seg = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    win = None
    if draw(st.booleans()):
        n_win = draw(st.integers(1, 4))
        contiguous = draw(st.booleans())
        if contiguous:  # spatial windows as runs inside segments
            win = torch.tensor([min(i * n_win // len(seg), n_win - 1) for i in range(len(seg))])
        else:  # arbitrary window ids (interleaved)
            win = torch.tensor(draw(st.lists(st.integers(0, n_win - 1), min_size=len(seg), max_size=len(seg))))
    heads = draw(st.integers(1, 2))
    head_dim = draw(st.sampled_from([64, 80, 128]))
    block = draw(st.sampled_from([16, 32]))
    return seg, win, heads, head_dim, block


@needs_triton
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=layouts(), seed=st.integers(0, 2 ** 16))
def test_triton_matches_dense_reference(layout, seed):
    seg, win, heads, head_dim, block = layout
    _check(seg, win, heads, head_dim, "triton", block=block, seed=seed)


@settings(max_examples=20, deadline=None)
@given(layout=layouts(), seed=st.integers(0, 2 ** 16))
def test_torch_reference_matches_dense(layout, seed):
    seg, win, heads, head_dim, _ = layout
    _check(seg, win, heads, head_dim, "torch", seed=seed)


@needs_triton
@pytest.mark.parametrize("head_dim", [64, 80, 128])
def test_triton_one_huge_segment(head_dim):
    seg = torch.zeros(150, dtype=torch.long)  # 150 is not a multiple of the 32-token blocks
    _check(seg, None, 1, head_dim, "triton", block=32)


@needs_triton
def test_triton_all_singleton_segments_and_cu_seqlens():
    seg = torch.arange(21)
    _check(seg, None, 2, 64, "triton", segment_arg="cu")


@needs_triton
def test_triton_huge_segment_with_windows_and_singletons():
    seg = torch.cat([torch.zeros(1), torch.ones(97), torch.full((3,), 2)]).long()
    win = torch.arange(seg.numel()) % 5  # interleaved windows inside the huge segment
    _check(seg, win, 2, 80, "triton", segment_arg="cu")


@needs_triton
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_non_contiguous_segment_ids(backend):
    g = torch.Generator().manual_seed(3)
    seg = torch.randint(0, 4, (45,), generator=g)
    _check(seg, None, 2, 64, backend)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_triton_half_precision_forward(dtype):
    if dtype == torch.bfloat16 and DEVICE == "cpu":
        pytest.skip("Triton's CPU interpreter computes with numpy, which has no bfloat16 (bf16 runs on CUDA only)")
    g = torch.Generator().manual_seed(1)
    seg = torch.repeat_interleave(torch.arange(3), torch.tensor([5, 20, 12])).to(DEVICE)
    q, k, v = (torch.randn(37, 2, 64, generator=g).to(DEVICE, dtype) for _ in range(3))
    out = segment_attention(q, k, v, segment_ids=seg, backend="triton")
    assert out.dtype == dtype
    ref = dense_attention(q, k, v, seg)
    assert (out.double() - ref).abs().max().item() < 3e-2


def test_default_is_one_segment():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(9, 1, 64, generator=g) for _ in range(3))
    out = segment_attention(q, k, v, backend="torch")
    assert torch.allclose(out.double(), dense_attention(q, k, v, torch.zeros(9)), atol=1e-5)


def test_dispatch_rules(monkeypatch):
    q = torch.zeros(4, 1, 64)
    set_attention_backend(None)
    monkeypatch.delenv("OV2_ATTENTION_BACKEND", raising=False)
    assert get_attention_backend() == "auto"
    assert resolve_backend(q) == "torch"  # CPU tensors: the reference
    monkeypatch.setenv("OV2_ATTENTION_BACKEND", "torch")
    assert get_attention_backend() == "torch"
    set_attention_backend("triton")  # the override beats the environment
    try:
        assert get_attention_backend() == "triton"
    finally:
        set_attention_backend(None)
    with pytest.raises(ValueError):
        set_attention_backend("flash")
    if TRITON_MODE == "interpreter":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
            resolve_backend(q, "triton")
        with pytest.raises(ValueError, match="dropout"):
            resolve_backend(q, "triton", dropout_p=0.1)


def test_input_validation():
    q = torch.zeros(6, 1, 64)
    with pytest.raises(ValueError, match="cu_seqlens ends at 5"):
        segment_attention(q, q, q, cu_seqlens=torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="not both"):
        segment_attention(q, q, q, cu_seqlens=torch.tensor([0, 6]), segment_ids=torch.zeros(6))
    with pytest.raises(ValueError, match="window_ids"):
        segment_attention(q, q, q, window_ids=torch.zeros(5))
    assert segment_ids_from_cu_seqlens(torch.tensor([0, 2, 2, 5])).tolist() == [0, 0, 2, 2, 2]
