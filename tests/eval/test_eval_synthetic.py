"""The synthetic JumpScore-style generator: decodes with PyAV, annotations match the drawn motion."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

av = pytest.importorskip("av")

from ov2_model.eval.jumpscore import JUMPSCORE_PROMPT  # noqa: E402
from ov2_model.eval.synthetic import (  # noqa: E402
    ANNOTATION_FORMAT,
    SyntheticSpec,
    cycle_starts,
    generate_video,
    render_frames,
)


def _decode(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _feet_rows(frames):
    red = (frames[..., 0] > 150) & (frames[..., 1] < 100) & (frames[..., 2] < 100)
    rows = red.sum(axis=2) >= 2  # (n, h): rows with red pixels
    h = frames.shape[1]
    return np.array([h - 1 - np.argmax(r[::-1]) if r.any() else -1 for r in rows])


@pytest.mark.parametrize(
    "spec",
    [
        SyntheticSpec(duration=3.0, period=0.3, seed=1),
        SyntheticSpec(duration=3.0, period=0.45, seed=2, period_jitter=0.1, pan_speed=12.0),
        SyntheticSpec(duration=3.0, period=0.6, seed=3, distractor=True, pan_speed=-8.0),
    ],
    ids=["p0.3", "p0.45-jitter-pan", "p0.6-distractor-pan"],
)
def test_annotations_match_drawn_motion(tmp_path, spec):
    ann = generate_video(str(tmp_path / "clip.mp4"), spec)
    frames = _decode(tmp_path / "clip.mp4")
    assert frames.shape == (spec.num_frames, spec.height, spec.width, 3)
    assert ann["num_frames"] == spec.num_frames and ann["fps"] == spec.fps
    ts = np.array(ann["timestamps"])
    assert np.all(np.diff(ts) > 0) and ts[0] >= 0 and ts[-1] < ann["duration"]
    gaps = np.diff(ts)
    assert np.all(gaps >= 0.5 * spec.period - 1e-3) and np.all(gaps <= 1.5 * spec.period + 1e-3)
    assert len(ts) >= math.floor(spec.duration / (1.5 * spec.period))

    feet = _feet_rows(frames)
    assert (feet > 0).all()
    # 1) the lowest feet position in each cycle is at the annotated start (within one frame)
    for t in ts:
        lo, hi = t - 0.4 * spec.period, t + 0.4 * spec.period
        if lo < 0 or hi > (spec.num_frames - 1) / spec.fps:
            continue
        idx = np.arange(math.ceil(lo * spec.fps), math.floor(hi * spec.fps) + 1)
        best = idx[np.argmax(feet[idx])]
        assert abs(best / spec.fps - t) <= 1.0 / spec.fps + 1e-6, (t, best)
    # 2) the whole feet trajectory follows the jump model driven by the annotated starts
    fit = _model_misfit(feet, ts, spec, shift=0.0)
    assert fit < 1.0
    # 3) annotations shifted by half a period would not fit
    assert _model_misfit(feet, ts, spec, shift=spec.period / 2) > 5.0


def _model_misfit(feet, ts, spec, shift):
    """Mean |feet row - (ground - A sin(pi phase))| with phase from the annotated starts, ground fitted."""
    amp = 0.12 * spec.height
    rows, lift = [], []
    for i in range(spec.num_frames):
        t = i / spec.fps + shift
        k = np.searchsorted(ts, t, side="right") - 1
        if k < 0 or k + 1 >= len(ts):
            continue
        phase = (t - ts[k]) / (ts[k + 1] - ts[k])
        rows.append(feet[i])
        lift.append(amp * math.sin(math.pi * phase))
    rows, lift = np.array(rows, float), np.array(lift)
    ground = np.median(rows + lift)
    return float(np.mean(np.abs(rows - (ground - lift))))


def test_frame_difference_peaks_at_cycle_starts(tmp_path):
    spec = SyntheticSpec(duration=4.0, period=0.4, seed=5)
    ann = generate_video(str(tmp_path / "c.mp4"), spec)
    frames = _decode(tmp_path / "c.mp4").astype(np.int16)
    # energy[i]: pixels that changed visibly from frame i to i+1 (coding noise stays below the threshold)
    energy = (np.abs(np.diff(frames, axis=0)).max(axis=3) > 40).sum(axis=(1, 2))
    mid = (np.arange(energy.size) + 0.5) / spec.fps
    phase = np.array([min(abs(m - t) for t in [ann["timestamps"][0] - spec.period] + ann["timestamps"]) for m in mid])
    near = energy[phase <= 0.5 / spec.fps + 1e-9]
    far = energy[np.abs(phase - spec.period / 2) <= 1.0 / spec.fps]
    assert near.size >= 5 and far.size >= 5
    assert near.mean() > 1.5 * far.mean()


def test_annotation_file_and_determinism(tmp_path):
    spec = SyntheticSpec(duration=2.0, period=0.4, seed=7, distractor=True, pan_speed=5.0, gop=15)
    a1 = generate_video(str(tmp_path / "a.mp4"), spec)
    a2 = generate_video(str(tmp_path / "b.mp4"), spec, annotation_path=str(tmp_path / "b_ann.json"))
    on_disk = json.loads((tmp_path / "a.json").read_text())
    assert on_disk == a1
    assert on_disk["format"] == ANNOTATION_FORMAT and on_disk["prompt"] == JUMPSCORE_PROMPT
    assert on_disk["id"] == "a" and on_disk["video"] == "a.mp4"
    assert on_disk["generator"]["seed"] == 7 and on_disk["generator"]["gop"] == 15
    assert on_disk["frames"] == [min(59, round(t * 30)) for t in cycle_starts(spec)]
    assert a2["timestamps"] == a1["timestamps"]
    rendered = np.stack(list(render_frames(spec)))
    assert np.array_equal(rendered, np.stack(list(render_frames(spec))))  # frames are deterministic
    for name in ("a.mp4", "b.mp4"):  # both encodings decode to the rendered frames, to coding precision
        assert np.abs(_decode(tmp_path / name).astype(np.int16) - rendered).mean() < 4.0
    other = cycle_starts(SyntheticSpec(duration=2.0, period=0.4, seed=8))
    assert other != cycle_starts(spec)
    # keyint 15 -> a key frame every 15 frames
    with av.open(str(tmp_path / "a.mp4")) as c:
        keys = [i for i, f in enumerate(c.decode(video=0)) if f.key_frame]
    assert keys[:4] == [0, 15, 30, 45]


def test_spec_validation():
    for bad in (dict(period=0), dict(width=63), dict(height=101), dict(period_jitter=0.9), dict(duration=-1)):
        with pytest.raises(ValueError):
            SyntheticSpec(**bad)
