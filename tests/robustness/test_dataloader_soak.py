"""DataLoader soak (issue #7): 1,000 tokenizations through ``DataLoader(num_workers=4)`` under fork and spawn.

Each start method runs ``dataloader_soak.py`` in its own subprocess (a fresh interpreter whose parent has already
run torch and ov2 decode threads before forking; see that module for the workload and the RSS windows) under a
wall-clock limit: a deadlock anywhere -- a worker, the parent, worker shutdown -- ends as a failure with the
output so far, never as a hung test run. Inside, ``DataLoader(timeout=60)`` turns a stuck worker into an error.

Checks: all 1,000 items arrive in order; every item equals in-process tokenization of its job (tokens or the same
typed failure); each of the 4 workers' RSS grows < 5 % between the first job cycle after a 100-item warm-up and the
last cycle (not under ASan — ``make asan`` preloads libasan, whose quarantine keeps up to 256 MB of freed memory
resident per process, so its RSS windows compare quarantine fill levels, not live memory: measured there, one
spawn worker 732 → 786 MiB while the other three went 880–900 → 776–783 MiB; LeakSanitizer's leak_check.py covers
that build). ``OV2_SOAK_N`` overrides the item count (e.g. a longer local soak); the JSON summary of each run is
written to ``$OV2_SOAK_REPORT_DIR`` (default: pytest's tmp dir) and printed.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ov2_tokenizer")
pytest.importorskip("torch")
pytest.importorskip("psutil")
pytest.importorskip("av")  # the generated clips are encoded with PyAV

HERE = Path(__file__).resolve().parent
N = int(os.environ.get("OV2_SOAK_N", "1000"))
WALL_S = float(os.environ.get("OV2_SOAK_WALL_S", "420"))  # per start method; normal runs take 30-90 s
ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")  # RSS holds ASan's quarantine: no RSS bound (module docstring)


def _run_soak(start_method: str, report: Path) -> tuple:
    cmd = [sys.executable, str(HERE / "dataloader_soak.py"), "--start-method", start_method, "-n", str(N),
           "--workers", "4", "--json", str(report)] + (["--max-growth", "inf"] if ASAN else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # own process group: a hang is killed with all its workers
    try:
        out, _ = proc.communicate(timeout=WALL_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"DataLoader soak ({start_method}) made no end within {WALL_S:.0f} s (deadlock?); output:\n"
                    f"{out[-4000:]}")
    return proc.returncode, out


@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_dataloader_soak(start_method, tmp_path):
    if start_method not in mp.get_all_start_methods():
        pytest.skip(f"{start_method} unavailable on this platform")
    out_dir = Path(os.environ.get("OV2_SOAK_REPORT_DIR", tmp_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / f"dataloader_soak_{start_method}.json"
    rc, out = _run_soak(start_method, report)
    assert report.exists(), f"the soak ended (exit {rc}) without a report:\n{out[-4000:]}"
    res = json.loads(report.read_text())
    print(json.dumps(res, indent=1))
    assert res["n"] == N and res["workers"] == 4
    assert res["typed_failures_per_cycle"] >= 3  # the damaged inputs were exercised
    assert not res["failures"], "\n".join(res["failures"])
    assert rc == 0, out[-4000:]
    assert sum(w["items"] for w in res["workers_rss"].values()) == N
    for pid, w in res["workers_rss"].items():
        assert ASAN or w["growth_pct"] < 5.0, (pid, w)
