"""JumpScore: timestamp parsing, greedy matching within δ, precision / recall / AP@δ and mAP.

JumpScore (LLaVA-OneVision-2, §6) asks a model for the start time of every cycle of a densely repeated
motion (jump rope) and grades the list of timestamps it answers against the annotated cycle starts.
This module is pure Python (no dependency beyond the standard library); the exact definitions are in
``docs/eval.md`` and repeated on each function.

    >>> from ov2_model.eval.jumpscore import jumpscore
    >>> r = jumpscore("The starts are 0.50s, 0.92s, 1.31s and 2.5s.", [0.5, 0.9, 1.3, 1.7])
    >>> r["precision@0.1"], r["recall@0.1"], r["AP@0.1"]
    (0.75, 0.75, 0.5625)
    >>> round(r["mAP"], 4)
    0.5625

Parsing (:func:`find_times`, :func:`parse_timestamps`) accepts, in model text:

* decimal seconds: ``1``, ``1.25``, ``.5`` (a comma is always a list separator, never a decimal mark);
* a time unit after the number, with or without a space: ``1.2s``, ``1.2 sec``, ``1.2 seconds``,
  ``350ms``, ``350 milliseconds``, ``1.5 min``; composite ``1m5.2s`` / ``1 min 5 s``;
* clock forms: ``mm:ss``, ``mm:ss.fff``, ``hh:mm:ss(.fff)`` (seconds field < 60, and minutes < 60 when hours are
  present; otherwise the token is junk);
* lists with any separators: commas, semicolons, spaces, new lines, ``and``, brackets, JSON arrays;
* ranges on one line ``a-b``, ``a – b``, ``a ~ b``, ``a to b``, ``a until b``, ``between a and b``: a unit written only after
  the end applies to both ends (``500-700ms``); in JumpScore a range contributes its *start* (the cycle start);
* everything else is ignored: words; enumerators at the start of a line (``1.``, ``2)``); labels ``3:``;
  numbers glued to letters (``3rd``, ``1080p``, ``H264``, ``v2``), to ``%`` or to another ``.digit``
  (``1.2.3``); numbers right after an index word (``jump 3``, ``cycle 12``, ``#4``, ``no. 5``, ``frame 30``);
  negative, infinite or NaN values.
"""
from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence, Union

__all__ = [
    "JUMPSCORE_PROMPT",
    "DEFAULT_DELTAS",
    "TimeSpan",
    "find_times",
    "parse_timestamps",
    "greedy_match",
    "average_precision",
    "jumpscore",
    "jumpscore_dataset",
    "Predictions",
]

#: The benchmark's fixed prompt (LLaVA-OneVision-2 §6, "Task and Metric"), used verbatim for every video.
JUMPSCORE_PROMPT = (
    "List the start timestamps in s of each jump rope the main character does in the video. "
    "The start is defined as the moment the rope is behind the legs."
)

#: The three tolerances of the benchmark, in seconds; the headline mAP is the mean of AP over them.
DEFAULT_DELTAS: tuple[float, ...] = (0.1, 0.2, 0.3)

#: Absolute slack added to δ so that decimal inputs such as 1.3 vs 1.2 at δ = 0.1 count as within δ.
_EPS = 1e-9

Predictions = Union[str, Sequence[float], Sequence[Sequence[float]]]


# --------------------------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class TimeSpan:
    """A time found in text: a point (``end is None``) or a range ``[start, end]``, in seconds."""

    start: float
    end: float | None = None


