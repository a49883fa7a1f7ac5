"""The frame-based modes (DESIGN §5.8): ``frames`` (uniform or chunk-wise frame sampling, full frames, groups of
four consecutive frames) and ``image`` (native resolution within [min_pixels, max_pixels], one group)."""
from __future__ import annotations

import time
from typing import List, Optional, Sequence

import numpy as np
import torch

from ._native import core
from .config import TokenizerConfig
from .errors import ConfigError, CorruptVideoError
from .records import block_order_cells
from .tokens import CANVAS_FRAME, CANVAS_IMAGE, VisualTokens
from .video import VideoReader

__all__ = ["canvas_hw", "frame_times", "sample_frames", "full_frame_tokens", "tokenize_frames", "tokenize_rgb_image"]


def canvas_hw(height: int, width: int, cfg: TokenizerConfig) -> tuple[int, int]:
    """Canvas (height, width) of a frame (DESIGN §5.1); ConfigError when no canvas fits the pixel bounds."""
    try:
        hc, wc = core.tok.canvas_size(height, width, cfg.patch_size, cfg.merge_size, cfg.min_pixels, cfg.max_pixels)
    except ValueError as exc:
        raise ConfigError("max_pixels", f"{exc} (frame {height}x{width}, min_pixels={cfg.min_pixels}, "
                                        f"max_pixels={cfg.max_pixels})") from exc
    return int(hc), int(wc)


def frame_times(video: VideoReader) -> np.ndarray:
    """Presentation times of all frames, from the packet table (demux only): the sorted packet pts.
    Falls back to index / fps where pts are missing."""
    pk = video.packets()
    pts = np.sort(pk.pts_s[np.isfinite(pk.pts_s)])
    if pts.size != len(pk) or pts.size == 0:
        fps = video.info.fps or 25.0
        pts = np.arange(len(pk), dtype=np.float64) / fps
    return pts


def sample_frames(times: np.ndarray, cfg: TokenizerConfig) -> np.ndarray:
    """Frame indices for the ``frames`` mode: ``cfg.num_frames`` (or ``cfg.fps`` per second) frames, uniform by
    time, or one per equal-time chunk (``sampling="chunk"``: the chunk's centre frame, a random one when
    ``training``)."""
    n = int(times.size)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    count = cfg.num_frames
    if cfg.fps is not None:
        dur = float(times[-1] - times[0]) + (float(times[1] - times[0]) if n > 1 else 0.0)
        count = max(1, int(round(dur * cfg.fps)))
    count = min(count, n)
    if cfg.sampling == "uniform" or not cfg.training:
        return np.asarray(core.tok.candidate_frames(times.astype(np.float64), count), dtype=np.int64)
    # training chunk sampling: one random frame per equal-time chunk, chunks by time
    rng = np.random.default_rng(cfg.seed)
    t0, t1 = float(times[0]), float(times[-1])
    edges = np.linspace(t0, t1, count + 1)
    out: List[int] = []
    for k in range(count):
        lo, hi = edges[k], edges[k + 1]
        idx = np.nonzero((times >= lo) & ((times < hi) if k + 1 < count else (times <= hi)))[0]
        idx = idx[idx > (out[-1] if out else -1)]
        if idx.size == 0:
            nxt = (out[-1] + 1) if out else 0
            if nxt >= n:
                break
            out.append(nxt)
        else:
            out.append(int(rng.choice(idx)))
    return np.asarray(out, dtype=np.int64)


