"""The GPU path (``device="cuda"``) of the codec-stream tokenizer and ``tokenize_batch`` (docs/gpu.md).

Split of the work:

- CPU (decode threads): demux, candidate frames, decoding of the candidates with their codec products (motion
  field and flags, residual, coding cost, RGB at canvas size), written into pinned host buffers.
- GPU (the kernels of ``csrc/cuda`` through ``core.cuda``): GOP partition (one thread block per video, every video
  of a batch in one launch), saliency and block scores, per-frame sort / attenuation / allocation curve and the
  stratified selection (one thread block per group), canvas gather straight into the output tensor.

The kernels reproduce ``csrc/tokenize`` exactly (same partition, same selected blocks, bit-identical canvases and
scores), so ``tokenize_video(..., device="cuda")`` equals ``tokenize_video(...).to("cuda")``. Token records are
built by the CPU core from the (host) allocation result and copied over: they are small.

``tokenize_batch(sources, device="cuda")`` overlaps the next videos' decoding (threads) with the GPU work of the
current one; ``device="cpu"`` runs ``tokenize_video`` on a thread pool.
"""
from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

import numpy as np
import torch

from ._native import core
from .config import MODES, TokenizerConfig
from .errors import ConfigError, CorruptVideoError, Ov2Error
from .tokens import VisualTokens

__all__ = ["cuda_status", "tokenize_batch", "tokenize_codec_stream_cuda"]


# ----------------------------------------------------------------------------------------------------- device
def cuda_status() -> tuple[bool, str]:
    """(usable, reason): whether the GPU path can run here, and why not."""
    if not bool(getattr(core, "has_cuda", False)) or not hasattr(core, "cuda"):
        return False, ("ov2_tokenizer._core was built without the CUDA kernels (no CUDA compiler at build time, or "
                       "OV2_CUDA=OFF); rebuild with a CUDA toolkit and -DOV2_CUDA=ON")
    n, why = core.cuda.device_count()
    if n == 0:
        return False, f"no usable CUDA device or driver (CUDA runtime: {why})"
    if not torch.cuda.is_available():
        return False, "torch.cuda is not available (a CPU-only torch build or no driver)"
    return True, ""


def _cuda_device(device) -> torch.device:
    dev = torch.device(device)
    if dev.type != "cuda":
        raise ConfigError("device", f"expected a CUDA device, got {device!r}")
    ok, why = cuda_status()
    if not ok:
        raise ConfigError("device", f"device={str(device)!r} requested but {why}")
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _addr(t: Optional[torch.Tensor]) -> int:
    return 0 if t is None else int(t.data_ptr())


# ---------------------------------------------------------------------------------------------- host side
@dataclass
class _HostVideo:
    """Everything the GPU phase needs from one video, decoded on the CPU (pinned tensors where large)."""

    name: str
    info: Any
    stats: dict
    t0: float
    gop_video: dict                      # packet table for core.cuda.gop_partition_batch
    cand_frame: np.ndarray               # int32 [n]
    cand_t: np.ndarray                   # float64 [n]
    beta: np.ndarray                     # float64 [n], coding-cost prior per candidate
    intra: np.ndarray                    # uint8 [n]
    hw: tuple                            # (H, W) of the decoded frames
    products: dict                       # mv_field, mv_flags, residual, cost, rgb: torch tensors (pinned)
    canvas_hw: tuple
    timings: dict = field(default_factory=dict)
    partition: Optional[dict] = None


def _pinned(shape, dtype, pin: bool) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, pin_memory=pin)