_UNITS = {
    "ms": 0.001, "msec": 0.001, "msecs": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
}
_UNIT_RE = r"(?:milliseconds?|msecs?|ms|seconds?|secs?|s|minutes?|mins?)"
_NUM = r"(?:\d+(?:\.\d+)?|\.\d+)"
_TOKEN = re.compile(
    r"(?P<clock>(?<![\w.:])\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?)(?![\w:]|\.\d)"
    rf"|(?P<comp>(?<![\w.])(?P<cm>\d+)\s*(?:m|mins?|minutes?)\s*(?P<cs>{_NUM})\s*(?:s|secs?|seconds?))(?![A-Za-z])"
    rf"|(?P<num>(?<![\w.:])(?P<n>{_NUM})(?:\s*(?P<unit>{_UNIT_RE})(?![A-Za-z]))?)",
    re.IGNORECASE,
)
_ENUMERATOR = re.compile(r"^([ \t]*(?:[-*\u2022][ \t]*)?)(\d+[.)])(?=\s|$)", re.MULTILINE)
_INDEX_WORD = re.compile(
    r"(?:\b(?:jumps?|cycles?|reps?|repetitions?|steps?|items?|no\.?|nr\.?|numbers?|counts?|events?|frames?"
    r"|queries|query|clips?|videos?|top|rank|#)|#)\s*$",
    re.IGNORECASE,
)
_RANGE_GAP = re.compile(r"^[ \t]*(?:-|\u2013|\u2014|~|to|until|till|through)[ \t]*$", re.IGNORECASE)  # one line
_AND_GAP = re.compile(r"^[ \t]*and[ \t]*$", re.IGNORECASE)
_BETWEEN = re.compile(r"\bbetween\s*$", re.IGNORECASE)


@dataclass
class _Tok:
    value: float
    scale: float | None  # unit scale written after the number, None for a bare number / clock already in s
    bare: bool  # a plain number without unit (its unit may come from the end of a range)
    start: int
    end: int


def _scaled(v: float, scale: float | None) -> float:
    if scale is None or scale == 1.0:
        return v
    return v / 1000.0 if scale == 0.001 else v * scale


def _clock_seconds(s: str) -> float | None:
    parts = s.split(":")
    last = float(parts[-1])
    if last >= 60:
        return None
    if len(parts) == 3:
        h, m = int(parts[0]), int(parts[1])
        if m >= 60:
            return None
        return h * 3600.0 + m * 60.0 + last
    return int(parts[0]) * 60.0 + last


def _tokens(text: str) -> list[_Tok]:
    # enumerators ("1." / "2)" at a line start) are blanked, keeping offsets
    text = _ENUMERATOR.sub(lambda m: m.group(1) + " " * len(m.group(2)), text)
    out: list[_Tok] = []
    for m in _TOKEN.finditer(text):
        a, b = m.span()
        after = text[b:b + 2]
        if m.group("clock"):
            v = _clock_seconds(m.group("clock"))
            if v is None:
                continue
            out.append(_Tok(v, None, False, a, b))
            continue
        if m.group("comp"):
            v = int(m.group("cm")) * 60.0 + float(m.group("cs"))
            out.append(_Tok(v, None, False, a, b))
            continue
        # plain number, maybe with a unit
        unit = m.group("unit")
        if unit is None:
            if after[:1].isalpha() or after[:1] in ("%", ":", "_") or re.match(r"\.\d", after):
                continue  # 3rd, 1080p, 50%, label "3:", 1.2.3
        elif after[:1] in ("%", "_") or after[:1].isdigit():
            continue
        if _INDEX_WORD.search(text[max(0, a - 16):a]):
            continue
        v = float(m.group("n"))
        scale = _UNITS[unit.lower()] if unit else None
        out.append(_Tok(_scaled(v, scale), scale, unit is None, a, b))
    return [t for t in out if math.isfinite(t.value) and t.value >= 0]


def find_times(text: str) -> list[TimeSpan]:
    """All times in ``text``, in order of appearance, as points or ranges (see the module docstring for forms).

    Two consecutive times on the same line joined only by ``-``, ``–``, ``—``, ``~``, ``to``, ``until``, ``till``, ``through``
    (or ``and`` after ``between``) form a range; a bare start takes the unit of the end.

    >>> find_times("jumps at 0.5s, 0:01.25 and from 2 to 2.5 s; 500-700ms")
    [TimeSpan(start=0.5, end=None), TimeSpan(start=1.25, end=None), TimeSpan(start=2.0, end=2.5), TimeSpan(start=0.5, end=0.7)]
    >>> find_times("1. 3.2s\\n2. 3.6s  (jump 3 at frame 108, 1080p)")
    [TimeSpan(start=3.2, end=None), TimeSpan(start=3.6, end=None)]
    """
    toks = _tokens(text)
    spans: list[TimeSpan] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if i + 1 < len(toks):
            u = toks[i + 1]
            gap = text[t.end:u.start]
            is_range = bool(_RANGE_GAP.match(gap)) or (
                bool(_AND_GAP.match(gap)) and bool(_BETWEEN.search(text[max(0, t.start - 12):t.start]))
            )
            if is_range:
                start = t.value
                if t.bare and u.scale is not None:
                    start = _scaled(t.value, u.scale)
                spans.append(TimeSpan(start, u.value))
                i += 2
                continue
        spans.append(TimeSpan(t.value))
        i += 1
    return spans


