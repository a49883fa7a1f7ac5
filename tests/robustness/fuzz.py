"""Atheris fuzzing of ov2 (issue #7): ``make fuzz FUZZ_SECONDS=600 FUZZ_JOBS=2``.

Targets:
  decode   bytes -> ``open_video(bytes)``: info, packet table, ``frames()`` with every product (luma, RGB, vectors,
           residual, coding cost) on one or two decoding threads, skip / raise / repeat. Seeded with small valid
           videos of several codecs and containers. Allowed outcomes: frames, or an ``ov2_tokenizer.errors``
           exception naming ``<bytes>``. One input in four is also read without pixels (``with_luma=False``:
           H.264 without deblocking), which must give the same vectors, frames and error; one in four is read
           again with the other thread count (1 / 2), which must give the same frames, vectors, pixels, products
           and error (the first 48 frames).
  tok      bytes -> ``core.tok`` algorithm entry points (gop_partition, candidate_frames, saliency, block_score,
           score_frame, resize_area / resize_bilinear, canvas_size, allocate + pack_records + pack_canvases,
           group_of_time, paste_blocks, percentile) with arrays, shapes and parameters drawn from the input.
           Allowed outcomes: results, or ValueError / TypeError (bad arguments are rejected, never crash).
  tokenize bytes -> ``tokenize_video(bytes, mode=...)`` in each of the five modes (small configs), or the bytes fed in
           chunks to a ``StreamTokenizer`` (the push source and its background decoder). Seeded like ``decode``.
           Allowed outcomes: tokens that keep the harness's invariants (``harness._check_tokens``), or an
           ``ov2_tokenizer.errors`` exception naming ``<bytes>`` (``<stream>`` for the stream tokenizer).

Any other exception, a signal (a sanitizer report, a segfault) or a hang is a crash: libFuzzer writes the input to
``tests/robustness/regressions/`` (decode), ``regressions/tok/`` (tok) or ``regressions/tokenize/`` (tokenize),
where the test suite replays it. Coverage guidance: atheris instruments the Python layer; the C++ core is not
instrumented unless built with clang's ``-fsanitize=fuzzer-no-link`` (GCC here), so on this machine the native code is fuzzed by mutation
with Python-level guidance only.

    python tests/robustness/fuzz.py --seconds 60 --jobs 3          # the three targets, parallel processes
    python tests/robustness/fuzz.py --targets tokenize --jobs 2     # two processes of one target
    python tests/robustness/fuzz.py --target decode --seconds 60   # one target in this process
    python tests/robustness/fuzz.py --replay FILE...               # run inputs once (regression check)
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
REG = HERE / "regressions"
REG_TOK = REG / "tok"
REG_TOKENIZE = REG / "tokenize"
#: Where each target's crash inputs go (and, by the folder's name, which target replays them).
ARTIFACTS = {"decode": REG, "tok": REG_TOK, "tokenize": REG_TOKENIZE}


# ---------------------------------------------------------------------------------------------------------------
def _features(info, stats, rows, err) -> int:
    """Branches on what a read met (codec, container, picture types, the decoder's path, the error), one edge each
    once ``run_target`` has atheris instrument this function. The C++ core is not instrumented, so without them
    libFuzzer saw the same few Python edges for every input and kept 3 of the 42 seeds (session 17): the HEVC,
    VP9, MPEG-2 and damaged-file seeds were dropped from the corpus at start-up."""
    n = 0
    codec = getattr(info, "codec", None)
    if codec == "h264":
        n += 1
    elif codec == "hevc":
        n += 2
    elif codec == "mpeg4":
        n += 3
    elif codec == "vp9":
        n += 4
    elif codec == "mpeg2video":
        n += 5
    elif codec == "av1":
        n += 6
    elif codec is not None:
        n += 7
    container = getattr(info, "container", "") or ""
    if "mp4" in container:
        n += 10
    elif "matroska" in container:
        n += 20
    elif container == "mpegts":
        n += 30
    elif container == "avi":
        n += 40
    elif container in ("h264", "hevc"):
        n += 50
    elif container:
        n += 60
    if getattr(info, "has_b_frames", False):
        n += 100
    types = {r[1] for r in rows}
    if "B" in types:
        n += 200
    if "I" not in types and rows:
        n += 300
    if len(rows) >= 48:
        n += 400
    elif len(rows) >= 8:
        n += 500
    elif rows:
        n += 600
    for key in ("corrupt_packets", "corrupt_frames", "repeated_frames", "truncated", "parallel", "pooled_products",
                "skip_fallback", "thread_fallback", "loop_filter_skipped", "loop_filter_fallback", "frame_threads"):
        if stats and stats.get(key):
            n += 1000
    if err is None:
        n += 10000
    elif err[0] == "CorruptVideoError":
        n += 20000
    elif err[0] == "VideoOpenError":
        n += 30000
    elif err[0] == "NoVideoStreamError":
        n += 40000
    elif err[0] == "UnsupportedCodecError":
        n += 50000
    elif err[0] == "DecodeTimeout":
        n += 60000
    else:
        n += 70000
    return n


_FEATURES = _features  # run_target swaps in an instrumented copy


def _vectors(source, threads: int, on_error: str, products: bool, ctl: int) -> tuple:
    """What a read gives of the first 48 frames' vectors (with every product, or without pixels: H.264 then decodes
    without deblocking, which must not change them), the typed error that ended it (None at the end), and with
    products a digest of each frame's pixels and products (luma, RGB, residual, coding cost)."""
    import hashlib

    import ov2_tokenizer as ov2
    from ov2_tokenizer import errors

    rows, err, digests, r = [], None, [], None
    try:
        r = ov2.open_video(source, num_threads=threads, on_error=on_error, timeout_s=5.0)
        if products:
            r.packets()
            frames = r.frames(with_rgb=bool(ctl & 0x40), with_mvs=True, with_residual=True, with_coding_cost=True,
                              rgb_size=(28, 28) if ctl & 0x80 else None)
        else:
            frames = r.frames(with_luma=False, with_mvs=True)
        for f in frames:
            if f.luma is not None and f.luma.shape != (f.height, f.width):
                raise AssertionError("luma shape")
            rows.append((f.index, f.pict_type, f.pts_s, f.motion_vectors.tobytes()))
            if products:
                h = hashlib.blake2b(digest_size=16)
                for a in (f.luma, f.rgb, f.residual, f.coding_cost):
                    h.update(b"-" if a is None else a.tobytes())
                digests.append(h.digest())
            if len(rows) >= 48:
                break
    except errors.Ov2Error as e:
        if e.source != "<bytes>" or isinstance(e, errors.ConfigError):
            raise AssertionError(f"error does not name the source: {e!r}") from e
        err = (type(e).__name__, e.cause)
    if products:
        try:
            info = r.info if r is not None else None  # may count packets, so may raise what the read raised
        except errors.Ov2Error:
            info = None
        _FEATURES(info, getattr(r, "stats", None), rows, err)
    return rows, err, digests


