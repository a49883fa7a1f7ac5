"""Temporal-grounding metrics: single-moment grounding (Charades-STA, ActivityNet Captions) and highlight
detection (QVHighlights), with parsers for typical model answers. numpy only.

Single-moment grounding, per query: the top-1 predicted moment ``[s, e]`` (the first moment in the answer
text, or the highest-scored one when scores are given) is compared with the ground-truth moment by temporal
IoU (the best IoU when several ground-truth moments are given). ``R1@m`` is the share of queries with
IoU ``>= m`` (m ∈ {0.3, 0.5, 0.7}); ``mIoU`` is the mean IoU. An answer without a moment has IoU 0.

    >>> grounding_metrics([("The person opens the door from 3.2 to 7.5 seconds.", (3.0, 8.0)),
    ...                    ("[10, 20]", (0.0, 5.0))])
    {'R1@0.3': 0.5, 'R1@0.5': 0.5, 'R1@0.7': 0.5, 'mIoU': 0.43, 'num_queries': 2.0, 'num_unparsed': 0.0}

Highlight detection (QVHighlights), per query: clips of ``clip_length`` (2 s) seconds, ground-truth saliency
scores 0–4 from each annotator (3 in QVHighlights), binarised with ``score >= min_score`` (4 = "VeryGood", the
reported setting). ``HIT@1``: the clip with the highest predicted saliency (the first on ties) is positive for
at least one annotator. ``mAP``: per query and annotator, the average precision of the predicted saliency
ranking against that annotator's binary labels, computed exactly as the official QVHighlights evaluation
(``standalone_eval``) does (see :func:`qvh_average_precision`), averaged over annotators and queries.
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Sequence, Union

import numpy as np

from .jumpscore import find_times

__all__ = [
    "IOU_THRESHOLDS",
    "temporal_iou",
    "parse_moments",
    "parse_moment",
    "grounding_metrics",
    "top1_moment",
    "gt_moments",
    "qvh_gt_scores",
    "qvh_average_precision",
    "parse_highlights",
    "highlight_metrics",
    "MomentPrediction",
]

IOU_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)

Moment = tuple[float, float]
MomentPrediction = Union[str, Sequence[float], Sequence[Sequence[float]], None]


def temporal_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two time intervals ``[s, e]`` (each given as ``(s, e)``; reversed ends are swapped).

    ``|a ∩ b| / |a ∪ b|`` with ``|a ∪ b| = |a| + |b| - |a ∩ b|``; 0 when the union has zero length.

    >>> temporal_iou((0, 10), (5, 15))
    0.3333333333333333
    >>> temporal_iou((0, 1), (2, 3))
    0.0
    """
    s1, e1 = sorted((float(a[0]), float(a[1])))
    s2, e2 = sorted((float(b[0]), float(b[1])))
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    union = (e1 - s1) + (e2 - s2) - inter
    return inter / union if union > 0 else 0.0


def parse_moments(text: str) -> list[Moment]:
    """Moments ``(start, end)`` in seconds from a model's answer, in order of appearance.

    Times are found with :func:`ov2_model.eval.jumpscore.find_times` (decimal seconds, units, ``mm:ss``, ...).
    An explicit range (``3.2 - 7.5``, ``from 3.2 to 7.5 seconds``, ``between 3.2s and 7.5s``, ``00:03~00:07``)
    is one moment; otherwise consecutive single times are paired (``[3.2, 7.5]``,
    ``start: 3.2s, end: 7.5s``); a last unpaired time is dropped. Reversed moments are put in order.

    >>> parse_moments("from 3.2 to 7.5 seconds")
    [(3.2, 7.5)]
    >>> parse_moments("Moments: [3.2, 7.5], [00:10, 00:12.5]")
    [(3.2, 7.5), (10.0, 12.5)]
    >>> parse_moments("start time: 1:05, end time: 1:02")
    [(62.0, 65.0)]
    """
    spans = find_times(text)
    out: list[Moment] = []
    pending: float | None = None
    for sp in spans:
        if sp.end is not None:
            pending = None
            out.append((min(sp.start, sp.end), max(sp.start, sp.end)))
        elif pending is None:
            pending = sp.start
        else:
            out.append((min(pending, sp.start), max(pending, sp.start)))
            pending = None
    return out


def parse_moment(text: str) -> Moment | None:
    """The first moment of :func:`parse_moments`, or ``None``.

    >>> parse_moment("The event happens 3.2 - 7.5 s into the video.")
    (3.2, 7.5)
    >>> parse_moment("no idea") is None
    True
    """
    m = parse_moments(text)
    return m[0] if m else None


