"""Bad input never crashes the process: every algorithm reports it as ValueError (C++ never aborts)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _tok import FAST, tok


def test_shape_and_value_errors():
    z = np.zeros
    cases = [
        lambda: tok.saliency(8, 8, z((1, 2, 4), np.float32)),  # grid smaller than ceil(frame/4)
        lambda: tok.saliency(8, 8, z((2, 2, 3), np.float32)),
        lambda: tok.saliency(8, 8, None, z((2, 2), np.uint8)),
        lambda: tok.saliency(8, 8, None, None, z((8, 7), np.int16)),
        lambda: tok.saliency(0, 8),
        lambda: tok.block_score(z((10, 8), np.float32), None, 2, 2),
        lambda: tok.block_score(z((8, 8), np.float32), z((4, 4), np.float32), 2, 2),
        lambda: tok.score_frame(10, 8, 8, 8, patch=2, merge=2),
        lambda: tok.resize_area(z((4, 4), np.float32), 0, 3),
        lambda: tok.resize_bilinear(z((0, 4, 3), np.uint8), 3, 3),
        lambda: tok.candidate_frames(z(3), -1),
        lambda: tok.group_of_time(z(2), np.array([0, 2]), np.array([1])),
        lambda: tok.group_of_time(np.array([np.nan]), np.array([0]), np.array([1])),
        lambda: tok.allocate(np.array([0]), np.array([1]), np.array([np.nan]), z(1), z((1, 1, 1), np.float32)),
        lambda: tok.allocate(np.array([0]), np.array([1]), np.array([1.0]), z(2), z((1, 1, 1), np.float32)),
        lambda: tok.allocate(np.array([0]), np.array([1]), np.array([1.0]), z(0), z((0, 1, 1), np.float32)),
        lambda: tok.pack_records({"canvas_kind": z(1, np.int8)}, z(1, np.int32), z(1), 8, 8, 2, 2),
        lambda: tok.paste_blocks(z((3, 8, 8), np.uint8), z((8, 8, 3), np.uint8), np.array([4]), np.array([0]), 4),
    ]
    for f in cases:
        with pytest.raises(ValueError):
            f()


def _plan():
    sc = np.random.default_rng(0).random((6, 2, 2)).astype(np.float32)
    return tok.allocate(np.array([0]), np.array([5]), np.array([1.0]), np.arange(6) * 0.4, sc, max_canvases=4)


@FAST
@given(key=st.sampled_from(["canvas_kind", "canvas_group", "canvas_frame", "canvas_offset", "block_t", "block_i",
                            "block_j", "group_anchor"]),
       pos=st.integers(0, 1000), value=st.integers(-(2**31), 2**31 - 1))
def test_corrupted_plans_are_rejected_not_crashing(key, pos, value):
    plan = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in _plan().items()}
    arr = plan[key]
    if len(arr) == 0:
        return
    info = np.iinfo(arr.dtype)
    arr[pos % len(arr)] = min(max(value, info.min), info.max)
    frames = np.zeros((6, 8, 8, 3), np.uint8)
    for call in (lambda: tok.pack_records(plan, np.arange(6, dtype=np.int32), np.arange(6) * 0.4, 8, 8, 2, 2),
                 lambda: tok.pack_canvases(plan, frames, 2, 2)):
        try:
            call()
        except ValueError:
            pass


def test_degenerate_inputs_work():
    # no packets at all, one frame, one candidate: one group with only its I-canvas
    g = tok.gop_partition(np.zeros(0), np.zeros(0, np.int64))
    assert g["fallback"] and list(g["start"]) == [0] and list(g["end"]) == [0]
    assert len(tok.candidate_frames(np.zeros(0), 4)) == 0
    plan = tok.allocate(g["start"], g["end"], g["cost"], np.array([0.0]), np.zeros((1, 2, 2), np.float32))
    assert list(plan["canvas_kind"]) == [0] and list(plan["group_num_p"]) == [0]
    rec = tok.pack_records(plan, np.array([0], np.int32), np.array([0.0]), 8, 8, 2, 2)
    assert len(rec["canvas"]) == 16 and np.all(rec["frame"] == 0)
    # all padding scores: no P-canvas can be filled
    plan = tok.allocate(np.array([0]), np.array([3]), np.array([5.0]), np.arange(4) * 0.5,
                        np.full((4, 2, 2), -np.inf, np.float32), max_canvases=8)
    assert list(plan["canvas_kind"]) == [0] and plan["group_capacity"][0] == 0
    # NaN scores count as padding
    sc = np.random.default_rng(1).random((4, 2, 2)).astype(np.float32)
    sc[1:, 0, 0] = np.nan
    plan = tok.allocate(np.array([0]), np.array([3]), np.array([5.0]), np.arange(4) * 0.5, sc, max_canvases=8)
    assert not np.any((plan["block_i"] == 0) & (plan["block_j"] == 0))