def decode_one(data: bytes) -> None:
    if len(data) < 2:
        return
    ctl, body = data[0], data[1:]
    on_error = ("skip", "raise", "repeat")[ctl % 3]
    threads = 1 + (ctl >> 2) % 2
    full = _vectors(body, threads, on_error, True, ctl)
    if ctl & 0x10 and full[0]:  # differential: the other thread count gives the same frames, pixels and products
        other = _vectors(body, 3 - threads, on_error, True, ctl)
        timeout = "DecodeTimeout" in (full[1] or ("",))[0] + (other[1] or ("",))[0]
        if not timeout and (full[0] != other[0] or full[2] != other[2] or full[1] != other[1]):
            n = next((i for i, (a, b) in enumerate(zip(full[2], other[2])) if a != b), None)
            raise AssertionError(f"num_threads {threads} / {3 - threads} differ: {len(full[0])} / {len(other[0])} "
                                 f"frames, first differing pixels at {n}, errors {full[1]} / {other[1]}")
    if ctl & 0x20 and full[0]:  # differential: a read without pixels gives the same vectors (and the same end)
        bare = _vectors(body, threads, on_error, False, ctl)
        n = min(len(full[0]), len(bare[0]))
        timeout = "DecodeTimeout" in (full[1] or ("",))[0] + (bare[1] or ("",))[0]
        if full[0][:n] != bare[0][:n] or (not timeout and full[1] != bare[1] and len(full[0]) == len(bare[0]) < 48):
            raise AssertionError(f"a read without pixels differs: {len(full[0])} / {len(bare[0])} frames, "
                                 f"errors {full[1]} / {bare[1]}")


