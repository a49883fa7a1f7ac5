"""``ov2 preprocess``: Ray Data and process-pool engines, webdataset shards, failures file, resume, CLI.

Acceptance (issue #10, item 7): ``ov2 preprocess --engine ray`` on 20 videos (shared + generated, one corrupt)
writes shards that round-trip through ``webdataset`` into ``VisualTokens`` equal to a direct ``tokenize_video``
of the same file, and the corrupt one lands in the failures file. The local engine writes the same bytes.
"""
from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

import ov2_tokenizer as ov2
from ov2_tokenizer.cli import main
from ov2_tokenizer.errors import ConfigError, TokensFileError, VideoOpenError
from ov2_tokenizer.preprocess import (
    decode_sample,
    iter_shard,
    load_shards,
    preprocess,
    read_preprocess_manifest,
)
from ov2_tokenizer.tokens import VisualTokens

from _eco_util import moving_clip, shared_fast
from ov2_testing import SHARED_VIDEOS

wds = pytest.importorskip("webdataset")

N_VIDEOS = 20
SHARD_SIZE = 4
CLI_CONFIG = ["--max-canvases", "6", "--num-frames", "24", "--max-pixels", "50176"]
BASE = ov2.TokenizerConfig(max_canvases=6, num_frames=24, max_pixels=50176, num_threads=1)
FRAMES_KEY, NAMED_KEY, CORRUPT_KEY = "pre_clip_3", "named_clip", "corrupt_clip"


def _ray_available() -> bool:
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


needs_ray = pytest.mark.skipif(not _ray_available(), reason="ray[data] is not installed")


@pytest.fixture(scope="module")
def corpus(generated_dir, tmp_path_factory):
    """A JSONL manifest of 20 videos: the fast shared ones (when present), small generated clips, one corrupt
    file (a truncated MP4), one item in frames mode with its own num_frames, one with an explicit key and an
    extra field."""
    work = tmp_path_factory.mktemp("preprocess")
    shared = shared_fast(SHARED_VIDEOS if SHARED_VIDEOS.is_dir() else None)
    n_gen = N_VIDEOS - 1 - len(shared)
    gen = [moving_clip(generated_dir / f"pre_clip_{i}.mp4", seed=10 + i, frames=24, hw=(96, 128), gop=8)
           for i in range(n_gen)]
    corrupt = work / f"{CORRUPT_KEY}.mp4"
    corrupt.write_bytes(gen[0].read_bytes()[:2500])  # the moov atom is at the end: not a readable file
    lines = []
    for p in shared + gen:
        line = {"path": str(p)}
        if p.stem == FRAMES_KEY:
            line.update(mode="frames", config={"num_frames": 8})
        if p == gen[5]:
            line.update(key=NAMED_KEY, caption="a moving square")
        lines.append(line)
    lines.insert(7, {"path": str(corrupt)})
    manifest = work / "videos.jsonl"
    manifest.write_text("# 20 videos\n" + "".join(json.dumps(x) + "\n" for x in lines))
    assert len(lines) == N_VIDEOS
    return {"manifest": manifest, "work": work, "lines": lines, "corrupt": corrupt}


@pytest.fixture(scope="module")
def references(corpus):
    """Direct ``tokenize_video(path)`` of every readable manifest item, by key."""
    refs = {}
    for item in read_preprocess_manifest(corpus["manifest"]):
        if item.key == CORRUPT_KEY:
            continue
        cfg = BASE.replace(**item.overrides)
        refs[item.key] = ov2.tokenize_video(item.path, mode=item.mode or "codec_stream", config=cfg)
    return refs


