"""Bad inputs raise ov2's typed errors naming the file (DESIGN §5.10); a truncated file still yields the frames
before the cut and reports the cut; path, bytes and file-like sources give identical outputs."""
from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ov2 = pytest.importorskip("ov2_tokenizer")
av = pytest.importorskip("av")
from ov2_tokenizer import errors  # noqa: E402

from _codec_util import frame_digest, pyav_packets  # noqa: E402


def _assert_names(exc: errors.Ov2Error, name: str) -> None:
    assert isinstance(exc, errors.Ov2Error)
    assert exc.source == name
    assert str(exc).startswith(name), str(exc)
    assert exc.cause and exc.cause in str(exc)
    clone = pickle.loads(pickle.dumps(exc))  # crosses DataLoader worker boundaries intact
    assert type(clone) is type(exc) and str(clone) == str(exc)


def _open_and_read(source, **kw):
    """Opening may raise, or (for lazily detected damage) reading may: do both."""
    r = ov2.open_video(source, **kw)
    r.packets()
    for _ in r.frames():
        pass
    return r


# ---------------------------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    p = tmp_path / "does_not_exist.mp4"
    with pytest.raises(errors.VideoOpenError) as ei:
        ov2.open_video(p)
    _assert_names(ei.value, str(p))


def test_directory(tmp_path):
    d = tmp_path / "a_directory.mp4"
    d.mkdir()
    with pytest.raises(errors.VideoOpenError) as ei:
        ov2.open_video(d)
    _assert_names(ei.value, str(d))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_named_pipe_and_device_are_refused_without_blocking(tmp_path):
    """Only regular files are opened by path: a named pipe without a writer used to block in open(2) for ever (no
    timeout can act there), and a reader opens its source several times, which a pipe cannot serve. Run in a child
    process so that a regression fails on its timeout instead of hanging the suite."""
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    code = (
        "import sys, ov2_tokenizer as ov2\n"
        "from ov2_tokenizer import errors\n"
        "for p in sys.argv[1:]:\n"
        "    for call in (lambda: ov2.open_video(p, timeout_s=2.0), lambda: ov2.tokenize_video(p, mode='frames')):\n"
        "        try:\n"
        "            call()\n"
        "        except errors.VideoOpenError as e:\n"
        "            print(e.source, '|', e.cause)\n"
    )
    devices = [d for d in ("/dev/null",) if os.path.exists(d)]
    out = subprocess.run([sys.executable, "-c", code, str(fifo), *devices], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == [f"{fifo} | is a named pipe, not a regular file: pass its bytes or a file object, or feed it "
                         "to a StreamTokenizer"] * 2, out.stdout
    for d, line in zip(devices, lines[2::2]):
        assert line.startswith(f"{d} | is a character device, not a regular file"), line


def test_file_names_that_look_like_protocols_are_files(tmp_path, faststart_clip):
    """A path is opened as a file whatever it looks like: a file named ``pipe:0`` is that file, not standard input
    (which FFmpeg would read, and which here is a pipe nobody writes to), and ``http:clip.mp4`` is not a URL. In a
    child process so that a regression fails on its timeout instead of hanging the suite."""
    data = faststart_clip.path.read_bytes()
    for name in ("pipe:0", "http:clip.mp4"):
        (tmp_path / name).write_bytes(data)
    code = ("import ov2_tokenizer as ov2\n"
            "for p in ('pipe:0', 'http:clip.mp4'):\n"
            "    r = ov2.open_video(p)\n"
            "    print(p, sum(1 for _ in r.frames(with_luma=False)))\n")
    with subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=120)  # stdin stays open and empty until then
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    n = faststart_clip.num_frames
    assert out.splitlines() == [f"pipe:0 {n}", f"http:clip.mp4 {n}"], out


def test_num_threads_bounds(faststart_clip):
    for bad in (257, 10**9, True, "4", 2.0):
        with pytest.raises(errors.ConfigError, match="num_threads"):
            ov2.open_video(faststart_clip.path, num_threads=bad)
        with pytest.raises(errors.ConfigError, match="num_threads"):
            ov2.TokenizerConfig(num_threads=bad)
    assert ov2.open_video(faststart_clip.path, num_threads=np.int64(256)).num_threads == 256


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    with pytest.raises(errors.VideoOpenError) as ei:
        ov2.open_video(p)
    _assert_names(ei.value, str(p))
    with pytest.raises(errors.VideoOpenError) as ei:
        ov2.open_video(b"")
    _assert_names(ei.value, "<bytes>")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_bytes(tmp_path, seed):
    data = np.random.default_rng(seed).integers(0, 256, size=64 * 1024, dtype=np.uint8).tobytes()
    p = tmp_path / f"random_{seed}.mp4"
    p.write_bytes(data)
    with pytest.raises(errors.VideoOpenError) as ei:
        _open_and_read(p)
    _assert_names(ei.value, str(p))
    with pytest.raises(errors.VideoOpenError) as ei:
        _open_and_read(data)
    _assert_names(ei.value, "<bytes>")


