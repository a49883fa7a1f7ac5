"""Event coverage of token allocations."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ov2_model.eval.coverage import compare_modes, event_coverage, format_coverage_table, plot_coverage


def test_hand_computed():
    tokens = [0.0, 0.0, 0.5, 1.0, 1.5, 1.5, 1.5]
    r = event_coverage(tokens, [0.05, 1.2, 1.45], delta=0.1, duration=2.0)
    # 0.05: two tokens at 0.0; 1.2: none; 1.45: three tokens at 1.5
    assert r["event_recall"] == pytest.approx(2 / 3)
    assert r["tokens_per_event"] == pytest.approx((2 + 0 + 3) / 3)
    assert r["event_free_token_share"] == pytest.approx(2 / 7)  # 0.5 and 1.0
    assert r["num_tokens"] == 7 and r["num_frames"] == 4 and r["num_events"] == 3
    # windows [0, 0.15] ∪ [1.1, 1.3] ∪ [1.35, 1.55]
    assert r["event_time_share"] == pytest.approx((0.15 + 0.2 + 0.2) / 2.0)


def test_token_near_two_events_counts_for_both():
    r = event_coverage([1.0], [0.95, 1.05], delta=0.1, duration=2.0)
    assert r["event_recall"] == 1.0 and r["tokens_per_event"] == 1.0 and r["event_free_token_share"] == 0.0


def test_padding_excluded_by_mask():
    fps = 30
    times = np.array([-1 / fps, -1 / fps, 1.0, 1.0])  # two padding tokens (frame -1)
    mask = np.array([False, False, True, True])
    with_mask = event_coverage(times, [0.02, 1.0], 0.1, 2.0, mask=mask)
    without = event_coverage(times, [0.02, 1.0], 0.1, 2.0)
    assert with_mask["event_recall"] == 0.5 and with_mask["num_tokens"] == 2
    assert without["event_recall"] == 1.0  # the padding would have "covered" the event at 0.02 s
    with pytest.raises(ValueError):
        event_coverage([math.nan, 1.0], [1.0], 0.1, 2.0)
    assert event_coverage([math.nan, 1.0], [1.0], 0.1, 2.0, mask=[False, True])["event_recall"] == 1.0
    with pytest.raises(ValueError):
        event_coverage([1.0, 2.0], [1.0], 0.1, 2.0, mask=[True])


def test_edge_cases():
    r = event_coverage([], [1.0], 0.1, 2.0)
    assert r["event_recall"] == 0.0 and math.isnan(r["event_free_token_share"])
    r = event_coverage([1.0], [], 0.1, 2.0)
    assert math.isnan(r["event_recall"]) and r["event_free_token_share"] == 1.0 and r["event_time_share"] == 0.0
    with pytest.raises(ValueError):
        event_coverage([1.0], [1.0], -0.1, 2.0)
    with pytest.raises(ValueError):
        event_coverage([1.0], [1.0], 0.1, 0.0)
    # δ boundary inclusive despite decimal rounding
    assert event_coverage([1.3], [1.2], 0.1, 2.0)["event_recall"] == 1.0


def test_compare_modes_at_equal_token_count():
    ev = [0.5, 1.5, 2.5, 3.5]
    uniform = np.repeat(np.arange(0.0, 4.0, 0.25), 4)  # 16 frames x 4 tokens
    focused = np.repeat(np.array(ev), 16)  # 4 frames x 16 tokens
    padded = (np.r_[focused, [-1.0] * 5], np.r_[np.ones(64, bool), np.zeros(5, bool)])
    r = compare_modes({"frames": uniform, "codec": padded}, ev, delta=0.1, duration=4.0)
    assert r["token_counts"] == {"frames": 64, "codec": 64}
    assert r["modes"]["codec"]["event_recall"] == 1.0
    assert r["modes"]["frames"]["event_recall"] == 1.0  # 0.5, 1.5, ... are on the 0.25 s grid
    assert r["modes"]["codec"]["event_free_token_share"] == 0.0
    assert r["modes"]["frames"]["event_free_token_share"] == pytest.approx(48 / 64)
    table = format_coverage_table(r)
    assert table.splitlines()[0].startswith("mode") and "codec" in table and "0.750" in table
    with pytest.raises(ValueError, match="token counts differ"):
        compare_modes({"a": uniform, "b": focused[:40]}, ev, 0.1, 4.0)
    compare_modes({"a": uniform, "b": focused[:62]}, ev, 0.1, 4.0)  # within 5 %
    with pytest.raises(ValueError):
        compare_modes({}, ev, 0.1, 4.0)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(0, 10, allow_nan=False), max_size=50),
    st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=20),
    st.floats(0, 1), st.floats(0, 1),
)
def test_properties(tokens, events, d1, d2):
    lo, hi = sorted((d1, d2))
    a = event_coverage(tokens, events, lo, 10.0)
    b = event_coverage(tokens, events, hi, 10.0)
    assert 0 <= a["event_recall"] <= b["event_recall"] <= 1
    assert a["tokens_per_event"] <= b["tokens_per_event"]
    assert 0 <= a["event_time_share"] <= b["event_time_share"] + 1e-12 <= 1 + 1e-12
    # brute force
    t, e = np.array(tokens), np.array(events)
    if t.size:
        near = np.abs(t[:, None] - e[None, :]) <= lo + 1e-9
        assert a["event_recall"] == pytest.approx(near.any(0).mean())
        assert a["tokens_per_event"] == pytest.approx(near.sum(0).mean())
        assert a["event_free_token_share"] == pytest.approx((~near.any(1)).mean())
    # more tokens never lose an event
    more = event_coverage(tokens + [5.0], events, lo, 10.0)
    assert more["event_recall"] >= a["event_recall"]


def test_plot_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "cov.png"
    modes = {"frames": np.linspace(0, 4, 64), "codec": (np.r_[np.repeat([0.5, 2.5], 32), -1.0], np.r_[np.ones(64, bool), False])}
    assert plot_coverage(modes, [0.5, 2.5], 4.0, str(out), title="t") == str(out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
