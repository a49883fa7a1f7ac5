"""Evaluation for ov2: JumpScore, temporal-grounding metrics, event coverage of token allocation, and a
JumpScore-style synthetic video generator. Definitions and formats: ``docs/eval.md``.

The metric modules (:mod:`.jumpscore`, :mod:`.grounding`, :mod:`.coverage`) need numpy at most;
:mod:`.synthetic` needs PyAV, and :func:`.coverage.plot_coverage` needs matplotlib (both imported only there).

    >>> from ov2_model.eval.jumpscore import jumpscore
    >>> jumpscore("0.5s, 0.9s", [0.5, 0.9])["mAP"]
    1.0

The submodule names are kept as attributes (``ov2_model.eval.jumpscore`` is the module; its entry point
is ``ov2_model.eval.jumpscore.jumpscore``).
"""
from __future__ import annotations

from .coverage import compare_modes, event_coverage
from .grounding import grounding_metrics, highlight_metrics, parse_moment, parse_moments, temporal_iou
from . import coverage, grounding, jumpscore
from .jumpscore import JUMPSCORE_PROMPT, greedy_match, jumpscore_dataset, parse_timestamps

__all__ = [
    "JUMPSCORE_PROMPT",
    "compare_modes",
    "event_coverage",
    "greedy_match",
    "grounding_metrics",
    "highlight_metrics",
    "coverage",
    "grounding",
    "jumpscore",
    "jumpscore_dataset",
    "parse_moment",
    "parse_moments",
    "parse_timestamps",
    "temporal_iou",
]