def full_frame_tokens(
    images: Sequence[np.ndarray],
    frames: Sequence[int],
    times: Sequence[float],
    groups: Sequence[int],
    tcoords: Sequence[int],
    kind: int,
    cfg: TokenizerConfig,
    canvas_hw: tuple[int, int],
) -> dict:
    """Canvases and records for whole frames already resized to ``canvas_hw`` (H x W x 3 uint8 each)."""
    p, m = cfg.patch_size, cfg.merge_size
    hc, wc = canvas_hw
    gh, gw = hc // p, wc // p
    cells = block_order_cells(gh, gw, m).astype(np.int16)
    per = cells.shape[0]
    s = len(images)
    canv = np.empty((s, 3, hc, wc), dtype=np.uint8)
    whole, at = np.array([-1], dtype=np.int64), np.array([0], dtype=np.int64)
    for i, img in enumerate(images):  # H x W x 3 -> 3 x H x W in C++ (split_rgb: ~1.4x numpy's transpose copy)
        core.tok.paste_blocks(canv[i], np.ascontiguousarray(img, dtype=np.uint8), whole, at, p * m)
    rep = lambda a, dt: np.repeat(np.asarray(a, dtype=dt), per)  # noqa: E731
    pos = np.empty((s * per, 3), dtype=np.int32)
    pos[:, 0] = rep(tcoords, np.int32)
    pos[:, 1:] = np.tile(cells, (s, 1))
    return {
        "canvases": torch.from_numpy(canv),
        "canvas_kind": torch.full((s,), kind, dtype=torch.int8),
        "canvas": torch.from_numpy(rep(np.arange(s), np.int32)),
        "frame": torch.from_numpy(rep(frames, np.int32)),
        "t_s": torch.from_numpy(rep(times, np.float32)),
        "can_hw": torch.from_numpy(np.tile(cells, (s, 1))),
        "src_hw": torch.from_numpy(np.tile(cells, (s, 1))),
        "group": torch.from_numpy(rep(groups, np.int32)),
        "pos_thw": torch.from_numpy(pos),
    }


def tokenize_frames(video: VideoReader, cfg: TokenizerConfig) -> VisualTokens:
    """``frames`` mode: sampled full frames, groups of four consecutive frames (κ = slot // 4)."""
    t0 = time.perf_counter()
    times = frame_times(video)
    idx = sample_frames(times, cfg)
    info = video.info
    hc, wc = canvas_hw(info.height, info.width, cfg)
    images, frames, ts = [], [], []
    t1 = time.perf_counter()
    for f in video.frames(indices=idx, with_luma=False, with_rgb=True, rgb_size=(hc, wc)):
        images.append(f.rgb)
        frames.append(f.index)
        ts.append(f.pts_s)
    t2 = time.perf_counter()
    if not images:
        raise CorruptVideoError(video.name, "no frame could be decoded")
    slots = np.arange(len(images))
    tco = slots if cfg.temporal_coord == "slot" else np.asarray(frames)
    groups = slots // 4
    rec = full_frame_tokens(images, frames, ts, groups, tco, CANVAS_FRAME, cfg, (hc, wc))
    g = int(groups.max()) + 1
    ts_arr = np.asarray(ts, dtype=np.float64)
    starts = np.array([ts_arr[groups == k].min() for k in range(g)])
    ends = np.array([ts_arr[groups == k].max() for k in range(g)])
    return VisualTokens(
        **rec,
        groups={
            "start_s": torch.from_numpy(starts),
            "end_s": torch.from_numpy(ends),
            "bit_cost": torch.zeros(g, dtype=torch.float64),
            "num_p": torch.zeros(g, dtype=torch.int32),
        },
        meta={
            "mode": "frames",
            "patch_size": cfg.patch_size,
            "merge_size": cfg.merge_size,
            "config": cfg.to_dict(),
            "source": video.name,
            "canvas_hw": [hc, wc],
            "frame_indices": [int(x) for x in frames],
            "timestamps": [float(x) for x in ts],
            "timings": {"plan": t1 - t0, "decode": t2 - t1, "pack": time.perf_counter() - t2},
            **{k: v for k, v in video.stats.items()},
        },
    )


def tokenize_rgb_image(img: np.ndarray, cfg: TokenizerConfig, name: str = "<array>") -> VisualTokens:
    """``image`` mode on an RGB uint8 H x W x 3 array: native resolution within [min_pixels, max_pixels]."""
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ConfigError("image", f"{name}: expected a uint8 H x W x 3 RGB array")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ConfigError("image", f"{name}: empty image")
    hc, wc = canvas_hw(img.shape[0], img.shape[1], cfg)
    canvas = core.tok.resize_bilinear(np.ascontiguousarray(img), hc, wc)
    rec = full_frame_tokens([canvas], [0], [0.0], [0], [0], CANVAS_IMAGE, cfg, (hc, wc))
    return VisualTokens(
        **rec,
        groups={
            "start_s": torch.zeros(1, dtype=torch.float64),
            "end_s": torch.zeros(1, dtype=torch.float64),
            "bit_cost": torch.zeros(1, dtype=torch.float64),
            "num_p": torch.zeros(1, dtype=torch.int32),
        },
        meta={"mode": "image", "patch_size": cfg.patch_size, "merge_size": cfg.merge_size, "config": cfg.to_dict(),
              "source": name, "canvas_hw": [hc, wc], "image_hw": [int(img.shape[0]), int(img.shape[1])]},
    )