@pytest.mark.parametrize("text", [
    "hello, this is not a video\n" * 200,
    "".join(f"{i},{i * i},{i % 7}\n" for i in range(2000)),  # a CSV
    "\x1b[31mred ANSI text\x1b[0m\n" * 100,  # what FFmpeg's tty demuxer would take as 'video'
])
def test_text_file(tmp_path, text):
    p = tmp_path / "notes.txt"
    p.write_text(text)
    with pytest.raises(errors.VideoOpenError) as ei:
        _open_and_read(p)
    _assert_names(ei.value, str(p))


def _write_audio(path: Path, codec: str, rate: int = 16000, seconds: float = 0.5) -> Path:
    with av.open(str(path), mode="w") as out:
        st = out.add_stream(codec, rate=rate)
        st.layout = "mono"
        n = int(rate * seconds)
        t = np.arange(n) / rate
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        fmt = "fltp" if codec == "aac" else "s16"
        if fmt == "s16":
            samples = (samples * 32767).astype(np.int16)
        block = 1024
        for i in range(0, n, block):
            frame = av.AudioFrame.from_ndarray(samples[None, i : i + block], format=fmt, layout="mono")
            frame.sample_rate = rate
            frame.pts = i
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    return path


@pytest.mark.parametrize("name,codec", [("speech.m4a", "aac"), ("tone.wav", "pcm_s16le")])
def test_audio_only_file(tmp_path, name, codec):
    p = _write_audio(tmp_path / name, codec)
    with av.open(str(p)) as c:  # the fixture really is audio-only
        assert len(c.streams.audio) == 1 and len(c.streams.video) == 0
    with pytest.raises(errors.NoVideoStreamError) as ei:
        ov2.open_video(p)
    _assert_names(ei.value, str(p))
    with pytest.raises(errors.NoVideoStreamError):
        ov2.open_video(p.read_bytes())


def test_stream_index_that_is_not_video(tmp_path, shared_videos):
    p = shared_videos / "tc_nasa_13013.mp4"
    if not p.exists():
        pytest.skip("tc_nasa_13013.mp4 (video + audio streams) not in the shared videos")
    with av.open(str(p)) as c:
        audio = [s.index for s in c.streams.audio]
    assert audio
    with pytest.raises(errors.NoVideoStreamError) as ei:
        ov2.open_video(p, stream_index=audio[0])
    _assert_names(ei.value, str(p))


# ---------------------------------------------------------------------------------------------------------------
def _remux(path: Path, dst: Path) -> Path:
    """The video stream of ``path`` copied (no re-encoding) into the container ``dst``'s suffix names."""
    with av.open(str(path)) as inp, av.open(str(dst), "w") as out:
        ist = inp.streams.video[0]
        ost = out.add_stream_from_template(ist)
        for pkt in inp.demux(ist):
            if pkt.dts is None:
                continue
            pkt.stream = ost
            out.mux(pkt)
    return dst


def _missing_decoder_video(tmp_path, faststart_clip) -> Path:
    """A Matroska file whose video track declares a codec id no FFmpeg has a decoder for: the h264 track's
    CodecID element "V_MPEG4/ISO/AVC" is rewritten in place to a same-length unknown id."""
    src = _remux(faststart_clip.path, tmp_path / "h264.mkv")
    data = src.read_bytes()
    old, new = b"V_MPEG4/ISO/AVC", b"V_OV2/NO/DECODR"
    assert len(old) == len(new) and data.count(old) == 1
    dst = tmp_path / "no_decoder.mkv"
    dst.write_bytes(data.replace(old, new))
    return dst


