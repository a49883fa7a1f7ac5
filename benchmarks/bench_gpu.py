#!/usr/bin/env python
"""GPU benchmark (docs/gpu.md): the tokenizer's CUDA kernels, CPU vs GPU end to end, and the Triton segment-attention
kernel against FlexAttention, SDPA and FlashAttention-2. Needs a CUDA device; without one it says so and exits 0.

Sections (each can be skipped with --skip):

  kernels     every core.cuda kernel on synthetic inputs at the default geometry (1280x720 source, 476x840-class
              canvas, 256 candidates): median time (CUDA events) and achieved GB/s against the bytes the kernel
              must read and write at least (inputs once, outputs once; scratch not counted).
  e2e         tokenize_video codec_stream on the CPU vs device="cuda", per video (median of --repeats, alternating),
              and tokenize_batch of 64 videos (the sample clips repeated) on the CPU vs on the GPU.
  attention   segment attention, bf16, head dims 64 and 128, packed sequences of 4k-64k tokens in groups of
              256-4096 tokens, with and without 64-token windows; forward and forward+backward. Compared:
              ov2 Triton kernel, FlexAttention (block mask, torch.compile), SDPA with a dense boolean mask (up to
              16k tokens: the mask is N^2 bytes), FlashAttention-2 varlen (when flash_attn imports; windows are
              contiguous sub-segments, so varlen expresses them exactly). TFLOP/s count only the visible
              (query, key) pairs: forward 4*D*H per pair, backward 2.5x forward. Ratios are to ov2 Triton.

Results: benchmarks/results/gpu-<device>-<date>.json (the device name is in the file name and the JSON).

Usage: python benchmarks/bench_gpu.py [--quick] [--repeats R] [--skip kernels|e2e|attention ...] [--out PATH]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import socket
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(ROOT / "src"))


def _gpu_or_exit():
    try:
        import torch
    except ImportError:
        print("bench_gpu: torch is not installed; nothing to measure", file=sys.stderr)
        sys.exit(0)
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device (torch.cuda.is_available() is False); nothing to measure", file=sys.stderr)
        sys.exit(0)
    from ov2_tokenizer.gpu import cuda_status

    ok, why = cuda_status()
    return torch, ok, why


def _time_cuda(torch, fn, repeats: int, warmup: int = 2) -> float:
    """Median seconds of fn() by CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------------ kernels
