"""Model-free event coverage of a token allocation: do the visual tokens come from frames near the events?

Everything here is a pure function of per-token source timestamps (arrays in, dicts out), independent of
the tokenizer that produced them. For one allocation (one tokenizer mode on one video), with valid tokens
``T`` (``mask`` true; padding tokens, whose source frame is -1, must be masked out), events ``E`` and a
tolerance ``δ``:

* ``event_recall`` = |{e ∈ E : ∃ t ∈ T, |t - e| <= δ}| / |E|  (share of events with a token within δ);
* ``tokens_per_event`` = mean over e ∈ E of |{t ∈ T : |t - e| <= δ}|  (a token near two events counts for both);
* ``event_free_token_share`` = |{t ∈ T : |t - e| > δ for every e}| / |T|  (tokens spent on event-free time);
* ``event_time_share`` = |[0, duration] ∩ ⋃_e [e - δ, e + δ]| / duration  (what a time-uniform allocation
  would put near events: ``1 - event_time_share`` is its expected event-free token share);
* ``num_tokens`` = |T|, ``num_frames`` = number of distinct source timestamps among ``T``.

    >>> r = event_coverage([0.0, 0.0, 0.5, 1.0, 1.5], [0.05, 1.2], delta=0.1, duration=2.0)
    >>> r["event_recall"], r["tokens_per_event"], r["event_free_token_share"]
    (0.5, 1.0, 0.6)
"""
from __future__ import annotations

from typing import Mapping, Sequence, Tuple, Union

import numpy as np

__all__ = ["event_coverage", "compare_modes", "format_coverage_table", "plot_coverage", "ModeTokens"]

#: A mode's tokens: an array of source times, or ``(times, mask)`` with ``mask`` true for real tokens.
ModeTokens = Union[np.ndarray, Sequence[float], Tuple[Sequence[float], Sequence[bool]]]


def _valid_times(times: Sequence[float] | np.ndarray, mask: Sequence[bool] | np.ndarray | None) -> np.ndarray:
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if mask is not None:
        m = np.asarray(mask, dtype=bool).reshape(-1)
        if m.shape != t.shape:
            raise ValueError(f"mask has {m.size} entries for {t.size} tokens")
        t = t[m]
    if not np.isfinite(t).all():
        raise ValueError("a valid (unmasked) token has a non-finite source time; mask padding tokens out")
    return t


def _union_length(events: np.ndarray, delta: float, duration: float) -> float:
    if events.size == 0 or duration <= 0:
        return 0.0
    lo = np.clip(np.sort(events) - delta, 0.0, duration)
    hi = np.clip(np.sort(events) + delta, 0.0, duration)
    total, cur_lo, cur_hi = 0.0, lo[0], hi[0]
    for a, b in zip(lo[1:], hi[1:]):
        if a > cur_hi:
            total += cur_hi - cur_lo
            cur_lo, cur_hi = a, b
        else:
            cur_hi = max(cur_hi, b)
    return float(total + cur_hi - cur_lo)