def _decode_host(source, cfg: TokenizerConfig, pin: bool) -> _HostVideo:
    """CPU phase of one video: packets, candidates, and the candidates' codec products in pinned buffers."""
    from .codec_stream import _cost_prior_weights, plan_candidates
    from .frames_mode import canvas_hw
    from .video import open_video

    t_start = time.perf_counter()
    video = open_video(source, num_threads=cfg.num_threads, on_error=cfg.on_error, timeout_s=cfg.timeout_s)
    try:
        info = video.info
        pk, times, t0, cand, duration = plan_candidates(video, cfg)
        gop_video = dict(pts_s=pk.pts_s, size=pk.size, pict_type=pk.pict_type.view(np.uint8),
                         keyframe=pk.keyframe.astype(np.uint8), duration_s=duration, t0=t0, k_tar=cfg.k_target)
        hc, wc = canvas_hw(info.height, info.width, cfg)
        beta_t = _cost_prior_weights(pk, times.size, cfg.beta)
        n = int(cand.size)
        H, W = int(info.height), int(info.width)
        h4, w4 = (H + 3) // 4, (W + 3) // 4
        interval = cfg.accumulate == "interval"
        prod = {
            "mv_field": _pinned((n, h4, w4, 4), torch.float32, pin),
            "mv_flags": _pinned((n, h4, w4), torch.uint8, pin),
            "residual": _pinned((n, H, W), torch.int16, pin),
            "cost": _pinned((n, h4, w4), torch.float32, pin),
            "rgb": _pinned((n, hc, wc, 3), torch.uint8, pin),
        }
        if interval:  # running maximum of S since the previous candidate, computed here on the CPU
            prod["sal"] = _pinned((n, H, W), torch.float32, pin)
        cand_frame = np.empty(n, dtype=np.int32)
        cand_t = np.empty(n, dtype=np.float64)
        beta = np.empty(n, dtype=np.float64)
        intra = np.empty(n, dtype=np.uint8)
        t_plan = time.perf_counter()
        wanted = None if interval else cand
        cand_set = set(int(c) for c in cand) if interval else None
        acc = None
        k = 0
        for f in video.frames(indices=wanted, with_luma=False, with_rgb=True, with_mvs=True, with_residual=True,
                              with_coding_cost=True, rgb_size=(hc, wc)):
            if (f.height, f.width) != (H, W):
                raise CorruptVideoError(video.name, f"frame {f.index} is {f.height}x{f.width}, the stream {H}x{W}: "
                                                    "the GPU path needs one frame size per video (use device='cpu')")
            is_i = f.pict_type == "I"
            if interval:
                s = core.tok.saliency(f.height, f.width, f.mv_field, f.mv_flags, f.residual, is_i)
                acc = s if acc is None else np.maximum(acc, s)
                if f.index not in cand_set:
                    continue
                prod["sal"][k].copy_(torch.from_numpy(acc))
                acc = None
            _fill(prod, k, f, is_i)
            cand_frame[k] = f.index
            cand_t[k] = f.pts_s
            beta[k] = float(beta_t[f.index]) if f.index < beta_t.size else cfg.beta
            intra[k] = 1 if is_i else 0
            k += 1
            if k == n:
                break
        if k == 0:
            raise CorruptVideoError(video.name, "no candidate frame could be decoded")
        if k < n:
            prod = {key: v[:k] for key, v in prod.items()}
            cand_frame, cand_t, beta, intra = cand_frame[:k], cand_t[:k], beta[:k], intra[:k]
        t_decode = time.perf_counter()
        return _HostVideo(
            name=video.name, info=info, stats=dict(video.stats), t0=t0, gop_video=gop_video, cand_frame=cand_frame,
            cand_t=cand_t, beta=beta, intra=intra, hw=(H, W), products=prod, canvas_hw=(hc, wc),
            timings={"plan": t_plan - t_start, "decode": t_decode - t_plan},
        )
    finally:
        video.close()


