#!/usr/bin/env python
"""Baseline: the ``ovenc_topk`` pipeline (OneVision-Encoder codec patchification) written the way a user would
today, with PyAV + numpy only — for ``benchmarks/bench_tokenize.py`` to time against
``ov2_tokenizer.tokenize_video(path, mode="ovenc_topk")`` on the same input.

Same recipe as ov2 (docs/modes.md): 64 slots ``floor(linspace(0, F − 1, 64))`` over the container's frame count
(``stream.frames``; counted by a demux pass when the header has none), 576² letterbox (longer side → 576,
centred, zero padding), p = 16, saliency = mean of the median-compensated MV magnitude and the residual
magnitude, each divided by its 95th percentile and clipped to [0, 1], summed per 16×16 patch; slot 0 whole,
global top-(10,368 − 1,296) over the valid cells of slots 1..63 (ties by (t, h, w)), rows sorted time-major,
eight 576² mosaics.

What differs from ov2, because PyAV cannot do better without C code:

* **residual** = |luma(t) − luma(t − 1)| (previous decoded frame in presentation order; 0 for the first frame),
  the frame difference — PyAV exposes neither the coded residual (the released code reads it from a patched
  FFmpeg) nor a motion-compensated prediction (ov2's residual, DESIGN §4.3). I-frames still score 0 as in
  the released code (their vectors are absent and the released residual of an I-frame is empty).
* **vectors**: FFmpeg's exported AVMotionVectors (``flags2=+export_mvs``) densified in numpy onto the 4×4
  grid (L0 rows, ``source < 0``; L1 rows where a cell has no L0), ``motion / motion_scale`` pixels. Codecs
  without exported vectors (HEVC, VP9, AV1) get motion 0 (ov2 estimates vectors there).
* **pixels**: PyAV's ``reformat`` (swscale bilinear) to the letterbox size; the saliency map resize is numpy
  bilinear with half-pixel centres.

So the rows and mosaics are comparable in format, not bit-identical, to ov2's.

    python benchmarks/baselines/ovenc_topk_pyav.py ../shared/videos/ytb_XwB-dkS5BVM.mp4
"""
from __future__ import annotations

import math
import sys
import time
from typing import Dict, Optional, Tuple

import av
import numpy as np

SLOTS, SIZE, PATCH, TOTAL, PCT = 64, 576, 16, 10368, 95.0
_MV_FIELDS = ("source", "w", "h", "dst_x", "dst_y", "motion_x", "motion_y", "motion_scale")


def letterbox_geometry(h: int, w: int, size: int = SIZE) -> Tuple[int, int, int, int]:
    """(hn, wn, top, left) of the released letterbox."""
    s = size / max(h, w)
    hn, wn = max(1, int(round(h * s))), max(1, int(round(w * s)))
    return hn, wn, (size - hn) // 2, (size - wn) // 2