def event_coverage(
    token_times: Sequence[float] | np.ndarray,
    event_times: Sequence[float] | np.ndarray,
    delta: float,
    duration: float,
    mask: Sequence[bool] | np.ndarray | None = None,
) -> dict[str, float]:
    """Coverage of ``event_times`` by the tokens' source times (definitions in the module docstring).

    ``token_times``: one source time (seconds) per visual token; ``mask``: true for real tokens (``None`` = all
    real). ``delta`` in seconds, ``duration`` of the clip in seconds. With no events, ``event_recall`` and
    ``tokens_per_event`` are NaN; with no valid token, ``event_free_token_share`` is NaN.

    >>> times = [-1.0, 0.3, 0.3, 0.9]
    >>> r = event_coverage(times, [0.3, 2.0], delta=0.1, duration=3.0, mask=[False, True, True, True])
    >>> r["event_recall"], r["tokens_per_event"], r["num_tokens"], r["num_frames"]
    (0.5, 1.0, 3.0, 2.0)
    """
    if delta < 0:
        raise ValueError(f"delta must be >= 0, got {delta}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    t = _valid_times(token_times, mask)
    e = np.asarray(event_times, dtype=np.float64).reshape(-1)
    if not np.isfinite(e).all():
        raise ValueError("non-finite event time")
    tol = delta + 1e-9
    ts = np.sort(t)
    if e.size:
        # tokens within [e - δ, e + δ] for each event, by binary search on sorted token times
        counts = np.searchsorted(ts, e + tol, side="right") - np.searchsorted(ts, e - tol, side="left")
        recall = float(np.mean(counts > 0))
        per_event = float(np.mean(counts))
    else:
        recall = per_event = float("nan")
    if t.size:
        if e.size:
            es = np.sort(e)
            k = np.searchsorted(es, t)
            d_left = np.abs(t - es[np.clip(k - 1, 0, es.size - 1)])
            d_right = np.abs(es[np.clip(k, 0, es.size - 1)] - t)
            free = float(np.mean(np.minimum(d_left, d_right) > tol))
        else:
            free = 1.0
    else:
        free = float("nan")
    return {
        "event_recall": recall,
        "tokens_per_event": per_event,
        "event_free_token_share": free,
        "event_time_share": _union_length(e, delta, duration) / duration,
        "num_tokens": float(t.size),
        "num_frames": float(np.unique(t).size),
        "num_events": float(e.size),
    }


def _unpack(tokens: ModeTokens) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(tokens, tuple) and len(tokens) == 2 and np.ndim(tokens[0]) == 1 and np.ndim(tokens[1]) == 1:
        return np.asarray(tokens[0], dtype=np.float64), np.asarray(tokens[1], dtype=bool)
    return np.asarray(tokens, dtype=np.float64), None


def compare_modes(
    modes: Mapping[str, ModeTokens],
    event_times: Sequence[float] | np.ndarray,
    delta: float,
    duration: float,
    rel_tol: float = 0.05,
) -> dict[str, object]:
    """:func:`event_coverage` for several modes that must have the same number of valid tokens.

    ``modes`` maps a mode name to its token source times, or to ``(times, mask)``. The valid-token counts may
    differ by at most ``rel_tol`` of the largest (budgets are rarely filled exactly); otherwise ``ValueError``,
    because a comparison at unequal token counts is not a comparison of allocations.
    Returns ``{"delta", "duration", "num_events", "token_counts", "modes": {name: metrics}}``.

    >>> r = compare_modes({"uniform": [0.0, 1.0, 2.0, 3.0], "events": [0.5, 0.5, 2.5, 2.5]},
    ...                   [0.5, 2.5], delta=0.1, duration=4.0)
    >>> r["modes"]["uniform"]["event_recall"], r["modes"]["events"]["event_recall"]
    (0.0, 1.0)
    """
    if not modes:
        raise ValueError("no modes to compare")
    results: dict[str, dict[str, float]] = {}
    for name, tokens in modes.items():
        times, mask = _unpack(tokens)
        results[name] = event_coverage(times, event_times, delta, duration, mask)
    counts = {k: int(v["num_tokens"]) for k, v in results.items()}
    hi, lo = max(counts.values()), min(counts.values())
    if hi - lo > rel_tol * hi:
        raise ValueError(f"token counts differ by more than {rel_tol:.0%}: {counts}")
    return {
        "delta": float(delta),
        "duration": float(duration),
        "num_events": int(np.asarray(event_times).size),
        "token_counts": counts,
        "modes": results,
    }


def format_coverage_table(result: Mapping[str, object]) -> str:
    """A plain-text table of :func:`compare_modes`' result, one row per mode.

    >>> r = compare_modes({"a": [0.5], "b": [2.0]}, [0.5], delta=0.1, duration=4.0)
    >>> print(format_coverage_table(r))
    mode  tokens  frames  event_recall@0.1  tokens/event  event_free_share
    a          1       1             1.000          1.00             0.000
    b          1       1             0.000          0.00             1.000
    """
    modes: Mapping[str, Mapping[str, float]] = result["modes"]  # type: ignore[assignment]
    d = float(result["delta"])  # type: ignore[arg-type]
    name_w = max(4, *(len(k) for k in modes))
    head = f"{'mode':<{name_w}}  tokens  frames  event_recall@{d:g}  tokens/event  event_free_share"
    rows = [head]
    rw = len(f"event_recall@{d:g}")
    for k, m in modes.items():
        rows.append(
            f"{k:<{name_w}}  {int(m['num_tokens']):>6}  {int(m['num_frames']):>6}  {m['event_recall']:>{rw}.3f}"
            f"  {m['tokens_per_event']:>12.2f}  {m['event_free_token_share']:>16.3f}"
        )
    return "\n".join(rows)


def plot_coverage(
    modes: Mapping[str, ModeTokens],
    event_times: Sequence[float] | np.ndarray,
    duration: float,
    path: str,
    bin_width: float | None = None,
    title: str | None = None,
) -> str:
    """Write a PNG: per mode, a histogram of valid tokens over time, with the events as vertical markers.

    ``modes`` as in :func:`compare_modes`. ``bin_width`` defaults to ``duration / 300``. Needs matplotlib
    (imported here only). Returns ``path``.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    if not modes:
        raise ValueError("no modes to plot")
    bw = float(bin_width) if bin_width else duration / 300.0
    edges = np.arange(0.0, duration + bw, bw)
    ev = np.asarray(event_times, dtype=np.float64).reshape(-1)
    fig, axes = plt.subplots(len(modes), 1, figsize=(12, 1.8 * len(modes) + 0.6), sharex=True, squeeze=False)
    for ax, (name, tokens) in zip(axes[:, 0], modes.items()):
        times, mask = _unpack(tokens)
        t = _valid_times(times, mask)
        counts, _ = np.histogram(t, bins=edges)
        for x in ev:
            ax.axvline(x, color="tab:red", alpha=0.35, linewidth=0.6)
        ax.bar(edges[:-1], counts, width=bw, align="edge", color="tab:blue")
        ax.set_ylabel(f"{name}\n({t.size} tok)", fontsize=8)
        ax.set_xlim(0.0, duration)
    axes[-1, 0].set_xlabel("time (s); red: events")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
