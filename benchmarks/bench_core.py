#!/usr/bin/env python
"""Benchmark of ov2's codec core against the tools users pick today, on the same inputs in one run.

Measurements (each one in a fresh subprocess, so that it has its own peak RSS):

  (a) ov2-decode        ov2 frames, every frame decoded, nothing copied out (decode floor)
  (b) ov2-mvs           ov2 frames with motion vectors (+ dense field, intra mask)
  (c) ov2-all           ov2 frames with motion vectors + residual + coding cost
  (d) pyav-mvs          PyAV decode with export_mvs, vectors converted to numpy
  (e) pyav-rgb          PyAV decode to RGB arrays
  (f) mvx-vectors       motion-vector-extractor, vectors-only mode (set_decode_frames(False))

Inputs: every video in ../shared/videos (when present) and a generated 1280x720, 60-second H.264 video
(procedural moving content, x264 ultrafast; cached under benchmarks/.cache/).

Runs alternate the methods (A/B/C/.../A/B/C...) after one warm-up round, and report medians. The time is the
wall time inside the worker from opening the file to the end of the last frame (interpreter start-up and imports
excluded); peak RSS is the worker's VmHWM (imports included; the RSS after imports is reported as well).
Ratios are to (a) of the same video. Results go to benchmarks/results/core-<host>-<date>.json.

Usage: python benchmarks/bench_core.py [--quick] [--threads N] [--repeats R] [--videos NAME ...]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED_VIDEOS = REPO.parent / "shared" / "videos"
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
GEN_NAME = "gen_h264_720p_60s.mp4"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")
QUICK_VIDEOS = ("ytb_XwB-dkS5BVM.mp4",)  # make bench-quick: one shared video, the whole run < 3 minutes

METHODS = {
    "a": "ov2-decode",
    "b": "ov2-mvs",
    "c": "ov2-all",
    "d": "pyav-mvs",
    "e": "pyav-rgb",
    "f": "mvx-vectors",
}


# ---------------------------------------------------------------------------------------------------------------
# Worker side: one measurement per process
def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def _peak_rss_mb() -> float:
    """Peak resident set of this process's own address space (VmHWM). Not ru_maxrss: Linux carries the parent's
    resident set at fork/exec into the child's ru_maxrss, so a worker started by a parent holding 150 MB (after
    generating a long test video) would report at least 150 MB whatever it used itself."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _rows_digest(rows) -> str:
    """Digest of one frame's vectors as N x 10 int32 (ov2's columns: FFmpeg's AVMotionVector without flags)."""
    import numpy as np

    if rows is None:
        rows = np.zeros((0, 10), np.int32)
    elif rows.dtype.names:  # PyAV's structured array
        rows = np.stack([rows[c] for c in ("source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "motion_x",
                                           "motion_y", "motion_scale")], axis=1) if len(rows) else np.zeros((0, 10))
    rows = np.ascontiguousarray(np.asarray(rows)[:, :10], dtype=np.int32)
    return hashlib.sha1(rows.tobytes()).hexdigest()[:12]


