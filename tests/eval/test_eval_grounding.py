"""Temporal grounding: IoU, R@1, mIoU, QVHighlights mAP / HIT@1, parsers."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ov2_model.eval.grounding import (
    grounding_metrics,
    highlight_metrics,
    parse_highlights,
    parse_moment,
    parse_moments,
    qvh_average_precision,
    qvh_gt_scores,
    temporal_iou,
    top1_moment,
)


def test_temporal_iou_cases():
    assert temporal_iou((0, 10), (0, 10)) == 1.0
    assert temporal_iou((0, 10), (0, 5)) == 0.5
    assert temporal_iou((0, 10), (5, 15)) == pytest.approx(1 / 3)
    assert temporal_iou((0, 1), (1, 2)) == 0.0
    assert temporal_iou((10, 0), (0, 5)) == 0.5  # reversed ends
    assert temporal_iou((3, 3), (3, 3)) == 0.0  # empty union


@settings(max_examples=200, deadline=None)
@given(*(st.floats(0, 100, allow_nan=False) for _ in range(4)))
def test_iou_symmetric_in_unit_interval(a, b, c, d):
    v = temporal_iou((a, b), (c, d))
    assert 0.0 <= v <= 1.0
    assert v == pytest.approx(temporal_iou((c, d), (a, b)))


def test_r1_and_miou_hand_computed():
    gt = (0.0, 10.0)
    items = [((0, 10), gt), ((0, 6), gt), ((0, 4), gt), ((20, 30), gt), ("I don't know", gt)]
    r = grounding_metrics(items)
    assert r["R1@0.3"] == pytest.approx(3 / 5)
    assert r["R1@0.5"] == pytest.approx(2 / 5)
    assert r["R1@0.7"] == pytest.approx(1 / 5)
    assert r["mIoU"] == pytest.approx((1 + 0.6 + 0.4) / 5)
    assert r["num_unparsed"] == 1 and r["num_queries"] == 5


def test_r1_threshold_inclusive_and_multiple_gt():
    assert grounding_metrics([((0, 5), (0, 10))])["R1@0.5"] == 1.0  # IoU exactly 0.5 counts
    # several ground-truth moments: the best IoU
    assert grounding_metrics([((20, 30), [(0, 10), (20, 30)])])["mIoU"] == 1.0
    # scored windows: the highest score is top-1; plain list: the first
    assert top1_moment([[0, 10, 0.2], [20, 30, 0.9]]) == (20.0, 30.0)
    assert top1_moment([[0, 10], [20, 30]]) == (0.0, 10.0)
    assert top1_moment(None) is None and top1_moment([]) is None
    with pytest.raises(ValueError):
        grounding_metrics([])
    with pytest.raises(ValueError):
        top1_moment([1, 2, 3])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The person opens the door from 3.2 to 7.5 seconds.", (3.2, 7.5)),
        ("3.2 - 7.5", (3.2, 7.5)),
        ("[3.2, 7.5]", (3.2, 7.5)),
        ("00:03.2 - 00:07.5", (3.2, 7.5)),
        ("It happens between 1:02 and 1:10.", (62.0, 70.0)),
        ("start time: 3.2s, end time: 7.5s", (3.2, 7.5)),
        ("The event occurs at 7.5s and ends at 3.2s", (3.2, 7.5)),
        ("3200-7500ms", (3.2, 7.5)),
        ("Answer: 12.0 ~ 18.5 seconds", (12.0, 18.5)),
        ("only one time 4.0", None),
        ("no idea", None),
    ],
)
def test_parse_moment_forms(text, expected):
    got = parse_moment(text)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_parse_moments_list():
    assert parse_moments("0-2, 5 to 7 s\n[10, 12]") == [(0.0, 2.0), (5.0, 7.0), (10.0, 12.0)]


def test_qvh_average_precision_hand_computed():
    assert qvh_average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    assert qvh_average_precision([0, 1, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(2 / 3)
    # tie: the first operating point holds one positive and one negative
    assert qvh_average_precision([1, 0, 1], [0.5, 0.5, 0.1]) == pytest.approx(2 / 3)
    assert qvh_average_precision([0, 0], [0.3, 0.2]) == 0.0
    assert qvh_average_precision([1, 1], [0.3, 0.2]) == 1.0
    assert qvh_average_precision([1, 1, 0], [0.1, 0.2, 0.9]) == pytest.approx(2 / 3)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0, 1, allow_nan=False)), min_size=1, max_size=30))
def test_qvh_ap_in_unit_interval_and_perfect_ranking_is_one(rows):
    y = [r[0] for r in rows]
    s = [r[1] for r in rows]
    assert 0.0 <= qvh_average_precision(y, s) <= 1.0
    if 0 < sum(y) < len(y):
        assert qvh_average_precision(y, [float(v) for v in y]) == 1.0


def test_highlight_metrics_hand_computed():
    gt = qvh_gt_scores(8, [1, 2], [[4, 4, 3], [2, 1, 4]])  # 4 clips of 2 s
    r = highlight_metrics([([0.1, 0.9, 0.5, 0.0], gt)])
    # binary (>= 4) per annotator: a0 [0,1,0,0] AP 1; a1 [0,1,0,0] AP 1; a2 [0,0,1,0] AP 1/2
    assert r["mAP"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert r["HIT@1"] == 1.0
    miss = highlight_metrics([([0.9, 0.1, 0.2, 0.0], gt)])
    assert miss["HIT@1"] == 0.0
    # at min_score 2 more clips are positive
    assert highlight_metrics([([0.1, 0.9, 0.5, 0.0], gt)], min_score=2)["mAP"] == 1.0
    # two queries average
    both = highlight_metrics([([0.1, 0.9, 0.5, 0.0], gt), ([0.9, 0.1, 0.2, 0.0], gt)])
    assert both["HIT@1"] == 0.5 and both["num_queries"] == 2


def test_highlight_short_prediction_ranks_missing_clips_last():
    gt = np.array([[0], [0], [4]])
    assert highlight_metrics([([0.5, 0.2], gt)])["mAP"] == pytest.approx(1 / 3)


def test_parse_highlights():
    t = "The highlight timestamps are in the 82, 84, 86 seconds. Their saliency scores are 1.3, 1.7, 1.7."
    s = parse_highlights(t, 50)
    assert s[41] == pytest.approx(1.3) and s[42] == pytest.approx(1.7) and s[43] == pytest.approx(1.7)
    assert s.sum() == pytest.approx(4.7)
    assert parse_highlights("0:04 - 0:07", 5).tolist() == [0, 0, 1, 1, 0]
    assert parse_highlights("at 100 s", 5).tolist() == [0] * 5  # outside the video
    r = highlight_metrics([("highlights at 2 and 4 seconds", [[0], [4], [4], [0]])])
    assert r["mAP"] == 1.0 and r["HIT@1"] == 1.0
