"""Triton kernels of the group-visible (segment) attention: forward, dQ and dK/dV.

This module is loaded lazily by :mod:`ov2_model.attention.segment_attention` (never import it directly
where Triton may be missing). Whether the kernels are compiled for the GPU or run by Triton's CPU
interpreter is fixed when the module is executed (``TRITON_INTERPRET=1``), so the loader keeps one copy of
this module per mode.

Layout: packed tokens ``q, k, v`` of shape ``[N, H, D]`` (any strides with a unit stride on D),
``seg`` / ``win`` int32 ``[N]``; query block ``b`` only visits keys ``[kv_lo[b], kv_hi[b])`` (the union of the
segments of its tokens) and masks the rest with ``seg_q == seg_k`` (and ``win_q == win_k``).
Softmax statistics are kept in base 2 (``exp2``/``log2`` with ``scale * log2(e)`` folded into the logits);
``lse`` is stored in that base and reused by the backward kernels, which recompute the probabilities
(FlashAttention-2 scheme, no N x N matrix is ever materialised).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _seg_attn_fwd(
    Q, K, V, O, LSE, SEG, WIN, KV_LO, KV_HI,
    stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh, stride_on, stride_oh,
    stride_lh,
    N, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_WIN: tl.constexpr, DOT_PREC: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_h = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < N
    d_ok = offs_d < HEAD_DIM

    q = tl.load(Q + offs_m[:, None] * stride_qn + pid_h * stride_qh + offs_d[None, :],
                mask=m_ok[:, None] & d_ok[None, :], other=0.0)
    seg_q = tl.load(SEG + offs_m, mask=m_ok, other=-1)
    if HAS_WIN:
        win_q = tl.load(WIN + offs_m, mask=m_ok, other=-1)
    lo = tl.load(KV_LO + pid_m)
    hi = tl.load(KV_HI + pid_m)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok = offs_n < hi
        kt = tl.load(K + offs_n[None, :] * stride_kn + pid_h * stride_kh + offs_d[:, None],
                     mask=n_ok[None, :] & d_ok[:, None], other=0.0)
        v = tl.load(V + offs_n[:, None] * stride_vn + pid_h * stride_vh + offs_d[None, :],
                    mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        s = tl.dot(q, kt, input_precision=DOT_PREC) * qk_scale
        seg_k = tl.load(SEG + offs_n, mask=n_ok, other=-2)
        allowed = (seg_q[:, None] == seg_k[None, :]) & n_ok[None, :]
        if HAS_WIN:
            win_k = tl.load(WIN + offs_n, mask=n_ok, other=-2)
            allowed = allowed & (win_q[:, None] == win_k[None, :])
        s = tl.where(allowed, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
        m_i = m_new

    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    out = acc / l_safe[:, None]
    tl.store(O + offs_m[:, None] * stride_on + pid_h * stride_oh + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])
    lse = tl.where(l_i > 0.0, m_i + tl.log2(l_safe), 0.0)
    tl.store(LSE + pid_h * stride_lh + offs_m, lse, mask=m_ok)


@triton.jit
def _seg_attn_bwd_dq(
    Q, K, V, DO, DQ, LSE, DELTA, SEG, WIN, KV_LO, KV_HI,
    stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh, stride_don, stride_doh,
    stride_dqn, stride_dqh, stride_lh,
    N, qk_scale, sm_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_WIN: tl.constexpr, DOT_PREC: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_h = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < N
    d_ok = offs_d < HEAD_DIM
    md = m_ok[:, None] & d_ok[None, :]

    q = tl.load(Q + offs_m[:, None] * stride_qn + pid_h * stride_qh + offs_d[None, :], mask=md, other=0.0)
    do = tl.load(DO + offs_m[:, None] * stride_don + pid_h * stride_doh + offs_d[None, :], mask=md, other=0.0)
    lse = tl.load(LSE + pid_h * stride_lh + offs_m, mask=m_ok, other=0.0)
    delta = tl.load(DELTA + pid_h * stride_lh + offs_m, mask=m_ok, other=0.0)
    seg_q = tl.load(SEG + offs_m, mask=m_ok, other=-1)
    if HAS_WIN:
        win_q = tl.load(WIN + offs_m, mask=m_ok, other=-1)
    lo = tl.load(KV_LO + pid_m)
    hi = tl.load(KV_HI + pid_m)

    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok = offs_n < hi
        nd = n_ok[:, None] & d_ok[None, :]
        k = tl.load(K + offs_n[:, None] * stride_kn + pid_h * stride_kh + offs_d[None, :], mask=nd, other=0.0)
        v = tl.load(V + offs_n[:, None] * stride_vn + pid_h * stride_vh + offs_d[None, :], mask=nd, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale
        seg_k = tl.load(SEG + offs_n, mask=n_ok, other=-2)
        allowed = (seg_q[:, None] == seg_k[None, :]) & n_ok[None, :]
        if HAS_WIN:
            win_k = tl.load(WIN + offs_n, mask=n_ok, other=-2)
            allowed = allowed & (win_q[:, None] == win_k[None, :])
        p = tl.where(allowed, tl.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)
    dq = dq * sm_scale
    tl.store(DQ + offs_m[:, None] * stride_dqn + pid_h * stride_dqh + offs_d[None, :],
             dq.to(DQ.dtype.element_ty), mask=md)


@triton.jit
def _seg_attn_bwd_dkdv(
    Q, K, V, DO, DK, DV, LSE, DELTA, SEG, WIN, Q_LO, Q_HI,
    stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh, stride_don, stride_doh,
    stride_dkn, stride_dkh, stride_dvn, stride_dvh, stride_lh,
    N, qk_scale, sm_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_WIN: tl.constexpr, DOT_PREC: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_h = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    n_ok = offs_n < N
    d_ok = offs_d < HEAD_DIM
    nd = n_ok[:, None] & d_ok[None, :]

    k = tl.load(K + offs_n[:, None] * stride_kn + pid_h * stride_kh + offs_d[None, :], mask=nd, other=0.0)
    v = tl.load(V + offs_n[:, None] * stride_vn + pid_h * stride_vh + offs_d[None, :], mask=nd, other=0.0)
    seg_k = tl.load(SEG + offs_n, mask=n_ok, other=-2)
    if HAS_WIN:
        win_k = tl.load(WIN + offs_n, mask=n_ok, other=-2)
    lo = tl.load(Q_LO + pid_n)
    hi = tl.load(Q_HI + pid_n)

    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m_ok = offs_m < hi
        md = m_ok[:, None] & d_ok[None, :]
        q = tl.load(Q + offs_m[:, None] * stride_qn + pid_h * stride_qh + offs_d[None, :], mask=md, other=0.0)
        do = tl.load(DO + offs_m[:, None] * stride_don + pid_h * stride_doh + offs_d[None, :], mask=md, other=0.0)
        lse = tl.load(LSE + pid_h * stride_lh + offs_m, mask=m_ok, other=0.0)
        delta = tl.load(DELTA + pid_h * stride_lh + offs_m, mask=m_ok, other=0.0)
        seg_q = tl.load(SEG + offs_m, mask=m_ok, other=-1)
        allowed = (seg_q[:, None] == seg_k[None, :]) & m_ok[:, None]
        if HAS_WIN:
            win_q = tl.load(WIN + offs_m, mask=m_ok, other=-1)
            allowed = allowed & (win_q[:, None] == win_k[None, :])
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale  # [M, N]
        p = tl.where(allowed, tl.exp2(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=DOT_PREC)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=DOT_PREC)
    dk = dk * sm_scale
    tl.store(DK + offs_n[:, None] * stride_dkn + pid_h * stride_dkh + offs_d[None, :],
             dk.to(DK.dtype.element_ty), mask=nd)
    tl.store(DV + offs_n[:, None] * stride_dvn + pid_h * stride_dvh + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=nd)


def _block_d(head_dim: int) -> int:
    return max(16, triton.next_power_of_2(head_dim))


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs: exact fp32 products (no TF32), so the kernel matches the reference to ~1e-6.
    return "ieee" if dtype == torch.float32 else "tf32"


def forward(q, k, v, seg, win, kv_lo, kv_hi, scale: float, block_m: int, block_n: int):
    """Run the forward kernel; returns ``(out [N, H, D], lse [H, N] fp32, base 2)``."""
    n, h, d = q.shape
    out = torch.empty_like(q)
    lse = torch.empty((h, n), device=q.device, dtype=torch.float32)
    grid = (triton.cdiv(n, block_m), h)
    _seg_attn_fwd[grid](
        q, k, v, out, lse, seg, win if win is not None else seg, kv_lo, kv_hi,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        out.stride(0), out.stride(1), lse.stride(0),
        n, scale * LOG2E,
        HEAD_DIM=d, BLOCK_D=_block_d(d), BLOCK_M=block_m, BLOCK_N=block_n,
        HAS_WIN=win is not None, DOT_PREC=_dot_precision(q.dtype),
    )
    return out, lse


def backward(do, q, k, v, out, lse, seg, win, kv_lo, kv_hi, q_lo, q_hi, scale: float, block_m: int, block_n: int):
    """Run the two backward kernels; returns ``(dq, dk, dv)`` in the dtypes of q, k, v."""
    n, h, d = q.shape
    do = do.contiguous() if do.stride(-1) != 1 else do
    delta = (do.float() * out.float()).sum(-1).transpose(0, 1).contiguous()  # [H, N]
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    common = dict(HEAD_DIM=d, BLOCK_D=_block_d(d), BLOCK_M=block_m, BLOCK_N=block_n,
                  HAS_WIN=win is not None, DOT_PREC=_dot_precision(q.dtype))
    wins = win if win is not None else seg
    _seg_attn_bwd_dq[(triton.cdiv(n, block_m), h)](
        q, k, v, do, dq, lse, delta, seg, wins, kv_lo, kv_hi,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        do.stride(0), do.stride(1), dq.stride(0), dq.stride(1), lse.stride(0),
        n, scale * LOG2E, scale, **common,
    )
    _seg_attn_bwd_dkdv[(triton.cdiv(n, block_n), h)](
        q, k, v, do, dk, dv, lse, delta, seg, wins, q_lo, q_hi,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        do.stride(0), do.stride(1), dk.stride(0), dk.stride(1), dv.stride(0), dv.stride(1), lse.stride(0),
        n, scale * LOG2E, scale, **common,
    )
    return dq, dk, dv


__all__ = ["forward", "backward", "LOG2E"]
