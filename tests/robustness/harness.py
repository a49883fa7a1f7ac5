"""Runs corpus cases through ov2 in guarded subprocesses and classifies every outcome.

Each worker subprocess (``python harness.py --worker``) takes a batch of cases (about 20) and runs every
operation on each: the five ``tokenize_video`` modes and three ``open_video(...).frames`` reads with every
product. Every operation gets ``timeout_s`` (ov2's own deadline, interrupting decoding from C++), and the
parent kills the worker's process group when one operation makes no progress for ``op_wall_s`` (a hang; a fresh
worker's imports have ``STARTUP_S`` of their own);
the rest of the batch then goes on in a fresh worker. A worker that dies by a signal is reported against the
operation it was running.

Outcomes (``outcome`` field):
  ok                      valid tokens / frames
  typed:<Class>           an ``ov2_tokenizer.errors`` exception whose ``source`` names the input
  FAIL:typed_wrong_name   an ov2 error that names something else (or a ConfigError caused by the input)
  FAIL:untyped:<Type>     any other exception
  FAIL:invalid_output     tokens / frames that break their documented invariants
  FAIL:signal:<SIG>       the worker died (segfault, abort, ...)
  FAIL:hang               no answer within the outer wall-clock limit

``python harness.py MANIFEST.json [--report out.json]`` runs a written corpus from the command line.
"""
from __future__ import annotations

import collections
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
MODES = ("codec_stream", "frames", "image", "ovenc_topk", "cope")
FRAME_OPS = ("read_path_t1", "read_bytes_t3_raise", "read_bytes_t2_repeat")
ALL_OPS = MODES + FRAME_OPS
TAG = "@@ov2@@ "


# ---------------------------------------------------------------------------------------------------------------
# Worker side
def _check_tokens(vt) -> Optional[str]:
    """None when the tokens keep their invariants, else what is wrong: the library's own layout check (dtypes,
    shapes, every token on a patch cell of a canvas: what ``VisualTokens.load`` enforces), and at least one canvas
    of at least one patch and one token."""
    problem = vt._layout_problem()
    if problem:
        return problem
    S, _, H, W = vt.canvases.shape
    if S < 1 or H < vt.patch_size or W < vt.patch_size:
        return f"canvases {tuple(vt.canvases.shape)}: none, or smaller than one patch"
    if vt.num_tokens < 1:
        return "no tokens"
    return None


def _check_frames(frames: List, name: str) -> Optional[str]:
    import numpy as np

    prev = -1
    for f in frames:
        if f.index <= prev:
            return f"frame indices not increasing ({prev} -> {f.index})"
        prev = f.index
        H, W = f.height, f.width
        if H < 1 or W < 1:
            return f"frame {f.index}: size {H}x{W}"
        if f.luma is not None and f.luma.shape != (H, W):
            return f"frame {f.index}: luma {f.luma.shape} vs {H}x{W}"
        if f.rgb is not None and f.rgb.shape != (H, W, 3):
            return f"frame {f.index}: rgb {f.rgb.shape}"
        h4, w4 = (H + 3) // 4, (W + 3) // 4
        if f.mv_field is not None and (f.mv_field.shape != (h4, w4, 4) or not np.isfinite(f.mv_field).all()):
            return f"frame {f.index}: mv_field {f.mv_field.shape} or non-finite"
        if f.residual is not None and f.residual.shape != (H, W):
            return f"frame {f.index}: residual {f.residual.shape}"
        if f.coding_cost is not None and (f.coding_cost.shape != (h4, w4) or not np.isfinite(f.coding_cost).all()):
            return f"frame {f.index}: coding_cost"
    return None


