"""Attention kernels of ov2's vision tower (group-visible segment attention, Triton + torch reference)."""

from .segment_attention import (
    get_attention_backend,
    resolve_backend,
    segment_attention,
    segment_attention_reference,
    segment_ids_from_cu_seqlens,
    set_attention_backend,
    triton_available,
)

__all__ = [
    "segment_attention",
    "segment_attention_reference",
    "segment_ids_from_cu_seqlens",
    "set_attention_backend",
    "get_attention_backend",
    "resolve_backend",
    "triton_available",
]
