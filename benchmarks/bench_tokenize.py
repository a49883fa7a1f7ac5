#!/usr/bin/env python
"""Benchmark of ov2's tokenization modes against plain decoding and what users run today, in one run.

Measurements per video (each in a fresh subprocess with its own peak RSS, alternating methods after a warm-up
round, medians reported):

  decode          ov2 plain decode of every frame (no products) — the floor, same threads. It reads no pixels, so
                  on H.264 it decodes without the deblocking filter (since session 16; `loop_filter_skipped` in
                  its rows): the tokenizer's reads need the pictures and always deblock, so on H.264 the ratios
                  of results made since then compare against a cheaper floor than those made before
  codec_stream    tokenize_video(mode="codec_stream"), 256 candidates, 32 canvases
  ovenc_topk      tokenize_video(mode="ovenc_topk") (OneVision-Encoder codec patchification)
  ovenc_pyav      the same pipeline in PyAV + numpy (benchmarks/baselines/ovenc_topk_pyav.py)
  frames64        tokenize_video(mode="frames", num_frames=64)
  pyav_uniform64  PyAV decode, 64 uniformly spaced frames converted to RGB (what frame-sampling loaders do)
  decord64        decord VideoReader.get_batch of 64 uniform frames (when decord imports)

Ratios are to `decode` of the same video. Results: benchmarks/results/tokenize-<host>-<date>.json.

Usage: python benchmarks/bench_tokenize.py [--quick] [--threads N] [--repeats R] [--videos NAME ...]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_core import (  # noqa: E402
    GEN_NAME,
    RESULTS,
    SHARED_VIDEOS,
    VIDEO_SUFFIXES,
    _peak_rss_mb,
    _rss_mb,
    _run_worker,
    _versions,
    _video_info,
    generated_video,
)

REPO = HERE.parent
METHODS = ("decode", "codec_stream", "ovenc_topk", "ovenc_pyav", "frames64", "pyav_uniform64", "decord64")
QUICK_VIDEOS = ("ytb_XwB-dkS5BVM.mp4",)


def _worker(method: str, path: str, threads: int) -> dict:
    tokens = 0
    extra = {}
    if method in ("decode", "codec_stream", "ovenc_topk", "frames64"):
        import ov2_tokenizer as ov2

        if method != "decode":
            ov2.VisualTokens  # noqa: B018 - the token API imports torch lazily: not part of the timed work
            # tokenize_video imports its mode's module on first use: an import, not part of the timed work either
            importlib.import_module({"codec_stream": "ov2_tokenizer.codec_stream", "ovenc_topk": "ov2_tokenizer.ovenc_topk",
                                     "frames64": "ov2_tokenizer.frames_mode"}[method])
        base = _rss_mb()
        t0 = time.perf_counter()
        if method == "decode":
            reader = ov2.open_video(path, num_threads=threads)
            tokens = sum(1 for _ in reader.frames(with_luma=False))
            extra["loop_filter_skipped"] = bool(reader.stats.get("loop_filter_skipped"))
        else:
            mode, extra = {"codec_stream": ("codec_stream", {}), "ovenc_topk": ("ovenc_topk", {}),
                           "frames64": ("frames", {"num_frames": 64})}[method]
            vt = ov2.tokenize_video(path, mode=mode, num_threads=threads, **extra)
            tokens = vt.num_tokens
        elapsed = time.perf_counter() - t0
    elif method == "ovenc_pyav":
        sys.path.insert(0, str(HERE / "baselines"))
        import ovenc_topk_pyav

        base = _rss_mb()
        t0 = time.perf_counter()
        out = ovenc_topk_pyav.run(path, threads)
        tokens = int(len(out["rows"]))
        elapsed = time.perf_counter() - t0
    elif method == "pyav_uniform64":
        import av
        import numpy as np

        base = _rss_mb()
        t0 = time.perf_counter()
        with av.open(path) as c:
            n = sum(1 for p in c.demux(c.streams.best("video") or c.streams.video[0]) if p.size)
        want = set(np.linspace(0, n - 1, 64).round().astype(int).tolist())
        with av.open(path) as c:
            s = c.streams.best("video") or c.streams.video[0]
            s.thread_type = "AUTO" if threads > 1 else "SLICE"
            s.thread_count = threads
            for i, f in enumerate(c.decode(s)):
                if i in want:
                    f.to_ndarray(format="rgb24")
                    tokens += 1
        elapsed = time.perf_counter() - t0
    elif method == "decord64":
        try:
            import decord
            import numpy as np
        except ImportError as exc:
            return {"unavailable": f"decord not importable: {exc}"}
        base = _rss_mb()
        t0 = time.perf_counter()
        vr = decord.VideoReader(path, num_threads=threads)
        idx = np.linspace(0, len(vr) - 1, 64).round().astype(int).tolist()
        tokens = int(vr.get_batch(idx).shape[0])
        elapsed = time.perf_counter() - t0
    else:
        raise SystemExit(f"unknown method {method!r}")
    return {"seconds": elapsed, "tokens": tokens, "peak_rss_mb": _peak_rss_mb(), "base_rss_mb": base, **extra}


def _run(method: str, path: Path, threads: int) -> dict:
    return _run_worker(method, path, threads, script=Path(__file__).resolve())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="two videos, fewer repetitions, no generated video")
    ap.add_argument("--videos", nargs="*", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker[0], args.worker[1], max(1, args.threads))))
        return 0
    repeats = args.repeats or (1 if args.quick else 3)
    videos = sorted(p for p in SHARED_VIDEOS.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES) if SHARED_VIDEOS.is_dir() else []
    if args.quick:
        videos = [p for p in videos if p.name in QUICK_VIDEOS]
    else:
        videos.append(generated_video())
    if args.videos:
        videos = [p for p in videos if p.name in args.videos]
    rows = []
    for path in videos:
        samples: dict[str, list] = {m: [] for m in METHODS}
        last: dict[str, dict] = {}
        for rep in range(repeats + 1):  # round 0 is the warm-up
            for m in METHODS:
                r = _run(m, path, args.threads)
                last[m] = r
                if rep > 0 and "seconds" in r:
                    samples[m].append(r)
        floor = statistics.median(r["seconds"] for r in samples["decode"]) if samples["decode"] else float("nan")
        for m in METHODS:
            runs = samples[m]
            row = {"video": path.name, "method": m, **_video_info(path)}
            if runs:
                sec = [r["seconds"] for r in runs]
                row.update(seconds=statistics.median(sec), min=min(sec), max=max(sec), ratio_to_decode=statistics.median(sec) / floor,
                           tokens=runs[-1]["tokens"], peak_rss_mb=max(r["peak_rss_mb"] for r in runs),
                           base_rss_mb=runs[-1]["base_rss_mb"])
                if "loop_filter_skipped" in runs[-1]:
                    row["loop_filter_skipped"] = runs[-1]["loop_filter_skipped"]
            else:
                row.update({k: v for k, v in last[m].items() if k in ("error", "unavailable")})
            rows.append(row)
            print(f"{path.name:<28} {m:<15} " + (f"{row['seconds']:7.3f} s  x{row['ratio_to_decode']:5.2f} decode  "
                  f"peak {row['peak_rss_mb']:6.0f} MB" if "seconds" in row else str(row.get("error") or row.get("unavailable"))),
                  flush=True)
    now = _dt.datetime.now()
    host = socket.gethostname()
    out = Path(args.out) if args.out else RESULTS / f"tokenize-{host}-{now:%Y-%m-%d}{'-quick' if args.quick else ''}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "tokenize", "date": now.isoformat(timespec="seconds"), "host": host, "threads": args.threads,
           "repeats": repeats, "machine": {"cpus": os.cpu_count()}, "versions": _versions(), "rows": rows}
    out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