def test_video_stream_without_decoder(tmp_path, faststart_clip):
    p = _missing_decoder_video(tmp_path, faststart_clip)
    # Independent check that the crafted file is what we claim: a video stream PyAV cannot find a decoder for.
    with av.open(str(p)) as c:
        assert len(c.streams.video) == 1
        with pytest.raises(Exception):
            next(c.decode(video=0))
    with pytest.raises(errors.UnsupportedCodecError) as ei:
        _open_and_read(p)
    _assert_names(ei.value, str(p))


# ---------------------------------------------------------------------------------------------------------------
def _cut(faststart_clip, tmp_path, fraction: float) -> tuple[Path, int]:
    """The clip cut at ``fraction`` of its mdat; returns (path, number of packets entirely before the cut)."""
    data = faststart_clip.path.read_bytes()
    pk = pyav_packets(faststart_clip.path, 0)
    assert np.all(pk["pos"] > 0)
    moov, mdat = data.find(b"moov"), data.find(b"mdat")
    assert 0 < moov < mdat, "faststart: the index must precede the media data"
    end = int(pk["pos"][-1] + pk["size"][-1])
    cut = int(pk["pos"][0] + fraction * (end - pk["pos"][0]))
    complete = int(np.count_nonzero(pk["pos"] + pk["size"] <= cut))
    p = tmp_path / f"truncated_{int(fraction * 100)}.mp4"
    p.write_bytes(data[:cut])
    return p, complete


@pytest.mark.parametrize("fraction", [0.35, 0.7])
def test_truncated_file_yields_frames_before_the_cut(tmp_path, faststart_clip, fraction):
    """Frames whose packets lie entirely before the cut come back, identical to the intact file's; the cut is
    reported (damaged/truncated in ``stats``), and the strict policy raises CorruptVideoError after them."""
    p, complete = _cut(faststart_clip, tmp_path, fraction)
    assert 0 < complete < faststart_clip.num_frames
    full = {f.index: f for f in ov2.open_video(faststart_clip.path, num_threads=1).frames()}

    for source in (p, p.read_bytes()):
        for threads in (1, 4):
            r = ov2.open_video(source, num_threads=threads)
            got = list(r.frames())
            assert len(got) >= complete, (len(got), complete)
            assert len(got) < faststart_clip.num_frames
            for f in got[:complete]:
                assert np.array_equal(f.luma, full[f.index].luma), f"frame {f.index}"
                assert f.pts_s == full[f.index].pts_s
            assert r.stats["truncated"] or r.stats["corrupt_packets"] > 0, r.stats

    r = ov2.open_video(p, num_threads=1, on_error="raise")
    seen = 0
    with pytest.raises(errors.CorruptVideoError) as ei:
        for _ in r.frames():
            seen += 1
    _assert_names(ei.value, str(p))
    assert seen >= complete


def test_truncated_file_is_flagged_as_truncated(tmp_path, faststart_clip):
    """An MP4 cut inside its media data (an interrupted download) is reported as truncated, not only as
    'corrupt packets': ``stats["truncated"]`` and ``packets().truncated`` are set (the index lists more samples
    than the file holds)."""
    p, complete = _cut(faststart_clip, tmp_path, 0.5)
    r = ov2.open_video(p, num_threads=1)
    got = list(r.frames())
    assert len(got) >= complete
    assert r.stats["truncated"] is True, r.stats
    assert r.packets().truncated is True


def test_truncated_file_parallel_reader(tmp_path, faststart_clip):
    """num_threads > 1 on a truncated file gives the same frames and statistics as one thread."""
    p, _ = _cut(faststart_clip, tmp_path, 0.7)
    r1 = ov2.open_video(p, num_threads=1)
    one = [frame_digest(f) for f in r1.frames(with_mvs=True)]
    r4 = ov2.open_video(p, num_threads=4)
    four = [frame_digest(f) for f in r4.frames(with_mvs=True)]
    assert one == four
    assert r4.stats["truncated"] == r1.stats["truncated"]
    assert r4.stats["corrupt_packets"] == r1.stats["corrupt_packets"]


def test_header_only_file_is_not_silently_empty(tmp_path, faststart_clip):
    """Cut right after the index (moov lists 40 samples, mdat holds none): the container opens, but the reader
    must not return an empty video as if it were fine. With on_error="raise" it raises CorruptVideoError; by
    default it either raises or flags the cut."""
    data = faststart_clip.path.read_bytes()
    p = tmp_path / "header_only.mp4"
    p.write_bytes(data[: data.find(b"mdat") + 4])
    with pytest.raises(errors.CorruptVideoError) as ei:
        list(ov2.open_video(p, num_threads=1, on_error="raise").frames())
    _assert_names(ei.value, str(p))
    try:
        r = ov2.open_video(p, num_threads=1)
        frames = list(r.frames())
    except errors.CorruptVideoError as exc:
        _assert_names(exc, str(p))
    else:
        assert frames == [] and (r.stats["truncated"] or r.stats["corrupt_packets"] > 0), r.stats


