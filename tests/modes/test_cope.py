"""``cope`` (CoPE-VideoLM Δ-encoder inputs, DESIGN §5.8): I-frames at key frames, fused steps, accumulated
motion = Σ per-frame L0 vectors, residual against the warped reference, caps, and every shared video."""
from __future__ import annotations

import numpy as np
import pytest

from _modes_util import shared_video_paths

ov2 = pytest.importorskip("ov2_tokenizer")
from ov2_tokenizer import cope as C  # noqa: E402
from ov2_tokenizer._native import core  # noqa: E402


def per_frame(path, indices):
    """{index: (keyframe, L0 field [h4, w4, 2], rgb)} straight from the reader."""
    out = {}
    for f in ov2.open_video(path).frames(indices=indices, with_luma=False, with_rgb=True, with_mvs=True):
        v = f.mv_field[..., 0:2].copy()
        v[(f.mv_flags & 1) == 0] = 0
        out[f.index] = (f.keyframe, v, f.rgb)
    return out


def test_cope_on_moving_block(moving_block_clip):
    path, tr = moving_block_clip
    s = 4
    vt = ov2.tokenize_video(path, mode="cope", cope_fusion=s, num_frames=1000)
    g = vt.groups
    # I-canvases at the key frames 0 and 40, full frames at the canvas size
    assert vt.meta["i_frames"] == [0, 40] and vt.canvas_kind.tolist() == [0, 0]
    hc, wc = core.tok.canvas_size(tr["h"], tr["w"], 14, 2, 3136, 313600)
    assert tuple(vt.canvases.shape) == (2, 3, hc, wc)
    assert sorted(set(vt.frame.tolist())) == [0, 40] and vt.group.unique().tolist() == [0, 1]
    # steps: every s frames inside each GOP plus the shorter tail ending at the GOP's last frame
    ends = list(range(4, 40, 4)) + [39] + list(range(44, 80, 4)) + [79]
    assert g["delta_frame"].tolist() == ends
    # 39's reference is 36; 44's reference is the I-frame 40; 79's is 76
    assert g["delta_ref_frame"].tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68, 72, 76]
    assert g["delta_span"].tolist() == [4] * 9 + [3] + [4] * 9 + [3]
    assert g["delta_after_i"].tolist() == [0] * 10 + [1] * 10
    assert g["num_p"].tolist() == [10, 10]
    h4, w4 = tr["h"] // 4, tr["w"] // 4
    assert tuple(g["delta_motion"].shape) == (20, h4, w4, 2) and g["delta_motion"].dtype.is_floating_point
    assert tuple(g["delta_residual"].shape) == (20, tr["h"], tr["w"], 3)
    assert str(g["delta_residual"].dtype) == "torch.int16"

    frames = per_frame(path, list(range(0, 80)))
    assert [i for i, (k, _, _) in frames.items() if k] == [0, 40], "I-canvases must be the stream's key frames"
    motion = g["delta_motion"].numpy()
    resid = g["delta_residual"].numpy()
    for p, (e, r) in enumerate(zip(g["delta_frame"].tolist(), g["delta_ref_frame"].tolist())):
        want = sum(frames[u][1] for u in range(r + 1, e + 1))
        assert np.array_equal(motion[p], want), f"step {p}: accumulated motion != sum of per-frame vectors"
        assert g["delta_t_s"][p].item() == pytest.approx(e / 25.0, abs=1e-3)
        # cells covered by the block in every fused frame (r, e] (the per-cell sum is exact there), 4 px margin
        x0 = tr["start"][0] + tr["vel"][0] * (e % tr["gop"]) + 4
        y0 = tr["start"][1] + tr["vel"][1] * (e % tr["gop"]) + 4
        x1 = tr["start"][0] + tr["vel"][0] * ((r + 1) % tr["gop"]) + tr["size"] - 4
        y1 = tr["start"][1] + tr["vel"][1] * ((r + 1) % tr["gop"]) + tr["size"] - 4
        cy0, cx0 = -(-y0 // 4), -(-x0 // 4)
        cells = motion[p][cy0:y1 // 4, cx0:x1 // 4]
        assert cells.size > 0
        span = e - r
        exact = np.all(cells == [-tr["vel"][0] * span, -tr["vel"][1] * span], axis=-1)
        assert exact.mean() >= 0.9, f"step {p}: block vectors {np.unique(cells.reshape(-1, 2), axis=0)}"
        # residual small where the warp is exact; the unwarped difference there is large
        ys, xs = np.nonzero(exact)
        pix = np.zeros(resid.shape[1:3], bool)
        for cy, cx in zip(ys + cy0, xs + cx0):
            pix[cy * 4:cy * 4 + 4, cx * 4:cx * 4 + 4] = True
        cur, ref = frames[e][2].astype(np.int16), frames[r][2].astype(np.int16)
        assert np.abs(resid[p][pix]).mean() < 3.0
        assert np.abs(cur - ref)[pix].mean() > 15.0
        assert np.array_equal(resid[p], cur - C.warp_bilinear(frames[r][2], motion[p]).astype(np.int16))
        # static background far from the block: no motion, residual = coding noise
        assert np.abs(resid[p][-24:, -24:]).mean() < 3.0


def test_cope_caps_steps_uniformly(moving_block_clip):
    path, _ = moving_block_clip
    full = ov2.tokenize_video(path, mode="cope", cope_fusion=2, num_frames=1000).groups["delta_frame"].numpy()
    capped = ov2.tokenize_video(path, mode="cope", cope_fusion=2, num_frames=5)
    sel = np.floor(np.linspace(0, full.size - 1, 5)).astype(int)
    assert capped.groups["delta_frame"].tolist() == full[sel].tolist()
    assert capped.groups["delta_motion"].shape[0] == 5 and capped.groups["delta_residual"].shape[0] == 5
    one = ov2.tokenize_video(path, mode="cope", cope_fusion=2, num_frames=1000, max_canvases=2)
    assert one.num_canvases == 2


def test_cope_caps_steps_by_memory(moving_block_clip):
    """``cope_max_bytes`` bounds the Δ tensors: the steps are capped to what fits, chosen as ``num_frames`` would."""
    path, _ = moving_block_clip
    full = ov2.tokenize_video(path, mode="cope", cope_fusion=2, num_frames=1000)
    assert full.meta["steps_capped_by_memory"] is False
    steps = full.groups["delta_frame"].numpy()
    h, w = full.meta["frame_hw"]
    per_step = C.step_bytes(h, w)
    assert per_step == full.groups["delta_residual"][0].nbytes + full.groups["delta_motion"][0].nbytes
    capped = ov2.tokenize_video(path, mode="cope", cope_fusion=2, num_frames=1000, cope_max_bytes=3 * per_step + 7)
    sel = np.floor(np.linspace(0, steps.size - 1, 3)).astype(int)
    assert capped.groups["delta_frame"].tolist() == steps[sel].tolist()
    assert capped.groups["delta_residual"].nbytes + capped.groups["delta_motion"].nbytes <= 3 * per_step + 7
    assert capped.meta["max_steps"] == 3 and capped.meta["steps_capped_by_memory"] is True
    one = ov2.tokenize_video(path, mode="cope", cope_fusion=2, num_frames=1000, cope_max_bytes=1)
    assert one.groups["delta_frame"].tolist() == steps[:1].tolist()  # at least one step
    with pytest.raises(ov2.errors.ConfigError, match="cope_max_bytes"):
        ov2.TokenizerConfig(cope_max_bytes=0)


def test_plan_steps_gop_sampling():
    starts = np.array([0, 10, 20, 30, 40], np.int64)
    gs, ge, ends, refs = C.plan_steps(starts, 45, 3, 2, 100)
    assert gs.tolist() == [0, 40] and ge.tolist() == [10, 45]
    assert ends.tolist() == [3, 6, 9, 43, 44] and refs.tolist() == [0, 3, 6, 40, 43]


def test_warp_bilinear_integer_and_half_pel():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    field = np.zeros((4, 5, 2), np.float32)
    field[..., 0] = 2  # content came from 2 px to the right
    out = C.warp_bilinear(ref, field)
    assert np.array_equal(out[:, :18], ref[:, 2:])
    assert np.array_equal(out[:, 18:], np.repeat(ref[:, 19:20], 2, axis=1))  # clamped at the border
    field[..., 0] = 0.5
    out = C.warp_bilinear(ref, field)
    want = np.floor((ref[:, :19].astype(np.float32) + ref[:, 1:].astype(np.float32)) / 2 + 0.5)
    assert np.array_equal(out[:, :19], want.astype(np.uint8))


@pytest.mark.parametrize("path", shared_video_paths(), ids=lambda p: p.name)
def test_cope_runs_on_every_shared_video(path):
    vt = ov2.tokenize_video(str(path), mode="cope", cope_fusion=2, num_frames=4, max_canvases=2)
    g = vt.groups
    info = ov2.open_video(str(path)).info
    assert 1 <= vt.num_canvases <= 2 and set(vt.canvas_kind.tolist()) == {0}
    assert vt.meta["i_frames"][0] == 0
    p = g["delta_frame"].shape[0]
    assert p <= 4
    assert tuple(g["delta_motion"].shape) == (p, -(-info.height // 4), -(-info.width // 4), 2)
    assert tuple(g["delta_residual"].shape) == (p, info.height, info.width, 3)
    assert (g["delta_span"] >= 1).all() and (g["delta_span"] <= 2).all()
    assert (g["delta_after_i"] < vt.num_canvases).all() and (g["delta_after_i"] >= 0).all()
    assert np.isfinite(g["delta_t_s"].numpy()).all()


def test_cope_docstring_examples():
    import doctest

    res = doctest.testmod(C)
    assert res.attempted > 0 and res.failed == 0
