"""How the tokenize tests reach the compiled algorithms: ``ov2_tokenizer._native.core.tok``.

Works with the installed build and with ``OV2_CORE_DIR`` (an out-of-tree CMake build). While the package's
``__init__`` cannot be imported (parts under construction), ``_native.py`` is loaded on its own so the
algorithm tests still run against ``OV2_CORE_DIR``.
"""
from __future__ import annotations

import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "reference"))

try:
    from ov2_tokenizer._native import core  # noqa: E402
except ImportError:
    if not os.environ.get("OV2_CORE_DIR"):
        raise
    _path = os.path.join(_HERE, "..", "..", "src", "ov2_tokenizer", "_native.py")
    _spec = importlib.util.spec_from_file_location("_ov2_native_standalone", _path)
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    core = _mod.core

tok = core.tok

import tokenize_ref as ref  # noqa: E402,F401

from hypothesis import HealthCheck, settings  # noqa: E402

# Moderate example counts: the suite shares a 2-core machine and must stay well under two minutes.
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same(a: dict, b: dict, keys=None):
    """Every key of two result dicts equal, arrays bit-identical (dtype included)."""
    import numpy as np

    keys = sorted(set(a) | set(b)) if keys is None else keys
    for k in keys:
        assert k in a and k in b, f"key {k!r} missing"
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            x, y = np.asarray(x), np.asarray(y)
            assert x.dtype == y.dtype, f"{k}: dtype {x.dtype} != {y.dtype}"
            assert x.shape == y.shape, f"{k}: shape {x.shape} != {y.shape}"
            assert np.array_equal(x, y), f"{k}: values differ\n{x}\n{y}"
        else:
            assert x == y, f"{k}: {x!r} != {y!r}"
