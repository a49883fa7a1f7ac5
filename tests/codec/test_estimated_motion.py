"""Estimated motion for codecs whose decoder exports no vectors (HEVC, VP9, AV1; DESIGN §4.5, docs/residual.md).

Generated clips: a 64x64 textured block translating by a known integer displacement per frame over a static
textured background, encoded with libx265, libvpx-vp9 and libsvtav1 (or libaom-av1) through PyAV. Expectations
come from the construction of the clips; the residual is checked against an independent numpy bilinear prediction
from the rows the core reports.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="the estimated-motion tests encode their clips with PyAV (pip install av)")
ov2 = pytest.importorskip("ov2_tokenizer")

from ov2_tokenizer.samples import encode_video, texture  # noqa: E402

W, H, N, FPS = 248, 168, 24, 25  # not multiples of 16: partial blocks on the right and bottom border
SIZE = 64  # the moving block
GOP = 8  # short closed GOPs, so that num_threads=2 decodes segments in parallel where the codec allows it

# codec -> (encoder candidates, container suffix, options, start (x, y), displacement (dx, dy) per frame)
CLIPS = {
    "hevc": (("libx265",), ".mp4",
             {"x265-params": f"keyint={GOP}:min-keyint={GOP}:open-gop=0:bframes=2:scenecut=0:qp=22:log-level=error"},
             (40, 36), (3, 2)),
    "vp9": (("libvpx-vp9",), ".webm",
            {"g": str(GOP), "crf": "24", "b:v": "0", "cpu-used": "8", "deadline": "realtime"},
            (150, 40), (-4, 1)),
    "av1": (("libsvtav1", "libaom-av1"), ".mkv",
            {"g": str(GOP), "crf": "30", "preset": "12", "cpu-used": "8"},
            (40, 90), (2, -3)),
}
PRODUCTS = dict(with_luma=True, with_mvs=True, with_residual=True, with_coding_cost=True)


def _encoder(candidates):
    for name in candidates:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - PyAV raises different types for unknown encoders across versions
            continue
    return None


def _block_xy(start, step, i):
    return start[0] + step[0] * i, start[1] + step[1] * i


@pytest.fixture(scope="module", params=sorted(CLIPS))
def clip(request, generated_dir):
    name = request.param
    candidates, suffix, options, start, step = CLIPS[name]
    enc = _encoder(candidates)
    if enc is None:
        pytest.skip(f"PyAV has none of the encoders {candidates}")
    if enc == "libsvtav1":
        options = {k: v for k, v in options.items() if k != "cpu-used"}
    elif enc == "libaom-av1":
        options = {k: v for k, v in options.items() if k != "preset"}
    bg = texture(H, W, seed=31, smooth=1)
    blk = 255 - texture(SIZE, SIZE, seed=32, smooth=1)

    def render(i):
        img = bg.copy()
        x, y = _block_xy(start, step, i)
        img[y:y + SIZE, x:x + SIZE] = blk
        return img

    path = generated_dir / f"estimated_{name}{suffix}"
    if not path.exists():
        encode_video(path, N, render, fps=FPS, codec=enc, options=options)
    return dict(name=name, path=path, start=start, step=step)


def _frames(path, num_threads=1, indices=None):
    with ov2.open_video(path, num_threads=num_threads) as v:
        out = list(v.frames(indices, **PRODUCTS))
        return out, v.stats


def _digest(f) -> str:
    h = hashlib.sha1()
    h.update(f"{f.index} {f.pict_type} {f.keyframe}".encode())
    for a in (f.luma, f.motion_vectors, f.mv_field, f.intra_mask, f.residual, f.coding_cost):
        h.update(b"|" if a is None else np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _inter(f) -> bool:
    return f.pict_type != "I" and not f.keyframe


def expected_residual(cur: np.ndarray, prev: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """cur - prediction, the prediction built with numpy from `rows` (16x16 blocks, half-pel bilinear at scale 4,
    edge-extended reference); 4x4 cells without a vector take the co-located pixels of `prev` (intra)."""
    Hc, Wc = cur.shape
    pad = 80
    ref = np.pad(prev.astype(np.int32), pad, mode="edge")
    pred = prev.astype(np.int32).copy()
    for r in rows:
        x0, y0 = int(r[5]) - 8, int(r[6]) - 8
        mx, my, s = int(r[7]), int(r[8]), int(r[9])
        qx, qy = mx // s, my // s  # floor, as the bilinear predictor splits the vector
        fx, fy = mx - qx * s, my - qy * s
        ys, xs = y0 + qy + pad, x0 + qx + pad
        a = ref[ys:ys + 17, xs:xs + 17]
        p = ((s - fx) * (s - fy) * a[:16, :16] + fx * (s - fy) * a[:16, 1:17] + (s - fx) * fy * a[1:17, :16]
             + fx * fy * a[1:17, 1:17] + s * s // 2) // (s * s)
        y1, x1 = min(Hc, y0 + 16), min(Wc, x0 + 16)
        pred[y0:y1, x0:x1] = p[: y1 - y0, : x1 - x0]
    return (cur.astype(np.int32) - pred).astype(np.int16)


def test_motion_source_is_estimated(clip):
    with ov2.open_video(clip["path"]) as v:
        assert v.info.motion_source == "estimated"


def test_known_translation(clip):
    frames, _ = _frames(clip["path"])
    assert len(frames) == N
    dx, dy = clip["step"]
    inside_total = inside_ok = bg_total = bg_zero = 0
    res_block = res_zero = 0.0
    checked = 0
    prev = None
    for f in frames:
        rows = f.motion_vectors
        assert rows.dtype == np.int32 and rows.ndim == 2 and rows.shape[1] == 10
        assert f.mv_field.shape == ((H + 3) // 4, (W + 3) // 4, 4)
        assert f.coding_cost.min() >= 0.0 and f.coding_cost.max() <= 1.0
        if not _inter(f):
            assert len(rows) == 0 and f.intra_mask.all() and not f.residual.any()
            prev = f.luma
            continue
        assert prev is not None and len(rows) > 0
        # Exported format: L0, 16x16, dst = block centre, quarter pel, src = dst + motion / scale (C division).
        assert (rows[:, 0] == -1).all() and (rows[:, 1] == 16).all() and (rows[:, 2] == 16).all()
        assert (rows[:, 9] == 4).all() and (rows[:, 5] % 16 == 8).all() and (rows[:, 6] % 16 == 8).all()
        assert (rows[:, 7] % 2 == 0).all() and (rows[:, 8] % 2 == 0).all()  # half pel at most
        assert (rows[:, 3] == rows[:, 5] + np.trunc(rows[:, 7] / 4).astype(np.int32)).all()
        assert (rows[:, 4] == rows[:, 6] + np.trunc(rows[:, 8] / 4).astype(np.int32)).all()
        assert len(np.unique(rows[:, 5] * 10000 + rows[:, 6])) == len(rows)  # one vector per block
        # The residual is the one of the estimated prediction (bilinear), exactly.
        np.testing.assert_array_equal(f.residual, expected_residual(f.luma, prev, rows))

        x, y = _block_xy(clip["start"], clip["step"], f.index)
        px, py = _block_xy(clip["start"], clip["step"], f.index - 1)
        bx, by = rows[:, 5] - 8, rows[:, 6] - 8
        inside = (bx >= x) & (bx + 16 <= x + SIZE) & (by >= y) & (by + 16 <= y + SIZE)
        correct = inside & (rows[:, 7] == -4 * dx) & (rows[:, 8] == -4 * dy)
        inside_total += int(inside.sum())
        inside_ok += int(correct.sum())
        for r in rows[correct]:
            cy, cx = (int(r[6]) - 8) // 4, (int(r[5]) - 8) // 4
            np.testing.assert_array_equal(f.mv_field[cy:cy + 4, cx:cx + 4, :2], np.broadcast_to([-dx, -dy], (4, 4, 2)))
            assert not f.intra_mask[cy:cy + 4, cx:cx + 4].any()
        # Background: blocks at least 16 px away from the moving block in this frame and the previous one
        # (every 16x16 block of the picture, rows or not: an intra block counts as not zero).
        lo_x, hi_x = min(x, px) - 16, max(x, px) + SIZE + 16
        lo_y, hi_y = min(y, py) - 16, max(y, py) + SIZE + 16
        zero_blocks = {(int(r[5]), int(r[6])) for r in rows if r[7] == 0 and r[8] == 0}
        for gy in range(0, H, 16):
            for gx in range(0, W, 16):
                if gx + 16 <= lo_x or gx >= hi_x or gy + 16 <= lo_y or gy >= hi_y:
                    bg_total += 1
                    bg_zero += (gx + 8, gy + 8) in zero_blocks
        # Residual inside the moving block vs the residual of a zero-motion prediction.
        cur_b = f.luma[y:y + SIZE, x:x + SIZE].astype(np.int32)
        res_block += float(np.abs(f.residual[y:y + SIZE, x:x + SIZE].astype(np.int32)).sum())
        res_zero += float(np.abs(cur_b - prev[y:y + SIZE, x:x + SIZE].astype(np.int32)).sum())
        checked += 1
        prev = f.luma
    assert checked >= N // 2, f"only {checked} inter frames"
    assert inside_total >= 9 * checked
    assert inside_ok >= 0.9 * inside_total, f"{inside_ok}/{inside_total} blocks inside the moving block have ({-dx}, {-dy})"
    assert bg_zero >= 0.9 * bg_total, f"{bg_zero}/{bg_total} background blocks have a zero vector"
    assert res_block <= 0.2 * res_zero, f"residual {res_block:.0f} vs zero-motion residual {res_zero:.0f}"


def test_threads_and_selection_do_not_change_results(clip):
    ref, stats1 = _frames(clip["path"], num_threads=1)
    got, stats2 = _frames(clip["path"], num_threads=2)  # every frame's products: one decoder + a product thread
    assert [_digest(f) for f in got] == [_digest(f) for f in ref]
    assert stats2["pooled_products"], stats2
    got, stats3 = _frames(clip["path"], num_threads=3)
    assert [_digest(f) for f in got] == [_digest(f) for f in ref]
    if clip["name"] in ("hevc", "vp9"):  # closed GOPs: the comparison above really ran parallel segments
        assert stats3["parallel"] and stats3["segments"] > 1, stats3
    # A frame's products depend on it and its predecessor only, not on which frames were requested.
    pick = [3, 9, 10, 21]
    for threads in (1, 2):
        sel, _ = _frames(clip["path"], num_threads=threads, indices=pick)
        assert [f.index for f in sel] == pick
        assert [_digest(f) for f in sel] == [_digest(ref[i]) for i in pick]


SHARED_VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "videos"


def _estimated_shared_videos():
    paths = sorted(SHARED_VIDEOS.glob("*")) if SHARED_VIDEOS.is_dir() else []
    out = []
    for p in paths:
        if p.suffix.lower() not in (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"):
            continue
        try:
            with ov2.open_video(p) as v:
                if v.info.motion_source == "estimated":
                    out.append(pytest.param(p, id=p.name))
        except Exception:  # noqa: BLE001 - unreadable files are the error tests' business
            continue
    return out or [pytest.param(None, marks=pytest.mark.skip(reason="no shared video needs estimated motion"))]


@pytest.mark.parametrize("path", _estimated_shared_videos())
def test_shared_videos_without_exported_vectors(path):
    frames, stats = _frames(path, num_threads=1)
    assert frames and stats["frames_decoded"] == len(frames)
    inter = [f for f in frames if _inter(f)]
    assert inter, "no inter frame"
    assert sum(len(f.motion_vectors) for f in inter) > 0
    for f in frames:
        h, w = f.luma.shape
        assert f.residual.shape == (h, w) and f.residual.dtype == np.int16
        assert f.mv_field.shape == ((h + 3) // 4, (w + 3) // 4, 4)
        assert np.isfinite(f.mv_field).all() and np.abs(f.mv_field).max() <= 64.5
        assert f.coding_cost.min() >= 0.0 and f.coding_cost.max() <= 1.0
        if not _inter(f):
            assert len(f.motion_vectors) == 0
    got, _ = _frames(path, num_threads=2)
    assert [_digest(f) for f in got] == [_digest(f) for f in frames]


def test_codec_stream_ranks_the_moving_block_first(clip):
    """With estimated motion, codec_stream's block scores put the moving block's region first in every P-frame."""
    from ov2_tokenizer._native import core

    cfg = dict(patch=14, merge=2, beta=0.5)
    hc, wc = core.tok.canvas_size(H, W, 14, 2, 3136, 313600)
    bs = 28
    hits = total = 0
    with ov2.open_video(clip["path"], num_threads=1) as v:
        for f in v.frames(with_luma=False, block_scores=dict(canvas_h=hc, canvas_w=wc, **cfg)):
            if f.pict_type == "I":
                continue
            i, j = np.unravel_index(int(np.argmax(f.scores)), f.scores.shape)
            # the best block's source rectangle must overlap the block's position in this frame
            y0, y1 = i * bs * H / hc, (i + 1) * bs * H / hc
            x0, x1 = j * bs * W / wc, (j + 1) * bs * W / wc
            bx, by = _block_xy(clip["start"], clip["step"], f.index)
            total += 1
            hits += int(x1 > bx and x0 < bx + SIZE and y1 > by and y0 < by + SIZE)
    assert total >= N // 2
    assert hits == total, f"{clip['name']}: best block on the moving block in {hits}/{total} P-frames"
    vt = ov2.tokenize_video(clip["path"], max_canvases=4, num_frames=N)
    assert vt.meta["motion_source"] == "estimated" and vt.num_canvases == 4
