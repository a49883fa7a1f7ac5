"""The docstring examples of the eval modules run and hold."""
from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["__init__", "jumpscore", "grounding", "coverage", "synthetic", "cli"])
def test_docstring_examples(name):
    if name == "synthetic":
        pytest.importorskip("av")
    mod = importlib.import_module("ov2_model.eval" if name == "__init__" else f"ov2_model.eval.{name}")
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0
