"""Attention kernels of ov2's vision tower (group-visible segment attention, Triton + torch reference)."""

from .segment_attention import *  # noqa: F401,F403
from .segment_attention import __all__  # noqa: F401
