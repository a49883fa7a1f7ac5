"""``ovenc_topk`` mode: OneVision-Encoder codec patchification (DESIGN §5.8), compatible with the released
preprocessing (``offline_precompute_llava_codec_assets.py`` of OneVision-Encoder, "pack_topk time_spatial").

Pipeline (all numbers are ``TokenizerConfig`` fields; defaults in brackets):

1. Slots: ``ovenc_slots`` [64] source frames, ``frame_ids = floor(linspace(0, F - 1, 64))`` over the F decoded
   frames. The released code calls ``np.linspace(start, end, 64, dtype=np.int32)``, i.e. it *truncates* (floor,
   the ids are never negative); ov2 floors explicitly so both numpy 1.x and 2.x give the same ids.
   Short videos repeat frames (the same frame fills several slots), as the released code does.
2. Letterbox into an S×S square [S = ``ovenc_size`` = 576]: scale = S / max(H, W), Hn = round(H·scale),
   Wn = round(W·scale) (Python ``round``, like the released ``int(round(.))``), centred with
   top = (S − Hn) // 2, left = (S − Wn) // 2, **zero (black) padding**. Pixels: ov2's bilinear resize
   (half-pixel centres) of the decoded RGB.
3. Saliency per slot, at source resolution then letterboxed like the pixels:
   motion: per-cell vector v (L0; L1 where a cell has only L1; 0 where it has none), each component minus
   its median over all cells ("camera motion compensation"), magnitude, divided by its 95th percentile
   (floor 1e-6) and clipped to [0, 1], broadcast to its 4×4 pixels; residual: |residual| / its 95th
   percentile (floor 1), clipped; fused = (motion + residual) / 2. The fused map is resized bilinearly into the
   square (zero padding) and summed per p×p patch [p = ``ovenc_patch`` = 16] → 36×36 = 1,296 cells.
   I-frames (no vectors, residual 0) score 0. Where the decoder exports no vectors (HEVC, VP9, AV1) the core's
   estimated vectors are used (``info.motion_source == "estimated"``). ``fused_saliency`` and ``PatchSummer``
   below are the readable numpy form (float32 maps, like the released code); tokenization runs the same
   expressions in C++ (``csrc/tokenize/ovenc_saliency.cpp``, in double) on the reader's product threads, so
   only RGB and the float64 patch scores cross to Python. The two agree to float32 rounding; patches that
   saturate (every pixel at 1) tie exactly only in exact arithmetic, so such ties may be ordered differently.
4. Selection: total budget = ``ovenc_topk`` [10,368 = 8 × 1,296] rows. Slot 0 is kept whole (all 1,296 cells,
   padding included, raster order); the remaining ``ovenc_topk − 1,296`` [9,072] rows are a global top-K over
   the valid cells (patches lying entirely inside the letterboxed content) of slots 1..63, ties broken by
   (t, h, w) ascending; they are then sorted time-major, then raster. If fewer valid cells exist than K the
   last row is repeated (the released "force exact target" rule).
5. Mosaics: ceil(total / 1,296) [8] S×S canvases; row n goes to mosaic n // 1,296 at cell n % 1,296 (raster), so
   mosaic 0 is slot 0's letterboxed frame and the others are filled time-major then raster.

Output (``VisualTokens``): canvases uint8 [8, 3, 576, 576] (``canvas_kind`` 2), one record per row in row
order; ``pos_thw`` = the (t, h, w) rows exactly as the released preprocessing writes ``positions_thw.npy``
(t = slot 0–63, (h, w) = cell of the 36×36 grid of the square); ``src_hw`` = (h, w) too; ``frame`` = source
frame index of slot t; ``t_s`` = its pts; one group (κ = 0). ``meta["patch_size"]`` = 16 and
``meta["merge_size"]`` = 1: the released encoder consumes the selected p = 16 patches as they are, in row order
(any merge happens in the model, after the encoder), so ov2's "m×m-block order" is plain row order here.
``meta`` also holds ``slot_frames``, ``slot_t_s``, the letterbox geometry and ``visible_indices`` is derivable
as t·1,296 + h·36 + w.

Differences to the released code worth knowing: pixels and maps are resized with ov2's bilinear resize, not
OpenCV's fixed-point one (values may differ by one grey level); the residual is ov2's motion-compensated
prediction residual (DESIGN §4.3), not the patched decoder's coded residual; the released code breaks top-K ties
by ``torch.topk`` (unspecified), ov2 by (t, h, w).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ._native import core
from .config import TokenizerConfig
from .errors import CorruptVideoError
from .tokens import CANVAS_FRAME, VisualTokens
from .video import Frame, VideoReader

__all__ = [
    "Letterbox",
    "slot_frame_ids",
    "letterbox_geometry",
    "valid_cell_mask",
    "fused_saliency",
    "PatchSummer",
    "letterbox_map",
    "patch_scores",
    "select_rows",
    "build_mosaics",
    "letterbox_rgb",
    "tokenize_ovenc_topk",
]

_NEG = -1e6  # score of padding cells and of slot 0 in the top-K (the released code's value)


@dataclass(frozen=True)
class Letterbox:
    """Placement of an H×W frame in the ``size``×``size`` square: resized to ``hn``×``wn`` at (top, left)."""

    size: int
    hn: int
    wn: int
    top: int
    left: int
    scale: float


def slot_frame_ids(num_frames: int, slots: int = 64) -> np.ndarray:
    """int64 [slots]: ``floor(linspace(0, num_frames - 1, slots))`` (the released rounding: truncation)."""
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    return np.floor(np.linspace(0.0, float(num_frames - 1), int(slots))).astype(np.int64)


def letterbox_geometry(height: int, width: int, size: int = 576) -> Letterbox:
    """The released ``_preprocess_bgr_to_square`` geometry: longer side → ``size``, centred, zero padding."""
    scale = float(size) / float(max(height, width))
    hn = max(1, int(round(height * scale)))
    wn = max(1, int(round(width * scale)))
    return Letterbox(size=int(size), hn=hn, wn=wn, top=(size - hn) // 2, left=(size - wn) // 2, scale=scale)


def valid_cell_mask(lb: Letterbox, patch: int = 16) -> np.ndarray:
    """bool [g, g]: cells whose whole p×p patch lies inside the letterboxed content."""
    g = lb.size // patch
    edges = np.arange(g) * patch
    rows = (edges >= lb.top) & (edges + patch <= lb.top + lb.hn)
    cols = (edges >= lb.left) & (edges + patch <= lb.left + lb.wn)
    return rows[:, None] & cols[None, :]


def _cell_vectors(frame: Frame) -> Optional[np.ndarray]:
    """float32 [h4, w4, 2]: L0 vector, L1 where the cell has only L1, 0 where none; None without a field."""
    f = frame.mv_field
    if f is None or f.size == 0:
        return None
    flags = frame.mv_flags
    if flags is None:
        return f[..., 0:2].astype(np.float32, copy=True)
    has0 = (flags & 1).astype(bool)
    only1 = ~has0 & ((flags & 2) != 0)
    v = np.where(has0[..., None], f[..., 0:2], 0.0).astype(np.float32)
    v[only1] = f[only1][:, 2:4]
    return v


def _percentile_of_counts(counts: np.ndarray, q: float) -> float:
    """numpy's linear-interpolation percentile of the integer sample whose histogram is ``counts``."""
    n = int(counts.sum())
    if n == 0:
        return 0.0
    k = (q / 100.0) * (n - 1)
    lo = int(math.floor(k))
    cum = np.cumsum(counts)
    v_lo = int(np.searchsorted(cum, lo, side="right"))
    v_hi = int(np.searchsorted(cum, min(lo + 1, n - 1), side="right"))
    return float(v_lo + (k - lo) * (v_hi - v_lo))


