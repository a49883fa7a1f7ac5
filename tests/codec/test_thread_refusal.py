"""Threads the system refuses to start (resource limits) never abort the interpreter and never change an output.

``pthread_create`` is made to fail after a budget of threads by a small LD_PRELOAD shim (``_thread_budget.c``,
compiled here), in a child process. Every threaded path is covered: the product pool's helpers, closed-GOP segment
workers (none at all: one decoder on the calling thread), FFmpeg's frame threads (refused: one decoding thread),
the ``ovenc_topk`` mosaic helpers, and the ``StreamTokenizer``'s decoding thread (which it cannot do without: a
typed ``VideoOpenError``). Before, a refused ``std::thread`` left joinable by a failed constructor called
``std::terminate`` ("terminate called without an active exception") and killed the interpreter.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ov2 = pytest.importorskip("ov2_tokenizer")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD shim: Linux only")

_CHILD = r"""
import ctypes, hashlib, json, sys
import ov2_tokenizer as ov2
sys.path.insert(0, sys.argv[4])
from ov2_testing import tokens_digest

shim = ctypes.CDLL(sys.argv[1])
motion, gops = sys.argv[2], sys.argv[3]

def frames(path, threads, threading="auto", products=True):
    r = ov2.open_video(path, num_threads=threads, threading=threading)
    h = hashlib.sha1()
    for f in r.frames(with_mvs=products, with_residual=products, with_coding_cost=products):
        h.update(f.luma.tobytes())
        if products:
            h.update(f.motion_vectors.tobytes()); h.update(f.residual.tobytes()); h.update(f.coding_cost.tobytes())
    st = r.stats
    return h.hexdigest(), {k: st[k] for k in ("pooled_products", "parallel", "frame_threads")}

def stream(path):
    st = ov2.StreamTokenizer(keep=True)
    st.feed(open(path, "rb").read())
    st.close()
    return tokens_digest(st.result())

cases = {
    "pool": lambda t: frames(motion, t),
    "segments": lambda t: frames(gops, t, "segments", products=False),
    "frame_threads": lambda t: frames(motion, t, "frames", products=False),
    "codec_stream": lambda t: (tokens_digest(ov2.tokenize_video(gops, num_threads=t)), {}),
    "ovenc_topk": lambda t: (tokens_digest(ov2.tokenize_video(gops, mode="ovenc_topk", num_threads=t)), {}),
    "stream": lambda t: (stream(gops), {}),
}
threads = {"pool": 256, "segments": 4, "frame_threads": 4, "codec_stream": 256, "ovenc_topk": 256, "stream": 1}
out = {}
for name, run in cases.items():
    ref = run(1)[0]
    _, unlimited = run(threads[name])
    rows = {}
    for budget in (0, 1, 2, 3):
        shim.ov2_test_thread_budget(budget)
        try:
            got, st = run(threads[name])
            rows[budget] = ["same" if got == ref else "DIFFERENT", st]
        except Exception as e:
            rows[budget] = [type(e).__name__, str(e)]
        shim.ov2_test_thread_budget(-1)
    out[name] = {"unlimited": unlimited, "budgets": rows}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def thread_budget_shim(tmp_path_factory) -> Path:
    cc = shutil.which(sysconfig.get_config_var("CC").split()[0] if sysconfig.get_config_var("CC") else "cc") or \
        shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the pthread_create shim")
    out = tmp_path_factory.mktemp("shim") / "thread_budget.so"
    src = Path(__file__).with_name("_thread_budget.c")
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(src), "-ldl"], check=True)
    return out


@pytest.fixture(scope="module")
def refusals(thread_budget_shim, int_motion_clip, faststart_clip) -> dict:
    import os

    env = dict(os.environ, LD_PRELOAD=str(thread_budget_shim))
    tests_dir = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", _CHILD, str(thread_budget_shim), str(int_motion_clip.path),
                          str(faststart_clip.path), str(tests_dir)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.parametrize("case", ["pool", "segments", "frame_threads", "codec_stream", "ovenc_topk"])
def test_refused_threads_leave_outputs_unchanged(refusals, case):
    rows = refusals[case]["budgets"]
    for budget, (verdict, detail) in rows.items():
        assert verdict == "same", (case, budget, verdict, detail)


def test_each_threaded_path_was_taken_and_refused(refusals):
    """The cases reach the path they name when threads start, and fall back when none does."""
    assert refusals["pool"]["unlimited"]["pooled_products"]
    assert refusals["segments"]["unlimited"]["parallel"]
    assert refusals["segments"]["budgets"]["0"][1]["parallel"] is False  # one decoder on the calling thread
    assert refusals["segments"]["budgets"]["2"][1]["parallel"] is True  # two workers of four
    assert refusals["frame_threads"]["unlimited"]["frame_threads"] == 4
    assert refusals["frame_threads"]["budgets"]["0"][1]["frame_threads"] == 0  # FFmpeg could not start its threads


def test_stream_tokenizer_without_its_thread_is_a_typed_error(refusals):
    rows = refusals["stream"]["budgets"]
    assert rows["0"][0] == "VideoOpenError", rows["0"]
    assert "cannot start the decoding thread" in rows["0"][1]
    assert all(rows[b][0] == "same" for b in ("1", "2", "3")), rows
