"""Event coverage of the tokenizer's modes on a video at a matched token budget (issue #8, ``ov2 eval coverage``).

For each mode the budget is turned into canvases of the video's canvas size (every mode here uses the same
canvas geometry, so equal canvases mean equal tokens): ``codec_stream`` gets ``max_canvases = n``, ``frames``
gets ``num_frames = n`` uniform frames. The token source times (``VisualTokens.t_s`` of non-padding tokens) go
to :func:`ov2_model.eval.coverage.compare_modes`.

Events come from an annotation file (JumpScore-style JSON: ``timestamps`` / ``cycle_starts`` / ``events``) or, for
demonstration on real videos without annotations, from bit-cost peaks (:func:`bitcost_peak_events`) — those are
*not* ground truth and are labelled as such in every report.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

from .coverage import compare_modes, format_coverage_table, plot_coverage

__all__ = ["COVERAGE_MODES", "tokens_at_budget", "coverage_report", "bitcost_peak_events", "read_events"]

COVERAGE_MODES = ("codec_stream", "frames")


def _canvas_tokens(path: str, config) -> int:
    import ov2_tokenizer as ov2
    from ov2_tokenizer.frames_mode import canvas_hw

    info = ov2.open_video(path).info
    hc, wc = canvas_hw(info.height, info.width, config)
    return (hc // config.patch_size) * (wc // config.patch_size)


def tokens_at_budget(path: str, mode: str, budget: int, config=None):
    """``VisualTokens`` of ``mode`` on ``path`` with as many canvases as fit ``budget`` tokens (at least 2)."""
    import ov2_tokenizer as ov2

    cfg = config or ov2.TokenizerConfig()
    n = max(2, int(round(budget / _canvas_tokens(path, cfg))))
    if mode == "codec_stream":
        return ov2.tokenize_video(path, mode="codec_stream", config=cfg.replace(max_canvases=n))
    if mode == "frames":
        return ov2.tokenize_video(path, mode="frames", config=cfg.replace(num_frames=n))
    raise ValueError(f"coverage compares {COVERAGE_MODES}, not {mode!r}")


def read_events(path: str) -> list[float]:
    """Event times (seconds) from a JSON annotation: a list, or an object with ``timestamps``,
    ``cycle_starts``, ``events`` or ``ground_truth``."""
    doc = json.loads(Path(path).read_text())
    if isinstance(doc, dict):
        for key in ("timestamps", "cycle_starts", "events", "ground_truth", "gt"):
            if key in doc:
                doc = doc[key]
                break
    if not isinstance(doc, list) or not all(isinstance(x, (int, float)) for x in doc):
        raise ValueError(f"{path}: expected a list of event times in seconds")
    return [float(x) for x in doc]


def bitcost_peak_events(path: str, min_gap_s: float = 1.0, z: float = 1.5) -> list[float]:
    """Demonstration events from the packet bit-cost alone: times of P/B packets whose size exceeds
    mean + z·std of the P/B sizes, keeping the largest within every ``min_gap_s``. Not ground truth."""
    import ov2_tokenizer as ov2

    pk = ov2.open_video(path).packets()
    pb = ~pk.keyframe & np.isfinite(pk.pts_s)
    t, s = pk.pts_s[pb], pk.size[pb].astype(np.float64)
    if s.size == 0:
        return []
    cand = np.nonzero(s > s.mean() + z * s.std())[0]
    chosen: list[int] = []
    for i in cand[np.argsort(-s[cand], kind="stable")]:
        if all(abs(t[i] - t[j]) >= min_gap_s for j in chosen):
            chosen.append(int(i))
    return sorted(float(t[i]) for i in chosen)


def coverage_report(
    path: str,
    events: Sequence[float],
    budget: int,
    delta: float = 0.1,
    modes: Sequence[str] = COVERAGE_MODES,
    png: Optional[str] = None,
    config=None,
) -> Dict[str, Any]:
    """Coverage metrics of each mode at ``budget`` tokens; optionally a PNG of tokens over time per mode."""
    import ov2_tokenizer as ov2

    vts = {m: tokens_at_budget(path, m, budget, config) for m in modes}
    totals = {m: vt.num_tokens for m, vt in vts.items()}
    if len(set(totals.values())) != 1:
        raise ValueError(f"modes made different token counts at budget {budget}: {totals}")
    tokens = {m: (vt.t_s.double().numpy(), (vt.frame >= 0).numpy()) for m, vt in vts.items()}
    duration = float(ov2.open_video(path).info.duration_s) or float(max(np.nanmax(t) for t, _ in tokens.values()))
    res = compare_modes(tokens, np.asarray(events, dtype=np.float64), delta, duration, rel_tol=0.25)
    res["total_tokens"] = totals
    res["canvases"] = {m: vt.num_canvases for m, vt in vts.items()}
    res["budget"] = int(budget)
    if png:
        plot_coverage(tokens, events, duration, png, title=f"{Path(path).name}: {next(iter(totals.values()))} tokens")
        res["png"] = png
    return res


def format_report(res: Dict[str, Any]) -> str:
    return format_coverage_table(res)
