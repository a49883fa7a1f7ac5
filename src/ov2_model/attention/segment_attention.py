"""Group-visible attention: non-causal attention restricted to packed segments (and optional windows).

Token ``i`` attends to token ``j`` iff ``segment_ids[i] == segment_ids[j]`` and, when ``window_ids`` is
given, ``window_ids[i] == window_ids[j]``. Segments are LLaVA-OV-2's codec groups / four-slice windows
(or ``cu_seqlens`` chunks as in FlashAttention's varlen API); windows are an extra spatial restriction
for native-resolution inputs.

Two implementations of the same function live here:

* :func:`segment_attention_reference` -- torch: every segment is a block of a block-diagonal mask,
  computed with ``scaled_dot_product_attention`` (segments of equal length are batched together; a
  dense ``N x N`` boolean mask is used when segment ids are not contiguous runs).
* the Triton kernel (:mod:`ov2_model.attention.triton_segment_attention`), forward and backward,
  FlashAttention-2 style, which only visits key blocks inside the segments of each query block.

:func:`segment_attention` dispatches: Triton for CUDA tensors, the torch reference elsewhere. Override
with the ``backend`` argument, :func:`set_attention_backend`, or the environment variable
``OV2_ATTENTION_BACKEND`` (``auto`` | ``triton`` | ``torch``), in that order of precedence. On the CPU the
Triton kernel runs only under Triton's interpreter (``TRITON_INTERPRET=1``), which is how it is tested.

Example::

    >>> import torch
    >>> from ov2_model.attention import segment_attention
    >>> q = k = v = torch.randn(10, 2, 64)                       # [N, heads, head_dim]
    >>> cu = torch.tensor([0, 4, 10], dtype=torch.int32)         # two segments: 4 and 6 tokens
    >>> out = segment_attention(q, k, v, cu_seqlens=cu)          # torch reference on the CPU
    >>> out.shape
    torch.Size([10, 2, 64])
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = [
    "segment_attention",
    "segment_attention_reference",
    "segment_ids_from_cu_seqlens",
    "set_attention_backend",
    "get_attention_backend",
    "resolve_backend",
    "triton_available",
]

_BACKENDS = ("auto", "triton", "torch")
_backend_override: Optional[str] = None


# --------------------------------------------------------------------------------------------------
# Backend selection
# --------------------------------------------------------------------------------------------------


def set_attention_backend(name: Optional[str]) -> None:
    """Set the process-wide backend (``"auto"``, ``"triton"``, ``"torch"``); ``None`` clears the override."""
    global _backend_override
    if name is not None and name not in _BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; expected one of {_BACKENDS}")
    _backend_override = name


def get_attention_backend() -> str:
    """The requested process-wide backend: the override, else ``$OV2_ATTENTION_BACKEND``, else ``"auto"``."""
    if _backend_override is not None:
        return _backend_override
    env = os.environ.get("OV2_ATTENTION_BACKEND", "auto").strip().lower() or "auto"
    if env not in _BACKENDS:
        raise ValueError(f"OV2_ATTENTION_BACKEND={env!r}; expected one of {_BACKENDS}")
    return env


def _triton_interpreting() -> bool:
    try:
        from triton import knobs

        return bool(knobs.runtime.interpret)
    except Exception:  # pragma: no cover - triton missing or without knobs
        return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_available() -> bool:
    """True when the ``triton`` package can be imported."""
    return importlib.util.find_spec("triton") is not None


def resolve_backend(q: torch.Tensor, backend: Optional[str] = None, dropout_p: float = 0.0) -> str:
    """Return the concrete backend (``"triton"`` or ``"torch"``) used for ``q``.

    ``auto`` picks Triton for CUDA tensors without dropout when Triton is installed, the torch
    reference otherwise. An explicit ``"triton"`` on CPU tensors requires ``TRITON_INTERPRET=1``.
    """
    name = backend if backend is not None else get_attention_backend()
    if name not in _BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; expected one of {_BACKENDS}")
    if name == "auto":
        return "triton" if (q.is_cuda and dropout_p == 0.0 and triton_available()) else "torch"
    if name == "triton":
        if not triton_available():
            raise RuntimeError("attention backend 'triton' requested but triton is not installed")
        if dropout_p:
            raise ValueError("the Triton segment-attention kernel has no dropout; use backend='torch'")
        if not q.is_cuda and not _triton_interpreting():
            raise RuntimeError(
                "the Triton kernel needs CUDA tensors; on the CPU set TRITON_INTERPRET=1 before the first "
                "Triton call (interpreter, slow) or use backend='torch'"
            )
    return name


# --------------------------------------------------------------------------------------------------
# Segment bookkeeping
# --------------------------------------------------------------------------------------------------


def segment_ids_from_cu_seqlens(cu_seqlens: torch.Tensor, total: Optional[int] = None) -> torch.Tensor:
    """Per-token segment ids (int32 ``[N]``) from cumulative lengths ``[0, n0, n0+n1, ...]``."""
    cu = cu_seqlens.to(torch.long).flatten()
    if cu.numel() < 1 or int(cu[0]) != 0:
        raise ValueError(f"cu_seqlens must start with 0, got {cu_seqlens.tolist()}")
    lengths = cu[1:] - cu[:-1]
    if bool((lengths < 0).any()):
        raise ValueError(f"cu_seqlens must be non-decreasing, got {cu_seqlens.tolist()}")
    n = int(cu[-1])
    if total is not None and n != total:
        raise ValueError(f"cu_seqlens ends at {n} but there are {total} tokens")
    ids = torch.repeat_interleave(torch.arange(lengths.numel(), device=cu.device), lengths)
    return ids.to(torch.int32)


def _runs(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run boundaries of a 1-D id vector: ``(start, length)`` of each maximal run of equal values."""
    _, counts = torch.unique_consecutive(ids, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    return starts, counts


def _is_contiguous_runs(*ids: torch.Tensor) -> bool:
    """True when every distinct id (tuple) occupies a single contiguous run of tokens."""
    key = torch.stack([i.to(torch.long) for i in ids], 0)
    change = (key[:, 1:] != key[:, :-1]).any(0)
    n_runs = int(change.sum()) + 1 if key.shape[1] else 0
    n_unique = torch.unique(key, dim=1).shape[1] if key.shape[1] else 0
    return n_runs == n_unique


def _prepare_ids(
    n: int,
    device: torch.device,
    cu_seqlens: Optional[torch.Tensor],
    segment_ids: Optional[torch.Tensor],
    window_ids: Optional[torch.Tensor],
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    if (cu_seqlens is None) == (segment_ids is None):
        if cu_seqlens is None:
            seg = torch.zeros(n, dtype=torch.int32, device=device)  # one segment: plain full attention
        else:
            raise ValueError("pass either cu_seqlens or segment_ids, not both")
    elif cu_seqlens is not None:
        seg = segment_ids_from_cu_seqlens(cu_seqlens.to(device), total=n)
    else:
        seg = segment_ids.to(device=device, dtype=torch.int32).flatten()
        if seg.numel() != n:
            raise ValueError(f"segment_ids has {seg.numel()} entries for {n} tokens")
    win = None
    if window_ids is not None:
        win = window_ids.to(device=device, dtype=torch.int32).flatten()
        if win.numel() != n:
            raise ValueError(f"window_ids has {win.numel()} entries for {n} tokens")
    return seg.contiguous(), (win.contiguous() if win is not None else None)


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 3 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must all be [N, heads, head_dim]; got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")


# --------------------------------------------------------------------------------------------------
# Torch reference
# --------------------------------------------------------------------------------------------------


def segment_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segment_ids: torch.Tensor,
    window_ids: Optional[torch.Tensor] = None,
    scale: Optional[float] = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Torch reference of the group-visible attention (differentiable, any device and dtype).

    Args:
        q, k, v: ``[N, H, D]`` packed tokens.
        segment_ids: ``[N]`` integer segment of each token.
        window_ids: optional ``[N]`` window of each token (attention also needs equal windows).
        scale: softmax scale, default ``D ** -0.5``.
        dropout_p: attention-probability dropout (training only).

    Returns:
        ``[N, H, D]`` attention output.
    """
    _check_qkv(q, k, v)
    n, h, d = q.shape
    scale = d ** -0.5 if scale is None else scale
    seg = segment_ids.to(q.device).flatten()
    win = window_ids.to(q.device).flatten() if window_ids is not None else None
    if n == 0:
        return q.new_empty(q.shape)
    if not _is_contiguous_runs(seg):
        mask = seg[:, None] == seg[None, :]
        if win is not None:
            mask = mask & (win[:, None] == win[None, :])
        out = F.scaled_dot_product_attention(
            q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=mask, dropout_p=dropout_p,
            scale=scale,
        )
        return out.transpose(0, 1)

    starts, lengths = _runs(seg)
    out = q.new_empty(q.shape)
    for length in torch.unique(lengths).tolist():
        sel = starts[lengths == length]
        idx = sel[:, None] + torch.arange(length, device=q.device)[None, :]  # [B, L]
        qb, kb, vb = (t[idx].transpose(1, 2) for t in (q, k, v))  # [B, H, L, D]
        mask = None
        if win is not None:
            wb = win[idx]
            mask = (wb[:, :, None] == wb[:, None, :])[:, None]  # [B, 1, L, L]
        ob = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, dropout_p=dropout_p, scale=scale)
        out = out.index_put((idx.reshape(-1),), ob.transpose(1, 2).reshape(-1, h, d))
    return out


# --------------------------------------------------------------------------------------------------
# Triton path
# --------------------------------------------------------------------------------------------------

_KERNEL_MODULES: dict[bool, ModuleType] = {}


def _kernels() -> ModuleType:
    """The kernel module, executed once per Triton mode (compiled vs. ``TRITON_INTERPRET=1``)."""
    mode = _triton_interpreting()
    mod = _KERNEL_MODULES.get(mode)
    if mod is None:
        name = f"{__package__}.triton_segment_attention" + ("_interpreted" if mode else "")
        path = Path(__file__).with_name("triton_segment_attention.py")
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        _KERNEL_MODULES[mode] = mod
    return mod


def _block_ranges(range_ids: tuple[torch.Tensor, ...], n: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each block of ``block`` tokens, the token range ``[lo, hi)`` covering the runs of its tokens."""
    key = torch.stack([r.to(torch.long) for r in range_ids], 0)
    change = torch.ones(n, dtype=torch.bool, device=key.device)
    change[1:] = (key[:, 1:] != key[:, :-1]).any(0)
    run_idx = torch.cumsum(change.to(torch.long), 0) - 1
    run_start = torch.nonzero(change).flatten()
    run_end = torch.cat([run_start[1:], torch.tensor([n], device=key.device)])
    first = torch.arange(0, n, block, device=key.device)
    last = torch.clamp(first + block, max=n) - 1
    lo = run_start[run_idx[first]]
    hi = run_end[run_idx[last]]
    return lo.to(torch.int32).contiguous(), hi.to(torch.int32).contiguous()


def _default_blocks(q: torch.Tensor) -> tuple[int, int]:
    if not q.is_cuda:  # interpreter: small blocks keep the numpy emulation quick
        return 16, 16
    if q.dtype == torch.float32 or q.shape[-1] > 128:
        return 32, 32
    return 64, 64


class _SegmentAttentionTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, seg, win, kv_lo, kv_hi, q_lo, q_hi, scale, block_m, block_n):
        kern = _kernels()
        q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
        out, lse = kern.forward(q, k, v, seg, win, kv_lo, kv_hi, scale, block_m, block_n)
        ctx.save_for_backward(q, k, v, out, lse, seg, win, kv_lo, kv_hi, q_lo, q_hi)
        ctx.scale, ctx.block_m, ctx.block_n = scale, block_m, block_n
        return out

    @staticmethod
    def backward(ctx, do):
        q, k, v, out, lse, seg, win, kv_lo, kv_hi, q_lo, q_hi = ctx.saved_tensors
        dq, dk, dv = _kernels().backward(
            do, q, k, v, out, lse, seg, win, kv_lo, kv_hi, q_lo, q_hi, ctx.scale, ctx.block_m, ctx.block_n
        )
        return dq, dk, dv, None, None, None, None, None, None, None, None, None


def _segment_attention_triton(q, k, v, seg, win, scale, block_m, block_n):
    n = q.shape[0]
    perm = None
    if not _is_contiguous_runs(seg):
        perm = torch.argsort(seg, stable=True)
        q, k, v, seg = q[perm], k[perm], v[perm], seg[perm].contiguous()
        win = win[perm].contiguous() if win is not None else None
    # Narrowest ranges that are still exact: (segment, window) runs when windows are contiguous too.
    range_ids = (seg, win) if (win is not None and _is_contiguous_runs(seg, win)) else (seg,)
    kv_lo, kv_hi = _block_ranges(range_ids, n, block_m)
    q_lo, q_hi = _block_ranges(range_ids, n, block_n)
    out = _SegmentAttentionTriton.apply(q, k, v, seg, win, kv_lo, kv_hi, q_lo, q_hi, scale, block_m, block_n)
    if perm is not None:
        out = out[torch.argsort(perm)]
    return out


# --------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------


def segment_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: Optional[torch.Tensor] = None,
    segment_ids: Optional[torch.Tensor] = None,
    window_ids: Optional[torch.Tensor] = None,
    *,
    scale: Optional[float] = None,
    dropout_p: float = 0.0,
    backend: Optional[str] = None,
    block_m: Optional[int] = None,
    block_n: Optional[int] = None,
) -> torch.Tensor:
    """Non-causal attention over packed segments, optionally restricted to equal window ids.

    Args:
        q, k, v: ``[N, H, D]`` packed tokens (fp32, fp16 or bf16; the Triton kernel supports any
            ``D <= 256``, tuned for 64, 80 and 128).
        cu_seqlens: ``[S+1]`` cumulative segment lengths (FlashAttention varlen style), or
        segment_ids: ``[N]`` segment of each token (need not be contiguous or sorted). Neither: one segment.
        window_ids: optional ``[N]``; tokens attend only within equal (segment, window).
        scale: softmax scale, default ``D ** -0.5``.
        dropout_p: attention dropout (torch backend only).
        backend: ``"auto"`` | ``"triton"`` | ``"torch"``; default from :func:`get_attention_backend`.
        block_m, block_n: Triton tile sizes (powers of two >= 16); defaults depend on device/dtype.

    Returns:
        ``[N, H, D]`` output in the dtype of ``q``.
    """
    _check_qkv(q, k, v)
    n, _, d = q.shape
    seg, win = _prepare_ids(n, q.device, cu_seqlens, segment_ids, window_ids)
    scale = d ** -0.5 if scale is None else float(scale)
    if n == 0:
        return q.new_empty(q.shape)
    which = resolve_backend(q, backend, dropout_p)
    if which == "torch":
        return segment_attention_reference(q, k, v, seg, win, scale=scale, dropout_p=dropout_p)
    bm, bn = _default_blocks(q)
    bm, bn = block_m or bm, block_n or bn
    for b in (bm, bn):
        if b < 16 or b & (b - 1):
            raise ValueError(f"Triton block sizes must be powers of two >= 16, got {bm}, {bn}")
    return _segment_attention_triton(q, k, v, seg, win, scale, bm, bn)