def _worker(method: str, path: str, threads: int, verify: bool = False) -> dict:
    """One timed read; with ``verify`` (untimed) the per-frame vector digests instead of timings."""
    frames = 0
    mv_rows = 0
    digests: list[str] = []
    if method in ("a", "b", "c"):
        import ov2_tokenizer as ov2

        products = {
            # like the peers (d) and (f), nothing pixel-wise is copied out unless it is the product measured
            "a": dict(with_luma=False),
            "b": dict(with_luma=False, with_mvs=True),
            "c": dict(with_luma=False, with_mvs=True, with_residual=True, with_coding_cost=True),
        }[method]
        base = _rss_mb()
        t0, c0 = time.perf_counter(), _cpu_s()
        reader = ov2.open_video(path, num_threads=threads)
        for f in reader.frames(**products):
            frames += 1
            if f.motion_vectors is not None:
                mv_rows += f.motion_vectors.shape[0]
            if verify:
                digests.append(_rows_digest(f.motion_vectors))
        elapsed = time.perf_counter() - t0
    elif method in ("d", "e"):
        import av
        import numpy as np  # noqa: F401  (to_ndarray)

        base = _rss_mb()
        t0, c0 = time.perf_counter(), _cpu_s()
        container = av.open(path)
        # the stream FFmpeg ranks best (av_find_best_stream), as ov2 and motion-vector-extractor pick it
        stream = container.streams.best("video") or container.streams.video[0]
        if threads > 1:
            stream.thread_type = "AUTO"
            stream.thread_count = threads
        else:
            stream.thread_type = "SLICE"
            stream.thread_count = 1
        if method == "d":
            stream.codec_context.options = {"flags2": "+export_mvs"}
        for frame in container.decode(stream):
            frames += 1
            if method == "d":
                sd = frame.side_data.get("MOTION_VECTORS")
                if sd is not None:
                    mv_rows += len(sd.to_ndarray())
                if verify:
                    digests.append(_rows_digest(sd.to_ndarray() if sd is not None else None))
            else:
                frame.to_ndarray(format="rgb24")
        container.close()
        elapsed = time.perf_counter() - t0
    elif method == "f":
        try:
            from mvextractor.videocap import VideoCap
        except ImportError as exc:
            return {"unavailable": f"motion-vector-extractor not importable: {exc}"}
        base = _rss_mb()
        t0, c0 = time.perf_counter(), _cpu_s()
        cap = VideoCap()
        if not cap.open(path):
            return {"unavailable": "motion-vector-extractor could not open the file"}
        cap.set_decode_frames(False)
        while True:
            ok, _frame, mvs, _ftype, *_ = cap.read()
            if not ok:
                break
            frames += 1
            mv_rows += 0 if mvs is None else len(mvs)
            if verify:
                digests.append(_rows_digest(mvs if mvs is not None and len(mvs) else None))
        cap.release()
        elapsed = time.perf_counter() - t0
    else:
        raise SystemExit(f"unknown method {method!r}")
    cpu = _cpu_s() - c0
    peak = _peak_rss_mb()
    if verify:
        return {"digests": digests}
    return {"seconds": elapsed, "cpu_s": cpu, "frames": frames, "mv_rows": mv_rows, "peak_rss_mb": peak,
            "base_rss_mb": base}