def parse_timestamps(text: str) -> list[float]:
    """Timestamps (seconds) from a model's answer, in order of appearance; a range contributes its start.

    >>> parse_timestamps("Cycle starts: [0.43, 0.85, 1.27]")
    [0.43, 0.85, 1.27]
    >>> parse_timestamps("00:01.5 - 00:01.9, 00:02.3; 2.7s")
    [1.5, 2.3, 2.7]
    >>> parse_timestamps("I cannot determine the timestamps.")
    []
    """
    return [s.start for s in find_times(text)]


# --------------------------------------------------------------------------------------------- matching
def greedy_match(predictions: Sequence[float], ground_truth: Sequence[float], delta: float) -> list[int | None]:
    """Greedy one-to-one matching: each prediction, in the given order, takes the nearest still-unmatched
    ground-truth time ``g`` with ``|p - g| <= delta`` (ties in distance go to the earlier ``g``).

    Returns, per prediction, the index of the ground truth it matched or ``None`` (a false positive).

    >>> greedy_match([1.0, 1.05, 3.0], [1.02, 1.1], 0.1)
    [0, 1, None]
    """
    if delta < 0:
        raise ValueError(f"delta must be >= 0, got {delta}")
    order = sorted(range(len(ground_truth)), key=lambda j: (ground_truth[j], j))
    gts = [float(ground_truth[j]) for j in order]
    free = list(range(len(gts)))  # sorted positions (into gts) still unmatched
    free_times = list(gts)
    out: list[int | None] = []
    for p in predictions:
        p = float(p)
        k = bisect.bisect_left(free_times, p)
        best = None
        best_d = math.inf
        for c in (k - 1, k):
            if 0 <= c < len(free_times):
                d = abs(free_times[c] - p)
                if d <= delta + _EPS and d < best_d - 1e-15:
                    best, best_d = c, d
        # an exact tie between k-1 and k resolves to k-1 (the earlier time) because k-1 is tried first
        if best is None:
            out.append(None)
            continue
        out.append(order[free[best]])
        del free[best]
        del free_times[best]
    return out


def _split_predictions(predictions: Predictions) -> tuple[list[float], list[float] | None]:
    if isinstance(predictions, str):
        return parse_timestamps(predictions), None
    items = list(predictions)
    if not items:
        return [], None
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
        return [float(x) for x in items], None
    times, confs = [], []
    for x in items:
        if isinstance(x, (str, bytes)) or len(x) != 2:  # type: ignore[arg-type]
            raise ValueError(f"a prediction must be seconds or a (seconds, confidence) pair, got {x!r}")
        times.append(float(x[0]))
        confs.append(float(x[1]))
    return times, confs