def test_invalid_options(faststart_clip):
    with pytest.raises(errors.ConfigError):
        ov2.open_video(faststart_clip.path, on_error="ignore")
    with pytest.raises(errors.ConfigError):
        ov2.open_video(faststart_clip.path, num_threads=-1)
    with pytest.raises(errors.ConfigError):
        list(ov2.open_video(faststart_clip.path).frames([-1]))
    for bad in ([1.5], ["a"], [[1, 2]], [True], 5):  # were truncated to 1, or untyped ValueError / TypeError
        with pytest.raises(errors.ConfigError, match="indices"):
            list(ov2.open_video(faststart_clip.path).frames(bad))
    for bad in ((10,), "ab", (1.5, 2), (0, 5), (-1, 4), (10**6, 10**6)):  # untyped errors, truncation, std::bad_alloc
        with pytest.raises(errors.ConfigError, match="rgb_size"):
            list(ov2.open_video(faststart_clip.path).frames([0], with_rgb=True, rgb_size=bad))
    for bad in ({"x": 1}, {"kind": "ovenc", "size": 64}, {"canvas_h": "28", "canvas_w": 28, "patch": 14, "merge": 2,
                                                          "beta": 0.5}, [1]):
        with pytest.raises(errors.ConfigError, match="block_scores"):
            list(ov2.open_video(faststart_clip.path).frames([0], block_scores=bad))
    r = ov2.open_video(faststart_clip.path)
    assert [f.index for f in r.frames(np.array([3, 1, 3], np.int32), with_luma=False)] == [1, 3]
    assert [f.index for f in r.frames([10**9], with_luma=False)] == []
    with pytest.raises(errors.VideoOpenError) as ei:
        ov2.open_video(12345)
    _assert_names(ei.value, "<int>")
    with pytest.raises(errors.VideoOpenError) as ei:
        ov2.open_video(np.zeros(1000, np.uint8))  # names the type, not a repr of the data
    _assert_names(ei.value, "<ndarray>")
    assert "not ndarray" in ei.value.cause
    with pytest.raises(errors.VideoOpenError):
        ov2.open_video(io.StringIO("text mode"))


# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_damaged_media_data_never_crashes(tmp_path, faststart_clip, seed):
    """Random bytes overwritten inside the media data: reading with every product either works (damage skipped
    and counted) or raises an Ov2Error naming the file, in one and in four threads."""
    data = bytearray(faststart_clip.path.read_bytes())
    rng = np.random.default_rng(seed)
    start = data.find(b"mdat") + 8
    for pos in rng.integers(start, len(data), size=8 + 8 * seed):
        data[pos] = int(rng.integers(0, 256))
    p = tmp_path / f"damaged_{seed}.mp4"
    p.write_bytes(bytes(data))
    for threads in (1, 4):
        for policy in ("skip", "raise"):
            try:
                r = ov2.open_video(p, num_threads=threads, on_error=policy)
                n = sum(1 for _ in r.frames(with_mvs=True, with_residual=True, with_coding_cost=True))
            except errors.Ov2Error as exc:
                _assert_names(exc, str(p))
            else:
                assert n <= len(r.packets()) + 2
                if policy == "skip":
                    assert n > 0


def test_no_leak_on_repeated_reads(tmp_path, faststart_clip):
    """Errors, truncated reads, complete reads and abandoned parallel iterators, repeated: resident memory
    stays flat (a leaked decoder, frame or buffer per call would add up to many MB)."""
    psutil = pytest.importorskip("psutil")
    import gc

    p, _ = _cut(faststart_clip, tmp_path, 0.5)
    junk = np.random.default_rng(7).integers(0, 256, 32 * 1024, dtype=np.uint8).tobytes()
    good = faststart_clip.path.read_bytes()

    def one_round():
        with pytest.raises(errors.VideoOpenError):
            ov2.open_video(junk)
        list(ov2.open_video(p, num_threads=1).frames(with_mvs=True, with_residual=True))
        list(ov2.open_video(good, num_threads=2).frames(with_mvs=True, with_residual=True, with_coding_cost=True))
        it = ov2.open_video(good, num_threads=4).frames(with_mvs=True)
        next(it)
        it.close()

    proc = psutil.Process()
    for _ in range(10):
        one_round()
    gc.collect()
    before = proc.memory_info().rss
    for _ in range(80):
        one_round()
    gc.collect()
    grown = (proc.memory_info().rss - before) / 2**20
    assert grown < 12, f"RSS grew by {grown:.1f} MiB over 80 rounds"