def fused_saliency(frame: Frame, percentile: float = 95.0) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """The released fused saliency of one frame, in two parts so the 4×4-constant motion map never has to be
    materialised at pixel resolution: (motion_norm float32 [h4, w4] or None, residual_norm float32 [H, W] or
    None). fused = (upsample4(motion_norm)[:H, :W] + residual_norm) / 2 (a missing part counts as 0).
    I-frames give (None, None): saliency 0."""
    if frame.pict_type == "I":
        return None, None
    mnorm: Optional[np.ndarray] = None
    v = _cell_vectors(frame)
    if v is not None:
        vx = v[..., 0] - np.float32(np.median(v[..., 0]))
        vy = v[..., 1] - np.float32(np.median(v[..., 1]))
        mag = np.sqrt(vx * vx + vy * vy).astype(np.float32)
        a = max(core.tok.percentile(mag.ravel().astype(np.float64), percentile), 1e-6)
        mnorm = np.clip(mag / np.float32(a), 0.0, 1.0).astype(np.float32)
    rnorm: Optional[np.ndarray] = None
    if frame.residual is not None:
        r = np.abs(frame.residual)
        counts = np.bincount(r.ravel())
        a = max(_percentile_of_counts(counts, percentile), 1.0)
        lut = np.minimum(np.arange(counts.size, dtype=np.float64) / a, 1.0).astype(np.float32)
        rnorm = lut[r]
    return mnorm, rnorm