def _fill(prod: dict, k: int, f, is_i: bool) -> None:
    """Copies one frame's products into slot k; absent products become zeros, which the kernels treat exactly as
    the CPU treats absent ones (no valid vector → no motion term; |r| = 0 → R̄ = 0; cost 0 adds β·0)."""
    for key, arr in (("mv_field", f.mv_field), ("mv_flags", f.mv_flags), ("residual", f.residual),
                     ("cost", f.coding_cost)):
        dst = prod[key][k]
        if arr is None or is_i:
            dst.zero_()
        else:
            dst.copy_(torch.from_numpy(np.ascontiguousarray(arr)).reshape(dst.shape))
    prod["rgb"][k].copy_(torch.from_numpy(np.ascontiguousarray(f.rgb)))


# ----------------------------------------------------------------------------------------------- GPU side
def _gpu_tokens(hv: _HostVideo, cfg: TokenizerConfig, dev: torch.device, stream: torch.cuda.Stream) -> VisualTokens:
    t0 = time.perf_counter()
    hc, wc = hv.canvas_hw
    H, W = hv.hw
    p, m = cfg.patch_size, cfg.merge_size
    bs = cfg.block_pixels
    nbh, nbw = hc // bs, wc // bs
    n = int(hv.cand_t.size)
    sid = int(stream.cuda_stream) if stream is not None else 0
    with _on_device(dev, stream):
        d = {k: v.to(dev, non_blocking=True) for k, v in hv.products.items()}
        intra = torch.from_numpy(hv.intra).to(dev, non_blocking=True)
        beta = torch.from_numpy(hv.beta).to(dev, non_blocking=True)
        scores = torch.empty((n, nbh, nbw), dtype=torch.float32, device=dev)
        if cfg.accumulate == "interval":
            # the accumulated S maps: area resize to the canvas, then the canvas-level block score
            s_c = torch.empty((n, hc, wc), dtype=torch.float32, device=dev)
            c_c = torch.empty((n, hc, wc), dtype=torch.float32, device=dev)
            core.cuda.resize_area_f32(_addr(d["sal"]), n, H, W, _addr(s_c), hc, wc, sid)
            core.cuda.resize_area_f32(_addr(d["cost"]), n, (H + 3) // 4, (W + 3) // 4, _addr(c_c), hc, wc, sid)
            for i in range(n):  # per frame: its own β and whether the prior applies (not on I-frames)
                is_i = bool(hv.intra[i])
                core.cuda.block_score(_addr(s_c[i]), 0 if is_i else _addr(c_c[i]), 1, hc, wc, p, m,
                                      0.0 if is_i else float(hv.beta[i]), out=_addr(scores[i]), stream=sid)
        else:
            core.cuda.score_frames(n, H, W, _addr(d["mv_field"]), _addr(d["mv_flags"]), (H + 3) // 4, (W + 3) // 4,
                                   _addr(d["residual"]), _addr(intra), _addr(d["cost"]), (H + 3) // 4, (W + 3) // 4,
                                   hc, wc, p, m, float(cfg.beta), beta_by_frame=_addr(beta), out=_addr(scores),
                                   stream=sid)
        part = hv.partition
        if part is None:
            part = _gop_batch([hv], cfg, sid)[0]
        t_score = time.perf_counter()
        plan = core.cuda.allocate(part["start"], part["end"], part["cost"], hv.cand_t, _addr(scores), nbh, nbw,
                                  max_canvases=cfg.max_canvases, lam=cfg.lam, alpha_peak=cfg.alpha_peak,
                                  anchor=cfg.anchor, t0=hv.t0, delta=cfg.bin_s, stream=sid)
        S = int(plan["canvas_kind"].size)
        canvases = torch.empty((S, 3, hc, wc), dtype=torch.uint8, device=dev)
        pt = {k: torch.from_numpy(np.ascontiguousarray(plan[k])).to(dev, non_blocking=True)
              for k in ("canvas_kind", "canvas_frame", "canvas_offset", "block_t", "block_i", "block_j")}
        core.cuda.gather_canvases(S, _addr(pt["canvas_kind"]), _addr(pt["canvas_frame"]), _addr(pt["canvas_offset"]),
                                  _addr(pt["block_t"]), _addr(pt["block_i"]), _addr(pt["block_j"]), _addr(d["rgb"]),
                                  n, hc, wc, p, m, _addr(canvases), sid)
        rec = core.tok.pack_records(plan, hv.cand_frame, hv.cand_t, hc, wc, p, m, cfg.temporal_coord)
        vt = _assemble(hv, cfg, plan, rec, part, canvases, dev)
        if stream is not None:
            stream.synchronize()  # the pinned inputs may be reused once the call returns
    t_end = time.perf_counter()
    vt.meta["timings"] = {"plan": hv.timings.get("plan", 0.0), "decode_and_score": hv.timings.get("decode", 0.0) +
                          (t_score - t0), "pack": t_end - t_score, "device": str(dev)}
    return vt


def _on_device(dev: torch.device, stream):
    """The CUDA device and stream contexts. A CPU ``dev`` (no stream) is a test seam only: tests/gpu runs this
    module's orchestration against an emulation of ``core.cuda`` on host memory."""
    if dev.type != "cuda":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.cuda.device(dev))
    stack.enter_context(torch.cuda.stream(stream))
    return stack