# ---------------------------------------------------------------------------------------------------------------
def test_path_bytes_filelike_identical(int_motion_clip):
    path = int_motion_clip.path
    data = path.read_bytes()
    products = dict(with_mvs=True, with_residual=True, with_coding_cost=True)

    def run(source):
        r = ov2.open_video(source, num_threads=1)
        pk = r.packets()
        digests = [frame_digest(f) for f in r.frames(**products)]
        return r.info, pk, digests

    ref_info, ref_pk, ref_digests = run(path)
    assert len(ref_digests) == int_motion_clip.num_frames
    with open(path, "rb") as fh:
        sources = [str(path), Path(path), data, bytearray(data), memoryview(data), io.BytesIO(data), fh]
        for src in sources:
            info, pk, digests = run(src)
            assert digests == ref_digests, type(src)
            for field in ("pts_s", "dts_s", "size", "keyframe", "pict_type", "reference"):
                np.testing.assert_array_equal(getattr(pk, field), getattr(ref_pk, field))
            assert (info.codec, info.width, info.height, info.fps, info.time_base, info.num_frames) == (
                ref_info.codec, ref_info.width, ref_info.height, ref_info.fps, ref_info.time_base, ref_info.num_frames)


def test_file_replaced_between_reads_is_probed_again(tmp_path, faststart_clip):
    """A reader remembers the container format and stream parameters of its first open for the later ones (the
    packet table, frames, parallel decoders), keyed by the file's size: a file replaced by one of another size
    (here the same streams remuxed into Matroska) is probed again and read correctly."""
    mkv = _remux(faststart_clip.path, tmp_path / "remuxed.mkv")
    assert mkv.stat().st_size != faststart_clip.path.stat().st_size
    expected = [frame_digest(f) for f in ov2.open_video(mkv, num_threads=1).frames()]
    assert len(expected) == faststart_clip.num_frames

    target = tmp_path / "video"
    target.write_bytes(faststart_clip.path.read_bytes())
    for threads in (1, 2):
        r = ov2.open_video(target, num_threads=threads)
        assert r.info.container.startswith("mov")
        first = [frame_digest(f) for f in r.frames()]  # the MP4, with the remembered format on the second open
        target.write_bytes(mkv.read_bytes())
        assert [frame_digest(f) for f in r.frames()] == expected
        assert len(r.packets()) == len(expected)
        target.write_bytes(faststart_clip.path.read_bytes())
        assert [frame_digest(f) for f in r.frames()] == first


def test_reused_probe_reads_the_stream_the_probed_open_chose(tmp_path):
    """Later opens of a source reuse its first probe, which skips the frames probing decodes; av_find_best_stream
    ranks video streams by those frames, so an open that reused the probe once chose another stream than the first
    open: this fuzzed Matroska file (an unknown-codec track, then a VP9 track) was described as VP9 by `info` and
    read from the first track by `packets()` / `frames()`, which raised "no decoder for codec 'none'". Every open
    now reads the stream the probed open chose."""
    fuzzed = Path(__file__).resolve().parents[1] / "robustness" / "regressions" / (
        "fuzz_decode_crash-e7011fa06481fddeb349178630f788cf87ad166b")
    data = fuzzed.read_bytes()[1:]  # the fuzzer's control byte first
    path = tmp_path / "two_tracks.mkv"
    path.write_bytes(data)
    for src in (path, data):
        for threads in (1, 2):
            r = ov2.open_video(src, num_threads=threads)
            assert (r.info.codec, r.info.stream_index) == ("vp9", 1)
            pk = r.packets()
            frames = list(r.frames(with_mvs=True, with_residual=True))
            assert len(frames) == len(pk) == r.info.num_frames >= 1
    with pytest.raises(errors.UnsupportedCodecError) as e:
        ov2.open_video(path, stream_index=0)
    _assert_names(e.value, str(path))