def _run_worker(method: str, path: Path, threads: int, timeout: float = 900.0, script: Path | None = None,
                verify: bool = False) -> dict:
    """Runs ``script --worker METHOD PATH --threads N`` (default: this file) and returns its JSON line."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, str(script or Path(__file__).resolve()), "--worker", method, str(path), "--threads", str(threads)]
    if verify:
        cmd.append("--verify")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {out.returncode}: " + " | ".join(tail)}
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"no result: {out.stdout[-200:]!r}"}


# ---------------------------------------------------------------------------------------------------------------
# The generated 720p video
def generated_video(seconds: int = 60, fps: int = 30) -> Path:
    """A 1280x720 H.264 video with procedural moving content (scrolling textured background, textured blocks at
    known speeds, a periodic oscillation and a scene change every 20 s), x264 ultrafast; cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / (GEN_NAME if seconds == 60 else GEN_NAME.replace("60s", f"{seconds}s"))
    if target.exists() and target.stat().st_size > 0:
        return target
    sys.path.insert(0, str(REPO / "src"))
    import numpy as np

    from ov2_tokenizer.samples import encode_video, texture

    W, H = 1280, 720
    bgs = [texture(H + 200, W + 400, seed=s, smooth=2) for s in (1, 2, 3)]
    blocks = [texture(96, 96, seed=10 + k, smooth=1) for k in range(4)]
    speeds = [(3, 0), (-2, 1), (1, -2), (4, 3)]
    n = seconds * fps

    def render(i: int) -> np.ndarray:
        scene = (i // (20 * fps)) % len(bgs)
        j = i % (20 * fps)
        ox, oy = (2 * j) % 400, (j // 2) % 200
        img = bgs[scene][oy : oy + H, ox : ox + W].copy()
        for k, (blk, (vx, vy)) in enumerate(zip(blocks, speeds)):
            x = (100 + 250 * k + vx * j) % (W - 96)
            y = (100 + 120 * k + vy * j) % (H - 96)
            img[y : y + 96, x : x + 96] = blk
        dx = int(round(60 * np.sin(2 * np.pi * i / fps)))  # 1 Hz oscillation
        img[500:580, 600 + dx : 680 + dx] = 255 - blocks[0][:80, :80]
        return img

    tmp = target.with_suffix(f".{os.getpid()}.tmp.mp4")
    t0 = time.perf_counter()
    encode_video(tmp, n, render, fps=fps, codec="libx264", options={"preset": "ultrafast", "crf": "23"})
    os.replace(tmp, target)
    print(f"generated {target} ({n} frames, {target.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.0f} s",
          flush=True)
    return target


# ---------------------------------------------------------------------------------------------------------------
def _video_info(path: Path) -> dict:
    try:
        import av

        with av.open(str(path)) as c:
            s = c.streams.best("video") or c.streams.video[0]
            return {"codec": s.codec_context.codec.canonical_name, "width": s.codec_context.width,
                    "height": s.codec_context.height}
    except Exception as exc:  # noqa: BLE001
        return {"error": str(exc)}


def _versions() -> dict:
    v = {"python": platform.python_version()}
    try:
        import av

        v["pyav"] = av.__version__
        v["pyav_libavcodec"] = ".".join(map(str, av.library_versions.get("libavcodec", ())))
    except ImportError:
        v["pyav"] = None
    try:
        from importlib.metadata import version

        v["motion-vector-extractor"] = version("motion-vector-extractor")
    except Exception:  # noqa: BLE001
        v["motion-vector-extractor"] = None
    try:
        out = subprocess.run(["pkg-config", "--modversion", "libavcodec"], capture_output=True, text=True, timeout=10)
        v["ov2_libavcodec"] = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        v["ov2_libavcodec"] = None
    return v


def _fmt_table(rows: list[dict]) -> str:
    head = (f"{'video':<26} {'method':<16} {'time s':>7} {'cpu s':>6} {'fps':>6} {'x (a) time':>10} {'peak MB':>8} "
            f"{'import MB':>9} {'+decode MB':>10}")
    lines = [head, "-" * len(head)]
    last = None
    for r in rows:
        name = r["video"] if r["video"] != last else ""
        last = r["video"]
        label = f"({r['key']}) {r['method']}"
        if "median_s" not in r:
            lines.append(f"{name:<26} {label:<16} {r.get('status', 'n/a')}")
            continue
        ratio = f"{r['ratio_to_a']:.2f}" if r.get("ratio_to_a") is not None else "-"
        lines.append(f"{name:<26} {label:<16} {r['median_s']:>7.3f} {r['cpu_s']:>6.2f} {r['fps']:>6.0f} {ratio:>10} "
                     f"{r['peak_rss_mb']:>8.0f} {r['base_rss_mb']:>9.0f} {r['peak_rss_mb'] - r['base_rss_mb']:>10.0f}")
    return "\n".join(lines)


def _checks(rows: list[dict]) -> list[str]:
    """The issue's acceptance ratios, per video (informational; this machine drifts by +-20%)."""
    out = []
    by = {}
    for r in rows:
        by.setdefault(r["video"], {})[r["key"]] = r
    for video, m in by.items():
        def t(k):
            return m.get(k, {}).get("median_s")

        parts = []
        # A peer that exports no vectors (HEVC, AV1: its decoder has none; ov2 estimates them) or fails to read
        # the file is not a comparison of vector export: reported, not checked.
        def rows(k):
            return m.get(k, {}).get("mv_rows", 0)

        def wrong(k):
            n = m.get(k, {}).get("frames_vectors_differ")
            return f" (its vectors differ from the exact ones on {n} of {m[k]['frames']} frames)" if n else ""

        if t("b") and t("f"):
            ok = "OK" if t("b") <= t("f") else "SLOWER"
            parts.append(f"(b) vs (f): {t('f') / t('b'):.2f}x {ok if rows('f') else 'n/a (peer exports no vectors)'}"
                         + wrong("f"))
        if t("b") and t("d"):
            ok = "OK" if t("d") >= 1.3 * t("b") else "< 1.3"
            parts.append(f"(d)/(b): {t('d') / t('b'):.2f}x {ok if rows('d') else 'n/a (peer exports no vectors)'}"
                         + wrong("d"))
        if m.get("b", {}).get("frames_vectors_differ"):
            parts.append(f"ov2 (b) VECTORS DIFFER from one thread on {m['b']['frames_vectors_differ']} frames")
        hd = m.get("a", {}).get("height", 0) >= 720
        if hd and t("a") and t("c"):
            s = t("a") / t("c")
            parts.append(f"speed (c)/(a): {s:.2f} {'OK' if s >= 0.7 else '< 0.7'}")
        if hd and m.get("c", {}).get("peak_rss_mb"):
            rss = m["c"]["peak_rss_mb"]
            add = rss - m["c"]["base_rss_mb"]
            parts.append(f"peak RSS (c): {rss:.0f} MB {'OK' if rss < 100 else '>= 100'} "
                         f"({m['c']['base_rss_mb']:.0f} MB after import, decoding adds {add:.0f} MB)")
        if parts:
            out.append(f"{video}: " + "; ".join(parts))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 repetitions, 4 videos")
    ap.add_argument("--threads", type=int, default=1,
                    help="decoder threads for ov2 (num_threads) and PyAV (thread_count; AUTO threading when > 1)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repetitions per method (default 5, quick 3)")
    ap.add_argument("--videos", nargs="*", default=None, help="file names to run (default: all, quick: 4)")
    ap.add_argument("--methods", default="abcdef", help="subset of a-f")
    ap.add_argument("--gen-seconds", type=int, default=60, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/core-<host>-<date>.json)")
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--verify", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(_worker(args.worker[0], args.worker[1], max(1, args.threads), verify=args.verify)))
        return 0

    repeats = args.repeats or (2 if args.quick else 5)
    methods = [k for k in "abcdef" if k in args.methods]
    videos = []
    if SHARED_VIDEOS.is_dir():
        videos = sorted(p for p in SHARED_VIDEOS.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    else:
        print(f"note: {SHARED_VIDEOS} absent; only the generated video is measured")
    videos.append(generated_video(seconds=args.gen_seconds))
    wanted = args.videos if args.videos is not None else (QUICK_VIDEOS if args.quick else None)
    if wanted:
        videos = [v for v in videos if v.name in wanted]

    host = socket.gethostname()
    now = _dt.datetime.now()
    print(f"bench_core: {len(videos)} videos x methods {''.join(methods)}, {repeats} timed runs + 1 warm-up, "
          f"threads={args.threads}, host {host}, {os.cpu_count()} CPUs", flush=True)

    rows = []
    for video in videos:
        info = _video_info(video)
        samples: dict[str, list[dict]] = {k: [] for k in methods}
        status: dict[str, str] = {}  # methods given up on (unavailable, or failing 3 times)
        failures: dict[str, int] = {k: 0 for k in methods}
        t_video = time.perf_counter()
        for rep in range(repeats + 1):  # round 0 is the warm-up
            order = methods[rep % len(methods):] + methods[: rep % len(methods)]
            for k in order:
                if k in status:
                    continue
                res = _run_worker(k, video, args.threads)
                for _ in range(2):  # transient failures (e.g. the core being rebuilt under us): wait, retry
                    if "error" not in res:
                        break
                    time.sleep(30)
                    res = _run_worker(k, video, args.threads)
                if "unavailable" in res:
                    status[k] = "unavailable: " + res["unavailable"]
                    continue
                if "error" in res:
                    failures[k] += 1
                    if failures[k] >= 3:
                        status[k] = res["error"]
                    continue
                if rep > 0:
                    samples[k].append(res)
        for k in methods:
            row = {"video": video.name, "key": k, "method": METHODS[k], **info}
            if samples[k]:
                s = samples[k]
                med = statistics.median(x["seconds"] for x in s)
                row.update({
                    "median_s": med,
                    "cpu_s": statistics.median(x["cpu_s"] for x in s),
                    "runs_s": [round(x["seconds"], 4) for x in s],
                    "frames": s[0]["frames"],
                    "fps": s[0]["frames"] / med if med > 0 else float("nan"),
                    "mv_rows": s[0]["mv_rows"],
                    "peak_rss_mb": statistics.median(x["peak_rss_mb"] for x in s),
                    "peak_rss_max_mb": max(x["peak_rss_mb"] for x in s),
                    "base_rss_mb": statistics.median(x["base_rss_mb"] for x in s),
                })
            else:
                row["status"] = status.get(k, "no successful timed run")
            rows.append(row)
        # Untimed: are the exported vectors the exact ones? Reference: ov2 with one thread (it equals PyAV's
        # single-threaded export on every frame, tests/codec/test_codec_parity.py). A peer that frame-threads a
        # B-frame stream may export vectors of pictures still being decoded.
        vec = [k for k in ("b", "d", "f") if k in methods and samples[k] and samples[k][0]["mv_rows"]]
        if vec:
            ref = _run_worker("b", video, 1, verify=True).get("digests")
            for k in vec:
                got = [_run_worker(k, video, args.threads, verify=True).get("digests") for _ in range(2)]
                row = next(r for r in rows if r["video"] == video.name and r["key"] == k)
                if ref and all(got):
                    row["frames_vectors_differ"] = max(
                        sum(1 for x, y in zip(ref, g) if x != y) + abs(len(ref) - len(g)) for g in got)
        a = next((r for r in rows if r["video"] == video.name and r["key"] == "a" and "median_s" in r), None)
        for r in rows:
            if r["video"] == video.name and a and "median_s" in r:
                r["ratio_to_a"] = r["median_s"] / a["median_s"]
        print(f"  {video.name}: {time.perf_counter() - t_video:.0f} s", flush=True)

    print()
    print(_fmt_table(rows))
    print("\n'x (a) time' = median time / median time of (a) on the same video (lower is faster); "
          "'import MB' = RSS after imports, '+decode MB' = peak minus that.")
    checks = _checks(rows)
    if checks:
        print("\nAcceptance ratios (issue #2):")
        for c in checks:
            print("  " + c)

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.out) if args.out else RESULTS / f"core-{host}-{now:%Y-%m-%d}{'-quick' if args.quick else ''}.json"
    doc = {
        "benchmark": "bench_core",
        "date": now.isoformat(timespec="seconds"),
        "host": host,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "args": {"quick": args.quick, "threads": args.threads, "repeats": repeats, "methods": "".join(methods)},
        "methods": METHODS,
        "versions": _versions(),
        "timing": "wall time inside a fresh worker process from open to the last frame; medians of alternating runs "
                  "after one warm-up round; peak RSS = worker VmHWM (imports included; median over runs, max in peak_rss_max_mb), base = RSS after imports",
        "threading": "ov2: num_threads=--threads; PyAV: thread_count=1/SLICE, or AUTO with --threads > 1; "
                     "motion-vector-extractor: its own built-in decoder threading (not configurable)",
        "results": rows,
        "checks": checks,
    }
    out.write_text(json.dumps(doc, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
