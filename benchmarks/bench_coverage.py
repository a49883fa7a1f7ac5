#!/usr/bin/env python
"""Event coverage at matched token budgets (issue #8): generated JumpScore-style periodic-motion videos
(periods 0.3, 0.4, 0.6 s; 30 s each; `ov2 eval synth`), budgets of 2k, 4k and 8k tokens, event recall at
δ = 0.1 s of `codec_stream` vs uniform `frames` with the same number of visual tokens.

Writes benchmarks/results/coverage-<host>-<date>.json and benchmarks/results/coverage-period0.3.png (tokens over
time per mode at the 4k budget). Same as running, per video, `ov2 eval coverage VIDEO VIDEO.json --budget 2048,4096,8192`.

Usage: python benchmarks/bench_coverage.py [--quick]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CACHE = HERE / ".cache"
PERIODS = (0.3, 0.4, 0.6)
BUDGETS = (2048, 4096, 8192)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one period, one budget")
    ap.add_argument("--delta", type=float, default=0.1)
    args = ap.parse_args(argv)
    from ov2_model.eval.coverage_video import coverage_report, format_report, read_events
    from ov2_model.eval.synthetic import SyntheticSpec, generate_video

    CACHE.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    periods = PERIODS[:1] if args.quick else PERIODS
    budgets = BUDGETS[1:2] if args.quick else BUDGETS
    rows = []
    for period in periods:
        video = CACHE / f"synth_period{period}_30s.mp4"
        annot = video.with_suffix(".json")
        if not video.exists() or not annot.exists():
            generate_video(str(video), SyntheticSpec(duration=30.0, period=period, seed=1), str(annot))
        events = read_events(str(annot))
        for budget in budgets:
            png = str(RESULTS / f"coverage-period{period}.png") if budget == 4096 else None
            res = coverage_report(str(video), events, budget, args.delta, png=png)
            print(f"period {period} s, budget {budget}:\n{format_report(res)}\n", flush=True)
            rows.append({"period_s": period, "budget": budget, "events": len(events), "tokens": res["total_tokens"],
                         "canvases": res.get("canvases", {}), "modes": res["modes"], "png": png})
    now = _dt.datetime.now()
    out = RESULTS / f"coverage-{socket.gethostname()}-{now:%Y-%m-%d}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"benchmark": "coverage", "date": now.isoformat(timespec="seconds"), "delta": args.delta,
                               "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
