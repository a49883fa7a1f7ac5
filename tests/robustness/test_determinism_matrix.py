"""Determinism matrix (issue #7): every ``tokenize_video`` mode gives the same tokens for ``num_threads`` 1, 2 and 4
and for the same bytes read from a path, from ``bytes`` and from a binary file-like object -- on generated clips
(several closed GOPs, so 2 and 4 threads really decode in parallel), on the shared real videos (skipped when
``../shared/videos`` is absent) and on damaged files (the corpus's truncation, bit-flip, zeroing and packet
mutations, ``tests/robustness/corpus.py``) under ``on_error="skip"`` and ``"raise"``: a damaged file must end in
identical tokens or in the identical typed error (class and cause; the ``source`` names the path, ``<bytes>`` or
``<file-like ...>`` and so differs by construction) for every thread count and source kind.

What is compared: every token array (``VisualTokens.equal``: canvases, records, groups) and the meta entries that
describe the output (frame indices, timestamps, partition, slots, ...). Not compared: ``timings``, ``source``,
``config`` (it holds ``num_threads``) and the decoder's statistics (``frames_decoded``, ``corrupt_*``,
``parallel``, ``segments``, ...): a parallel reader may decode past the last frame a mode asks for, so those
counters are allowed to differ while the output may not.
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ov2 = pytest.importorskip("ov2_tokenizer")
pytest.importorskip("av")
from ov2_tokenizer import errors  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402
from ov2_testing import shared_video_paths  # noqa: E402

MODES = ("codec_stream", "frames", "image", "ovenc_topk", "cope")
THREADS = (1, 2, 4)
SOURCES = ("path", "bytes", "file")
#: Small configs: every mode runs its whole pipeline, at a fraction of the default cost.
CFG = dict(num_frames=16, max_canvases=4, max_pixels=12544, ovenc_slots=8, ovenc_size=64, ovenc_patch=16,
           ovenc_topk=64, timeout_s=60)
#: cope's Δ-residuals are full-resolution: fewer steps keep 720p inputs cheap.
MODE_CFG = {"cope": dict(num_frames=4, max_canvases=2)}
#: Decoder statistics and bookkeeping that may differ between equal outputs (see the module docstring).
STATS_KEYS = {"timings", "source", "config", "frames_decoded", "corrupt_packets", "corrupt_frames",
              "repeated_frames", "truncated", "parallel", "segments", "pooled_products", "skipped_frames",
              "skip_fallback", "frame_threads", "thread_fallback", "packet_prepass"}
X264 = {"g": "8", "bf": "2", "x264-params": "keyint=8:min-keyint=8:scenecut=0"}


def _plain(v):
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        return [str(v.dtype), list(v.shape), hashlib.sha1(np.ascontiguousarray(v).tobytes()).hexdigest()]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    return v


def outcome(source, mode: str, threads: int, on_error: str = "skip"):
    """("ok", digest of the tokens and output meta) or (error class, cause); anything else propagates."""
    try:
        vt = ov2.tokenize_video(source, mode=mode, num_threads=threads, on_error=on_error,
                                **{**CFG, **MODE_CFG.get(mode, {})})
    except errors.Ov2Error as exc:
        assert not isinstance(exc, errors.ConfigError), repr(exc)
        return (type(exc).__name__, exc.cause)
    h = hashlib.sha256()
    for k, a in sorted(vt._arrays().items()):
        h.update(k.encode())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    meta = {k: _plain(v) for k, v in vt.meta.items() if k not in STATS_KEYS}
    h.update(json.dumps(meta, sort_keys=True, default=repr).encode())
    return ("ok", h.hexdigest()[:20])


def open_as(path: Path, kind: str):
    if kind == "path":
        return str(path)
    data = path.read_bytes()
    return data if kind == "bytes" else io.BytesIO(data)


_CACHE: dict = {}


def cached(path: Path, kind: str, mode: str, threads: int, on_error: str = "skip"):
    key = (str(path), kind, mode, threads, on_error)
    if key not in _CACHE:
        _CACHE[key] = outcome(open_as(path, kind), mode, threads, on_error)
    return _CACHE[key]


def matrix(path: Path, mode: str, on_error: str = "skip", combos=None) -> dict:
    combos = combos or [(t, s) for t in THREADS for s in SOURCES]
    return {(t, s): cached(path, s, mode, t, on_error) for t, s in combos}


def describe(res: dict) -> str:
    groups: dict = {}
    for k, v in res.items():
        groups.setdefault(v, []).append(f"{k[0]}t/{k[1]}")
    return "; ".join(f"{', '.join(ks)} -> {v}" for v, ks in groups.items())


# -- generated clips ----------------------------------------------------------------------------------------------
#: name -> (encoder arguments, whether 2 / 4 threads split it into parallel segments). MPEG-4 part 2 with B-frames
#: has open GOPs (no safe segment start), so its readers stay sequential for every thread count.
GENERATED = {
    "h264_bframes.mp4": (dict(codec="libx264", size=(96, 128), frames=48, options=X264), True),
    "h264_ippp.ts": (dict(codec="libx264", size=(96, 128), frames=48, options={"g": "8", "bf": "0"}), True),
    "mpeg4_ippp.avi": (dict(codec="mpeg4", size=(96, 128), frames=48, options={"g": "6", "bf": "0"}), True),
    "mpeg4_bframes.avi": (dict(codec="mpeg4", size=(96, 128), frames=48, options={"g": "6", "bf": "1"}), False),
    "hevc.mkv": (dict(codec="libx265", size=(96, 128), frames=32,
                      options={"x265-params": "keyint=8:min-keyint=8:scenecut=0:open-gop=0:log-level=none"}), True),
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("determinism")
    out = {}
    for i, (name, (kw, _)) in enumerate(GENERATED.items()):
        try:
            out[name] = corpus.encode(d / name, seed=i, **kw)
        except Exception as exc:  # noqa: BLE001 - an encoder missing from this PyAV build
            out[name] = exc
    return out


def _clip(generated, name) -> Path:
    p = generated[name]
    if isinstance(p, Exception):
        pytest.skip(f"cannot encode {name} here: {p}")
    return p


@pytest.mark.parametrize("name", list(GENERATED))
def test_generated_clips_decode_in_parallel(generated, name):
    """The matrix below is only meaningful if 2 and 4 threads really decode in parallel: closed-GOP segments, or
    FFmpeg's frame threads (H.264 without re-ordering, where segments would leave threads idle: 6 GOPs on 4
    threads)."""
    p = _clip(generated, name)
    kw, parallel = GENERATED[name]
    for t in (2, 4):
        r = ov2.open_video(p, num_threads=t)
        n = sum(1 for _ in r.frames(with_luma=False))
        assert n == kw["frames"]
        st = r.stats
        assert (st["parallel"] or st["frame_threads"] >= 2) == parallel, (t, st)
        assert st["parallel"] == (st["segments"] >= 2), (t, st)
        if name == "h264_ippp.ts":  # both paths in the matrix: segments at 2 threads, frame threads at 4
            assert (st["parallel"], st["frame_threads"]) == ((True, 0) if t == 2 else (False, 4)), (t, st)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(GENERATED))
def test_generated_identical_for_threads_and_sources(generated, name, mode):
    res = matrix(_clip(generated, name), mode)
    assert res[(1, "path")][0] == "ok", res[(1, "path")]
    assert len(set(res.values())) == 1, describe(res)


@pytest.mark.parametrize("name", ["h264_bframes.mp4", "mpeg4_ippp.avi", "hevc.mkv"])
def test_generated_identical_for_the_cpus_simd(generated, name):
    """Tokens do not depend on the machine's SIMD level: FFmpeg's decoders are bit-exact by design, swscale runs in
    its bit-exact mode (docs/decoding.md, "Frame RGB") and ov2's own arithmetic is integer or IEEE double without
    contraction. Every mode with FFmpeg forced to its plain C code (``core.force_cpu_flags(0)``) equals the
    default read, one thread and two."""
    from ov2_tokenizer._native import core

    p = _clip(generated, name)
    for threads in (1, 2):
        simd = {mode: cached(p, "path", mode, threads) for mode in MODES}
        core.force_cpu_flags(0)
        try:
            plain = {mode: outcome(str(p), mode, threads) for mode in MODES}
        finally:
            core.force_cpu_flags(-1)
        assert all(v[0] == "ok" for v in simd.values()), simd
        assert plain == simd, (threads, plain, simd)


# -- the shared real videos ---------------------------------------------------------------------------------------
#: Small files: the whole matrix. Files over 500 KB (the 720p and 640x360 clips): each thread count and each source
#: kind once, two of the three readers parallel (these dominate the run time on a 2-core machine).
SHARED_FULL = [(t, s) for t in THREADS for s in SOURCES]
SHARED_COVER = [(1, "path"), (2, "bytes"), (4, "file")]
#: Known failures, each with its own minimal test below (remove the entry once fixed).
SHARED_XFAIL: dict = {}


def _shared():
    vids = shared_video_paths()
    params = []
    for p in vids:
        marks = [pytest.mark.xfail(strict=False, reason=SHARED_XFAIL[p.name])] if p.name in SHARED_XFAIL else []
        params.append(pytest.param(p, id=p.name, marks=marks))
    return params or [pytest.param(None, marks=pytest.mark.skip(reason="../shared/videos absent"))]


@pytest.mark.parametrize("path", _shared())
def test_shared_identical_for_threads_and_sources(path):
    combos = SHARED_COVER if path.stat().st_size > 500_000 else SHARED_FULL
    bad = []
    for mode in MODES:
        res = matrix(path, mode, combos=combos)
        assert res[(1, "path")][0] == "ok", (mode, res[(1, "path")])
        if len(set(res.values())) != 1:
            bad.append(f"{mode}: {describe(res)}")
    assert not bad, "\n".join(bad)


# -- RGB of full-range BT.709 frames --------------------------------------------------------------------------------
def _rgb_full_vs_single(path: Path, n: int):
    """Frame k's RGB from one read of frames 0..n-1 vs from a fresh reader asked for frame k only (the first RGB
    conversion of a reader: always correct). Returns the differing frames and the largest difference."""
    full = [f.rgb for f in ov2.open_video(path, num_threads=1).frames(indices=list(range(n)), with_rgb=True,
                                                                      rgb_size=(48, 64))]
    single = [next(iter(ov2.open_video(path, num_threads=1).frames(indices=[k], with_rgb=True, rgb_size=(48, 64)))).rgb
              for k in range(n)]
    assert len(full) == len(single) == n
    bad = [k for k in range(n) if not np.array_equal(full[k], single[k])]
    worst = max((int(np.abs(full[k].astype(int) - single[k].astype(int)).max()) for k in bad), default=0)
    return bad, worst


@pytest.fixture(scope="module")
def full_range_bt709(tmp_path_factory) -> Path:
    """yuvj420p (full range) tagged BT.709 -- the pixel format / matrix of tc_bt709_full_range.mp4 -- generated."""
    p = corpus.encode(tmp_path_factory.mktemp("bt709") / "full_range_bt709.mp4", frames=12, pix_fmt="yuvj420p",
                      size=(64, 96), options={"g": "12", "bf": "0", "x264-params": "colormatrix=bt709:range=pc"})
    info = ov2.open_video(p).info
    assert info.pix_fmt == "yuvj420p", info
    return p


def test_rgb_full_range_bt709_same_for_any_read(full_range_bt709):
    """yuvj420p + BT.709: every frame's RGB equals a fresh reader's first conversion (the swscale context is keyed
    on format, sizes, matrix and range, never on its address; swscale rewrites the J formats internally)."""
    bad, worst = _rgb_full_vs_single(full_range_bt709, 12)
    assert not bad, f"frames {bad} differ by up to {worst} levels between a full read and single-frame reads"


def test_rgb_shared_full_range_bt709_same_for_any_read(shared_videos):
    p = shared_videos / "tc_bt709_full_range.mp4"
    if not p.exists():
        pytest.skip("tc_bt709_full_range.mp4 absent")
    bad, worst = _rgb_full_vs_single(p, 12)
    assert not bad, f"frames {bad} differ by up to {worst} levels between a full read and single-frame reads"


def test_rgb_limited_range_same_for_any_read(tmp_path):
    """The control: limited-range yuv420p (the context is cached, never rebuilt) converts the same either way."""
    p = corpus.encode(tmp_path / "bt709_tv.mp4", frames=12, size=(64, 96),
                      options={"g": "12", "bf": "0", "x264-params": "colormatrix=bt709:range=tv"})
    assert _rgb_full_vs_single(p, 12) == ([], 0)


# -- damaged files ------------------------------------------------------------------------------------------------
DAMAGE = ("truncate", "flip", "zero", "packets")


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> list:
    """The quick corpus's mutations of three bases (MP4 with B-frames, MPEG-TS, MPEG-4 AVI), each base long enough
    (48 frames, 6 closed GOPs) to be split into parallel segments."""
    out = tmp_path_factory.mktemp("damaged")
    gen = out / "_gen"
    gen.mkdir()
    w = corpus._Writer(out)
    bases = [("h264_bframes_mp4", dict(codec="libx264", frames=48, options=X264), ".mp4"),
             ("h264_mpegts", dict(codec="libx264", frames=48, options=X264), ".ts"),
             ("mpeg4_avi", dict(codec="mpeg4", frames=48, options={"g": "6", "bf": "1"}), ".avi")]
    for i, (name, kw, ext) in enumerate(bases):
        src = corpus.encode(gen / f"{name}{ext}", seed=i, **kw)
        corpus._mutations(w, name, src.read_bytes(), ext, src, 100 * i, full=False)
    cases = [c for c in w.cases if c["category"] in DAMAGE]
    assert len(cases) >= 30, len(cases)
    return cases


@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_damaged_identical_for_every_source_kind(damaged, on_error):
    """For each thread count, path / bytes / file-like give the same tokens or the same typed error."""
    bad, outcomes = [], set()
    for case in damaged:
        p = Path(case["path"])
        for mode in MODES:
            res = matrix(p, mode, on_error)
            outcomes.update(v[0] for v in res.values())
            for t in THREADS:
                if len({res[(t, s)] for s in SOURCES}) != 1:
                    bad.append(f"{case['name']} {mode} {t}t: {describe({k: v for k, v in res.items() if k[0] == t})}")
    assert not bad, f"{len(bad)} differ:\n" + "\n".join(bad[:20])
    assert "ok" in outcomes and len(outcomes) >= 2, outcomes  # both tokens and typed errors were exercised


@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_damaged_identical_for_every_thread_count(damaged, on_error):
    bad = []
    for case in damaged:
        p = Path(case["path"])
        for mode in MODES:
            res = {t: cached(p, "path", mode, t, on_error) for t in THREADS}
            if len(set(res.values())) != 1:
                bad.append(f"{case['name']} {mode}: {res}")
    assert not bad, f"{len(bad)} (case, mode) pairs differ between thread counts:\n" + "\n".join(bad[:20])


@pytest.fixture(scope="module")
def damaged_iframe(tmp_path_factory) -> Path:
    """48 frames, closed GOPs of 8 (I B B P ...); the second half of the I-frame packet of the third GOP (decode
    order packet 16, presentation frame 16) has every 7th byte inverted."""
    d = tmp_path_factory.mktemp("iframe")
    src = corpus.encode(d / "clean.mp4", frames=48, options=X264)
    spans = corpus.packet_spans(src)
    assert len(spans) == 48
    data = bytearray(src.read_bytes())
    off, size = spans[16]
    for k in range(size // 2, size, 7):
        data[off + k] ^= 0xFF
    p = d / "damaged_iframe.mp4"
    p.write_bytes(bytes(data))
    return p


def _frames(path, threads):
    r = ov2.open_video(path, num_threads=threads)
    fr = [(f.index, f.pict_type, hashlib.sha1(f.luma.tobytes()).hexdigest()[:12]) for f in r.frames()]
    return fr, r.stats


def test_damaged_iframe_reader_identical_for_threads(damaged_iframe):
    """Every closed GOP is decoded from a freshly opened decoder in every reader (sequential or parallel), so a
    damaged GOP start is concealed the same way whatever num_threads is."""
    ref, s1 = _frames(damaged_iframe, 1)
    assert s1["corrupt_frames"] >= 1 and not s1["parallel"]
    for t in (2, 4):
        got, st = _frames(damaged_iframe, t)
        assert st["parallel"], st  # the parallel path is taken (the clip has 6 closed GOPs)
        assert len(got) == len(ref) == 48
        diff = [a[0] for a, b in zip(ref, got) if a != b]
        assert not diff, f"{t} threads: frames {diff} differ from 1 thread"


def test_damaged_iframe_same_for_parallel_thread_counts(damaged_iframe):
    """The parallel readers agree with each other (the segments of this clip do not depend on 2 vs 4 threads), and
    the frames before the damaged GOP agree with the sequential reader: the difference is confined to the GOP
    whose decoder state differs."""
    ref, _ = _frames(damaged_iframe, 1)
    two, _ = _frames(damaged_iframe, 2)
    four, _ = _frames(damaged_iframe, 4)
    assert two == four
    assert ref[:16] == two[:16]