def _bilinear_taps(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-pixel-centre bilinear taps (i0, i1, weight of i1) of an n_in → n_out resize, clamped at the edges."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


class PatchSummer:
    """Patch sums of a map letterboxed into the square, without building the square: bilinear resizing and
    patch summing are both linear, so scores = A · M · Bᵀ with A [g, H] (B [g, W]) the per-patch-row (column)
    sum of the bilinear row (column) weights of the content. A is banded (patch row r only touches source
    rows ``lo[r]:hi[r]``), so A · M runs as g small products over contiguous row blocks (about two
    multiply-adds per pixel instead of g). ``a4``/``b4`` act on the 4×4 cell map of the motion part (pixel y
    of the upsampled map is cell y // 4)."""

    def __init__(self, height: int, width: int, lb: Letterbox, patch: int = 16) -> None:
        self.g = lb.size // patch
        self.a = self._weights(height, lb.hn, lb.top, patch, 1)
        self.bt = np.ascontiguousarray(self._weights(width, lb.wn, lb.left, patch, 1).T)
        self.a4 = self._weights(height, lb.hn, lb.top, patch, 4)
        self.b4t = np.ascontiguousarray(self._weights(width, lb.wn, lb.left, patch, 4).T)
        self.row_bands = self._bands(self.a)
        self.col_bands = self._bands(self.bt.T)
        self.row_bands4 = self._bands(self.a4)
        self.col_bands4 = self._bands(self.b4t.T)

    @staticmethod
    def _bands(m: np.ndarray) -> List[Tuple[int, int, int, np.ndarray]]:
        """(output index, lo, hi, float32 weights[lo:hi]) of each non-empty row of a banded weight matrix."""
        out = []
        for r in range(m.shape[0]):
            nz = np.nonzero(m[r])[0]
            if nz.size:
                lo, hi = int(nz[0]), int(nz[-1]) + 1
                out.append((r, lo, hi, m[r, lo:hi].astype(np.float32)))
        return out

    def _weights(self, n_in: int, n_out: int, offset: int, patch: int, cell: int) -> np.ndarray:
        i0, i1, w1 = _bilinear_taps(n_in, n_out)
        rows = (offset + np.arange(n_out)) // patch
        m = np.zeros((self.g, -(-n_in // cell)), dtype=np.float64)
        np.add.at(m, (rows, i0 // cell), 1.0 - w1.astype(np.float64))
        np.add.at(m, (rows, i1 // cell), w1.astype(np.float64))
        return m

    def _apply(self, x: np.ndarray, row_bands, col_bands, out: np.ndarray) -> None:
        """out += A · x · Bᵀ with banded A, B. No BLAS here: its thread pool stalls on a loaded machine, and the
        products per band are tiny."""
        rows = np.zeros((self.g, x.shape[1]), dtype=np.float32)
        for r, lo, hi, w in row_bands:
            np.sum(x[lo:hi] * w[:, None], axis=0, out=rows[r])
        for c, lo, hi, w in col_bands:
            out[:, c] += (rows[:, lo:hi] * w[None, :]).sum(axis=1, dtype=np.float64)

    def scores(self, motion_norm: Optional[np.ndarray], residual_norm: Optional[np.ndarray]) -> np.ndarray:
        """float64 [g·g] raster: per-patch sums of (motion + residual) / 2 letterboxed into the square."""
        out = np.zeros((self.g, self.g), dtype=np.float64)
        if residual_norm is not None:
            self._apply(residual_norm, self.row_bands, self.col_bands, out)
        if motion_norm is not None:
            self._apply(motion_norm, self.row_bands4, self.col_bands4, out)
        return (0.5 * out).reshape(-1)


def letterbox_map(motion_norm: Optional[np.ndarray], residual_norm: Optional[np.ndarray], lb: Letterbox,
                  height: int, width: int) -> np.ndarray:
    """float32 [S, S]: the fused map (motion + residual) / 2 resized bilinearly into the letterbox, zero padding
    (the explicit pixel-domain form; :class:`PatchSummer` computes its patch sums directly).
    The motion part is resized from its 4×4 cells (pixel y of the upsampled map is cell y // 4)."""
    h, w = height, width
    y0, y1, wy = _bilinear_taps(h, lb.hn)
    x0, x1, wx = _bilinear_taps(w, lb.wn)
    wy_, wx_ = wy[:, None], wx[None, :]

    def resize(m: np.ndarray, ry0, ry1, rx0, rx1) -> np.ndarray:
        rows = m[ry0] * (1.0 - wy_) + m[ry1] * wy_  # [hn, w]
        return rows[:, rx0] * (1.0 - wx_) + rows[:, rx1] * wx_  # [hn, wn]

    fused = np.zeros((lb.hn, lb.wn), dtype=np.float32)
    if residual_norm is not None:
        fused += resize(residual_norm, y0, y1, x0, x1)
    if motion_norm is not None:
        fused += resize(motion_norm, y0 // 4, y1 // 4, x0 // 4, x1 // 4)
    fused *= np.float32(0.5)
    out = np.zeros((lb.size, lb.size), dtype=np.float32)
    out[lb.top : lb.top + lb.hn, lb.left : lb.left + lb.wn] = np.clip(fused, 0.0, 1.0)
    return out


def patch_scores(square: np.ndarray, patch: int = 16) -> np.ndarray:
    """float64 [g·g]: per-patch sums of an S×S map, raster order."""
    s = square.shape[0]
    g = s // patch
    return square.reshape(g, patch, g, patch).sum(axis=(1, 3), dtype=np.float64).reshape(g * g)


def select_rows(scores: np.ndarray, valid: np.ndarray, total: int) -> np.ndarray:
    """int32 [total, 3] (t, h, w) rows: slot 0 whole (raster), then the global top-(total − g²) valid cells of
    slots 1.. (ties by (t, h, w)), sorted time-major then raster; the last row repeated if too few exist.

    ``scores``: float [T, g·g] patch sums; ``valid``: bool [g, g]."""
    t_count, cells = scores.shape
    g = int(round(math.sqrt(cells)))
    hh, ww = np.divmod(np.arange(cells, dtype=np.int32), g)
    slot0 = np.stack([np.zeros(cells, np.int32), hh, ww], axis=1)
    if total <= cells:
        return slot0[:total]
    k_rem = total - cells
    rest = scores.astype(np.float64, copy=True)
    rest[:, ~valid.reshape(-1)] = _NEG
    rest[0, :] = _NEG
    avail = max(0, (t_count - 1) * int(valid.sum()))
    k = min(k_rem, avail)
    flat = rest.reshape(-1)
    if 0 < k < flat.size and not np.isnan(flat).any():
        # the k largest, equal scores in flat (t, h, w) order: everything above the k-th largest value, then the
        # first of those equal to it (what a stable sort of the negated scores takes, without sorting them all)
        thr = -np.partition(-flat, k - 1)[k - 1]
        above = np.flatnonzero(flat > thr)
        top = np.sort(np.concatenate([above, np.flatnonzero(flat == thr)[: k - above.size]]))
    else:  # stable sort of the negated scores: equal scores keep flat (t, h, w) order
        top = np.sort(np.argsort(-flat, kind="stable")[:k])  # then time-major, raster
    t, s = np.divmod(top, cells)
    h, w = np.divmod(s, g)
    rows = np.concatenate([slot0, np.stack([t, h, w], axis=1).astype(np.int32)], axis=0)
    if rows.shape[0] < total:
        rows = np.concatenate([rows, np.repeat(rows[-1:], total - rows.shape[0], axis=0)], axis=0)
    return rows


def build_mosaics(squares: Sequence[np.ndarray], rows: np.ndarray, patch: int = 16) -> np.ndarray:
    """uint8 [M, 3, S, S]: row n's patch of slot square ``squares[t]`` (uint8 [S, S, 3] each) copied to mosaic
    n // g², cell n % g² in raster order; M = ceil(len(rows) / g²), unfilled cells black."""
    s = squares[0].shape[0]
    g = s // patch
    per = g * g
    m = max(1, -(-rows.shape[0] // per))
    out = np.zeros((m * per, patch, patch, 3), dtype=np.uint8)
    order = np.argsort(rows[:, 0], kind="stable")
    bounds = np.searchsorted(rows[order, 0], np.arange(len(squares) + 1))
    for t in range(len(squares)):
        sel = order[bounds[t]:bounds[t + 1]]
        if sel.size:
            tiles = squares[t].reshape(g, patch, g, patch, 3).transpose(0, 2, 1, 3, 4)  # g, g, p, p, 3 (view)
            out[sel] = tiles[rows[sel, 1], rows[sel, 2]]
    out = out.reshape(m, g, g, patch, patch, 3).transpose(0, 5, 1, 3, 2, 4)  # M, 3, g, p, g, p
    return np.ascontiguousarray(out.reshape(m, 3, s, s))


def letterbox_rgb(rgb_resized: np.ndarray, lb: Letterbox) -> np.ndarray:
    """uint8 [S, S, 3]: an RGB frame already resized to (hn, wn) placed in the zero-padded square."""
    out = np.zeros((lb.size, lb.size, 3), dtype=np.uint8)
    out[lb.top : lb.top + lb.hn, lb.left : lb.left + lb.wn] = rgb_resized
    return out


def tokenize_ovenc_topk(video: VideoReader, cfg: TokenizerConfig) -> VisualTokens:
    """``ovenc_topk`` mode (module docstring): 64 letterboxed slots, slot 0 whole + global top-K, 8 mosaics."""
    t0 = time.perf_counter()
    info = video.info
    n_frames = int(info.num_frames or 0)
    if n_frames < 1:
        raise CorruptVideoError(video.name, "the video stream has no frames")
    size, p = cfg.ovenc_size, cfg.ovenc_patch
    g = size // p
    slots = slot_frame_ids(n_frames, cfg.ovenc_slots)
    lb = letterbox_geometry(info.height, info.width, size)
    valid = valid_cell_mask(lb, p)
    # slot ids do not decrease: their distinct values without np.unique (numpy 2 imports numpy.ma on its first
    # call, ~13 ms of a cold process's first tokenization)
    uniq = slots[np.concatenate(([True], slots[1:] != slots[:-1]))]
    scores_by_frame: Dict[int, np.ndarray] = {}
    content_by_frame: Dict[int, np.ndarray] = {}
    pts_by_frame: Dict[int, float] = {}
    t1 = time.perf_counter()
    # Step 3 runs on the reader's product threads (csrc/tokenize/ovenc_saliency.cpp, the same expressions as
    # fused_saliency + PatchSummer in double); a frame arrives with its float64 [g, g] patch scores.
    scoring = dict(kind="ovenc", size=size, patch=p, percentile=float(cfg.percentile))
    for f in video.frames(indices=uniq, with_luma=False, with_rgb=True, rgb_size=(lb.hn, lb.wn),
                          block_scores=scoring):
        content_by_frame[f.index] = f.rgb  # [hn, wn, 3]: the square's content (padding is zero)
        pts_by_frame[f.index] = float(f.pts_s)
        scores_by_frame[f.index] = f.scores.reshape(-1)
    t2 = time.perf_counter()
    if not content_by_frame:
        raise CorruptVideoError(video.name, "no frame could be decoded")
    # frames the stream did not deliver (fewer decoded than counted): the last decoded one, as released
    got = sorted(content_by_frame)
    slot_src = np.array([got[max(0, int(np.searchsorted(got, s, side="right")) - 1)] for s in slots], np.int64)
    scores = np.stack([scores_by_frame[int(s)] for s in slot_src])
    rows = select_rows(scores, valid, cfg.ovenc_topk)
    # mosaics cut straight from the content (csrc/tokenize/ovenc_mosaic.cpp; letterbox_rgb + build_mosaics is
    # the numpy reference): no 576² squares are built
    canv = core.tok.ovenc_mosaics([np.ascontiguousarray(content_by_frame[k]) for k in got],
                                  np.searchsorted(got, slot_src).astype(np.int64), rows.astype(np.int32), lb.size,
                                  lb.hn, lb.wn, lb.top, lb.left, p, num_threads=video.num_threads)
    t3 = time.perf_counter()

    n = rows.shape[0]
    m = canv.shape[0]
    per = g * g
    j = np.arange(n, dtype=np.int64)
    can_hw = np.stack(np.divmod(j % per, g), axis=1).astype(np.int16)
    frame_of_row = slot_src[rows[:, 0]].astype(np.int32)
    slot_ts = np.array([pts_by_frame[int(s)] for s in slot_src], dtype=np.float64)
    t_s = slot_ts[rows[:, 0]].astype(np.float32)
    return VisualTokens(
        canvases=torch.from_numpy(canv),
        canvas_kind=torch.full((m,), CANVAS_FRAME, dtype=torch.int8),
        canvas=torch.from_numpy((j // per).astype(np.int32)),
        frame=torch.from_numpy(frame_of_row),
        t_s=torch.from_numpy(t_s),
        can_hw=torch.from_numpy(can_hw),
        src_hw=torch.from_numpy(rows[:, 1:].astype(np.int16)),
        group=torch.zeros(n, dtype=torch.int32),
        pos_thw=torch.from_numpy(np.ascontiguousarray(rows.astype(np.int32))),
        groups={
            "start_s": torch.tensor([float(slot_ts.min())], dtype=torch.float64),
            "end_s": torch.tensor([float(slot_ts.max())], dtype=torch.float64),
            "bit_cost": torch.zeros(1, dtype=torch.float64),
            "num_p": torch.zeros(1, dtype=torch.int32),
        },
        meta={
            "mode": "ovenc_topk",
            "patch_size": p,
            "merge_size": 1,
            "config": cfg.to_dict(),
            "source": video.name,
            "canvas_hw": [size, size],
            "num_decoded_frames": n_frames,
            "slot_frames": [int(x) for x in slot_src],
            "slot_t_s": [float(x) for x in slot_ts],
            "letterbox": {"size": lb.size, "hn": lb.hn, "wn": lb.wn, "top": lb.top, "left": lb.left,
                          "scale": lb.scale},
            "num_valid_cells": int(valid.sum()),
            "k_rest": int(max(0, cfg.ovenc_topk - per)),
            "motion_source": info.motion_source,
            "timings": {"plan": t1 - t0, "decode_and_scores": t2 - t1, "select_pack": t3 - t2},
            **{k: v for k, v in video.stats.items()},
        },
    )
