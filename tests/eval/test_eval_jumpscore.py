"""JumpScore: hand-computed cases, parser cases and properties."""
from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings, strategies as st

from ov2_model.eval.jumpscore import (
    JUMPSCORE_PROMPT,
    TimeSpan,
    average_precision,
    find_times,
    greedy_match,
    jumpscore,
    jumpscore_dataset,
    parse_timestamps,
)

GT = [0.5, 0.9, 1.3, 1.7, 2.1]


def test_prompt_is_the_papers():
    assert JUMPSCORE_PROMPT.startswith("List the start timestamps in s of each jump rope")
    assert JUMPSCORE_PROMPT.endswith("the moment the rope is behind the legs.")


# ------------------------------------------------------------------------------------ hand-computed
def test_perfect():
    r = jumpscore(list(GT), GT)
    for d in ("0.1", "0.2", "0.3"):
        assert r[f"AP@{d}"] == r[f"precision@{d}"] == r[f"recall@{d}"] == 1.0
    assert r["mAP"] == 1.0
    assert r["num_predictions"] == r["num_ground_truth"] == 5


@pytest.mark.parametrize("shift", [0.15, -0.15])
def test_shifted_by_015(shift):
    r = jumpscore([t + shift for t in GT], GT)
    assert r["AP@0.1"] == 0.0 and r["precision@0.1"] == 0.0 and r["recall@0.1"] == 0.0
    assert r["AP@0.2"] == 1.0 and r["AP@0.3"] == 1.0
    assert r["mAP"] == pytest.approx(2 / 3)


def test_extra_predictions():
    r = jumpscore(GT + [3.0, 3.5, 0.7], GT)
    # 5 TP of 8 predictions at every δ (0.7 comes after 0.5 and 0.9 took their ground truths)
    for d in ("0.1", "0.2", "0.3"):
        assert r[f"precision@{d}"] == pytest.approx(5 / 8)
        assert r[f"recall@{d}"] == 1.0
        assert r[f"AP@{d}"] == pytest.approx(5 / 8)


def test_missing_predictions():
    r = jumpscore([0.5, 1.3], GT)
    assert r["precision@0.1"] == 1.0
    assert r["recall@0.1"] == pytest.approx(2 / 5)
    assert r["mAP"] == pytest.approx(2 / 5)


def test_evenly_spaced_spam_scores_low():
    gt = [0.2 + 0.4 * k for k in range(75)]  # 30 s clip, period 0.4 s
    dense = [0.05 * k for k in range(600)]
    r = jumpscore(dense, gt)
    assert r["recall@0.1"] == 1.0  # spam finds every cycle...
    assert r["precision@0.1"] == pytest.approx(75 / 600)  # ...at a precision of 1/8
    assert r["mAP"] == pytest.approx(0.125)
    medium = [0.1 * k for k in range(300)]
    assert jumpscore(medium, gt)["mAP"] == pytest.approx(0.25)
    sparse = [float(k) for k in range(30)]  # every second
    rs = jumpscore(sparse, gt)
    assert rs["recall@0.3"] <= 30 / 75
    assert rs["mAP"] < 0.35
    assert jumpscore(gt, gt)["mAP"] == 1.0


def test_empty_output():
    for empty in ("", "I could not find any jumps.", []):
        r = jumpscore(empty, GT)
        assert r["mAP"] == 0.0 and r["num_predictions"] == 0
        assert r["precision@0.1"] == 0.0 and r["recall@0.1"] == 0.0
    assert jumpscore([], [])["mAP"] == 1.0  # nothing to find, nothing claimed
    assert jumpscore([1.0], [])["mAP"] == 0.0


def test_greedy_order_and_ties():
    # a tie in distance goes to the earlier ground truth; the order of predictions matters without confidences
    assert greedy_match([1.5, 1.0], [1.0, 2.0], 0.5) == [0, None]
    assert greedy_match([1.0, 1.5], [1.0, 2.0], 0.5) == [0, 1]
    assert jumpscore([1.5, 1.0], [1.0, 2.0], [0.5])["AP@0.5"] == pytest.approx(0.25)
    assert jumpscore([1.0, 1.5], [1.0, 2.0], [0.5])["AP@0.5"] == 1.0
    # nearest, not first: 1.08 takes 1.15 (0.07) rather than 1.0 (0.08)
    assert greedy_match([1.08, 1.0], [1.0, 1.15], 0.1) == [1, 0]
    # ground truth given unsorted: indices refer to the input order
    assert greedy_match([2.0, 1.0], [2.0, 1.0], 0.01) == [0, 1]
    # δ boundary is inclusive despite decimal rounding
    assert greedy_match([1.3], [1.2], 0.1) == [0]
    assert greedy_match([1.31], [1.2], 0.1) == [None]


