#!/usr/bin/env python
"""Scaling with video length (issue #6): generated 720p H.264 videos of 1, 5, 15 and 60 minutes (x264
ultrafast, procedural moving content), time and peak RSS of ov2 `codec_stream` (256 candidates, 32 canvases),
of ov2's plain decode, and of PyAV uniform sampling of 64 frames, each in a fresh process.

Writes benchmarks/results/scaling-<host>-<date>.json and benchmarks/results/scaling.png (log-log cost vs length,
and peak RSS vs length) and prints the fitted log-log slope of time vs length.

Usage: python benchmarks/bench_scaling.py [--minutes 1 5 15 60] [--threads 2]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import socket
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_core import RESULTS, generated_video  # noqa: E402
from bench_tokenize import _run  # noqa: E402

METHODS = ("decode", "codec_stream", "pyav_uniform64")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, nargs="*", default=[1, 5, 15, 60])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    rows = []
    for minutes in args.minutes:
        path = generated_video(seconds=60 * minutes)
        for m in METHODS:
            r = _run(m, path, args.threads)
            r.update(minutes=minutes, method=m, video=path.name)
            rows.append(r)
            print(f"{minutes:3d} min  {m:<15} " + (f"{r['seconds']:8.1f} s  peak {r['peak_rss_mb']:6.0f} MB "
                  f"(imports {r['base_rss_mb']:.0f} MB)" if "seconds" in r else str(r)), flush=True)
    fits = {}
    for m in METHODS:
        pts = [(r["minutes"], r["seconds"]) for r in rows if r["method"] == m and "seconds" in r]
        if len(pts) >= 2:
            x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
            fits[m] = float(np.polyfit(x, y, 1)[0])
    print("log-log slope of time vs length:", {k: round(v, 3) for k, v in fits.items()})
    now = _dt.datetime.now()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"scaling-{socket.gethostname()}-{now:%Y-%m-%d}.json"
    out.write_text(json.dumps({"benchmark": "scaling", "date": now.isoformat(timespec="seconds"),
                               "threads": args.threads, "rows": rows, "slopes": fits}, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for m in METHODS:
            pts = sorted((r["minutes"], r["seconds"], r["peak_rss_mb"]) for r in rows if r["method"] == m and "seconds" in r)
            if pts:
                ax[0].loglog([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{m} (slope {fits.get(m, float('nan')):.2f})")
                ax[1].semilogx([p[0] for p in pts], [p[2] for p in pts], "o-", label=m)
        ax[0].set_xlabel("video length (min, 720p)"); ax[0].set_ylabel("time (s)"); ax[0].legend(); ax[0].grid(True, which="both", alpha=.3)
        ax[1].set_xlabel("video length (min, 720p)"); ax[1].set_ylabel("peak RSS (MB, imports included)"); ax[1].legend(); ax[1].grid(True, alpha=.3)
        ax[1].set_ylim(bottom=0)
        fig.tight_layout()
        fig.savefig(RESULTS / "scaling.png", dpi=110)
    except ImportError:
        pass
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
