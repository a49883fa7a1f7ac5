#!/usr/bin/env python
"""Runs every benchmark of the repository in one go and regenerates the README's results section.

  make bench         full runs (all shared videos + the generated 60-second 720p video)
  make bench-quick   the quick subset (a few minutes)

Each benchmark alternates its peers A/B/A/B after a warm-up, reports medians and min–max, and writes JSON to
benchmarks/results/; report.py then rewrites the README section from those files.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    q = ["--quick"] if args.quick else []
    steps = [
        [sys.executable, str(HERE / "bench_core.py"), "--threads", str(args.threads), *q],
        [sys.executable, str(HERE / "bench_tokenize.py"), "--threads", str(args.threads), *q],
        [sys.executable, str(HERE / "bench_coverage.py"), *q],
        [sys.executable, str(HERE / "report.py")],
    ]
    rc = 0
    for cmd in steps:
        print("$", " ".join(Path(c).name if c.endswith(".py") else c for c in cmd), flush=True)
        rc |= subprocess.run(cmd).returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())
