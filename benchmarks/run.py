#!/usr/bin/env python
"""Runs every benchmark of the repository in one go and regenerates the README's results section.

  make bench         full runs (all shared videos + the generated 60-second 720p video)
  make bench-quick   the quick subset (< 3 minutes), then a regression check

Each benchmark alternates its peers A/B/A/B after a warm-up, reports medians and min–max, and writes JSON to
benchmarks/results/; report.py then rewrites the README section from those files.

Regression guard: before running, the results already in benchmarks/results/ (the last committed ones) are
kept as the baseline; afterwards every (benchmark, video, method) median measured on a machine of the same kind
(CPU count and architecture) is compared with it and slowdowns over 15% are printed. This informs; it never
fails (these machines drift by ±20%).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
THRESHOLD = 0.15


def _medians(doc: dict) -> dict[tuple[str, str], float]:
    out = {}
    for r in doc.get("results", doc.get("rows", [])):
        sec = r.get("median_s", r.get("seconds"))
        if sec and "video" in r and "method" in r:
            out[(r["video"], r["method"])] = float(sec)
    return out


def _machine_kind() -> str:
    return f"{os.cpu_count()}cpu-{platform.machine()}"


def _snapshot() -> dict[str, dict]:
    snap = {}
    for p in RESULTS.glob("*.json"):
        try:
            doc = json.loads(p.read_text())
        except ValueError:
            continue
        name = doc.get("benchmark")
        if name in ("core", "tokenize", None) or "results" in doc:
            snap[p.name] = doc
    return snap


def regressions(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """Slowdowns > 15% of medians between runs of the same benchmark on the same machine kind."""
    lines = []
    for name, doc in after.items():
        if before.get(name) is doc:
            continue
        bench = name.split("-", 1)[0]
        base_docs = [d for n, d in before.items() if n.split("-", 1)[0] == bench]
        if not base_docs:
            continue
        base = {}
        for d in base_docs:
            if d.get("machine_kind", _machine_kind()) == doc.get("machine_kind", _machine_kind()):
                base.update(_medians(d))
        for key, now in _medians(doc).items():
            old = base.get(key)
            if old and now > old * (1 + THRESHOLD):
                lines.append(f"{bench}: {key[0]} {key[1]}: {old:.3f} s -> {now:.3f} s (+{(now / old - 1) * 100:.0f}%)")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    before = _snapshot()
    q = ["--quick"] if args.quick else []
    steps = [
        [sys.executable, str(HERE / "bench_core.py"), "--threads", str(args.threads), *q],
        [sys.executable, str(HERE / "bench_tokenize.py"), "--threads", str(args.threads), *q],
        [sys.executable, str(HERE / "bench_coverage.py"), *q],
    ]
    rc = 0
    for cmd in steps:
        print("$", " ".join(Path(c).name if c.endswith(".py") else c for c in cmd), flush=True)
        rc |= subprocess.run(cmd).returncode
    after = {n: d for n, d in _snapshot().items() if before.get(n) != d}
    lines = regressions(before, after)
    print("\nregressions > 15% against the previous results:" if lines else "\nno regression > 15% against the previous results")
    for line in lines:
        print("  " + line)
    subprocess.run([sys.executable, str(HERE / "report.py")])
    return rc


if __name__ == "__main__":
    sys.exit(main())