def tok_one(data: bytes) -> None:
    import atheris
    import numpy as np

    from ov2_tokenizer._native import core

    t = core.tok
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, 11)

    def arr(dtype, n, lo=-1e6, hi=1e6):
        if np.issubdtype(dtype, np.floating):
            vals = fdp.ConsumeFloatListInRange(n, lo, hi) if fdp.ConsumeBool() else fdp.ConsumeFloatList(n)
            a = np.asarray(vals + [0.0] * (n - len(vals)), dtype=dtype)
            if n and fdp.ConsumeBool():
                a[fdp.ConsumeIntInRange(0, n - 1)] = [np.nan, np.inf, -np.inf][fdp.ConsumeIntInRange(0, 2)]
            return a
        info = np.iinfo(dtype)
        vals = fdp.ConsumeIntListInRange(n, max(int(lo), info.min), min(int(hi), info.max))
        return np.asarray(vals + [0] * (n - len(vals)), dtype=dtype)

    small = lambda hi=64: fdp.ConsumeIntInRange(-2, hi)  # noqa: E731 - sizes may be invalid on purpose
    try:
        if which == 0:
            n = fdp.ConsumeIntInRange(0, 200)
            t.gop_partition(np.sort(arr(np.float64, n, 0, 100)) if fdp.ConsumeBool() else arr(np.float64, n),
                            arr(np.int64, n, -10, 1 << 20), arr(np.uint8, n, 0, 255) if fdp.ConsumeBool() else None,
                            arr(np.uint8, n, 0, 1).astype(bool) if fdp.ConsumeBool() else None,
                            k_tar=small(40), duration_s=fdp.ConsumeFloatInRange(-5, 200),
                            t0=fdp.ConsumeFloatInRange(-10, 10), delta=fdp.ConsumeFloatInRange(-1, 5),
                            t_min=fdp.ConsumeFloatInRange(-1, 10), t_max=fdp.ConsumeFloatInRange(-1, 20),
                            radius=small(10), energy=["linear", "log1p", "x"][fdp.ConsumeIntInRange(0, 2)])
        elif which == 1:
            n = fdp.ConsumeIntInRange(0, 300)
            t.candidate_frames(arr(np.float64, n), small(400))
        elif which in (2, 3):
            h, w = small(80), small(80)
            h4, w4 = (max(h, 0) + 3) // 4 + fdp.ConsumeIntInRange(-1, 1), (max(w, 0) + 3) // 4 + fdp.ConsumeIntInRange(-1, 1)
            mv = arr(np.float32, max(0, h4 * w4 * 4), -500, 500).reshape(max(0, h4), max(0, w4), 4) if h4 > 0 and w4 > 0 and fdp.ConsumeBool() else None
            fl = arr(np.uint8, max(0, h4 * w4), 0, 3).reshape(max(0, h4), max(0, w4)) if mv is not None and fdp.ConsumeBool() else None
            rh, rw = h + fdp.ConsumeIntInRange(-1, 1), w + fdp.ConsumeIntInRange(-1, 1)
            res = arr(np.int16, max(0, rh * rw), -255, 255).reshape(max(0, rh), max(0, rw)) if rh > 0 and rw > 0 and fdp.ConsumeBool() else None
            if which == 2:
                t.saliency(h, w, mv, fl, res, fdp.ConsumeBool())
            else:
                ch, cw = small(120), small(120)
                cost = arr(np.float32, max(0, h4 * w4), 0, 1).reshape(max(0, h4), max(0, w4)) if h4 > 0 and w4 > 0 and fdp.ConsumeBool() else None
                t.score_frame(ch, cw, h, w, mv, fl, res, cost, fdp.ConsumeBool(), small(16), small(4),
                              fdp.ConsumeFloatInRange(-2, 2))
        elif which == 4:
            h, w = small(60), small(60)
            s = arr(np.float32, max(0, h * w), -10, 10).reshape(max(0, h), max(0, w))
            cost = s.copy() if fdp.ConsumeBool() else None
            valid = [small(60) for _ in range(4)] if fdp.ConsumeBool() else None
            t.block_score(s, cost, small(16), small(4), fdp.ConsumeFloatInRange(-2, 2), valid)
        elif which == 5:
            h, w = small(50), small(50)
            x = arr(np.float32, max(0, h * w), -10, 10).reshape(max(0, h), max(0, w))
            t.resize_area(x, small(100), small(100))
        elif which == 6:
            h, w = small(40), small(40)
            img = arr(np.uint8, max(0, h * w * 3), 0, 255).reshape(max(0, h), max(0, w), 3)
            t.resize_bilinear(img, small(100), small(100))
        elif which == 7:
            t.canvas_size(fdp.ConsumeIntInRange(-5, 1 << 20), fdp.ConsumeIntInRange(-5, 1 << 20), small(32), small(4),
                          fdp.ConsumeIntInRange(-5, 1 << 22), fdp.ConsumeIntInRange(-5, 1 << 24))
        elif which in (8, 9):
            g = fdp.ConsumeIntInRange(0, 12)
            start = np.sort(arr(np.int64, g, 0, 50))
            end = start + arr(np.int64, g, -1, 10)
            cost = arr(np.float64, g, -5, 1e6)
            n = fdp.ConsumeIntInRange(0, 40)
            cand_t = np.sort(arr(np.float64, n, 0, 30)) if fdp.ConsumeBool() else arr(np.float64, n, -5, 30)
            nb = fdp.ConsumeIntInRange(0, 4)
            sc = arr(np.float32, n * nb * nb, -1, 5).reshape(n, nb, nb)
            plan = t.allocate(start, end, cost, cand_t, sc, max_canvases=small(40), lam=fdp.ConsumeFloatInRange(-1, 2),
                              alpha_peak=fdp.ConsumeFloatInRange(-1, 2), anchor=["first", "center"][fdp.ConsumeIntInRange(0, 1)],
                              delta=fdp.ConsumeFloatInRange(0.01, 2))
            p, m = 2, 1
            hc, wc = nb * p * m, nb * p * m
            if which == 9 and hc > 0:
                t.pack_records(plan, np.arange(n, dtype=np.int32), cand_t, hc, wc, p, m)
                frames = arr(np.uint8, n * hc * wc * 3, 0, 255).reshape(n, hc, wc, 3)
                t.pack_canvases(plan, frames, p, m)
            elif which == 8:
                t.group_of_time(cand_t, start, end, fdp.ConsumeFloatInRange(-5, 5), fdp.ConsumeFloatInRange(-1, 2))
        elif which == 10:
            h, w, b = small(32), small(32), small(8)
            canvas = np.zeros((max(0, h), max(0, w), 3), np.uint8)
            frame = arr(np.uint8, max(0, h * w * 3), 0, 255).reshape(max(0, h), max(0, w), 3)
            k = fdp.ConsumeIntInRange(0, 8)
            t.paste_blocks(canvas, frame, arr(np.int64, k * 2, -3, 10).reshape(k, 2), arr(np.int64, k * 2, -3, 10).reshape(k, 2), b)
        else:
            t.percentile(arr(np.float64, fdp.ConsumeIntInRange(0, 100)), fdp.ConsumeFloatInRange(-50, 150))
    except (ValueError, TypeError):
        pass