def _assemble(hv: _HostVideo, cfg: TokenizerConfig, plan: dict, rec: dict, part: dict, canvases: torch.Tensor,
              dev: torch.device) -> VisualTokens:
    """The VisualTokens of codec_stream.tokenize_codec_stream, with tensors on ``dev``."""
    from .codec_stream import assemble_tokens

    return assemble_tokens(cfg, plan, rec, part, canvases, name=hv.name, t0=hv.t0, canvas_hw=hv.canvas_hw,
                           motion_source=hv.info.motion_source, cand_frame=hv.cand_frame, cand_t=hv.cand_t,
                           extra_meta={"device": str(dev), **hv.stats}, device=dev)


def _gop_batch(videos: Sequence[_HostVideo], cfg: TokenizerConfig, sid: int) -> List[dict]:
    """GOP partition of every video in one launch (one thread block per video)."""
    return list(core.cuda.gop_partition_batch([hv.gop_video for hv in videos], k_tar=cfg.k_target, delta=cfg.bin_s,
                                              t_min=cfg.t_min_s, t_max=cfg.t_max_s, radius=cfg.valley_radius,
                                              energy=cfg.energy, stream=sid))


def tokenize_codec_stream_cuda(source, cfg: TokenizerConfig, device="cuda") -> VisualTokens:
    """``tokenize_video(source, "codec_stream", cfg, device="cuda")``: CPU decode, GPU tokenization."""
    dev = _cuda_device(device)
    hv = _decode_host(source, cfg, pin=True)
    with torch.cuda.device(dev):
        stream = torch.cuda.current_stream(dev)
    return _gpu_tokens(hv, cfg, dev, stream)


# ------------------------------------------------------------------------------------------------- batches
def _default_workers(n: int) -> int:
    return max(1, min(n, 4, os.cpu_count() or 1))


