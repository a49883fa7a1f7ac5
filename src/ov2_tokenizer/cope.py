"""``cope`` mode: the inputs of CoPE-VideoLM's Δ-encoder (DESIGN §5.8; CoPE-VideoLM §3.2 "P-frame fusion").

What is produced, per video:

* **I-frames** — every GOP start (a frame whose packet carries the container's key flag; frame 0 always starts
  a GOP) becomes an RGB canvas (``canvas_kind`` 0, resized bilinearly to ``core.tok.canvas_size`` of
  DESIGN §5.1, records as in the ``frames`` mode, κ = GOP number, ``pos_thw`` temporal coordinate = source frame
  index or, with ``temporal_coord="slot"``, the I-canvas index).
* **Δ-steps** — inside each GOP [k, e) the P-frames are fused s = ``cfg.cope_fusion`` at a time: step ends at
  k + s, k + 2s, … < e, plus a shorter last step ending at e − 1 when (e − 1 − k) is not a multiple of s, so
  every frame of a kept GOP is covered. For the step (r, t] (r = previous step end, or the I-frame k):

  - ``delta_motion`` float32 [H/4, W/4, 2]: accumulated motion = Σ over frames u in (r, t] of u's L0 vector
    (dx, dy) in pixels, per 4×4 cell (0 where a cell has no L0 vector: intra or L1-only). The sum is per cell
    (Eulerian), not composed along trajectories — exact for uniform translation, an approximation elsewhere.
    It follows FFmpeg's sign convention: the content at pixel x of frame t came from x + v of the reference.
  - ``delta_residual`` int16 [H, W, 3]: RGB(t) − W(RGB(r)), where W warps the reference frame r (its decoded
    RGB) by the accumulated field: W(y, x) = RGB(r) at (y + dy, x + dx) of the 4×4 cell containing (y, x),
    **bilinear** interpolation, coordinates clamped to the frame, rounded half up to integers. Where the
    motion is an integer translation the warp is exact and the residual is the codec's coding noise only.

  For streams with B-frames the L0 vector of a B-frame points to its past reference, which need not be the
  previous frame, so the accumulated field is an approximation there (CoPE itself handles only I/P streams).
  Codecs without exported vectors (HEVC, VP9, AV1) use ov2's estimated vectors (``info.motion_source``).

Bounded memory (nothing grows with the video length):

* at most ``cfg.max_canvases`` GOPs are used, chosen uniformly (``floor(linspace(0, G − 1, max_canvases))``,
  CoPE's "uniform GOP sampling" for long videos); Δ-steps come only from the chosen GOPs;
* at most ``cfg.num_frames`` Δ-steps are kept, chosen uniformly over the step list (``floor(linspace)``), which
  is uniform over time up to GOP boundaries; a kept step still fuses its own s frames relative to its own
  reference frame r. Memory of the Δ tensors: P·(H·W·6 + H·W/2) bytes (≈ 1.4 GB for 256 steps of 720p), and
  ``cfg.cope_max_bytes`` [2 GiB] caps it: at most ``cope_max_bytes // (H·W·6 + 2·⌈H/4⌉·⌈W/4⌉·4)`` steps (at
  least one) are kept, chosen the same way (1080p: 159 steps, 4K: 39; ``meta["max_steps"]``,
  ``meta["steps_capped_by_memory"]``), so a high-resolution video does not take gigabytes by default;
* one decoding pass; only the RGB of the reference frame of the step in progress is held.

Output: ``VisualTokens`` of the I-canvases; the Δ-steps in ``vt.groups``: ``delta_motion`` [P, H/4, W/4, 2]
float32, ``delta_residual`` [P, H, W, 3] int16, ``delta_t_s`` [P] float64 (pts of the step's last frame),
``delta_frame`` [P] int32 (its index), ``delta_ref_frame`` [P] int32 (the reference frame r), ``delta_span``
[P] int32 (fused frames, ≤ s), ``delta_after_i`` [P] int32 (index of the I-canvas of the step's GOP). Per
GOP: ``start_s``, ``end_s`` (pts of its first / last frame), ``bit_cost`` (bytes of its P/B packets) and
``num_p`` (its kept Δ-steps).
"""
from __future__ import annotations

import time
from typing import Dict, List, Tuple

import numpy as np
import torch

from ._native import core
from .config import TokenizerConfig
from .errors import CorruptVideoError
from .frames_mode import frame_times, full_frame_tokens
from .tokens import CANVAS_I, VisualTokens
from .video import Frame, VideoReader

__all__ = ["gop_starts", "plan_steps", "step_bytes", "l0_field", "warp_bilinear", "tokenize_cope"]


def gop_starts(video: VideoReader, times: np.ndarray) -> np.ndarray:
    """int64 presentation indices of the GOP starts: frames whose packet has the key flag (matched by pts;
    by decode position where pts are missing), always including frame 0."""
    pk = video.packets()
    key = np.nonzero(pk.keyframe)[0]
    n = int(times.size)
    pts = pk.pts_s[key]
    if np.all(np.isfinite(pts)) and n == len(pk):
        idx = np.searchsorted(times, pts)
    else:
        idx = key
    idx = idx[(idx >= 0) & (idx < n)]
    return np.unique(np.concatenate([[0], idx]).astype(np.int64))