#: Small configs: every stage of every mode runs, at a fraction of the default cost (as test_determinism_matrix).
TOKENIZE_CFG = dict(num_frames=16, max_canvases=4, max_pixels=12544, ovenc_slots=8, ovenc_size=64, ovenc_patch=16,
                    ovenc_topk=64, timeout_s=5.0)
TOKENIZE_MODES = ("codec_stream", "frames", "image", "ovenc_topk", "cope", "stream")
#: The tokenize seeds' control bytes: each mode; two threads; raise; the stream in 7-byte chunks; seekable; and the
#: differential (0x80) for some modes, with one thread and with two, and for the stream in 7-byte chunks (seekable:
#: the MP4 seed keeps its moov at the end).
TOKENIZE_CONTROLS = (0, 1, 2, 3, 4, 5, 0x0c, 0x15, 0x25, 0x45, 0x80, 0x89, 0x83, 0x8c, 0xe5)


def _tokenize(body: bytes, mode: str, cfg: dict, chunk: int, seekable: bool) -> tuple:
    """Tokenizes once: (one token digest per VisualTokens -- one per group for the stream tokenizer --, the error as
    (type name, message) or None). The invariants of each VisualTokens are asserted; a typed error must name the
    source."""
    import ov2_tokenizer as ov2
    from ov2_tokenizer import errors

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    if str(HERE.parent) not in sys.path:
        sys.path.append(str(HERE.parent))  # tests/: ov2_testing
    from harness import _check_tokens
    from ov2_testing import tokens_digest

    expected_source = "<stream>" if mode == "stream" else "<bytes>"
    vts: list = []
    try:
        if mode == "stream":
            st = ov2.StreamTokenizer(ov2.TokenizerConfig(schedule="stream", **cfg), keep=True, seekable=seekable)
            try:
                for i in range(0, len(body), chunk):
                    vts += st.feed(body[i:i + chunk])
                vts += st.close()
            finally:
                st.close()  # idempotent; stops the background decoder on an error
        else:
            vts = [ov2.tokenize_video(body, mode=mode, **cfg)]
        err = None
    except errors.Ov2Error as e:
        if e.source != expected_source or isinstance(e, errors.ConfigError):
            raise AssertionError(f"{mode}: error does not name the source: {e!r}") from e
        err = (type(e).__name__, str(e))
    for vt in vts:
        bad = _check_tokens(vt)
        if bad:
            raise AssertionError(f"{mode}: {bad}")
    return [tokens_digest(vt) for vt in vts], err


