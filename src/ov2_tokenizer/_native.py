"""Loads the compiled core ``ov2_tokenizer._core``.

``OV2_CORE_DIR`` may point at an out-of-tree CMake build directory holding ``_core*.so`` (used by developers
to test a build configured differently, e.g. ``-DOV2_FFMPEG=OFF``).
"""
from __future__ import annotations

import glob
import importlib.machinery
import importlib.util
import os
import sys


def _load():
    override = os.environ.get("OV2_CORE_DIR")
    if override:
        hits = sorted(glob.glob(os.path.join(override, "_core*.so")) + glob.glob(os.path.join(override, "_core*.pyd")))
        if not hits:
            raise ImportError(f"OV2_CORE_DIR={override!r} holds no _core extension")
        name = "ov2_tokenizer._core"
        loader = importlib.machinery.ExtensionFileLoader(name, hits[0])
        spec = importlib.util.spec_from_file_location(name, hits[0], loader=loader)
        mod = importlib.util.module_from_spec(spec)
        loader.exec_module(mod)
        sys.modules[name] = mod
        return mod
    from . import _core  # noqa: PLC0415

    return _core


core = _load()
HAS_FFMPEG: bool = bool(getattr(core, "has_ffmpeg", False))