def test_confidences_area_under_ranked_pr_curve():
    preds = [(1.0, 0.9), (5.0, 0.8), (2.0, 0.7)]
    r = jumpscore(preds, [1.0, 2.0], [0.1])
    # ranked: TP, FP, TP -> points (R, P) = (0.5, 1), (0.5, 0.5), (1, 2/3); interpolated area 0.5*1 + 0.5*2/3
    assert r["AP@0.1"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert r["precision@0.1"] == pytest.approx(2 / 3) and r["recall@0.1"] == 1.0
    # the FP ranked last instead: area 1
    assert jumpscore([(1.0, 0.9), (5.0, 0.1), (2.0, 0.7)], [1.0, 2.0], [0.1])["AP@0.1"] == 1.0
    # same confidence everywhere = one operating point = precision * recall
    same = jumpscore([(1.0, 0.5), (5.0, 0.5), (2.0, 0.5)], [1.0, 2.0], [0.1])
    assert same["AP@0.1"] == pytest.approx(2 / 3) == jumpscore([1.0, 5.0, 2.0], [1.0, 2.0], [0.1])["AP@0.1"]


def test_dataset_mean_over_videos_and_custom_deltas():
    r = jumpscore_dataset([(GT, GT), ([t + 0.15 for t in GT], GT)])
    assert r["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert r["num_videos"] == 2
    r2 = jumpscore(GT, GT, deltas=(0.05, 0.5))
    assert set(k for k in r2 if k.startswith("AP@")) == {"AP@0.05", "AP@0.5"}
    with pytest.raises(ValueError):
        jumpscore(GT, GT, deltas=())
    with pytest.raises(ValueError):
        jumpscore([(1.0, 0.5, 3.0)], GT)
    with pytest.raises(ValueError):
        average_precision([math.nan], GT, 0.1)


def test_text_prediction_scores_like_numbers():
    text = "Sure! The jump starts are:\n1. 0.5s\n2. 0.9 s\n3. 00:01.3\n4. 1.7 seconds\n5. 2100ms"
    assert parse_timestamps(text) == pytest.approx(GT)
    assert jumpscore(text, GT)["mAP"] == 1.0


# ------------------------------------------------------------------------------------ parser
@pytest.mark.parametrize(
    "text, expected",
    [
        ("0.5, 0.9, 1.3", [0.5, 0.9, 1.3]),
        ("[0.5,0.9;1.3]\n1.7", [0.5, 0.9, 1.3, 1.7]),
        ("0.5s 0.9s and 1.3s", [0.5, 0.9, 1.3]),
        (".5 sec, 1 second, 2 secs", [0.5, 1.0, 2.0]),
        ("350ms, 1200 milliseconds", [0.35, 1.2]),
        ("1.5 min", [90.0]),
        ("1m5.2s, 1 min 2 s", [65.2, 62.0]),
        ("00:05, 1:02.5, 01:00:01", [5.0, 62.5, 3601.0]),
        ("0.5-0.8, 0.9 – 1.2 s, 1.3 to 1.6", [0.5, 0.9, 1.3]),
        ("between 2s and 2.3s", [2.0]),
        ("500-700ms", [0.5]),
        ("Jump 1: 0.5s\nJump 2: 0.9s", [0.5, 0.9]),
        ("#1 at 0.5, cycle 2 at 0.9, frame 30", [0.5, 0.9]),
        ("- 0.5\n- 0.9\n* 1.3", [0.5, 0.9, 1.3]),
        ("1) 0.5\n2) 0.9", [0.5, 0.9]),
        ("In the 3rd second of the 1080p H264 video v2, 50% of 1.2.3 happens at 4.5s", [4.5]),
        ("1:75 and 00:61", []),
        ("no jumps", []),
        ("", []),
        ("-0.5", [0.5]),
    ],
)
def test_parse_timestamps_forms(text, expected):
    assert parse_timestamps(text) == pytest.approx(expected)


def test_find_times_ranges():
    assert find_times("from 3 to 4.5 s") == [TimeSpan(3.0, 4.5)]
    assert find_times("0:10~0:12, 5") == [TimeSpan(10.0, 12.0), TimeSpan(5.0)]
    assert find_times("1, 2 and 3") == [TimeSpan(1.0), TimeSpan(2.0), TimeSpan(3.0)]


# ------------------------------------------------------------------------------------ properties
times = st.floats(min_value=0.0, max_value=30.0, allow_nan=False, allow_infinity=False)
preds_st = st.lists(times, max_size=40)
gt_st = st.lists(times, max_size=40)
deltas = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(preds_st, gt_st, st.lists(st.floats(0, 1, allow_nan=False), max_size=40))
def test_metrics_in_unit_interval(preds, gt, confs):
    r = jumpscore(preds, gt)
    rc = jumpscore(list(zip(preds, confs)), gt)
    for res in (r, rc):
        for k, v in res.items():
            if k.startswith(("AP@", "precision@", "recall@")) or k == "mAP":
                assert 0.0 <= v <= 1.0 + 1e-12, (k, v)


@settings(max_examples=150, deadline=None)
@given(preds_st, gt_st, deltas, deltas, st.data())
def test_monotone_in_delta(preds, gt, d1, d2, data):
    lo, hi = min(d1, d2), max(d1, d2)
    a, b = average_precision(preds, gt, lo), average_precision(preds, gt, hi)
    assert a["tp"] <= b["tp"]
    assert a["AP"] <= b["AP"] + 1e-12
    confs = data.draw(st.lists(st.floats(0, 1, allow_nan=False), min_size=len(preds), max_size=len(preds)))
    ac, bc = average_precision(preds, gt, lo, confs), average_precision(preds, gt, hi, confs)
    assert ac["AP"] <= bc["AP"] + 1e-12


@settings(max_examples=150, deadline=None)
@given(preds_st, gt_st, st.randoms(use_true_random=False))
def test_order_invariant_with_distinct_confidences(preds, gt, rnd):
    confs = [(i + 1) / (len(preds) + 1) for i in range(len(preds))]
    rnd.shuffle(confs)
    pairs = list(zip(preds, confs))
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    assert jumpscore(pairs, gt) == jumpscore(shuffled, gt)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 100), unique=True, max_size=30), gt_st, st.randoms(use_true_random=False))
def test_order_invariant_without_confidences_when_predictions_do_not_compete(slots, gt, rnd):
    # predictions more than 2δ apart can never compete for the same ground truth, so order cannot matter
    preds = [s * 0.61 for s in slots]
    shuffled = list(preds)
    rnd.shuffle(shuffled)
    assert jumpscore(preds, gt) == jumpscore(shuffled, gt)


@settings(max_examples=100, deadline=None)
@given(gt_st, deltas)
def test_perfect_is_one_and_matching_is_one_to_one(gt, d):
    assert average_precision(list(gt), gt, d)["AP"] == (1.0 if gt else 1.0)
    preds = [g + 0.01 for g in gt] + [g - 0.02 for g in gt]
    m = greedy_match(preds, gt, d)
    hit = [j for j in m if j is not None]
    assert len(hit) == len(set(hit))
    assert all(abs(p - gt[j]) <= d + 1e-9 for p, j in zip(preds, m) if j is not None)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.3, 0.6), st.floats(0.0, 0.15), st.floats(0.02, 0.3), st.integers(0, 10**6))
def test_spam_bounded_by_ground_truth_over_predictions(period, jitter, spacing, seed):
    rng = random.Random(seed)
    gt, t = [], rng.uniform(0, period)
    while t < 30:
        gt.append(t)
        t += period * (1 + rng.uniform(-jitter, jitter))
    spam = [spacing * k for k in range(int(30 / spacing))]
    r = jumpscore(spam, gt)
    assert r["mAP"] <= len(gt) / len(spam) + 1e-12