def bench_kernels(torch, repeats: int, quick: bool) -> list:
    from ov2_tokenizer._native import core

    cu = core.cuda
    dev = torch.device("cuda")
    A = lambda t: int(t.data_ptr())  # noqa: E731
    H, W = (360, 640) if quick else (720, 1280)
    n = 64 if quick else 256
    hc, wc = core.tok.canvas_size(H, W, 14, 2, 3136, 313600)
    hc, wc = int(hc), int(wc)
    h4, w4 = (H + 3) // 4, (W + 3) // 4
    g = torch.Generator(device="cpu").manual_seed(0)
    field = (torch.randint(-64, 64, (n, h4, w4, 4), generator=g).float() / 4).to(dev)
    flags = torch.randint(0, 4, (n, h4, w4), generator=g, dtype=torch.uint8).to(dev)
    res = torch.randint(-40, 40, (n, H, W), generator=g, dtype=torch.int16).to(dev)
    cost = torch.rand((n, h4, w4), generator=g).to(dev)
    intra = torch.zeros(n, dtype=torch.uint8, device=dev)
    intra[::32] = 1
    rgb_src = torch.randint(0, 256, (8, H, W, 3), generator=g, dtype=torch.uint8).to(dev)
    rgb_can = torch.randint(0, 256, (n, hc, wc, 3), generator=g, dtype=torch.uint8).to(dev)
    nbh, nbw = hc // 28, wc // 28
    scores = torch.empty((n, nbh, nbw), dtype=torch.float32, device=dev)
    sal = torch.empty((8, H, W), dtype=torch.float32, device=dev)
    out_rgb = torch.empty((8, hc, wc, 3), dtype=torch.uint8, device=dev)
    out_area = torch.empty((8, hc, wc), dtype=torch.float32, device=dev)
    rows_list = []
    for y in range(0, H, 16):
        for x in range(0, W, 16):
            rows_list.append([-1, 16, 16, x, y, x + 8, y + 8, (x * 7) % 33 - 16, (y * 5) % 29 - 14, 4])
    rows = torch.tensor(rows_list, dtype=torch.int32, device=dev)
    mvf = torch.empty((h4, w4, 4), dtype=torch.float32, device=dev)
    mvfl = torch.empty((h4, w4), dtype=torch.uint8, device=dev)
    luma = torch.randint(0, 256, (3, H, W), generator=g, dtype=torch.uint8).to(dev)
    resid = torch.empty((H, W), dtype=torch.int16, device=dev)
    yuv_y = torch.randint(0, 256, (H, W), generator=g, dtype=torch.uint8).to(dev)
    yuv_u = torch.randint(0, 256, (H // 2, W // 2), generator=g, dtype=torch.uint8).to(dev)
    yuv_v = torch.randint(0, 256, (H // 2, W // 2), generator=g, dtype=torch.uint8).to(dev)
    out_yuv = torch.empty((H, W, 3), dtype=torch.uint8, device=dev)
    cu.densify_motion(A(rows), rows.shape[0], W, H, A(mvf), A(mvfl))

    out = []

    def rec(name, fn, nbytes, note=""):
        t = _time_cuda(torch, fn, repeats)
        out.append({"kernel": name, "ms": t * 1e3, "bytes": int(nbytes), "GBps": nbytes / t / 1e9, "note": note})
        print(f"  {name:22s} {t * 1e3:9.3f} ms  {nbytes / t / 1e9:8.1f} GB/s  {note}")

    rec("resize_bilinear_u8", lambda: cu.resize_bilinear_u8(A(rgb_src), 8, H, W, 3, A(out_rgb), hc, wc),
        8 * (H * W * 3 + hc * wc * 3), f"8 frames {W}x{H} -> {wc}x{hc}")
    rec("resize_area_f32", lambda: cu.resize_area_f32(A(sal), 8, H, W, A(out_area), hc, wc),
        8 * (H * W + hc * wc) * 4, "8 maps")
    rec("saliency", lambda: cu.saliency(8, H, W, A(field), A(flags), h4, w4, A(res), A(intra), A(sal)),
        8 * (h4 * w4 * 17 + H * W * 2 + H * W * 4), "8 frames")
    rec("score_frames", lambda: cu.score_frames(n, H, W, A(field), A(flags), h4, w4, A(res), A(intra), A(cost), h4, w4,
                                                hc, wc, 14, 2, 0.5, out=A(scores)),
        n * (h4 * w4 * 21 + H * W * 2 + nbh * nbw * 4), f"{n} candidates")
    cand_t = [i * 0.25 for i in range(n)]
    import numpy as np

    gs = np.arange(0, 8, dtype=np.int64) * (n // 16)
    ge = np.append(gs[1:] - 1, int(cand_t[-1] / 0.5)).astype(np.int64)
    gc = np.ones(8, dtype=np.float64)
    ct = np.asarray(cand_t)
    rec("allocate", lambda: cu.allocate(gs, ge, gc, ct, A(scores), nbh, nbw, max_canvases=32),
        n * nbh * nbw * 4, "incl. host planning + copies")
    plan = cu.allocate(gs, ge, gc, ct, A(scores), nbh, nbw, max_canvases=32)
    S = int(plan["canvas_kind"].size)
    pt = {k: torch.from_numpy(np.ascontiguousarray(plan[k])).to(dev) for k in
          ("canvas_kind", "canvas_frame", "canvas_offset", "block_t", "block_i", "block_j")}
    canv = torch.empty((S, 3, hc, wc), dtype=torch.uint8, device=dev)
    rec("gather_canvases", lambda: cu.gather_canvases(S, A(pt["canvas_kind"]), A(pt["canvas_frame"]),
                                                      A(pt["canvas_offset"]), A(pt["block_t"]), A(pt["block_i"]),
                                                      A(pt["block_j"]), A(rgb_can), n, hc, wc, 14, 2, A(canv)),
        2 * S * 3 * hc * wc, f"{S} canvases")
    videos = []
    for v in range(64):
        npk = 30 * 60
        pts = np.arange(npk) / 30.0
        size = (np.random.default_rng(v).integers(200, 40000, npk)).astype(np.int64)
        pict = np.full(npk, ord("P"), np.uint8)
        pict[::60] = ord("I")
        videos.append(dict(pts_s=pts, size=size, pict_type=pict, keyframe=(pict == ord("I")).astype(np.uint8),
                           duration_s=60.0, t0=0.0))
    rec("gop_partition_batch", lambda: cu.gop_partition_batch(videos, k_tar=8), 64 * 1800 * 18,
        "64 videos x 1800 packets, one launch, incl. copies")
    rec("densify_motion", lambda: cu.densify_motion(A(rows), rows.shape[0], W, H, A(mvf), A(mvfl)),
        rows.numel() * 4 + h4 * w4 * 17, f"{rows.shape[0]} rows")
    cur, r0 = luma[0], luma[1]
    rec("compute_residual", lambda: cu.compute_residual((A(cur), W, H, W), (A(r0), W, H, W), (0, 0, 0, 0), A(rows),
                                                        rows.shape[0], A(mvfl), True, A(resid)),
        H * W * (1 + 1 + 2) + rows.numel() * 4, "H.264 qpel, one frame")
    rec("yuv420_to_rgb", lambda: cu.yuv420_to_rgb(A(yuv_y), W, A(yuv_u), A(yuv_v), W // 2, H, W, 709, False, A(out_yuv)),
        H * W * 1.5 + H * W * 3, "one frame")
    return out


# ---------------------------------------------------------------------------------------------------- e2e
def _videos():
    import ov2_tokenizer as ov2

    shared = ROOT.parent / "shared" / "videos"
    vids = sorted(p for p in shared.glob("*") if p.suffix.lower() in (".mp4", ".mkv", ".mov", ".avi"))[:4] \
        if shared.is_dir() else []
    return vids or [ov2.sample_video()]


def bench_e2e(torch, repeats: int, quick: bool) -> dict:
    import ov2_tokenizer as ov2

    cfg = ov2.TokenizerConfig(num_frames=64 if quick else 256, max_canvases=32)
    per_video = []
    for path in _videos():
        ov2.tokenize_video(path, config=cfg, device="cuda")  # warm-up (CUDA context, allocator)
        t_cpu, t_gpu = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            ref = ov2.tokenize_video(path, config=cfg)
            t_cpu.append(time.perf_counter() - t)
            t = time.perf_counter()
            got = ov2.tokenize_video(path, config=cfg, device="cuda")
            torch.cuda.synchronize()
            t_gpu.append(time.perf_counter() - t)
        same = bool(torch.equal(got.canvases.cpu(), ref.canvases) and torch.equal(got.pos_thw.cpu(), ref.pos_thw))
        row = {"video": path.name, "cpu_s": statistics.median(t_cpu), "gpu_s": statistics.median(t_gpu),
               "identical": same}
        row["speedup"] = row["cpu_s"] / row["gpu_s"]
        per_video.append(row)
        print(f"  {path.name:30s} cpu {row['cpu_s']:.3f}s  gpu {row['gpu_s']:.3f}s  x{row['speedup']:.2f}  "
              f"identical={same}")
    vids = _videos()
    batch = [vids[i % len(vids)] for i in range(16 if quick else 64)]
    t = time.perf_counter()
    ov2.tokenize_batch(batch, config=cfg, device="cpu")
    t_cpu = time.perf_counter() - t
    t = time.perf_counter()
    ov2.tokenize_batch(batch, config=cfg, device="cuda")
    torch.cuda.synchronize()
    t_gpu = time.perf_counter() - t
    print(f"  batch of {len(batch)}: cpu {t_cpu:.2f}s  gpu {t_gpu:.2f}s  x{t_cpu / t_gpu:.2f}")
    return {"per_video": per_video, "batch": {"videos": len(batch), "cpu_s": t_cpu, "gpu_s": t_gpu,
                                              "speedup": t_cpu / t_gpu}}


# ---------------------------------------------------------------------------------------------- attention
def _runs(seg, win):
    """Lengths of the contiguous runs of equal (segment, window): the visible blocks."""
    import torch

    key = seg.to(torch.int64) * (1 << 32) + (win.to(torch.int64) if win is not None else 0)
    change = torch.ones_like(key, dtype=torch.bool)
    change[1:] = key[1:] != key[:-1]
    starts = torch.nonzero(change).flatten()
    ends = torch.cat([starts[1:], torch.tensor([key.numel()], device=key.device)])
    return (ends - starts)


def bench_attention(torch, repeats: int, quick: bool) -> list:
    from ov2_model.attention import segment_attention

    dev = torch.device("cuda")
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        flex = torch.compile(flex_attention, dynamic=False)
    except Exception as exc:  # noqa: BLE001 - optional baseline
        print(f"  FlexAttention unavailable: {exc}")
        flex = None
    try:
        from flash_attn import flash_attn_varlen_func
    except Exception:  # noqa: BLE001 - optional baseline
        flash_attn_varlen_func = None
    import torch.nn.functional as F

    heads = 16
    lengths = [4096, 16384] if quick else [4096, 16384, 65536]
    groups = [256, 4096] if quick else [256, 1024, 4096]
    out = []
    for d in (64, 128):
        h = heads if d == 64 else heads // 2
        for n in lengths:
            for gsz in groups:
                for windowed in (False, True):
                    seg = (torch.arange(n, device=dev) // gsz).to(torch.int32)
                    win = ((torch.arange(n, device=dev) % gsz) // 64).to(torch.int32) if windowed else None
                    runs = _runs(seg, win)
                    pairs = int((runs.to(torch.float64) ** 2).sum().item())
                    fl_fwd = 4.0 * d * h * pairs
                    q, k, v = (torch.randn(n, h, d, device=dev, dtype=torch.bfloat16, requires_grad=True)
                               for _ in range(3))
                    do = torch.randn(n, h, d, device=dev, dtype=torch.bfloat16)
                    cu = torch.zeros(runs.numel() + 1, dtype=torch.int32, device=dev)
                    cu[1:] = torch.cumsum(runs, 0).to(torch.int32)
                    row = {"head_dim": d, "heads": h, "tokens": n, "group": gsz, "window": 64 if windowed else None,
                           "visible_pairs": pairs}

                    def run_ov2():
                        return segment_attention(q, k, v, segment_ids=seg, window_ids=win, backend="triton")

                    methods = {"ov2_triton": run_ov2}
                    if flex is not None:
                        sid, wid = seg, (win if win is not None else torch.zeros_like(seg))

                        def mask_mod(b, hh, qi, ki, sid=sid, wid=wid):
                            return (sid[qi] == sid[ki]) & (wid[qi] == wid[ki])

                        bm = create_block_mask(mask_mod, B=None, H=None, Q_LEN=n, KV_LEN=n, device=dev)
                        qt, kt, vt = (x.transpose(0, 1).unsqueeze(0) for x in (q, k, v))
                        methods["flex"] = lambda qt=qt, kt=kt, vt=vt, bm=bm: flex(qt, kt, vt, block_mask=bm)
                    if n <= 16384:
                        dense = (seg[:, None] == seg[None, :])
                        if win is not None:
                            dense &= (win[:, None] == win[None, :])
                        qt, kt, vt = (x.transpose(0, 1).unsqueeze(0) for x in (q, k, v))
                        methods["sdpa_dense"] = lambda qt=qt, kt=kt, vt=vt, m=dense: F.scaled_dot_product_attention(
                            qt, kt, vt, attn_mask=m)
                    if flash_attn_varlen_func is not None:
                        mx = int(runs.max().item())
                        methods["fa2_varlen"] = lambda: flash_attn_varlen_func(q, k, v, cu, cu, mx, mx)
                    for name, fn in methods.items():
                        try:
                            t_f = _time_cuda(torch, lambda fn=fn: fn(), repeats)

                            def fb(fn=fn):
                                o = fn()
                                if o.dim() == 4:
                                    o = o.squeeze(0).transpose(0, 1)
                                o.backward(do)

                            t_fb = _time_cuda(torch, fb, repeats)
                            row[name] = {"fwd_ms": t_f * 1e3, "fwd_tflops": fl_fwd / t_f / 1e12,
                                         "fwdbwd_ms": t_fb * 1e3, "fwdbwd_tflops": 3.5 * fl_fwd / t_fb / 1e12}
                        except Exception as exc:  # noqa: BLE001 - a baseline that cannot run this shape
                            row[name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                    base = row.get("ov2_triton", {})
                    for name in methods:
                        r = row[name]
                        if "fwd_ms" in r and "fwd_ms" in base:
                            r["fwd_ratio_vs_ov2"] = r["fwd_ms"] / base["fwd_ms"]
                            r["fwdbwd_ratio_vs_ov2"] = r["fwdbwd_ms"] / base["fwdbwd_ms"]
                    out.append(row)
                    summary = "  ".join(f"{k} {row[k].get('fwd_tflops', float('nan')):.1f}/"
                                        f"{row[k].get('fwdbwd_tflops', float('nan')):.1f}" for k in methods)
                    print(f"  D={d} N={n} g={gsz} win={row['window']}: {summary} TFLOP/s (fwd/fwd+bwd)")
                    del q, k, v
                    torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--skip", nargs="*", default=[], choices=["kernels", "e2e", "attention"])
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/gpu-<device>-<date>.json)")
    args = ap.parse_args()
    torch, ok, why = _gpu_or_exit()
    repeats = args.repeats or (3 if args.quick else 10)
    name = torch.cuda.get_device_name()
    doc = {"host": socket.gethostname(), "date": _dt.date.today().isoformat(), "device": name,
           "torch": torch.__version__, "cuda": torch.version.cuda, "quick": args.quick, "repeats": repeats}
    if not ok:
        print(f"bench_gpu: tokenizer kernels unavailable ({why}); measuring attention only")
    if ok and "kernels" not in args.skip:
        print("kernels:")
        doc["kernels"] = bench_kernels(torch, repeats, args.quick)
    if ok and "e2e" not in args.skip:
        print("end to end:")
        doc["e2e"] = bench_e2e(torch, max(1, repeats // 2), args.quick)
    if "attention" not in args.skip:
        print("segment attention (bf16):")
        doc["attention"] = bench_attention(torch, repeats, args.quick)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    path = Path(args.out) if args.out else RESULTS / f"gpu-{slug}-{doc['date']}{'-quick' if args.quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
