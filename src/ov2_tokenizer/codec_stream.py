"""The LLaVA-OneVision-2 codec-stream mode (DESIGN §5.2–5.7): GOP partition from packet bit-cost, saliency from
motion vectors and residuals, block scores, stratified allocation and canvas packing.

One decoding pass: the partition and the candidate frames come from the packet table (demux only); the decoder
then materialises only the candidate frames (RGB at canvas size, vectors, residual, coding cost) and each is
reduced to its block scores at once. With ``accumulate="interval"`` every decoded frame's saliency is folded
into a running maximum that the next candidate takes over.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch

from ._native import core
from .config import TokenizerConfig
from .errors import CorruptVideoError
from .frames_mode import canvas_hw, frame_times
from .tokens import VisualTokens
from .video import VideoReader

__all__ = ["tokenize_codec_stream"]


def _cost_prior_weights(pk, num_frames: int, beta: float) -> np.ndarray:
    """Per-frame weight of the coding-cost prior: β × (the frame's packet bytes / the largest P/B packet).

    The per-cell proxy of DESIGN §4.4 is normalised per frame, so a frame of skipped blocks would carry the same
    prior as one full of coded motion. Scaling it by the frame's share of bits restores what real per-block bit
    counts (the paper's prior) would say: cheap frames get a small prior. Frames map to packets by presentation
    order (one packet per frame); frames beyond the packet table use β.
    """
    order = np.argsort(np.where(np.isfinite(pk.pts_s), pk.pts_s, np.inf), kind="stable")
    size = pk.size[order].astype(np.float64)
    pb = ~pk.keyframe[order] & (pk.pict_type[order] != b"I")
    ref = float(size[pb].max()) if pb.any() else float(size.max() if size.size else 1.0)
    w = np.full(num_frames, beta, dtype=np.float64)
    n = min(num_frames, size.size)
    w[:n] = beta * np.minimum(1.0, size[:n] / max(ref, 1.0))
    return w


class _Decoded:
    """What one decoding pass over the candidates produced."""

    def __init__(self, n: int, nbh: int, nbw: int):
        self.scores = np.empty((n, nbh, nbw), dtype=np.float32)
        self.cand_frame = np.empty(n, dtype=np.int32)
        self.cand_t = np.empty(n, dtype=np.float64)
        self.images: Optional[np.ndarray] = None  # keep_all: every candidate's canvas-size RGB
        self.canvases: Optional[np.ndarray] = None  # streaming: canvases packed group by group
        self.blocks: list[np.ndarray] = []  # streaming: per group, the selected (t, i, j) rows, global t
        self.passes = 1

    def trim(self, k: int) -> None:
        self.scores, self.cand_frame, self.cand_t = self.scores[:k], self.cand_frame[:k], self.cand_t[:k]
        if self.images is not None:
            self.images = self.images[:k]


def _pack_group(state: _Decoded, k: int, lo: int, hi: int, pending: dict, part, dry, alloc_kw, cfg, nbw: int) -> None:
    """Packs group k (candidates lo..hi) into its canvases of the planned layout, from the pending pictures."""
    first = int(np.flatnonzero(np.asarray(dry["canvas_group"]) == k)[0])
    anchor = int(dry["group_anchor"][k])
    core.tok.paste_blocks(state.canvases[first], pending[anchor], np.array([-1], dtype=np.int64),
                          np.array([0], dtype=np.int64), cfg.block_pixels)
    m = int(dry["group_num_p"][k])
    if m == 0:
        state.blocks.append(np.zeros((0, 3), dtype=np.int64))
        return
    sub = core.tok.allocate(np.asarray(dry["group_start"][k:k + 1]), np.asarray(dry["group_end"][k:k + 1]),
                            np.asarray(dry["group_cost"][k:k + 1]), state.cand_t[lo:hi + 1],
                            state.scores[lo:hi + 1], max_canvases=1 + m, **alloc_kw)
    off = np.asarray(sub["canvas_offset"])
    bt = np.asarray(sub["block_t"], dtype=np.int64) + lo
    bi = np.asarray(sub["block_i"], dtype=np.int64)
    bj = np.asarray(sub["block_j"], dtype=np.int64)
    for r in range(1, len(off) - 1):  # sub canvas 0 is the I-canvas
        q = np.arange(off[r], off[r + 1])
        if q.size == 0:
            continue
        dst = q - off[r]
        src = bi[q] * nbw + bj[q]
        for t in sorted(set(bt[q].tolist())):
            sel = bt[q] == t
            core.tok.paste_blocks(state.canvases[first + r], pending[int(t)], src[sel], dst[sel], cfg.block_pixels)
    state.blocks.append(np.stack([bt, bi, bj], axis=1))


def _decode(video: VideoReader, cfg: TokenizerConfig, cand: np.ndarray, beta_t: np.ndarray, hc: int, wc: int,
            nbh: int, nbw: int, part, dry, alloc_kw, keep_all: bool) -> _Decoded:
    n = cand.size
    state = _Decoded(n, nbh, nbw)
    if keep_all:
        state.images = np.empty((n, hc, wc, 3), dtype=np.uint8)
        state.passes = 2
    else:
        state.canvases = np.zeros((len(dry["canvas_kind"]), 3, hc, wc), dtype=np.uint8)
    cand_group = np.asarray(dry["cand_group"])
    last_of_group = {int(g): k for k, g in enumerate(cand_group.tolist())}  # the last candidate of each group
    pending: dict[int, np.ndarray] = {}
    group_lo = 0
    interval = cfg.accumulate == "interval"
    wanted = None if interval else cand
    acc = None  # running maximum of S since the previous candidate (accumulate="interval")
    k = 0
    cand_set = set(int(c) for c in cand) if interval else None
    score = None if interval else dict(canvas_h=hc, canvas_w=wc, patch=cfg.patch_size, merge=cfg.merge_size,
                                       beta=cfg.beta, beta_by_frame=beta_t.tolist())
    for f in video.frames(indices=wanted, with_luma=False, with_rgb=True, with_mvs=interval, with_residual=interval,
                          with_coding_cost=interval, rgb_size=(hc, wc), block_scores=score):
        intra = f.pict_type == "I"
        if interval:
            s = core.tok.saliency(f.height, f.width, f.mv_field, f.mv_flags, f.residual, intra)
            acc = s if acc is None else np.maximum(acc, s)
            if f.index not in cand_set:
                continue
            s_use = acc
            acc = None
            b = float(beta_t[f.index]) if f.index < beta_t.size else cfg.beta
            state.scores[k] = core.tok.block_score(core.tok.resize_area(s_use, hc, wc),
                                                   core.tok.resize_area(f.coding_cost, hc, wc) if not intra else None,
                                                   cfg.patch_size, cfg.merge_size, b if not intra else 0.0)
        else:
            state.scores[k] = f.scores
        state.cand_frame[k] = f.index
        state.cand_t[k] = f.pts_s
        if keep_all:
            state.images[k] = f.rgb
        elif state.canvases is not None:
            if f.index != int(cand[k]):  # a candidate is missing (damaged file): the planned layout is void
                state.canvases = None
                pending.clear()
            else:
                pending[k] = f.rgb
                g = int(cand_group[k])
                if last_of_group[g] == k:
                    _pack_group(state, g, group_lo, k, pending, part, dry, alloc_kw, cfg, nbw)
                    pending.clear()
                    group_lo = k + 1
        k += 1
        if k == n:
            break
    if k == 0:
        raise CorruptVideoError(video.name, "no candidate frame could be decoded")
    if k < n:  # fewer frames decoded than packets promised (damaged file): use what exists
        state.trim(k)
        state.canvases = None
    return state


def _same_plan(plan, dry, blocks: list) -> bool:
    """Whether the final plan has the planned canvas layout and selects the blocks packed group by group."""
    for key in ("canvas_kind", "canvas_group", "canvas_frame", "group_anchor", "group_num_p", "cand_group"):
        if not np.array_equal(np.asarray(plan[key]), np.asarray(dry[key])):
            return False
    got = np.concatenate(blocks) if blocks else np.zeros((0, 3), dtype=np.int64)
    want = np.stack([np.asarray(plan["block_t"], dtype=np.int64), np.asarray(plan["block_i"], dtype=np.int64),
                     np.asarray(plan["block_j"], dtype=np.int64)], axis=1)
    return got.shape == want.shape and bool(np.array_equal(got, want))


def max_bins(num_packets: int) -> int:
    """The most bins the global schedule partitions: 2^20 (145 hours at bin_s = 0.5), or 64 per packet for longer
    videos. Beyond it a damaged timestamp (a jump of months between two frames) would cost memory and time in
    proportion to the empty span — a 60-byte stream claiming 224 days took 12 s and 3.9 GB (fuzzing, session 17)."""
    return max(1 << 20, 64 * int(num_packets))


def plan_candidates(video: VideoReader, cfg: TokenizerConfig):
    """The demux-only inputs of DESIGN §5.2–5.3: packets, frame times, the time origin t0, the candidate frame
    indices and the duration the partition covers."""
    pk = video.packets()
    times = frame_times(video)
    if times.size == 0:
        raise CorruptVideoError(video.name, "the video has no frames")
    t0 = float(times[0])
    cand = np.asarray(core.tok.candidate_frames(times, min(cfg.num_frames, times.size)), dtype=np.int64)
    duration = float(times[-1] - t0) + (float(times[1] - times[0]) if times.size > 1 else 0.0)
    return pk, times, t0, cand, duration


def tokenize_codec_stream(video: VideoReader, cfg: TokenizerConfig) -> VisualTokens:
    t_start = time.perf_counter()
    info = video.info
    pk, times, t0, cand, duration = plan_candidates(video, cfg)
    bins = duration / cfg.bin_s
    if bins > max_bins(pk.size.size):  # memory and time of the partition grow with its bins, not with the frames
        raise CorruptVideoError(video.name, f"the frame times span {duration:.6g} s: {bins:.4g} bins of "
                                            f"bin_s={cfg.bin_s} for {pk.size.size} packets, more than "
                                            f"{max_bins(pk.size.size)} (a damaged timestamp, or bin_s too small)")
    pict = pk.pict_type.view(np.uint8)
    part = core.tok.gop_partition(
        pk.pts_s, pk.size, pict, pk.keyframe, k_tar=cfg.k_target, duration_s=duration,
        t0=t0, delta=cfg.bin_s, t_min=cfg.t_min_s, t_max=cfg.t_max_s, radius=cfg.valley_radius, energy=cfg.energy,
    )
    hc, wc = canvas_hw(info.height, info.width, cfg)
    bs = cfg.block_pixels
    nbh, nbw = hc // bs, wc // bs
    alloc_kw = dict(lam=cfg.lam, alpha_peak=cfg.alpha_peak, anchor=cfg.anchor, t0=t0, delta=cfg.bin_s)
    beta_t = _cost_prior_weights(pk, times.size, cfg.beta)
    t_plan = time.perf_counter()

    # Per-group streaming: the group structure (merges, anchors, P-canvas counts) does not depend on the block
    # scores, so it is planned before decoding; each group's canvases are packed as soon as its last candidate is
    # scored, and only that group's candidate pictures are held. A damaged file (candidates missing) or any
    # disagreement with the final plan falls back to one more pass that keeps every candidate picture.
    dry = core.tok.allocate(part["start"], part["end"], part["cost"], times[cand].astype(np.float64),
                            np.zeros((cand.size, nbh, nbw), dtype=np.float32), max_canvases=cfg.max_canvases,
                            **alloc_kw)
    state = _decode(video, cfg, cand, beta_t, hc, wc, nbh, nbw, part, dry, alloc_kw, keep_all=False)
    plan = core.tok.allocate(part["start"], part["end"], part["cost"], state.cand_t, state.scores,
                             max_canvases=cfg.max_canvases, **alloc_kw)
    if state.canvases is None or not _same_plan(plan, dry, state.blocks):
        state = _decode(video, cfg, cand, beta_t, hc, wc, nbh, nbw, part, dry, alloc_kw, keep_all=True)
        plan = core.tok.allocate(part["start"], part["end"], part["cost"], state.cand_t, state.scores,
                                 max_canvases=cfg.max_canvases, **alloc_kw)
        state.canvases = core.tok.pack_canvases(plan, state.images, cfg.patch_size, cfg.merge_size)
    t_decode = time.perf_counter()
    scores, cand_frame, cand_t, canvases = state.scores, state.cand_frame, state.cand_t, state.canvases
    rec = core.tok.pack_records(plan, cand_frame, cand_t, hc, wc, cfg.patch_size, cfg.merge_size, cfg.temporal_coord)
    t_pack = time.perf_counter()
    return assemble_tokens(
        cfg, plan, rec, part, torch.from_numpy(np.ascontiguousarray(canvases)), name=video.name, t0=t0,
        canvas_hw=(hc, wc), motion_source=info.motion_source, cand_frame=cand_frame, cand_t=cand_t,
        extra_meta={"timings": {"plan": t_plan - t_start, "decode_score_pack": t_decode - t_plan,
                                "records": t_pack - t_decode},
                    "decode_passes": state.passes, **dict(video.stats)},
    )


def assemble_tokens(cfg: TokenizerConfig, plan: dict, rec: dict, part: dict, canvases: torch.Tensor, *, name: str,
                    t0: float, canvas_hw, motion_source: str, cand_frame: np.ndarray, cand_t: np.ndarray,
                    extra_meta: dict, device=None) -> VisualTokens:
    """The codec_stream VisualTokens from a plan (``core.tok.allocate``), its records and the packed canvases;
    the other tensors go to ``device`` (CPU when None; the CUDA path passes its device)."""
    g_start = np.asarray(plan["group_start"], dtype=np.float64) * cfg.bin_s + t0
    g_end = (np.asarray(plan["group_end"], dtype=np.float64) + 1) * cfg.bin_s + t0
    t_s = np.asarray(rec["t_s"], dtype=np.float32)
    t_s = np.where(np.asarray(rec["frame"]) < 0, np.float32("nan"), t_s)

    def tensor(a, dtype):
        t = torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=dtype)))
        return t if device is None else t.to(device, non_blocking=True)

    return VisualTokens(
        canvases=canvases,
        canvas_kind=tensor(plan["canvas_kind"], np.int8),
        canvas=tensor(rec["canvas"], np.int32),
        frame=tensor(rec["frame"], np.int32),
        t_s=tensor(t_s, np.float32),
        can_hw=tensor(rec["can_hw"], np.int16),
        src_hw=tensor(rec["src_hw"], np.int16),
        group=tensor(rec["group"], np.int32),
        pos_thw=tensor(rec["pos_thw"], np.int32),
        groups={
            "start_s": tensor(g_start, np.float64),
            "end_s": tensor(g_end, np.float64),
            "bit_cost": tensor(plan["group_cost"], np.float64),
            "num_p": tensor(plan["group_num_p"], np.int32),
        },
        meta={
            "mode": "codec_stream",
            "patch_size": cfg.patch_size,
            "merge_size": cfg.merge_size,
            "config": cfg.to_dict(),
            "source": name,
            "canvas_hw": [int(canvas_hw[0]), int(canvas_hw[1])],
            "motion_source": motion_source,
            "partition": {k2: (v.tolist() if isinstance(v, np.ndarray) else v) for k2, v in part.items()},
            "candidates": np.asarray(cand_frame).tolist(),
            "candidate_times": np.asarray(cand_t).tolist(),
            "canvas_widen": np.asarray(plan["canvas_widen"]).tolist(),
            "canvas_whole": np.asarray(plan["canvas_whole"]).tolist(),
            "canvas_frame": np.asarray(plan["canvas_frame"]).tolist(),
            "merges": {"empty": int(plan["merges_empty"]), "budget": int(plan["merges_budget"])},
            **extra_meta,
        },
    )