def _run_op(op: str, path: str, timeout_s: float):
    """Returns (outcome, detail, expected_source)."""
    import ov2_tokenizer as ov2
    from ov2_tokenizer import errors

    expected = path
    try:
        if op in MODES:
            vt = ov2.tokenize_video(path, mode=op, timeout_s=timeout_s)
            bad = _check_tokens(vt)
            return ("FAIL:invalid_output", bad) if bad else ("ok", f"{vt.num_canvases} canvases {vt.num_tokens} tokens")
        if op.startswith("read_"):
            if "bytes" in op:
                with open(path, "rb") as fh:
                    src = fh.read()
                expected = "<bytes>"
            else:
                src = path
            threads = int(op.split("_t")[1][0])
            on_error = "raise" if op.endswith("raise") else ("repeat" if op.endswith("repeat") else "skip")
            r = ov2.open_video(src, num_threads=threads, on_error=on_error, timeout_s=timeout_s)
            info = r.info  # reads the packet table
            r.packets()
            frames = list(r.frames(with_rgb=True, with_mvs=True, with_residual=True, with_coding_cost=True))
            bad = _check_frames(frames, r.name)
            if bad:
                return "FAIL:invalid_output", bad
            if on_error == "repeat" and r.stats.get("corrupt_packets", 0) == 0 and len(frames) != info.num_frames:
                pass  # frame count may legitimately differ from the packet count (e.g. field pairs)
            return "ok", f"{len(frames)} frames, {r.stats.get('corrupt_packets')} corrupt packets"
        if op == "_selftest_abort":
            os.abort()
        if op == "_selftest_segv":
            import ctypes

            ctypes.string_at(0)
        if op == "_selftest_hang":
            time.sleep(3600)
        if op == "_selftest_untyped":
            raise KeyError("not an ov2 error")
        if op == "_selftest_wrong_name":
            raise errors.CorruptVideoError("some/other/file.mp4", "x")
        raise ValueError(f"unknown op {op}")
    except errors.Ov2Error as e:
        if isinstance(e, errors.ConfigError) or e.source != expected:
            return "FAIL:typed_wrong_name", f"{type(e).__name__}: {e}"
        return f"typed:{type(e).__name__}", e.cause[:200]
    except Exception as e:  # noqa: BLE001 - classifying is the point
        return f"FAIL:untyped:{type(e).__name__}", "".join(traceback.format_exception_only(type(e), e)).strip()[:400]