def tokenize_one(data: bytes) -> None:
    """Control byte: mode (low 3 bits, mod 6), threads 1 or 2 (bit 3), on_error skip / raise (bit 4), the stream's
    chunk size 1 KiB or 7 bytes (bit 5), the stream seekable (bit 6: an MP4 with its moov at the end), and the
    differential (bit 7): tokenize again with the other thread count (the stream tokenizer: the other chunk size) and
    require the same tokens and the same error; then the video bytes."""
    if len(data) < 2:
        return
    ctl, body = data[0], data[1:]
    mode = TOKENIZE_MODES[(ctl & 7) % len(TOKENIZE_MODES)]
    threads, chunk, seekable = 1 + ((ctl >> 3) & 1), (1024, 7)[(ctl >> 5) & 1], bool(ctl & 0x40)
    cfg = dict(TOKENIZE_CFG, num_threads=threads, on_error=("skip", "raise")[(ctl >> 4) & 1])
    if mode == "cope":
        cfg.update(num_frames=4, max_canvases=2)
    first = _tokenize(body, mode, cfg, chunk, seekable)
    if not ctl & 0x80:
        return
    if mode == "stream":
        other_chunk = 1024 if chunk == 7 else 7
        what, other = f"chunks of {chunk} / {other_chunk} bytes", _tokenize(body, mode, cfg, other_chunk, seekable)
    else:
        what = f"num_threads {threads} / {3 - threads}"
        other = _tokenize(body, mode, dict(cfg, num_threads=3 - threads), chunk, seekable)
    if "DecodeTimeout" in ((first[1] or ("",))[0], (other[1] or ("",))[0]):
        return  # a deadline met in one run only says how fast it ran
    if first != other:
        n = next((i for i, (a, b) in enumerate(zip(first[0], other[0])) if a != b), None)
        raise AssertionError(f"{mode}: {what} differ: {len(first[0])} / {len(other[0])} token sets, first differing "
                             f"at {n}, errors {first[1]} / {other[1]}")


TARGETS = {"decode": decode_one, "tok": tok_one, "tokenize": tokenize_one}


