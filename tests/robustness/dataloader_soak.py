"""DataLoader soak (issue #7): N tokenizations through ``torch.utils.data.DataLoader`` worker processes, checking
that every item arrives, equals in-process tokenization, and that each worker's RSS stays flat after a warm-up.

    python tests/robustness/dataloader_soak.py --start-method fork -n 1000 --workers 4 [--json out.json]

The parent first tokenizes every distinct job in-process (the reference), with 4 decode threads and after a torch
matmul, so that FFmpeg decode threads and torch's intra-op pool have existed before the workers are forked -- the
situation in which fork-unsafe libraries deadlock. Jobs cycle over small generated clips (H.264 with B-frames,
H.264 IPPP, MPEG-4 part 2) in all five modes with two configs each (1 or 2 decode threads per item), plus damaged
inputs (truncated, bit-flipped, junk) that end in typed failures (``on_failure="skip"``). Each worker reports its
pid and RSS (psutil, measured inside the worker right after the item) with every item.

RSS check, per worker: base = the largest RSS of the worker's items in the first full job cycle after the warm-up
(items [warmup, warmup + cycle)), end = the largest RSS in the last cycle (items [n - cycle, n)). The cycle
(``CYCLE`` jobs) is a multiple of workers x batch size, so each worker runs the same jobs in both windows and the
two maxima compare like with like. Growth must stay below ``--max-growth`` (5 %).

The last line of stdout is a JSON summary; the exit code is 0 when every check passes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import psutil
from ov2_tokenizer.data import VideoTokenDataset

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

MODES = ("codec_stream", "frames", "image", "ovenc_topk", "cope")
#: Per-mode configs (two each), small enough for ~5-30 ms per item on the generated clips.
CONFIGS: Dict[str, List[Dict[str, Any]]] = {
    "codec_stream": [dict(num_frames=16, max_canvases=4, max_pixels=12544),
                     dict(num_frames=12, max_canvases=6, max_pixels=8192, anchor="center")],
    "frames": [dict(num_frames=4, max_pixels=12544), dict(num_frames=6, max_pixels=8192, sampling="chunk")],
    "image": [dict(max_pixels=12544), dict(max_pixels=25088)],
    "ovenc_topk": [dict(ovenc_slots=8, ovenc_size=64, ovenc_patch=16, ovenc_topk=64),
                   dict(ovenc_slots=4, ovenc_size=96, ovenc_patch=16, ovenc_topk=96)],
    "cope": [dict(num_frames=4, max_canvases=2, max_pixels=12544), dict(num_frames=3, max_canvases=3, max_pixels=8192)],
}
X264 = {"g": "8", "bf": "2", "x264-params": "keyint=8:min-keyint=8:scenecut=0"}


def make_inputs(d: Path) -> Dict[str, Path]:
    """Three clean clips and three damaged inputs (written once into ``d``): the B-frame clip cut at 60 % (frames
    before the cut decode), the same with bit flips in its packet data (damaged frames), and random bytes."""
    import corpus

    d.mkdir(parents=True, exist_ok=True)
    out = {
        "h264_b": corpus.encode(d / "h264_b.mp4", size=(96, 128), frames=32, options=X264, seed=1,
                                container_options={"movflags": "+faststart"}),  # a cut keeps the moov
        "h264_p": corpus.encode(d / "h264_p.mp4", size=(64, 96), frames=24, options={"g": "8", "bf": "0"}, seed=2),
        "mpeg4": corpus.encode(d / "mpeg4.avi", codec="mpeg4", size=(64, 96), frames=24, options={"g": "6"}, seed=3),
    }
    data = out["h264_b"].read_bytes()
    out["truncated"] = d / "truncated.mp4"
    out["truncated"].write_bytes(data[: len(data) * 3 // 5])
    rng = np.random.default_rng(7)
    flip = bytearray(data)
    for pos in rng.integers(len(data) // 4, len(data), size=len(data) // 150):
        flip[pos] ^= 1 << int(rng.integers(0, 8))
    out["flipped"] = d / "flipped.mp4"
    out["flipped"].write_bytes(bytes(flip))
    out["junk"] = d / "junk.mp4"
    out["junk"].write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return out


def distinct_jobs(inputs: Dict[str, Path]) -> List[Dict[str, Any]]:
    """40 distinct jobs: 3 clean clips x 5 modes x 2 configs (30), damaged inputs in several modes (10: tokens
    from damaged data, a ``CorruptVideoError`` under ``on_error="raise"``, a ``VideoOpenError`` for junk).
    Config k of a job also sets ``num_threads = 1 + k`` (decode threads inside the workers)."""
    jobs = []
    for k in range(2):
        for name in ("h264_b", "h264_p", "mpeg4"):
            for mode in MODES:
                jobs.append({"path": str(inputs[name]), "mode": mode, "config": {**CONFIGS[mode][k], "num_threads": 1 + k}})
        for name, mode, policy in (("truncated", "codec_stream", "skip"), ("flipped", "frames", "skip"),
                                   ("flipped", "cope", "skip"), ("truncated", "ovenc_topk", "raise"),
                                   ("junk", "image", "skip")):
            jobs.append({"path": str(inputs[name]), "mode": mode,
                         "config": {**CONFIGS[mode][k], "num_threads": 1 + k, "on_error": policy}})
    return jobs


CYCLE = 40


class SoakDataset(VideoTokenDataset):
    """Each item: (VisualTokens or TokenFailure, worker pid, worker RSS in bytes right after the item)."""

    def __getitem__(self, index: int):
        item = super().__getitem__(index)  # no gc.collect(): ov2 must not depend on the cycle collector
        return item, os.getpid(), psutil.Process().memory_info().rss


def collate_items(batch):
    """The DataLoader's collate_fn: keep the items (tensors travel through torch's shared-memory pickling)."""
    return list(batch)


def digest(item) -> str:
    from ov2_tokenizer.data import TokenFailure

    if isinstance(item, TokenFailure):
        return f"{item.error}: {item.cause}"
    h = hashlib.sha256()
    for k, a in sorted(item._arrays().items()):
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return "ok:" + h.hexdigest()[:20]


def run(start_method: str, n: int, workers: int, batch_size: int, warmup: int, max_growth: float,
        timeout_s: float, workdir: Path) -> Dict[str, Any]:
    import torch

    import ov2_tokenizer as ov2
    from ov2_tokenizer.data import TokenFailure

    assert CYCLE % (workers * batch_size) == 0, "each worker must see the same jobs in every cycle"
    t_setup = time.perf_counter()
    inputs = make_inputs(workdir)
    base_jobs = distinct_jobs(inputs)
    assert len(base_jobs) == CYCLE
    jobs = [base_jobs[i % CYCLE] for i in range(n)]
    ds = SoakDataset(jobs, on_failure="skip")

    # the parent: torch's intra-op pool and ov2's decode threads have run before the workers start
    torch.manual_seed(0)
    a = torch.randn(256, 256)
    _ = (a @ a).sum().item()
    ov2.tokenize_video(inputs["h264_b"], mode="codec_stream", num_threads=4, **CONFIGS["codec_stream"][0])
    reference = [digest(ds[i][0]) for i in range(CYCLE)]
    n_fail = sum(1 for r in reference if not r.startswith("ok:"))
    setup_s = time.perf_counter() - t_setup

    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers, shuffle=False,
                                         collate_fn=collate_items, multiprocessing_context=start_method,
                                         timeout=timeout_s)
    t0 = time.perf_counter()
    first_item_s = None
    seen: List[int] = []
    rows: List[tuple] = []  # (index, pid, rss)
    mismatches: List[str] = []
    for batch in loader:
        if first_item_s is None:
            first_item_s = time.perf_counter() - t0
        for item, pid, rss in batch:
            idx = item.index if isinstance(item, TokenFailure) else int(item.meta["dataset"]["index"])
            seen.append(idx)
            rows.append((idx, pid, rss))
            d = digest(item)
            if d != reference[idx % CYCLE] and len(mismatches) < 10:
                mismatches.append(f"item {idx} ({jobs[idx]['mode']} {Path(jobs[idx]['path']).name}): {d} != "
                                  f"{reference[idx % CYCLE]}")
    elapsed = time.perf_counter() - t0
    del loader

    per_worker: Dict[int, Dict[str, Any]] = {}
    for pid in sorted({p for _, p, _ in rows}):
        mine = [(i, r) for i, p, r in rows if p == pid]
        base = [r for i, r in mine if warmup <= i < warmup + CYCLE]
        end = [r for i, r in mine if i >= n - CYCLE]
        first = mine[0][1]
        b, e = (max(base) if base else 0), (max(end) if end else 0)
        per_worker[pid] = {"items": len(mine), "rss_first_mib": round(first / 2**20, 1),
                           "rss_warm_mib": round(b / 2**20, 1), "rss_end_mib": round(e / 2**20, 1),
                           "growth_pct": round(100.0 * (e - b) / b, 2) if b else None}
    failures = []
    if seen != list(range(n)):
        failures.append(f"items out of order or missing: got {len(seen)} of {n}")
    if mismatches:
        failures.append("tokens differ from in-process tokenization: " + "; ".join(mismatches))
    if len(per_worker) != workers:
        failures.append(f"{len(per_worker)} worker pids reported, expected {workers}")
    for pid, w in per_worker.items():
        if w["growth_pct"] is None or w["growth_pct"] >= 100.0 * max_growth:
            failures.append(f"worker {pid}: RSS {w['rss_warm_mib']} MiB after warm-up -> {w['rss_end_mib']} MiB at the "
                            f"end ({w['growth_pct']} %)")
    return {
        "start_method": start_method, "n": n, "workers": workers, "batch_size": batch_size, "warmup": warmup,
        "typed_failures_per_cycle": n_fail, "setup_s": round(setup_s, 2), "first_batch_s": round(first_item_s or 0, 2),
        "elapsed_s": round(elapsed, 2), "items_per_s": round(n / elapsed, 1),
        "parent_rss_mib": round(psutil.Process().memory_info().rss / 2**20, 1),
        "workers_rss": per_worker, "failures": failures, "ok": not failures,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start-method", default="fork", choices=("fork", "spawn", "forkserver"))
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--max-growth", type=float, default=0.05)
    ap.add_argument("--timeout", type=float, default=60.0, help="DataLoader timeout per batch (s)")
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    if a.n < a.warmup + 2 * CYCLE:
        ap.error(f"-n must be at least warmup + 2 cycles ({a.warmup + 2 * CYCLE})")
    with tempfile.TemporaryDirectory(prefix="ov2_soak_") as d:
        res = run(a.start_method, a.n, a.workers, a.batch_size, a.warmup, a.max_growth, a.timeout, Path(d))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    print(json.dumps(res), flush=True)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
