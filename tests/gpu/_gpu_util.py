"""Shared helpers of tests/gpu: the compiled core (installed build or OV2_CORE_DIR) and why GPU tests skip."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ov2_tokenizer._native import core

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def cuda_skip_reason() -> str:
    """'' when the GPU tests can run, else why not (the message pytest shows)."""
    if not getattr(core, "has_cuda", False):
        return ("the compiled core has no CUDA kernels (built without nvcc or with OV2_CUDA=OFF); build with "
                "-DOV2_CUDA=ON on a machine with the CUDA toolkit")
    n, why = core.cuda.device_count()
    if n == 0:
        return f"no usable CUDA device or driver (CUDA runtime: {why})"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False (CPU-only torch build?)"
    return ""


requires_cuda = pytest.mark.skipif(bool(cuda_skip_reason()), reason=cuda_skip_reason() or "n/a")


def pkg_config(*args: str) -> list[str] | None:
    """pkg-config output split into arguments, or None when pkg-config or the packages are missing."""
    if shutil.which("pkg-config") is None:
        return None
    r = subprocess.run(["pkg-config", *args], capture_output=True, text=True)
    return r.stdout.split() if r.returncode == 0 else None