def _cli(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ray_run(corpus):
    """``ov2 preprocess --engine ray`` in-process: it starts a local 2-CPU Ray instance and shuts it down."""
    if not _ray_available():
        pytest.skip("ray[data] is not installed")
    import ray

    assert not ray.is_initialized()
    out = corpus["work"] / "shards_ray"
    rc, stdout, stderr = _cli(["preprocess", str(corpus["manifest"]), "--out", str(out), "--engine", "ray",
                               "--workers", "2", "--shard-size", str(SHARD_SIZE), "--no-progress"] + CLI_CONFIG)
    assert not ray.is_initialized(), "the Ray instance the command started must be shut down"
    return {"rc": rc, "out": out, "stdout": stdout, "stderr": stderr}


@pytest.fixture(scope="module")
def local_run(corpus):
    out = corpus["work"] / "shards_local"
    rc, stdout, stderr = _cli(["preprocess", str(corpus["manifest"]), "--out", str(out), "--engine", "local",
                               "--workers", "2", "--shard-size", str(SHARD_SIZE)] + CLI_CONFIG)
    assert not multiprocessing.active_children(), "the process pool must be shut down"
    return {"rc": rc, "out": out, "stdout": stdout, "stderr": stderr}


def _tars(out: Path):
    return sorted(out.glob("shard-*.tar"))


def _check_run(run, corpus, references):
    assert run["rc"] == 0, run["stderr"]
    out = run["out"]
    tars = _tars(out)
    assert [t.name for t in tars] == [f"shard-{k:06d}.tar" for k in range(N_VIDEOS // SHARD_SIZE)]
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]

    # the round trip through webdataset itself
    dataset = wds.WebDataset([str(t) for t in tars], shardshuffle=False, empty_check=False)
    got = [decode_sample(s) for s in dataset]
    keys = [k for k, _, _ in got]
    assert keys == [k for k in (it.key for it in read_preprocess_manifest(corpus["manifest"])) if k != CORRUPT_KEY]
    assert len(got) == N_VIDEOS - 1 and set(keys) == set(references)
    for key, vt, meta in got:
        ref = references[key]
        assert isinstance(vt, VisualTokens) and vt.equal(ref), key
        assert meta["key"] == key and meta["source"] == ref.meta["source"] == vt.meta["source"]
        assert meta["num_tokens"] == vt.num_tokens and meta["num_canvases"] == vt.num_canvases
        assert meta["mode"] == ref.meta["mode"] and meta["config"]["max_pixels"] == 50176
        assert meta["video"]["width"] > 0 and meta["video"]["codec"]
        assert "timings" not in vt.meta  # timings live in the shard index (they differ from run to run)
    by_key = {k: m for k, _, m in got}
    assert by_key[FRAMES_KEY]["mode"] == "frames" and by_key[FRAMES_KEY]["config"]["num_frames"] == 8
    assert references[FRAMES_KEY].num_canvases == 8
    assert by_key[NAMED_KEY]["manifest"] == {"caption": "a moving square"}

    # the corrupt file is in the failures file, nowhere else
    failures = [json.loads(ln) for ln in (out / "failures.jsonl").read_text().splitlines()]
    assert len(failures) == 1
    f = failures[0]
    assert f["key"] == CORRUPT_KEY and f["path"] == str(corpus["corrupt"]) and f["error"] == "VideoOpenError"
    assert f["message"].startswith(str(corpus["corrupt"])) and "not a readable media file" in f["message"]
    assert f["index"] == 7 and f["shard"] == 7 // SHARD_SIZE and "unexpected" not in f

    # shard indexes and the summary
    index = json.loads((out / "shard-000001.json").read_text())
    assert index["failed"] == 1 and index["videos"] == SHARD_SIZE - 1 and index["failures"] == failures
    assert all(s["seconds"] > 0 and s["timings"] for s in index["samples"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos"] == N_VIDEOS - 1 and summary["failed"] == 1 and summary["shards"] == 5
    assert summary["tokens"] == sum(r.num_tokens for r in references.values())
    assert f"{N_VIDEOS - 1} videos, 1 failed" in run["stdout"] and "videos/s" in run["stdout"]


@needs_ray
def test_ray_engine_shards_round_trip_through_webdataset(ray_run, corpus, references):
    _check_run(ray_run, corpus, references)


def test_local_engine_shards_round_trip_and_progress(local_run, corpus, references):
    _check_run(local_run, corpus, references)
    assert "video/s" in local_run["stderr"] and "20/20" in local_run["stderr"]  # the tqdm bar


@needs_ray
def test_engines_write_byte_identical_shards(ray_run, local_run):
    ray_files = sorted(p.name for p in ray_run["out"].iterdir())
    assert ray_files == sorted(p.name for p in local_run["out"].iterdir())
    for name in ray_files:
        if name.endswith(".tar") or name == "failures.jsonl":
            assert (ray_run["out"] / name).read_bytes() == (local_run["out"] / name).read_bytes(), name


def test_readers_agree_and_match_visual_tokens_load(local_run, tmp_path):
    out = local_run["out"]
    a = list(load_shards(out))  # a directory
    b = list(load_shards(str(out / "shard-*.tar"), use_webdataset=False))  # a glob, plain tarfile
    c = list(load_shards(str(out / "shard-{000000..000004}.tar"), use_webdataset=True))  # a brace range
    assert len(a) == len(b) == len(c) == N_VIDEOS - 1
    for (ka, va, ma), (kb, vb, mb), (kc, vc, mc) in zip(a, b, c):
        assert ka == kb == kc and ma == mb == mc and va.equal(vb) and va.equal(vc) and va.meta == vb.meta
    # a member extracted to disk loads with VisualTokens.load, the same tokens
    first = list(iter_shard(out / "shard-000000.tar"))
    with tarfile.open(out / "shard-000000.tar") as tf:
        names = tf.getnames()
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in tf.getmembers())
        tf.extract(names[0], tmp_path)
    assert names[0] == f"{first[0][0]}.tokens.npz" and names[1] == f"{first[0][0]}.json"
    loaded = VisualTokens.load(tmp_path / names[0])
    assert loaded.equal(first[0][1]) and loaded.meta == first[0][1].meta
    with pytest.raises(ConfigError):
        list(load_shards(str(tmp_path / "nothing-*.tar")))
    with pytest.raises(VideoOpenError):
        list(load_shards(tmp_path / "missing.tar"))


@pytest.mark.parametrize("use_webdataset", [False, True])
def test_damaged_shards_raise_tokens_file_error(local_run, tmp_path, use_webdataset):
    """Junk, a shard cut inside a member, and a shard whose tokens member is damaged: TokensFileError naming the
    shard (or the shard and key), with either reader."""
    if use_webdataset:
        pytest.importorskip("webdataset")
    shard = (local_run["out"] / "shard-000000.tar").read_bytes()
    junk = tmp_path / "junk.tar"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    cut = tmp_path / "cut.tar"
    cut.write_bytes(shard[:len(shard) // 2 + 100])
    for p in (junk, cut):
        with pytest.raises(TokensFileError) as ei:
            list(load_shards(p, use_webdataset=use_webdataset))
        assert ei.value.source == str(p), ei.value
    # a member's bytes damaged (tar headers intact): the sample names shard and key
    with tarfile.open(local_run["out"] / "shard-000000.tar") as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
    bad = tmp_path / "member.tar"
    with tarfile.open(bad, "w") as tf:
        for m, data in members:
            if m.name.endswith(".tokens.npz"):
                data = data[: len(data) // 2]
                m.size = len(data)
            tf.addfile(m, io.BytesIO(data))
    with pytest.raises(TokensFileError) as ei:
        list(load_shards(bad, use_webdataset=use_webdataset))
    key = members[0][0].name.split(".", 1)[0]
    assert ei.value.source == f"{bad}:{key}", ei.value


def test_resume_rebuilds_only_missing_or_stale_shards(local_run, corpus, tmp_path):
    out = tmp_path / "resume"
    shutil.copytree(local_run["out"], out)
    original = {p.name: p.read_bytes() for p in _tars(out)}
    (out / "shard-000002.tar").unlink()
    idx3 = json.loads((out / "shard-000003.json").read_text())
    idx3["fingerprint"] = "from another manifest or config"
    (out / "shard-000003.json").write_text(json.dumps(idx3))
    stale = out / ".shard-000004.tar.tmp-999999999"  # a killed run's leftover (no such process)
    stale.write_bytes(b"half a shard")
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in _tars(out)}
    rebuilt = []
    s = preprocess(corpus["manifest"], out, engine="local", workers=2, shard_size=SHARD_SIZE, config=BASE,
                   on_shard=lambda k, _: rebuilt.append(k))
    assert sorted(rebuilt) == [2, 3] and s.shards_written == 2 and s.shards_skipped == 3
    assert s.processed == 2 * SHARD_SIZE and s.videos == N_VIDEOS - 1 and s.failed == 1
    assert not stale.exists()
    for p in _tars(out):
        assert p.read_bytes() == original[p.name], p.name
        if p.name not in ("shard-000002.tar", "shard-000003.tar"):
            assert (p.stat().st_mtime_ns, p.stat().st_ino) == before[p.name], f"{p.name} was rewritten"
    assert (out / "failures.jsonl").read_bytes() == (local_run["out"] / "failures.jsonl").read_bytes()
    again = preprocess(corpus["manifest"], out, engine="local", workers=2, shard_size=SHARD_SIZE, config=BASE)
    assert again.shards_written == 0 and again.processed == 0 and again.videos == N_VIDEOS - 1


def test_interrupted_run_leaves_whole_shards_only(corpus, tmp_path):
    items = read_preprocess_manifest(corpus["manifest"])[6:11]  # includes the corrupt one
    out = tmp_path / "interrupted"
    out.mkdir()
    (out / "shard-000001.tar").write_bytes(b"a shard of another manifest")
    (out / "shard-000001.json").write_text('{"fingerprint": "another manifest"}')

    def stop(k, _):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        preprocess(items, out, engine="local", workers=1, shard_size=2, config=BASE, on_shard=stop)
    assert [p.name for p in _tars(out)] == ["shard-000000.tar"]  # the stale shard 1 is gone, not resumed
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    assert not multiprocessing.active_children()
    s = preprocess(items, out, engine="local", workers=0, shard_size=2, config=BASE, fmt="npz")  # in-process
    assert (s.shards, s.shards_skipped, s.shards_written, s.videos, s.failed) == (3, 1, 2, 4, 1)
    assert [k for k, _, _ in load_shards(out)] == [it.key for it in items if it.key != CORRUPT_KEY]


def test_safetensors_format_and_missing_file(corpus, references, tmp_path):
    items = [it for it in read_preprocess_manifest(corpus["manifest"]) if it.key == NAMED_KEY]
    missing = dataclass_replace(items[0], index=1, key="missing", path=str(tmp_path / "missing.mp4"))
    out = tmp_path / "st"
    s = preprocess(items + [missing], out, engine="local", workers=0, config=BASE, fmt="safetensors")
    assert (s.videos, s.failed) == (1, 1)
    with tarfile.open(out / "shard-000000.tar") as tf:
        assert tf.getnames() == [f"{NAMED_KEY}.tokens.safetensors", f"{NAMED_KEY}.json"]
    ((key, vt, meta),) = list(load_shards(out))
    assert key == NAMED_KEY and vt.equal(references[NAMED_KEY]) and meta["format"] == "safetensors"
    fail = json.loads((out / "failures.jsonl").read_text())
    assert fail["key"] == "missing" and fail["error"] == "VideoOpenError" and "No such file" in fail["message"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_named_pipe_in_the_manifest_is_a_failure_not_a_hang(corpus, tmp_path):
    """open() of a named pipe blocks until a writer comes: the local engine refuses it as a recorded failure. A
    watchdog writer unblocks a regression after 20 s, which then fails on the message instead of hanging."""
    import threading

    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    done = threading.Event()

    def watchdog():
        if done.wait(20):
            return
        while not done.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO while no reader waits
            except OSError:
                time.sleep(0.1)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        items = [it for it in read_preprocess_manifest(corpus["manifest"]) if it.key == NAMED_KEY]
        pipe = dataclass_replace(items[0], index=1, key="pipe", path=str(fifo))
        s = preprocess([pipe], tmp_path / "out", engine="local", workers=0, config=BASE)
    finally:
        done.set()
    assert (s.videos, s.failed) == (0, 1)
    fail = json.loads((tmp_path / "out" / "failures.jsonl").read_text())
    assert fail["key"] == "pipe" and fail["error"] == "VideoOpenError" and "not a regular file" in fail["message"]


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_manifest_formats_and_errors(tmp_path):
    (tmp_path / "clips").mkdir()
    text = tmp_path / "list.txt"
    text.write_text("# comment\nclips/a.mp4\n\n/abs/a.mp4\nclips/b.c.mkv\ns3://bucket/x/v.mp4\n")
    items = read_preprocess_manifest(text)
    assert [it.key for it in items] == ["a", "a-2", "b", "v"]
    assert items[0].path == str(tmp_path / "clips" / "a.mp4") and items[1].path == "/abs/a.mp4"
    assert items[3].path == "s3://bucket/x/v.mp4" and [it.index for it in items] == [0, 1, 2, 3]

    jl = tmp_path / "m.jsonl"
    jl.write_text('{"path": "a.mp4"}\n{"path": "b.mp4", "key": "a", "max_canvases": 8, "label": 3}\n'
                  '{"path": "c.mp4", "mode": "frames", "config": {"image_mean": [0.5, 0.5, 0.5]}}\n')
    a, b, c = read_preprocess_manifest(jl)
    assert (a.key, b.key) == ("a-2", "a")  # explicit keys win; derived ones step aside
    assert b.overrides == {"max_canvases": 8} and b.extra == {"label": 3} and b.mode is None
    assert c.mode == "frames" and c.overrides == {"image_mean": (0.5, 0.5, 0.5)}

    bad = {
        '{"path": "a.mp4"}\n{"path": \n': "m.jsonl:2: not valid JSON",
        '{"path": "a.mp4", "key": "x"}\n{"path": "b.mp4", "key": "x"}\n': "m.jsonl:2: duplicate key 'x'",
        '{"path": "a.mp4", "key": "a.b"}\n': "m.jsonl:1: \"key\" must be",
        '{"path": "a.mp4", "nope": 1, "config": {"nope2": 1}}\n': "m.jsonl:1: config field nope2",
        '{"path": "a.mp4", "mode": "movie"}\n': "m.jsonl:1: mode must be one of",
        '{"path": "a.mp4", "max_canvases": 1}\n': "m.jsonl:1: config field max_canvases",
        '["a.mp4"]\n': "m.jsonl:1: each line must be an object",
        "# nothing\n\n": "m.jsonl: the manifest lists no video",
    }
    for content, message in bad.items():
        jl.write_text(content)
        with pytest.raises(ConfigError) as e:
            preprocess(jl, tmp_path / "o", workers=0)  # checked before any work or output
        assert message in str(e.value), (content, str(e.value))
    assert not (tmp_path / "o").exists()
    jl.write_text('{"path": "a.mp4", "min_pixels": 400000}\n')  # valid only with the run's larger max_pixels
    assert read_preprocess_manifest(jl)[0].overrides == {"min_pixels": 400000}
    with pytest.raises(ConfigError, match="m.jsonl:1: config field min_pixels"):
        preprocess(jl, tmp_path / "o", workers=0)
    s = preprocess(jl, tmp_path / "o", workers=0, config=ov2.TokenizerConfig(max_pixels=1_000_000))
    assert (s.videos, s.failed) == (0, 1)  # accepted; the file is missing, a recorded failure
    with pytest.raises(ConfigError, match="cannot read the manifest"):
        read_preprocess_manifest(tmp_path / "absent.txt")
    for kw in ({"engine": "spark"}, {"fmt": "pt"}, {"shard_size": 0}, {"workers": -1},
               {"engine": "ray", "workers": 0}, {"mode": "x"}):
        with pytest.raises(ConfigError):
            preprocess(text, tmp_path / "o", **kw)


def _ov2_procs(*argvs):
    """Runs ``ov2 ARGS`` for each argv in its own interpreter, concurrently; (returncode, stdout, stderr) each."""
    code = "import sys; from ov2_tokenizer.cli import main; sys.exit(main())"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for argv in argvs]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=180)
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def test_cli_help_and_bad_manifest_subprocess(tmp_path):
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text('{"path": "a.mp4"}\n{"path": "b.mp4", "key": "has.dot"}\n')
    (rc_help, help_out, _), (rc, out, err) = _ov2_procs(
        ["preprocess", "--help"], ["preprocess", str(manifest), "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc_help == 0
    for flag in ("--engine", "--workers", "--shard-size", "--mode", "--format", "--max-canvases", "--num-frames"):
        assert flag in help_out, flag
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ov2: error:") and f"{manifest}:2" in lines[0], err
    assert not (tmp_path / "o").exists()  # nothing written for a bad manifest