def tokenize_batch(
    sources: Sequence,
    mode: str = "codec_stream",
    config: Optional[TokenizerConfig] = None,
    device: str = "cpu",
    *,
    workers: Optional[int] = None,
    prefetch: int = 2,
    return_exceptions: bool = False,
    **overrides,
) -> List[Any]:
    """Tokenizes many videos; returns their :class:`VisualTokens` in the order of ``sources``.

    ``device="cpu"``: ``tokenize_video`` on a pool of ``workers`` threads (the decoder releases the GIL).
    ``device="cuda"`` (codec_stream mode): ``workers`` decode threads fill pinned buffers for up to ``prefetch``
    videos ahead while the GPU tokenizes the current one; the GOP partition of every video runs in one launch;
    outputs are CUDA tensors. Other modes on ``cuda`` tokenize on the CPU and move the result.
    ``return_exceptions=True`` puts a failing video's :class:`~ov2_tokenizer.errors.Ov2Error` in its slot instead
    of raising the first one.
    """
    from .tokenize import _config, tokenize_video

    if mode not in MODES:
        raise ConfigError("mode", f"must be one of {MODES}, got {mode!r}")
    dev_s = str(device)
    if dev_s != "cpu" and not dev_s.startswith("cuda"):
        raise ConfigError("device", f"must be 'cpu' or 'cuda[:N]', got {device!r}")
    if isinstance(sources, (str, bytes, os.PathLike)):
        raise ConfigError("sources", "must be a sequence of videos (paths, bytes or file-like objects), not one video")
    sources = list(sources)
    cfg = _config(config, overrides)
    if workers is None:
        workers = _default_workers(len(sources))
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError("workers", f"must be an int >= 1, got {workers!r}")
    if not isinstance(prefetch, int) or prefetch < 1:
        raise ConfigError("prefetch", f"must be an int >= 1, got {prefetch!r}")
    if not sources:
        return []
    if dev_s == "cpu" or mode != "codec_stream" or getattr(cfg, "schedule", None) == "stream":
        if dev_s != "cpu":
            _cuda_device(device)

        def one(src):
            try:
                return tokenize_video(src, mode=mode, config=cfg, device=device)
            except Ov2Error as exc:
                if return_exceptions:
                    return exc
                raise

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ov2-batch") as pool:
            return list(pool.map(one, sources))
    return _batch_cuda(sources, cfg, _cuda_device(device), workers, prefetch, return_exceptions)


def _batch_cuda(sources: list, cfg: TokenizerConfig, dev: torch.device, workers: int, prefetch: int,
                return_exceptions: bool) -> list:
    """Decode threads → bounded queue of host videos → GPU. Pinned memory is bounded by ``prefetch`` + workers."""
    n = len(sources)
    results: list = [None] * n
    slots = threading.Semaphore(prefetch + workers)  # host videos alive at once
    done: "queue.Queue[tuple[int, Any]]" = queue.Queue()
    next_idx = iter(range(n))
    lock = threading.Lock()
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            with lock:
                i = next(next_idx, None)
            if i is None:
                return
            slots.acquire()
            if stop.is_set():
                slots.release()
                return
            try:
                done.put((i, _decode_host(sources[i], cfg, pin=dev.type == "cuda")))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises or records it
                done.put((i, exc))

    threads = [threading.Thread(target=worker, name=f"ov2-decode-{k}", daemon=True) for k in range(min(workers, n))]
    for t in threads:
        t.start()
    stream = torch.cuda.Stream(device=dev) if dev.type == "cuda" else None  # CPU: the tests' emulation only
    sid = int(stream.cuda_stream) if stream is not None else 0
    pending: dict = {}
    want = 0
    try:
        while want < n:
            while want not in pending:
                i, item = done.get()
                pending[i] = item
            item = pending.pop(want)
            try:
                if isinstance(item, BaseException):
                    raise item
                if item.partition is None:
                    # one launch for this video and every decoded video still waiting for its partition
                    todo = [item] + [v for _, v in sorted(pending.items())
                                     if not isinstance(v, BaseException) and v.partition is None]
                    for v, part in zip(todo, _gop_batch(todo, cfg, sid)):
                        v.partition = part
                results[want] = _gpu_tokens(item, cfg, dev, stream)
            except Ov2Error as exc:
                if not return_exceptions:
                    raise
                results[want] = exc
            finally:
                if not isinstance(item, BaseException):
                    item.products.clear()
                slots.release()
            want += 1
    finally:
        # On an error: stop the workers, free the slots of every decoded video not consumed, drain what is still
        # being decoded (a worker blocked on a slot gets one, sees `stop` and exits).
        stop.set()
        for _ in range(len(pending)):
            slots.release()
        pending.clear()
        while any(t.is_alive() for t in threads):
            try:
                done.get(timeout=0.05)
                slots.release()
            except queue.Empty:
                pass
        for t in threads:
            t.join()
    return results
