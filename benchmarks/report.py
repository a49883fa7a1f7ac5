#!/usr/bin/env python
"""Regenerates the README's results section from the JSON files in benchmarks/results/ (never by hand).

For each benchmark (core, tokenize) the newest full run is used (a --quick run only when no full run exists).
GPU results (files whose JSON has a "device" naming a GPU) are listed in their own section; benchmarks that have
no GPU result yet are listed as unmeasured.

Usage: python benchmarks/report.py [--readme README.md]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"
GPU_BENCHMARKS = ("CUDA tokenization kernels", "Triton segment attention vs FlexAttention / SDPA / FlashAttention-2")


def _latest(prefix: str) -> tuple[Path, dict] | None:
    # newest by the run's date in the name (a second run on one day is suffixed: ...-2026-12-07b.json), then mtime
    # (a fresh clone gives every file the time of its checkout)
    def key(p: Path):
        m = re.search(r"(\d{4}-\d{2}-\d{2}[a-z]?)(?:-quick)?\.json$", p.name)
        return ("-quick" not in p.name), m.group(1) if m else "", p.stat().st_mtime

    files = sorted(RESULTS.glob(f"{prefix}-*.json"), key=key)
    if not files:
        return None
    return files[-1], json.loads(files[-1].read_text())


def _core_table(doc: dict) -> list[str]:
    by_video: dict[str, dict[str, dict]] = {}
    for r in doc.get("results", doc.get("rows", [])):
        by_video.setdefault(r["video"], {})[r.get("method")] = r
    out = ["| video | (a) ov2 decode | (b) ov2 + MVs | (c) + residual + cost | (d) PyAV export_mvs | "
           "(f) mv-extractor | (b) vs (d) | (b) vs (f) | (c) speed / (a) | peak RSS (c) (over imports) | "
           "frames with inexact vectors (d) / (f) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]

    def sec(r):
        return r.get("median_s", r.get("seconds")) if r else None

    for video, m in by_video.items():
        a, b, c, d, f = (m.get(k) for k in ("ov2-decode", "ov2-mvs", "ov2-all", "pyav-mvs", "mvx-vectors"))
        if not a or not sec(a):
            continue
        fps = lambda r: f"{r['frames'] / sec(r):,.0f} fps" if r and sec(r) else "–"  # noqa: E731
        ratio = lambda x, y: f"{sec(y) / sec(x):.2f}×" if x and y and sec(x) and sec(y) else "–"  # noqa: E731
        rss = (f"{c['peak_rss_mb']:.0f} MB ({c['peak_rss_mb'] - c.get('base_rss_mb', 0):.0f} MB)"
               if c and "peak_rss_mb" in c else "–")
        # untimed check against the exact rows (ov2 with one thread = PyAV single-threaded); absent in older runs
        wrong = lambda r: str(r["frames_vectors_differ"]) if r and "frames_vectors_differ" in r else "–"  # noqa: E731
        speed = f"{sec(a) / sec(c):.2f}×" if c and sec(c) else "–"
        out.append(f"| {video} | {fps(a)} | {fps(b)} | {fps(c)} | {fps(d)} | {fps(f)} | {ratio(b, d)} | {ratio(b, f)} | "
                   f"{speed} | {rss} | {wrong(d)} / {wrong(f)} |")
    return out


def _tokenize_table(doc: dict) -> list[str]:
    by_video: dict[str, dict[str, dict]] = {}
    for r in doc["rows"]:
        by_video.setdefault(r["video"], {})[r["method"]] = r
    cols = ("codec_stream", "ovenc_topk", "ovenc_pyav", "frames64", "pyav_uniform64", "decord64")
    out = ["| video | ov2 decode | " + " | ".join(cols) + " | ovenc_topk vs PyAV baseline |",
           "|---|---|" + "---|" * len(cols) + "---|"]
    for video, m in by_video.items():
        dec = m.get("decode")
        if not dec or "seconds" not in dec:
            continue
        cells = []
        for c in cols:
            r = m.get(c)
            cells.append(f"{r['seconds']:.2f} s ({r['ratio_to_decode']:.1f}× decode)" if r and "seconds" in r
                         else ("n/a" if r is None or "unavailable" in r else "error"))
        o, p = m.get("ovenc_topk"), m.get("ovenc_pyav")
        speed = f"{p['seconds'] / o['seconds']:.2f}× faster" if o and p and "seconds" in o and "seconds" in p else "–"
        out.append(f"| {video} | {dec['seconds']:.2f} s | " + " | ".join(cells) + f" | {speed} |")
    return out


def render() -> str:
    lines = ["## Results", ""]
    core = _latest("core")
    if core:
        path, doc = core
        threads = doc.get("threads", doc.get("args", {}).get("threads", "?"))
        lines += ["All numbers: medians of alternating runs on a 2-core VM of this project's CI kind, which also ran other "
                  "jobs while measuring; compare the ratios within a table, not absolute times across tables.", ""]
        lines += [f"Codec core, {threads} threads "
                  f"(`python benchmarks/bench_core.py`; source `benchmarks/results/{path.name}`, host {doc.get('host')}):", ""]
        lines += _core_table(doc) + [""]
        lines += ["ov2 decodes closed GOPs in parallel, each single-threaded, and uses FFmpeg's frame threads only "
                  "for H.264 without B-frames whose GOPs are too few to split, guarded (results never depend on "
                  "`num_threads`, damaged files included: docs/decoding.md); the peers use FFmpeg's frame threading "
                  "everywhere, which is faster on B-frame videos with one or two closed GOPs but exports vectors of "
                  "pictures still being decoded there: the last column counts frames whose vectors differ from the "
                  "exact ones in an untimed run (worst of two). (a) and (b) read no pixels, so H.264 is decoded "
                  "without its deblocking filter there (same vectors, guarded; since core-vm-2026-12-07c, "
                  "docs/decoding.md); (c) needs the pictures and deblocks.", ""]
    tok = _latest("tokenize")
    if tok:
        path, doc = tok
        lines += [f"Tokenization, {doc.get('threads', '?')} threads (`python benchmarks/bench_tokenize.py`; source "
                  f"`benchmarks/results/{path.name}`, host {doc.get('host')}):", ""]
        lines += _tokenize_table(doc) + [""]
        dec = [r for r in doc.get("rows", []) if r.get("method") == "decode"]
        skipped = sorted(r["video"] for r in dec if r.get("loop_filter_skipped"))
        if not any("loop_filter_skipped" in r for r in dec):
            why = " (this run predates session 16: it deblocks, like the tokenizer's reads)"
        elif skipped:
            why = (f"; on {', '.join(skipped)} it therefore decodes without the deblocking filter, which no "
                   "tokenizer read can skip (they need the pictures), so those ratios are against a cheaper floor")
        else:
            why = ""
        lines += ["`ov2 decode` reads every frame without products or pixels" + why + ".", ""]
    cov = _latest("coverage")
    if cov:
        path, doc = cov
        lines += [f"Event coverage at matched token budgets on generated periodic-motion videos (30 s each): share of "
                  f"cycle starts with a token from a frame within δ = {doc['delta']} s "
                  f"(`python benchmarks/bench_coverage.py`; source `benchmarks/results/{path.name}`):", "",
                  "| period | budget | tokens | canvases | codec_stream recall | frames recall | "
                  "codec_stream frames used | codec_stream event-free share | frames event-free share |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in doc["rows"]:
            cs, fr = r["modes"]["codec_stream"], r["modes"]["frames"]
            canv = r.get("canvases", {}).get("codec_stream", "–")
            lines.append(f"| {r['period_s']} s | {r['budget']} | {r['tokens']['codec_stream']} | {canv} | "
                         f"**{cs['event_recall']:.2f}** | {fr['event_recall']:.2f} | {int(cs['num_frames'])} | "
                         f"{cs['event_free_token_share']:.2f} | {fr['event_free_token_share']:.2f} |")
        pngs = [r["png"] for r in doc["rows"] if r.get("png")]
        if pngs:
            lines += ["", f"![tokens over time]({Path(pngs[0]).relative_to(HERE.parent)})"]
        lines.append("")
    sc = _latest("scaling")
    if sc:
        path, doc = sc
        lines += [f"Scaling with video length (generated 720p H.264, {doc.get('threads')} threads; "
                  f"`python benchmarks/bench_scaling.py`; source `benchmarks/results/{path.name}`). Log-log slope of time "
                  "vs length: " + ", ".join(f"{k} {v:.2f}" for k, v in doc.get("slopes", {}).items()) + ".", "",
                  "| length | " + " | ".join(f"{m} time / peak RSS" for m in ("decode", "codec_stream", "pyav_uniform64")) + " |",
                  "|---|---|---|---|"]
        by_len: dict[int, dict[str, dict]] = {}
        for r in doc["rows"]:
            by_len.setdefault(r["minutes"], {})[r["method"]] = r
        for minutes, m in sorted(by_len.items()):
            cells = [f"{m[k]['seconds']:.1f} s / {m[k]['peak_rss_mb']:.0f} MB" if k in m and "seconds" in m[k] else "–"
                     for k in ("decode", "codec_stream", "pyav_uniform64")]
            lines.append(f"| {minutes} min | " + " | ".join(cells) + " |")
        if (RESULTS / "scaling.png").exists():
            lines += ["", "![scaling](benchmarks/results/scaling.png)"]
        lines.append("")
    gpu = sorted(p for p in RESULTS.glob("*.json") if "device" in json.loads(p.read_text()))
    lines += ["### GPU", ""]
    if gpu:
        for p in gpu:
            d = json.loads(p.read_text())
            lines.append(f"- `{p.name}` on {d['device']}")
    else:
        lines.append("No GPU result yet (no lent device in the sessions so far). Unmeasured: " + "; ".join(GPU_BENCHMARKS) + ".")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readme", default=str(HERE.parent / "README.md"))
    args = ap.parse_args(argv)
    readme = Path(args.readme)
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"{readme}: markers {START} / {END} not found", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + START + "\n" + render() + "\n" + END + tail)
    print(f"updated {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