# ---------------------------------------------------------------------------------------------------------------
def write_seeds(d: Path, controls=(0, 1, 2, 0x45, 0x30, 0x74), images: bool = False) -> None:
    sys.path.insert(0, str(HERE))
    import corpus

    d.mkdir(parents=True, exist_ok=True)
    specs = [("a.mp4", {}), ("b.avi", dict(codec="mpeg4")), ("c.mkv", dict(codec="libx265", frames=6, options={"x265-params": "log-level=none"})),
             ("d.webm", dict(codec="libvpx-vp9", frames=6, options={"deadline": "realtime"})),
             ("e.ts", {}), ("f.h264", dict(fmt="h264")), ("g.mpg", dict(codec="mpeg2video", fmt="vob"))]
    for name, kw in specs:
        p = d / ("_" + name)
        try:
            corpus.encode(p, size=(64, 96), frames=kw.pop("frames", 8), **kw)
        except Exception:  # noqa: BLE001 - an encoder missing here
            continue
        for ctl in controls:
            (d / f"{ctl:02x}_{name}").write_bytes(bytes([ctl]) + p.read_bytes())
        p.unlink()
    if images:  # still images for the image mode (control 2) and the others
        for name, codec in (("h.png", "png"), ("i.jpg", "mjpeg")):
            p = d / ("_" + name)
            try:
                corpus.encode_image(p, codec)
            except Exception:  # noqa: BLE001 - an encoder missing here
                continue
            for ctl in (2, 0, 4):
                (d / f"{ctl:02x}_{name}").write_bytes(bytes([ctl]) + p.read_bytes())
            p.unlink()


def run_target(target: str, seconds: int, workdir: Path) -> int:
    import atheris

    with atheris.instrument_imports():
        import ov2_tokenizer  # noqa: F401
        from ov2_tokenizer import video  # noqa: F401
    global _FEATURES
    _FEATURES = atheris.instrument_func(_features)
    art = ARTIFACTS[target]
    art.mkdir(parents=True, exist_ok=True)
    args = [sys.argv[0], f"-max_total_time={seconds}", "-print_final_stats=1", "-timeout=30", "-rss_limit_mb=4096",
            f"-artifact_prefix={art}/fuzz_{target}_", "-max_len=4096" if target == "tok" else "-max_len=65536"]
    corpus_dir = workdir / f"corpus_{target}"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    if target == "decode" and not any(corpus_dir.iterdir()):
        write_seeds(corpus_dir)
    elif target == "tokenize" and not any(corpus_dir.iterdir()):
        write_seeds(corpus_dir, TOKENIZE_CONTROLS, images=True)
    args.append(str(corpus_dir))
    atheris.Setup(args, TARGETS[target])
    atheris.Fuzz()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--target", choices=sorted(TARGETS), help="run one target in this process")
    ap.add_argument("--targets", default="decode,tok,tokenize",
                    help="parent: the targets its jobs cycle through (comma-separated; default all three)")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "ov2_fuzz"))
    ap.add_argument("--replay", nargs="*")
    a = ap.parse_args()
    if a.replay is not None:
        for f in a.replay:
            name = Path(f).parent.name  # a file under a folder named like a target (tok/, tokenize/) is its input
            target = name if name in ARTIFACTS else "decode"
            TARGETS[target](Path(f).read_bytes())
            print(f"replayed {f}: ok")
        return 0
    if a.target:
        sys.argv = [sys.argv[0]]
        return run_target(a.target, a.seconds, Path(a.workdir))
    # parent: one process per job, targets alternating; sum libFuzzer's final stats
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parents[1] / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.time()
    cycle = [t for t in a.targets.split(",") if t]
    unknown = [t for t in cycle if t not in TARGETS]
    if unknown or not cycle:
        ap.error(f"--targets: unknown {unknown}, choose from {sorted(TARGETS)}")
    procs = []
    for j in range(a.jobs):
        target = cycle[j % len(cycle)]
        wd = Path(a.workdir) / f"job{j}"
        wd.parent.mkdir(parents=True, exist_ok=True)
        log = open(wd.with_suffix(".log"), "w")
        procs.append((target, subprocess.Popen([sys.executable, __file__, "--target", target, "--seconds", str(a.seconds),
                                                "--workdir", str(wd)], env=env, stdout=log, stderr=subprocess.STDOUT),
                      wd.with_suffix(".log")))
    total, crashes = 0, 0
    for target, p, logp in procs:
        rc = p.wait()
        text = Path(logp).read_text(errors="replace")
        m = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text)
        execs = int(m[-1]) if m else 0
        total += execs
        crashed = rc != 0
        crashes += crashed
        print(f"{target}: {execs} executions in {a.seconds} s, exit {rc}" + (" (CRASH: see log " + str(logp) + ")" if crashed else ""))
        if crashed:
            print(text[-4000:])
    print(f"fuzz total: {total} executions, {crashes} crashing jobs, {time.time() - t0:.0f} s wall, "
          f"{a.jobs} jobs on {os.cpu_count()} CPUs")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
