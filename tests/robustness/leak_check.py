"""Leak check over N tokenizations (issue #7): LeakSanitizer (ASan build) or valgrind, counting only the definite
leaks whose allocation stack passes through ov2's extension (``_core*.so`` / ``ov2::``). CPython, numpy and torch
keep memory alive at exit on purpose (interned objects, arenas, static registries); those leaks are listed as
"foreign" in the summary and do not fail the check.

    python tests/robustness/leak_check.py --lsan --core-dir build/asan -n 100   # under LD_PRELOAD=libasan
    python tests/robustness/leak_check.py --valgrind -n 100                      # the installed extension
    python tests/robustness/leak_check.py --rss -n 300                           # RSS growth after warm-up

The workload cycles the five ``tokenize_video`` modes and a full ``open_video(...).frames`` read with every
product over a clean clip, a truncated and a bit-flipped copy, each from a path and from bytes, and junk bytes
(error paths), with ``on_error`` skip / raise / repeat and 1-3 threads.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
MODES = ("codec_stream", "frames", "image", "ovenc_topk", "cope")


def workload(n: int, workdir: Path) -> dict:
    sys.path.insert(0, str(HERE))
    import numpy as np

    import corpus
    import ov2_tokenizer as ov2
    from ov2_tokenizer import errors

    clean = corpus.encode(workdir / "clean.mp4", frames=16, options={"g": "8", "bf": "2"})
    data = clean.read_bytes()
    cut = workdir / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    flip = bytearray(data)
    rng = np.random.default_rng(0)
    for pos in rng.integers(len(data) // 4, len(data), size=len(data) // 200):
        flip[pos] ^= 0x55
    flipped = workdir / "flipped.mp4"
    flipped.write_bytes(bytes(flip))
    junk = bytes(rng.integers(0, 256, size=8192, dtype=np.uint8))
    counts = {"ok": 0, "typed": 0}
    for i in range(n):
        # paths and bytes, clean and damaged: bytes inputs rejected at open once leaked their IO context
        src = [clean, data, cut, flipped, cut.read_bytes(), junk, bytes(flip)][i % 7]
        on_error = ("skip", "raise", "repeat")[i % 3]
        try:
            if i % 6 == 5:
                r = ov2.open_video(src, on_error=on_error, num_threads=1 + i % 3)
                r.packets()
                for f in r.frames(with_rgb=True, with_mvs=True, with_residual=True, with_coding_cost=True):
                    pass
            else:
                ov2.tokenize_video(src, mode=MODES[i % 5], on_error=on_error, num_threads=1 + i % 3, timeout_s=30)
            counts["ok"] += 1
        except errors.Ov2Error:
            counts["typed"] += 1
    return counts


def _ours(block: str) -> bool:
    return "_core.cpython" in block or "ov2::" in block or "/csrc/" in block


def parse_lsan(text: str) -> dict:
    blocks = re.split(r"\n(?=(?:Direct|Indirect) leak of )", text)
    out = {"ov2_direct": 0, "ov2_indirect": 0, "foreign_direct": 0, "foreign_indirect": 0, "ov2_blocks": []}
    for b in blocks:
        m = re.match(r"(Direct|Indirect) leak of (\d+) byte", b)
        if not m:
            continue
        key = ("ov2_" if _ours(b) else "foreign_") + m.group(1).lower()
        out[key] += 1
        if key == "ov2_direct":
            out["ov2_blocks"].append(b[:3000])
    return out


def parse_valgrind(text: str) -> dict:
    blocks = re.split(r"\n==\d+== \n", text)
    out = {"ov2_definite": 0, "foreign_definite": 0, "ov2_blocks": []}
    for b in blocks:
        if "definitely lost in loss record" not in b:
            continue
        if _ours(b):
            out["ov2_definite"] += 1
            out["ov2_blocks"].append(b[:3000])
        else:
            out["foreign_definite"] += 1
    m = re.search(r"definitely lost: ([\d,]+) bytes in ([\d,]+) blocks", text)
    out["total_definitely_lost"] = m.group(0) if m else "n/a"
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--lsan", action="store_true")
    g.add_argument("--valgrind", action="store_true")
    g.add_argument("--rss", action="store_true")
    ap.add_argument("--core-dir", default=os.environ.get("OV2_CORE_DIR", ""))
    ap.add_argument("--child", action="store_true")
    a = ap.parse_args()

    if a.child:
        with tempfile.TemporaryDirectory() as d:
            c = workload(a.n, Path(d))
        print(f"workload: {a.n} tokenizations, {c}", flush=True)
        return 0

    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if a.core_dir:
        env["OV2_CORE_DIR"] = a.core_dir
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "-n", str(a.n)]
    t0 = time.time()
    if a.rss:
        return rss_check(a.n)
    if a.lsan:
        if "libasan" not in env.get("LD_PRELOAD", ""):
            print("--lsan needs LD_PRELOAD of libasan and an ASan build (OV2_CORE_DIR / --core-dir)")
            return 2
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=0:detect_odr_violation=0"
        env["LSAN_OPTIONS"] = "fast_unwind_on_malloc=0:malloc_context_size=40:report_objects=0"
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        res = parse_lsan(p.stderr)
        print(p.stdout.strip())
        print(f"LeakSanitizer, {a.n} tokenizations, {time.time() - t0:.0f} s: definite (direct) leaks through ov2: "
              f"{res['ov2_direct']} (indirect {res['ov2_indirect']}); outside ov2 (CPython/numpy/torch at exit): "
              f"{res['foreign_direct']} direct, {res['foreign_indirect']} indirect")
        for b in res["ov2_blocks"][:5]:
            print(b)
        if p.returncode != 0 or "workload:" not in p.stdout:
            print(p.stderr[-3000:])
            return 1
        return 1 if res["ov2_direct"] else 0
    # valgrind on the installed (or --core-dir) extension
    sup = ["--suppressions=" + s for s in (str(HERE / "valgrind-python.supp"),) if Path(s).exists()]
    env["PYTHONMALLOC"] = "malloc"
    vg = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite",
          "--num-callers=40", *sup]
    p = subprocess.run(vg + cmd, env=env, capture_output=True, text=True)
    res = parse_valgrind(p.stderr)
    print(p.stdout.strip())
    print(f"valgrind, {a.n} tokenizations, {time.time() - t0:.0f} s: definite-leak records through ov2: "
          f"{res['ov2_definite']}; elsewhere: {res['foreign_definite']}; total {res['total_definitely_lost']}")
    for b in res["ov2_blocks"][:5]:
        print(b)
    if "workload:" not in p.stdout:
        print(p.stderr[-3000:])
        return 1
    return 1 if res["ov2_definite"] else 0


def rss_check(n: int) -> int:
    import psutil

    sys.path.insert(0, str(SRC))
    proc = psutil.Process()
    with tempfile.TemporaryDirectory() as d:
        workload(30, Path(d))  # warm-up: imports, caches, allocator arenas
        base = proc.memory_info().rss
        workload(n, Path(d))
        grown = proc.memory_info().rss
    pct = 100.0 * (grown - base) / base
    print(f"RSS after warm-up {base / 2**20:.1f} MiB, after {n} more tokenizations {grown / 2**20:.1f} MiB "
          f"({pct:+.1f}%)")
    return 0 if pct < 5.0 else 1


if __name__ == "__main__":
    sys.exit(main())