def worker_main() -> None:
    job = json.loads(sys.stdin.read())
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything native code prints goes to stderr, the protocol stays on the dup'd stdout
    # Imports are not an operation: under ASan on a loaded machine, numpy + torch took longer than a tight op_wall_s.
    import ov2_tokenizer as ov2

    ov2.VisualTokens  # noqa: B018 - imports torch (the token API loads it lazily)
    out.write(TAG + json.dumps({"event": "ready"}) + "\n")
    for item in job["items"]:
        case, path, ops = item["case"], item["path"], item["ops"]
        for op in ops:
            out.write(TAG + json.dumps({"case": case, "op": op, "event": "start"}) + "\n")
            t0 = time.perf_counter()
            outcome, detail = _run_op(op, path, job["timeout_s"])
            out.write(TAG + json.dumps({"case": case, "op": op, "outcome": outcome, "detail": detail,
                                        "seconds": round(time.perf_counter() - t0, 4)}) + "\n")
    out.write(TAG + json.dumps({"event": "done"}) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# Parent side
def _signame(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return str(-rc)


#: Seconds a fresh worker may take to import ov2 and torch before its first operation (ASan builds are slow).
STARTUP_S = 120.0


def _run_batch(items: List[dict], timeout_s: float, op_wall_s: float, env: Dict[str, str]) -> List[dict]:
    """Runs the items in workers, re-starting after a hang or a crash, until every (case, op) has a result."""
    results: List[dict] = []
    pending = [dict(it) for it in items]
    while pending:
        err = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            [sys.executable, "-u", str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
            start_new_session=True,
        )
        proc.stdin.write(json.dumps({"items": pending, "timeout_s": timeout_s}).encode())
        proc.stdin.close()
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        buf = b""
        current = None  # (case, op) started and not finished
        done_ops: set = set()
        hung = False
        last = time.monotonic()
        finished = False
        ready = False  # the worker's imports get their own allowance (STARTUP_S), the operations op_wall_s each
        while True:
            left = (op_wall_s if ready else max(op_wall_s, STARTUP_S)) - (time.monotonic() - last)
            if left <= 0:
                hung = True
                break
            if not sel.select(timeout=min(left, 1.0)):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                s = line.decode("utf-8", "replace")
                if not s.startswith(TAG):
                    continue
                msg = json.loads(s[len(TAG):])
                last = time.monotonic()
                if msg.get("event") == "ready":  # imports done: the wall clock of the first operation starts
                    ready = True
                elif msg.get("event") == "start":
                    current = (msg["case"], msg["op"])
                elif msg.get("event") == "done":
                    finished = True
                else:
                    results.append(msg)
                    done_ops.add((msg["case"], msg["op"]))
                    current = None
        if hung:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        rc = proc.wait()
        sel.close()
        proc.stdout.close()
        err.seek(0, os.SEEK_END)
        err.seek(max(0, err.tell() - 600))
        tail = err.read().decode("utf-8", "replace").strip().replace("\n", " | ")
        err.close()
        if current is not None:
            why = "FAIL:hang" if hung else f"FAIL:signal:{_signame(rc)}" if rc < 0 else f"FAIL:exit:{rc}"
            results.append({"case": current[0], "op": current[1], "outcome": why,
                            "detail": f"worker {'killed after' if hung else 'died during'} this operation; stderr: {tail}",
                            "seconds": round(op_wall_s, 1) if hung else None})
            done_ops.add(current)
        elif not finished:
            # died between operations (or before starting): charge it to the next operation of the batch
            nxt = next(((it["case"], op) for it in pending for op in it["ops"] if (it["case"], op) not in done_ops), None)
            if nxt is None:
                break
            why = "FAIL:hang" if hung else f"FAIL:signal:{_signame(rc)}" if rc < 0 else f"FAIL:exit:{rc}"
            results.append({"case": nxt[0], "op": nxt[1], "outcome": why,
                            "detail": f"worker died between operations; stderr: {tail}"})
            done_ops.add(nxt)
        pending = [dict(it, ops=[op for op in it["ops"] if (it["case"], op) not in done_ops]) for it in pending]
        pending = [it for it in pending if it["ops"]]
    return results


def run_cases(
    cases: Sequence[dict],
    ops: Sequence[str] = ALL_OPS,
    *,
    jobs: int = 2,
    batch: int = 20,
    timeout_s: float = 10.0,
    op_wall_s: float = 45.0,
    env: Optional[Dict[str, str]] = None,
) -> List[dict]:
    """Every case through every op; returns one result dict per (case, op), with the case's fields merged in."""
    env = dict(os.environ if env is None else env)
    src = str(HERE.parents[1] / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    items = [{"case": i, "path": c["path"], "ops": list(ops)} for i, c in enumerate(cases)]
    # interleave by size so that batches take similar time
    order = sorted(range(len(items)), key=lambda i: -os.path.getsize(items[i]["path"]) if os.path.exists(items[i]["path"]) else 0)
    nb = max(1, math.ceil(len(items) / batch))
    batches = [[items[i] for i in order[k::nb]] for k in range(nb)]
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        parts = list(ex.map(lambda b: _run_batch(b, timeout_s, op_wall_s, env), batches))
    results = []
    for part in parts:
        for r in part:
            c = cases[r["case"]]
            results.append(dict(r, name=c["name"], category=c["category"]))
    results.sort(key=lambda r: (r["case"], ALL_OPS.index(r["op"]) if r["op"] in ALL_OPS else 99))
    return results


def summarize(cases: Sequence[dict], results: Sequence[dict], seconds: float) -> dict:
    per_cat: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    per_op: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in results:
        kind = r["outcome"] if r["outcome"].startswith("FAIL") else r["outcome"].split(":")[-1]
        per_cat[r["category"]][kind] += 1
        per_op[r["op"]][kind] += 1
    failures = [r for r in results if r["outcome"].startswith("FAIL")]
    return {
        "cases": len(cases),
        "operations": len(results),
        "seconds": round(seconds, 1),
        "cases_per_category": dict(collections.Counter(c["category"] for c in cases)),
        "outcomes": dict(collections.Counter(r["outcome"] if r["outcome"].startswith("FAIL") else r["outcome"].split(":")[-1]
                                             for r in results)),
        "outcomes_per_category": {k: dict(v) for k, v in sorted(per_cat.items())},
        "outcomes_per_op": {k: dict(v) for k, v in per_op.items()},
        "slowest": sorted(({"name": r["name"], "op": r["op"], "seconds": r.get("seconds")} for r in results
                           if r.get("seconds") is not None), key=lambda d: -d["seconds"])[:8],
        "failures": failures,
    }


def format_report(rep: dict) -> str:
    lines = [f"robustness corpus: {rep['cases']} cases, {rep['operations']} operations, {rep['seconds']} s",
             "outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(rep["outcomes"].items()))]
    for cat, d in rep["outcomes_per_category"].items():
        lines.append(f"  {cat:12s} ({rep['cases_per_category'].get(cat, 0):3d} cases): "
                     + ", ".join(f"{k}={v}" for k, v in sorted(d.items())))
    for f in rep["failures"][:30]:
        lines.append(f"  FAILURE {f['name']} [{f['op']}]: {f['outcome']} {f.get('detail', '')}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("manifest", nargs="?")
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--report")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--ops", default=",".join(ALL_OPS))
    a = ap.parse_args(argv)
    if a.worker:
        worker_main()
        return 0
    cases = json.loads(Path(a.manifest).read_text())
    t0 = time.time()
    results = run_cases(cases, a.ops.split(","), jobs=a.jobs)
    rep = summarize(cases, results, time.time() - t0)
    print(format_report(rep))
    if a.report:
        Path(a.report).write_text(json.dumps(dict(rep, results=results), indent=1))
    return 1 if rep["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
