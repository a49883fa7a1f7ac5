"""The malformed-input corpus through every mode of ``tokenize_video`` and ``open_video(...).frames`` in guarded
subprocesses (issue #7): every outcome is valid tokens or a typed ``ov2_tokenizer.errors`` exception naming the
file; never a signal, a hang or an untyped exception.

The full corpus (≥ 300 cases) runs in about 3 minutes on 2 cores. ``OV2_CORPUS_QUICK=1`` runs a small subset
(the sanitizer build uses it). The report is printed and written to ``$OV2_CORPUS_REPORT`` (default:
``<tmp>/robustness_report.json``).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ov2_tokenizer")
pytest.importorskip("av")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402
import harness  # noqa: E402

QUICK = os.environ.get("OV2_CORPUS_QUICK", "") not in ("", "0")


@pytest.fixture(scope="module")
def corpus_cases(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    return corpus.build_corpus(out, quick=QUICK)


def test_corpus_size_and_determinism(corpus_cases, tmp_path):
    if not QUICK:
        assert len(corpus_cases) >= 300, len(corpus_cases)
    cats = {c["category"] for c in corpus_cases}
    for needed in ("truncate", "flip", "zero", "packets", "extension", "structure", "no_video"):
        assert needed in cats, needed
    if not QUICK:
        assert {"header_lies", "huge_dims"} <= cats
    # The same seed writes the same cases, and every damaged case is a deterministic function of the encoded file it
    # damages. The encoded files themselves come from libx264 & co. through PyAV, which now and then writes different
    # bytes for the same frames (seen in session 3 on 1 run in 10, one file at a time, with one encoder thread too):
    # a case counts only when its encoded source came out identical, and nearly all must.
    again = corpus.build_corpus(tmp_path / "again", quick=True, shared=False)
    first = {c["name"]: Path(c["path"]).read_bytes() for c in corpus_cases}
    second = {c["name"]: Path(c["path"]).read_bytes() for c in again}
    common = [n for n in second if n in first]
    assert common and [c["name"] for c in again] == [c["name"] for c in corpus_cases if c["name"] in second]
    source_of = {c["name"]: c["source"] for c in again}  # the generated file a case's bytes derive from
    sources = {n: source_of[n] for n in common}
    stable = {src for src in set(sources.values()) if src in first and first[src] == second.get(src)}
    unstable = sorted(set(sources.values()) - stable)
    assert len(unstable) <= max(1, len(set(sources.values())) // 10), f"encodes differ between two builds: {unstable}"
    checked = [n for n in common if sources[n] in stable]
    # One differing encode is allowed, and one base encode is the source of up to a third of the quick corpus's
    # cases (its truncations, flips, zeroed ranges and packet mutations): 67 of 100 cases were checked in one
    # session-6 CI run where h264_bframes_mp4 came out different.
    assert len(checked) >= 0.5 * len(common), (len(checked), len(common), unstable)
    for name in checked:
        assert second[name] == first[name], name


def test_corpus_every_mode(corpus_cases):
    t0 = time.time()
    results = harness.run_cases(corpus_cases, harness.ALL_OPS, jobs=2, batch=20, timeout_s=10.0, op_wall_s=45.0)
    rep = harness.summarize(corpus_cases, results, time.time() - t0)
    text = harness.format_report(rep)
    print("\n" + text)
    path = Path(os.environ.get("OV2_CORPUS_REPORT", Path(tempfile.gettempdir()) / "robustness_report.json"))
    path.write_text(json.dumps(dict(rep, results=results), indent=1))
    print(f"report: {path}")
    assert len(results) == len(corpus_cases) * len(harness.ALL_OPS)
    assert not rep["failures"], text
    # undamaged inputs must tokenize in every mode
    bases = [r for r in results if r["category"] == "base"]
    assert bases and all(r["outcome"] == "ok" for r in bases), [r for r in bases if r["outcome"] != "ok"]


# -- the harness itself must see what it claims to catch ------------------------------------------------------------
@pytest.fixture(scope="module")
def one_case(tmp_path_factory):
    p = tmp_path_factory.mktemp("selftest") / "ok.mp4"
    corpus.encode(p, frames=6)
    return [{"name": "ok", "category": "selftest", "path": str(p), "note": ""}]


@pytest.mark.parametrize("op, expect", [
    ("_selftest_abort", "FAIL:signal:SIGABRT"),
    ("_selftest_segv", "FAIL:signal:SIG"),  # SIGSEGV (SIGABRT under ASan's abort_on_error)
    ("_selftest_untyped", "FAIL:untyped:KeyError"),
    ("_selftest_wrong_name", "FAIL:typed_wrong_name"),
])
def test_harness_classifies_failures(one_case, op, expect):
    res = harness.run_cases(one_case, [op, "frames"], jobs=1, timeout_s=5, op_wall_s=30)
    by_op = {r["op"]: r["outcome"] for r in res}
    assert by_op[op].startswith(expect), by_op[op]
    assert by_op["frames"] == "ok"  # the batch goes on in a fresh worker after a crash


def test_harness_kills_hangs(one_case):
    t0 = time.time()
    res = harness.run_cases(one_case, ["_selftest_hang", "image"], jobs=1, timeout_s=5, op_wall_s=3)
    by_op = {r["op"]: r["outcome"] for r in res}
    assert by_op == {"_selftest_hang": "FAIL:hang", "image": "ok"}
    assert time.time() - t0 < 25