def top1_moment(pred: MomentPrediction) -> Moment | None:
    """The top-1 moment of a prediction: parsed from text (first moment), the moment itself, the first of a
    list of moments, or the highest-scored of ``(s, e, score)`` rows (the first on ties); ``None`` if absent.

    >>> top1_moment([[0, 2, 0.1], [5, 9, 0.8]])
    (5.0, 9.0)
    """
    if pred is None:
        return None
    if isinstance(pred, str):
        return parse_moment(pred)
    items = list(pred)
    if not items:
        return None
    if all(isinstance(x, (int, float)) for x in items):
        if len(items) != 2:
            raise ValueError(f"a moment is (start, end), got {pred!r}")
        a, b = float(items[0]), float(items[1])  # type: ignore[arg-type]
        return (min(a, b), max(a, b))
    rows = [list(map(float, x)) for x in items]  # type: ignore[arg-type]
    if any(len(r) not in (2, 3) for r in rows):
        raise ValueError(f"moments are (start, end) or (start, end, score), got {pred!r}")
    if all(len(r) == 3 for r in rows):
        best = max(range(len(rows)), key=lambda i: (rows[i][2], -i))  # highest score, first on ties
        r = rows[best]
    else:
        r = rows[0]
    return (min(r[0], r[1]), max(r[0], r[1]))


def gt_moments(gt: Sequence[float] | Sequence[Sequence[float]]) -> list[Moment]:
    """Ground-truth moments as a list: ``(s, e)`` or a list of ``(s, e)``."""
    items = list(gt)
    if items and all(isinstance(x, (int, float)) for x in items):
        return [(float(items[0]), float(items[1]))]
    return [(float(x[0]), float(x[1])) for x in items]  # type: ignore[index]


