"""Shared fixtures of the ov2_model tests (tiny sizes).

Triton on a machine without CUDA runs only through its CPU interpreter, which must be switched on before
``triton`` is first imported (``triton.language`` decorates its own helpers at import time). This conftest
therefore sets ``TRITON_INTERPRET=1`` when no CUDA device is present and triton is not imported yet, and
records in ``OV2_TEST_TRITON_MODE`` whether the kernels can run (``cuda``, ``interpreter`` or ``unavailable``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch


def _triton_mode() -> str:
    if importlib.util.find_spec("triton") is None:
        return "unavailable"
    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return "interpreter"  # set before triton's first import (tests/conftest.py does this for the session)
    if "triton" in sys.modules:  # imported too early, the interpreter can no longer be enabled
        return "unavailable"
    os.environ["TRITON_INTERPRET"] = "1"
    return "interpreter"


os.environ["OV2_TEST_TRITON_MODE"] = _triton_mode()

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT / "src") not in sys.path:  # allow running without PYTHONPATH=src
    sys.path.insert(0, str(REPO_ROOT / "src"))

FIXTURE_DIR = REPO_ROOT.parent / "shared" / "fixtures" / "ov2_tiny_reference"


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """The released implementation's tiny parity checkpoint; skips when the shared fixtures are absent."""
    if not (FIXTURE_DIR / "config.json").exists():
        pytest.skip(f"parity fixture not found at {FIXTURE_DIR}")
    return FIXTURE_DIR


@pytest.fixture(scope="session")
def reference_model(fixture_dir):
    """The fixture checkpoint loaded through transformers' Auto class (no remote code)."""
    import ov2_model  # noqa: F401  (registers the Auto classes)
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(fixture_dir).eval()