def average_precision(
    predictions: Sequence[float],
    ground_truth: Sequence[float],
    delta: float,
    confidences: Sequence[float] | None = None,
) -> dict[str, float]:
    """AP at one tolerance ``delta``, with the precision and recall of the full prediction set.

    Predictions are ranked by decreasing confidence (ties keep the given order; no confidences = all equal)
    and matched greedily in that order (:func:`greedy_match`). Each distinct confidence ``c`` is an operating
    point: ``P(c) = TP(c) / N(c)`` and ``R(c) = TP(c) / G`` over the predictions with confidence ``>= c``.
    AP is the area under the interpolated precision-recall curve,
    ``AP = sum_k (R_k - R_{k-1}) * max_{j >= k} P_j`` (``R_0 = 0``, operating points by decreasing ``c``).
    Without confidences there is one operating point, so ``AP = precision * recall``.
    With no ground truth, precision, recall and AP are 1 when there is no prediction and 0 otherwise;
    with ground truth and no prediction, all three are 0.

    >>> average_precision([1.0, 2.0, 9.0], [1.05, 2.0, 3.0], 0.1)
    {'AP': 0.4444444444444444, 'precision': 0.6666666666666666, 'recall': 0.6666666666666666, 'tp': 2.0}
    >>> average_precision([9.0, 1.0, 2.0], [1.05, 2.0, 3.0], 0.1, confidences=[0.2, 0.9, 0.8])["AP"]
    0.6666666666666666
    """
    n, g = len(predictions), len(ground_truth)
    if confidences is not None and len(confidences) != n:
        raise ValueError(f"{len(confidences)} confidences for {n} predictions")
    for x in list(predictions) + list(ground_truth) + list(confidences or []):
        if not math.isfinite(float(x)):
            raise ValueError(f"non-finite value {x!r}")
    if g == 0:
        v = 1.0 if n == 0 else 0.0
        return {"AP": v, "precision": v, "recall": v, "tp": 0.0}
    if n == 0:
        return {"AP": 0.0, "precision": 0.0, "recall": 0.0, "tp": 0.0}
    confs = [0.0] * n if confidences is None else [float(c) for c in confidences]
    rank = sorted(range(n), key=lambda i: -confs[i])  # stable: ties keep the given order
    matched = greedy_match([predictions[i] for i in rank], ground_truth, delta)
    # operating points at each distinct confidence (end of each tie group)
    points: list[tuple[float, float]] = []  # (recall, precision)
    tp = 0
    for k, i in enumerate(rank):
        tp += matched[k] is not None
        if k == n - 1 or confs[rank[k + 1]] != confs[i]:
            points.append((tp / g, tp / (k + 1)))
    ap = 0.0
    prev_r = 0.0
    best_p_after = [0.0] * len(points)
    run = 0.0
    for k in range(len(points) - 1, -1, -1):
        run = max(run, points[k][1])
        best_p_after[k] = run
    for k, (r, _) in enumerate(points):
        ap += (r - prev_r) * best_p_after[k]
        prev_r = r
    return {"AP": ap, "precision": tp / n, "recall": tp / g, "tp": float(tp)}


def _key(delta: float) -> str:
    return f"{delta:g}"


def jumpscore(
    predictions: Predictions,
    ground_truth: Sequence[float],
    deltas: Iterable[float] = DEFAULT_DELTAS,
) -> dict[str, float]:
    """JumpScore of one video.

    ``predictions`` is the model's text (parsed with :func:`parse_timestamps`), a list of seconds, or a list
    of ``(seconds, confidence)`` pairs. Returns ``"AP@δ"``, ``"precision@δ"``, ``"recall@δ"`` for every δ,
    ``"mAP"`` (mean of the APs), ``"num_predictions"`` and ``"num_ground_truth"``. See
    :func:`average_precision` for the definitions.

    >>> r = jumpscore([0.65, 1.05, 1.45], [0.5, 0.9, 1.3])  # every prediction 0.15 s late
    >>> r["AP@0.1"], r["AP@0.2"], r["AP@0.3"], round(r["mAP"], 4)
    (0.0, 1.0, 1.0, 0.6667)
    """
    times, confs = _split_predictions(predictions)
    deltas = tuple(float(d) for d in deltas)
    if not deltas:
        raise ValueError("at least one delta is needed")
    out: dict[str, float] = {}
    aps = []
    for d in deltas:
        r = average_precision(times, ground_truth, d, confs)
        out[f"AP@{_key(d)}"] = r["AP"]
        out[f"precision@{_key(d)}"] = r["precision"]
        out[f"recall@{_key(d)}"] = r["recall"]
        aps.append(r["AP"])
    out["mAP"] = sum(aps) / len(aps)
    out["num_predictions"] = float(len(times))
    out["num_ground_truth"] = float(len(ground_truth))
    return out


def jumpscore_dataset(
    items: Iterable[tuple[Predictions, Sequence[float]]],
    deltas: Iterable[float] = DEFAULT_DELTAS,
) -> dict[str, float]:
    """Benchmark score: every metric of :func:`jumpscore` averaged over videos (each video weighs the same).

    >>> r = jumpscore_dataset([("0.5 0.9", [0.5, 0.9]), ("", [1.0])])
    >>> r["mAP"], r["num_videos"]
    (0.5, 2.0)
    """
    deltas = tuple(deltas)
    per = [jumpscore(p, g, deltas) for p, g in items]
    if not per:
        raise ValueError("no videos to score")
    keys: Mapping[str, float] = per[0]
    out = {k: sum(r[k] for r in per) / len(per) for k in keys}
    out["num_videos"] = float(len(per))
    return out