def plan_steps(starts: np.ndarray, num_frames: int, fusion: int, max_gops: int, max_steps: int
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(kept GOP starts [G'], their ends (exclusive) [G'], step ends [P], step references [P]) — the Δ-steps
    of the kept GOPs, capped uniformly at ``max_steps``; ``ends[i]``/``refs[i]`` are presentation indices."""
    bounds = np.append(starts, num_frames)
    g = starts.size
    keep_g = np.unique(np.floor(np.linspace(0, g - 1, min(g, max_gops))).astype(np.int64))
    step_end: List[int] = []
    step_ref: List[int] = []
    for gi in keep_g:
        k, e = int(bounds[gi]), int(bounds[gi + 1])
        ends = list(range(k + fusion, e, fusion))
        if e - 1 > k and (not ends or ends[-1] != e - 1):
            ends.append(e - 1)
        refs = ([k] + ends[:-1])[: len(ends)]  # a one-frame GOP has no step (and no reference)
        step_end += ends
        step_ref += refs
    ends_a = np.asarray(step_end, dtype=np.int64)
    refs_a = np.asarray(step_ref, dtype=np.int64)
    if ends_a.size > max_steps:
        sel = np.unique(np.floor(np.linspace(0, ends_a.size - 1, max_steps)).astype(np.int64))
        ends_a, refs_a = ends_a[sel], refs_a[sel]
    return starts[keep_g], bounds[keep_g + 1], ends_a, refs_a


def step_bytes(height: int, width: int) -> int:
    """Bytes of one Δ-step: ``delta_residual`` int16 [H, W, 3] + ``delta_motion`` float32 [⌈H/4⌉, ⌈W/4⌉, 2].

    >>> step_bytes(720, 1280), (2 << 30) // step_bytes(1080, 1920), (2 << 30) // step_bytes(2160, 3840)
    (5990400, 159, 39)
    """
    return height * width * 6 + (-(-height // 4)) * (-(-width // 4)) * 8


def l0_field(frame: Frame, cells_hw: Tuple[int, int]) -> np.ndarray:
    """float32 [h4, w4, 2]: the frame's L0 vectors (dx, dy) in pixels, 0 where a cell has none."""
    f = frame.mv_field
    if f is None or f.size == 0:
        return np.zeros(cells_hw + (2,), dtype=np.float32)
    v = f[..., 0:2].astype(np.float32, copy=True)
    if frame.mv_flags is not None:
        v[(frame.mv_flags & 1) == 0] = 0.0
    return v


def warp_bilinear(ref: np.ndarray, field: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3]: ``ref`` sampled at (y + dy, x + dx) of each pixel's 4×4 cell, bilinear, clamped to the
    frame, rounded half up. Runs in C++ (``csrc/tokenize/cope_warp.cpp``, the arithmetic written out in its
    header); ``cope_warp`` in tests/reference/tokenize_ref.py is the numpy form it equals bit for bit.

    >>> ref = np.arange(2 * 8 * 3, dtype=np.uint8).reshape(2, 8, 3)
    >>> field = np.zeros((1, 2, 2), np.float32); field[..., 0] = 1  # content came from 1 px to the right
    >>> bool(np.array_equal(warp_bilinear(ref, field)[:, :7], ref[:, 1:]))
    True
    """
    return core.tok.cope_warp(np.ascontiguousarray(ref, dtype=np.uint8), np.ascontiguousarray(field, dtype=np.float32))


def tokenize_cope(video: VideoReader, cfg: TokenizerConfig) -> VisualTokens:
    """``cope`` mode (module docstring): I-canvases + fused Δ-steps (motion, residual) in ``groups``."""
    t0 = time.perf_counter()
    info = video.info
    times = frame_times(video)
    n = int(times.size)
    if n < 1:
        raise CorruptVideoError(video.name, "the video stream has no frames")
    starts = gop_starts(video, times)
    h, w = info.height, info.width
    cells = (-(-h // 4), -(-w // 4))
    max_steps = min(cfg.num_frames, max(1, cfg.cope_max_bytes // step_bytes(h, w)))
    g_start, g_end, s_end, s_ref = plan_steps(starts, n, cfg.cope_fusion, cfg.max_canvases, max_steps)
    hc, wc = core.tok.canvas_size(h, w, cfg.patch_size, cfg.merge_size, cfg.min_pixels, cfg.max_pixels)

    # which step each frame feeds (motion) and which frames are references
    feeds: Dict[int, int] = {}
    for p, (e, r) in enumerate(zip(s_end.tolist(), s_ref.tolist())):
        for u in range(r + 1, e + 1):
            feeds[u] = p
    is_ref = set(s_ref.tolist())
    i_set = set(g_start.tolist())
    wanted = sorted(i_set | is_ref | set(feeds))
    t1 = time.perf_counter()

    i_imgs: Dict[int, np.ndarray] = {}
    i_ts: Dict[int, float] = {}
    motion = np.zeros((s_end.size,) + cells + (2,), dtype=np.float32)
    residual = np.zeros((s_end.size, h, w, 3), dtype=np.int16)
    step_ts = np.full(s_end.size, np.nan, dtype=np.float64)
    done = np.zeros(s_end.size, dtype=bool)
    refs: Dict[int, np.ndarray] = {}
    for f in video.frames(indices=wanted, with_luma=False, with_rgb=True, with_mvs=True):
        if (f.height, f.width) != (h, w):  # damaged stream: a frame of another size is not delivered
            continue
        if f.index in i_set:
            i_imgs[f.index] = core.tok.resize_bilinear(f.rgb, hc, wc)
            i_ts[f.index] = float(f.pts_s)
        p = feeds.get(f.index)
        if p is not None:
            motion[p] += l0_field(f, cells)
            if f.index == int(s_end[p]) and int(s_ref[p]) in refs:
                # residual[p] = RGB(t) − warp_bilinear(RGB(r), motion[p]), in place (csrc/tokenize/cope_warp.h)
                core.tok.cope_residual(f.rgb, refs[int(s_ref[p])], motion[p], residual[p])
                step_ts[p] = float(f.pts_s)
                done[p] = True
                refs.pop(int(s_ref[p]), None)
        if f.index in is_ref:
            refs[f.index] = f.rgb.copy()
    t2 = time.perf_counter()
    if not i_imgs:
        raise CorruptVideoError(video.name, "no I-frame could be decoded")

    # drop what the stream did not deliver: groups whose I-frame is missing, with their steps (a step of such a
    # group would otherwise be counted after the previous delivered I-frame, or before the first one), and steps
    # whose frames are missing
    delivered = np.array([s in i_imgs for s in g_start.tolist()], dtype=bool)
    gk, gk_end = g_start[delivered].astype(np.int64), g_end[delivered].astype(np.int64)
    step_group = np.searchsorted(g_start, s_end, side="right") - 1
    keep = done & (step_group >= 0) & delivered[np.maximum(step_group, 0)]
    if not keep.all():  # (a full selection would copy the Δ tensors for nothing)
        s_end, s_ref, motion, residual, step_ts = s_end[keep], s_ref[keep], motion[keep], residual[keep], step_ts[keep]
    after_i = (np.searchsorted(gk, s_end, side="right") - 1).astype(np.int32)

    frames_i = gk.tolist()
    slots = np.arange(len(frames_i))
    tco = slots if cfg.temporal_coord == "slot" else np.asarray(frames_i)
    rec = full_frame_tokens([i_imgs[k] for k in frames_i], frames_i, [i_ts[k] for k in frames_i], slots, tco,
                            CANVAS_I, cfg, (hc, wc))

    pk = video.packets()
    pb = np.asarray(core.tok.packet_is_pb(pk.pict_type.view(np.uint8), pk.keyframe), dtype=bool)
    pk_idx = np.searchsorted(times, pk.pts_s) if np.all(np.isfinite(pk.pts_s)) else np.arange(len(pk))
    bit_cost = np.array([float(pk.size[pb & (pk_idx >= k) & (pk_idx < e)].sum()) for k, e in zip(gk, gk_end)])
    num_p = np.bincount(after_i, minlength=gk.size).astype(np.int32)
    last = np.minimum(gk_end - 1, n - 1)
    return VisualTokens(
        **rec,
        groups={
            "start_s": torch.from_numpy(times[gk].astype(np.float64)),
            "end_s": torch.from_numpy(times[last].astype(np.float64)),
            "bit_cost": torch.from_numpy(bit_cost.astype(np.float64)),
            "num_p": torch.from_numpy(num_p),
            "delta_motion": torch.from_numpy(motion),
            "delta_residual": torch.from_numpy(residual),
            "delta_t_s": torch.from_numpy(step_ts),
            "delta_frame": torch.from_numpy(s_end.astype(np.int32)),
            "delta_ref_frame": torch.from_numpy(s_ref.astype(np.int32)),
            "delta_span": torch.from_numpy((s_end - s_ref).astype(np.int32)),
            "delta_after_i": torch.from_numpy(after_i),
        },
        meta={
            "mode": "cope",
            "patch_size": cfg.patch_size,
            "merge_size": cfg.merge_size,
            "config": cfg.to_dict(),
            "source": video.name,
            "canvas_hw": [hc, wc],
            "frame_hw": [h, w],
            "fusion": cfg.cope_fusion,
            "max_steps": int(max_steps),
            "steps_capped_by_memory": bool(max_steps < cfg.num_frames),
            "num_gops": int(starts.size),
            "gop_starts": [int(x) for x in starts],
            "i_frames": [int(x) for x in frames_i],
            "motion_source": info.motion_source,
            "timings": {"plan": t1 - t0, "decode_steps": t2 - t1, "pack": time.perf_counter() - t2},
            **{k: v for k, v in video.stats.items()},
        },
    )