def grounding_metrics(
    items: Iterable[tuple[MomentPrediction, Sequence[float] | Sequence[Sequence[float]]]],
    thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> dict[str, float]:
    """R@1 at each IoU threshold and mIoU over queries (see the module docstring).

    Each item is ``(prediction, ground_truth)``: the prediction is answer text, a moment ``(s, e)``, a list of
    moments (the first is top-1) or of ``(s, e, score)`` (the highest score is top-1), or ``None``; the ground
    truth is ``(s, e)`` or a list of them. Values are fractions in [0, 1], ``mIoU`` rounded to 6 decimals.

    >>> grounding_metrics([((0, 10), (0, 10)), ((0, 10), (5, 15))])["R1@0.3"]
    1.0
    """
    ious: list[float] = []
    unparsed = 0
    for pred, gt in items:
        top = top1_moment(pred)
        gts = gt_moments(gt)
        if not gts:
            raise ValueError("a query without a ground-truth moment")
        if top is None:
            unparsed += 1
            ious.append(0.0)
            continue
        ious.append(max(temporal_iou(top, g) for g in gts))
    if not ious:
        raise ValueError("no queries to score")
    out = {f"R1@{t:g}": sum(i >= t - 1e-12 for i in ious) / len(ious) for t in thresholds}
    out["mIoU"] = round(sum(ious) / len(ious), 6)
    out["num_queries"] = float(len(ious))
    out["num_unparsed"] = float(unparsed)
    return out


# --------------------------------------------------------------------------------------------- highlights
def qvh_gt_scores(
    duration: float,
    relevant_clip_ids: Sequence[int],
    saliency_scores: Sequence[Sequence[float]],
    clip_length: float = 2.0,
) -> np.ndarray:
    """Full-video ground-truth saliency ``(num_clips, num_annotators)`` from a QVHighlights annotation.

    ``num_clips = int(duration / clip_length)``; clips outside ``relevant_clip_ids`` score 0.

    >>> qvh_gt_scores(8, [1, 2], [[4, 3, 4], [2, 2, 1]]).tolist()
    [[0.0, 0.0, 0.0], [4.0, 3.0, 4.0], [2.0, 2.0, 1.0], [0.0, 0.0, 0.0]]
    """
    n = int(duration / clip_length)
    s = np.asarray(saliency_scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError("saliency_scores must be (num_relevant_clips, num_annotators)")
    full = np.zeros((n, s.shape[1]), dtype=np.float64)
    ids = np.asarray(relevant_clip_ids, dtype=np.int64)
    if ids.shape[0] != s.shape[0]:
        raise ValueError(f"{ids.shape[0]} relevant clip ids for {s.shape[0]} saliency rows")
    keep = ids < n
    full[ids[keep]] = s[keep]
    return full


def qvh_average_precision(y_true: Sequence[int], scores: Sequence[float]) -> float:
    """Average precision of a ranking as the official QVHighlights evaluation computes it.

    ``y_true`` is binary. If all labels are 0 the AP is 0, if all are 1 it is 1. Otherwise operating points are
    taken at each distinct score (descending); precision is made monotone (each point takes the best precision
    at equal or higher recall), and AP is the mean of that interpolated precision over the operating points at
    which recall increases. (When every score is distinct this is the usual interpolated AP.)

    >>> qvh_average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    0.8333333333333333
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(scores, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError("y_true and scores must be 1-D of the same length")
    if y.size == 0 or (y == 0).all():
        return 0.0
    if (y == 1).all():
        return 1.0
    if not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValueError("y_true must be binary")
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    ends = np.r_[np.nonzero(np.diff(ps))[0], ys.size - 1]  # last index of each distinct score
    tps = np.cumsum(ys)[ends].astype(np.float64)
    n = (ends + 1).astype(np.float64)
    prec = tps / n
    rec = tps / tps[-1]
    interp = np.maximum.accumulate(prec[::-1])[::-1]  # best precision at this or higher recall
    prev = np.r_[0.0, rec[:-1]]
    rises = rec > prev
    return float(interp[rises].mean())


def parse_highlights(text: str, num_clips: int, clip_length: float = 2.0) -> np.ndarray:
    """Per-clip predicted saliency from a model's highlight answer.

    Forms: TimeChat style ``"The highlight timestamps are in the 82, 84, 86 seconds. Their saliency scores
    are 1.3, 1.7, 1.7."`` (times before the first ``score``, scores after it, paired in order; missing scores
    count 1); plain lists of times (each scores 1); ranges (every clip overlapping the range scores 1). A time
    ``t`` falls in clip ``floor(t / clip_length)``; a clip mentioned several times keeps its highest score;
    unmentioned clips score 0; clips outside ``[0, num_clips)`` are ignored.

    >>> parse_highlights("highlights at 2, 6 seconds; saliency scores are 3.5, 2", 4).tolist()
    [0.0, 3.5, 0.0, 2.0]
    >>> parse_highlights("from 2 to 5.5 s", 4).tolist()
    [0.0, 1.0, 1.0, 0.0]
    """
    out = np.zeros(int(num_clips), dtype=np.float64)
    m = re.search(r"scores?\b", text, re.IGNORECASE)
    times_part, score_part = (text[: m.start()], text[m.end():]) if m else (text, "")
    spans = find_times(times_part)
    scores = [s.start for s in find_times(score_part)]
    for k, sp in enumerate(spans):
        val = scores[k] if k < len(scores) else 1.0
        if sp.end is None:
            lo = hi = int(math.floor(sp.start / clip_length))
        else:
            a, b = sorted((sp.start, sp.end))
            lo = int(math.floor(a / clip_length))
            hi = max(lo, int(math.ceil(b / clip_length)) - 1)
        for c in range(max(lo, 0), min(hi, out.size - 1) + 1):
            out[c] = max(out[c], val)
    return out


def _as_scores(pred: str | Sequence[float], num_clips: int, clip_length: float) -> np.ndarray:
    if isinstance(pred, str):
        return parse_highlights(pred, num_clips, clip_length)
    s = np.asarray(pred, dtype=np.float64).reshape(-1)
    if s.size >= num_clips:
        return s[:num_clips]
    low = (s.min() - 1.0) if s.size else 0.0  # clips without a prediction rank last
    return np.r_[s, np.full(num_clips - s.size, low)]


def highlight_metrics(
    items: Iterable[tuple[str | Sequence[float], Sequence[Sequence[float]]]],
    min_score: float = 4.0,
    clip_length: float = 2.0,
) -> dict[str, float]:
    """QVHighlights ``HL-mAP`` and ``HIT@1`` (fractions in [0, 1]) at ``score >= min_score``.

    Each item is ``(prediction, gt_scores)``: ``gt_scores`` is ``(num_clips, num_annotators)`` over the whole
    video (:func:`qvh_gt_scores`); the prediction is a per-clip saliency list (truncated to ``num_clips``; missing
    clips rank last) or answer text (:func:`parse_highlights`).

    >>> gt = [[0, 0, 0], [4, 4, 3], [2, 1, 2], [0, 0, 0]]
    >>> highlight_metrics([([0.1, 0.9, 0.5, 0.0], gt)])
    {'mAP': 0.6666666666666666, 'HIT@1': 1.0, 'num_queries': 1.0}
    """
    aps: list[float] = []
    hits: list[float] = []
    for pred, gt in items:
        g = np.asarray(gt, dtype=np.float64)
        if g.ndim == 1:
            g = g[:, None]
        if g.ndim != 2 or g.shape[0] == 0:
            raise ValueError("gt_scores must be (num_clips, num_annotators) with at least one clip")
        s = _as_scores(pred, g.shape[0], clip_length)
        binary = (g >= min_score).astype(np.int64)
        top = int(np.argmax(s))
        hits.append(float(binary[top].max()))
        aps.append(float(np.mean([qvh_average_precision(binary[:, w], s) for w in range(binary.shape[1])])))
    if not aps:
        raise ValueError("no queries to score")
    return {"mAP": float(np.mean(aps)), "HIT@1": float(np.mean(hits)), "num_queries": float(len(aps))}