def densify(frame: "av.VideoFrame", h: int, w: int) -> Optional[np.ndarray]:
    """float32 [ceil(h/4), ceil(w/4), 2] vector per 4×4 cell (L0, else L1), or None when none are exported."""
    sd = frame.side_data.get("MOTION_VECTORS")
    if sd is None:
        return None
    a = sd.to_ndarray()
    if len(a) == 0:
        return None
    h4, w4 = -(-h // 4), -(-w // 4)
    field = np.zeros((h4, w4, 2), np.float32)
    sc = np.where(a["motion_scale"] == 0, 1, a["motion_scale"]).astype(np.float32)
    vec = np.stack([a["motion_x"] / sc, a["motion_y"] / sc], axis=1).astype(np.float32)
    bw, bh = a["w"].astype(np.int64), a["h"].astype(np.int64)
    x0 = (a["dst_x"].astype(np.int64) - bw // 2) // 4
    y0 = (a["dst_y"].astype(np.int64) - bh // 2) // 4
    l0 = a["source"] < 0
    for sel_l0 in (False, True):  # L1 first, then L0 overwrites: L0 wins where a cell has both
        for cw, ch in set(zip((bw // 4).tolist(), (bh // 4).tolist())):
            m = (l0 == sel_l0) & (bw // 4 == cw) & (bh // 4 == ch)
            if not m.any():
                continue
            yy = (y0[m][:, None, None] + np.arange(ch)[None, :, None]).clip(0, h4 - 1)
            xx = (x0[m][:, None, None] + np.arange(cw)[None, None, :]).clip(0, w4 - 1)
            yy, xx = np.broadcast_arrays(yy, xx)
            field[yy, xx] = vec[m][:, None, None, :]
    return field


def _taps(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(np.float32)


def saliency_scores(field: Optional[np.ndarray], resid: np.ndarray, geo: Tuple[int, int, int, int]) -> np.ndarray:
    """float64 [1296]: patch sums of the letterboxed fused map."""
    h, w = resid.shape
    r = np.abs(resid).astype(np.float32)
    rn = np.clip(r / max(float(np.percentile(r, PCT)), 1.0), 0, 1)
    if field is not None:
        vx = field[..., 0] - np.median(field[..., 0])
        vy = field[..., 1] - np.median(field[..., 1])
        mag = np.sqrt(vx * vx + vy * vy)
        mn = np.clip(mag / max(float(np.percentile(mag, PCT)), 1e-6), 0, 1)
        mn = np.repeat(np.repeat(mn, 4, axis=0), 4, axis=1)[:h, :w]
    else:
        mn = 0.0
    fused = ((mn + rn) * 0.5).astype(np.float32)
    hn, wn, top, left = geo
    y0, y1, wy = _taps(h, hn)
    x0, x1, wx = _taps(w, wn)
    rows = fused[y0] * (1 - wy[:, None]) + fused[y1] * wy[:, None]
    res = rows[:, x0] * (1 - wx[None, :]) + rows[:, x1] * wx[None, :]
    sq = np.zeros((SIZE, SIZE), np.float32)
    sq[top:top + hn, left:left + wn] = res
    g = SIZE // PATCH
    return sq.reshape(g, PATCH, g, PATCH).sum(axis=(1, 3), dtype=np.float64).reshape(-1)


def run(path: str, threads: Optional[int] = None) -> Dict[str, object]:
    """The whole pipeline on ``path``: rows int32 [10368, 3] (t, h, w), mosaics uint8 [8, 576, 576, 3],
    slot_frames int64 [64], timings."""
    t0 = time.perf_counter()
    with av.open(str(path)) as c:
        st = c.streams.best("video") or c.streams.video[0]
        n = int(st.frames or 0)
        if n <= 0:
            n = sum(1 for p in c.demux(st) if p.size)
    slots = np.floor(np.linspace(0, n - 1, SLOTS)).astype(np.int64)
    want = set(slots.tolist())
    scores: Dict[int, np.ndarray] = {}
    squares: Dict[int, np.ndarray] = {}
    g = SIZE // PATCH
    with av.open(str(path)) as c:
        st = c.streams.best("video") or c.streams.video[0]
        st.thread_type = "AUTO"
        if threads:
            st.thread_count = int(threads)
        st.codec_context.options = {"flags2": "+export_mvs"}
        h, w = st.codec_context.height, st.codec_context.width
        geo = letterbox_geometry(h, w)
        prev: Optional[np.ndarray] = None
        last = int(slots.max())
        for i, fr in enumerate(c.decode(st)):
            luma = fr.to_ndarray(format="gray") if (i in want or i + 1 in want) else None
            if i in want:
                hn, wn, top, left = geo
                sq = np.zeros((SIZE, SIZE, 3), np.uint8)
                sq[top:top + hn, left:left + wn] = fr.reformat(width=wn, height=hn, format="rgb24",
                                                              interpolation="BILINEAR").to_ndarray()
                squares[i] = sq
                if int(fr.pict_type) == 1 or (i == int(slots[0]) and int((slots == i).sum()) == 1):  # 1 = AV_PICTURE_TYPE_I
                    scores[i] = np.zeros(g * g)
                else:
                    resid = (luma.astype(np.int16) - prev.astype(np.int16)) if prev is not None else np.zeros((h, w), np.int16)
                    scores[i] = saliency_scores(densify(fr, h, w), resid, geo)
            prev = luma
            if i >= last:
                break
    t1 = time.perf_counter()
    got = sorted(squares)
    src = np.array([got[max(0, int(np.searchsorted(got, s, side="right")) - 1)] for s in slots])
    sc = np.stack([scores[int(s)] for s in src])
    hn, wn, top, left = geo
    edges = np.arange(g) * PATCH
    valid = (((edges >= top) & (edges + PATCH <= top + hn))[:, None]
             & ((edges >= left) & (edges + PATCH <= left + wn))[None, :]).reshape(-1)
    sc[:, ~valid] = -1e6
    sc[0] = -1e6
    hh, ww = np.divmod(np.arange(g * g), g)
    slot0 = np.stack([np.zeros(g * g, np.int64), hh, ww], 1)
    k = min(TOTAL - g * g, (SLOTS - 1) * int(valid.sum()))
    top_idx = np.sort(np.argsort(-sc.reshape(-1), kind="stable")[:k])
    t, s = np.divmod(top_idx, g * g)
    rows = np.concatenate([slot0, np.stack([t, s // g, s % g], 1)]).astype(np.int32)
    if rows.shape[0] < TOTAL:
        rows = np.concatenate([rows, np.repeat(rows[-1:], TOTAL - rows.shape[0], 0)])
    m = math.ceil(TOTAL / (g * g))
    mosaics = np.zeros((m, SIZE, SIZE, 3), np.uint8)
    for n_, (tt, hh_, ww_) in enumerate(rows.tolist()):
        mi, cell = divmod(n_, g * g)
        cy, cx = divmod(cell, g)
        mosaics[mi, cy * PATCH:(cy + 1) * PATCH, cx * PATCH:(cx + 1) * PATCH] = \
            squares[int(src[tt])][hh_ * PATCH:(hh_ + 1) * PATCH, ww_ * PATCH:(ww_ + 1) * PATCH]
    t2 = time.perf_counter()
    return {"rows": rows, "mosaics": mosaics, "slot_frames": src.astype(np.int64), "num_frames": n,
            "timings": {"decode_saliency": t1 - t0, "select_pack": t2 - t1, "total": t2 - t0}}


if __name__ == "__main__":
    for p in sys.argv[1:]:
        out = run(p)
        print(p, out["rows"].shape, out["mosaics"].shape, {k: round(v, 3) for k, v in out["timings"].items()})
