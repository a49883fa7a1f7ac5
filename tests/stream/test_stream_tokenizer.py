"""StreamTokenizer (issue #10, docs/streaming.md): incremental bytes in, closed groups out, identical to
tokenize_video(schedule="stream") on the finished file, bounded memory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import ov2_tokenizer as ov2
from ov2_tokenizer import errors
from ov2_tokenizer.stream import StreamTokenizer
from ov2_testing import shared_video_paths

sys.path.insert(0, str(Path(__file__).parent))
from stream_media import make_video  # noqa: E402

CFG = ov2.TokenizerConfig(schedule="stream")


def feed_chunks(st: StreamTokenizer, data: bytes, chunk: int = 4096):
    """Feeds data in chunks; returns (groups, byte offset at which the first group came out or None)."""
    groups, first = [], None
    for i in range(0, len(data), chunk):
        got = st.feed(data[i:i + chunk])
        if got and first is None:
            first = i + chunk
        groups += got
    groups += st.close()
    return groups, first


def check_pieces(groups, whole):
    """Emitted pieces are self-contained (their canvas indices count their own canvases, so each piece's patches are
    the whole's rows), carry global group and time indices and concatenate to the whole-file result."""
    canvas0, row0 = 0, 0
    whole_patches = whole.patches()
    for k, g in enumerate(groups):
        assert g.groups["start_s"].shape == (1,)
        assert torch.all(g.group == k)
        assert g.meta["first_canvas"] == canvas0
        assert int(g.canvas.min()) == 0 and int(g.canvas.max()) == g.num_canvases - 1
        assert torch.equal(g.canvas + canvas0, whole.canvas[row0:row0 + g.num_tokens])
        assert torch.equal(g.patches(), whole_patches[row0:row0 + g.num_tokens])
        assert g.model_inputs()["pixel_values"].shape[0] == g.num_tokens
        assert g.canvas_kind[0] == 0 and torch.all(g.canvas_kind[1:] == 1)  # [I, P, ...]
        assert int(g.groups["num_p"][0]) == g.num_canvases - 1 >= 0
        canvas0 += g.num_canvases
        row0 += g.num_tokens
    assert canvas0 == whole.num_canvases and row0 == whole.num_tokens
    assert torch.equal(torch.cat([g.pos_thw for g in groups]), whole.pos_thw)


@pytest.fixture(scope="module")
def clips():
    return {
        "ts": make_video(20),
        "frag": make_video(20, container="mp4", movflags="frag_keyframe+empty_moov"),
        "faststart": make_video(20, container="mp4", movflags="+faststart"),
        "moov_at_end": make_video(20, container="mp4"),
    }


@pytest.mark.parametrize("kind", ["ts", "frag", "faststart"])
def test_4k_chunks_equal_tokenize_video_non_seekable(clips, kind):
    path = clips[kind]
    whole = ov2.tokenize_video(path, mode="codec_stream", config=CFG)
    assert whole.meta["schedule"] == "stream" and whole.num_canvases >= 8
    st = StreamTokenizer(CFG, name=f"cam-{kind}", keep=True)
    groups, _ = feed_chunks(st, path.read_bytes())
    assert len(groups) == int(whole.groups["start_s"].shape[0]) >= 3
    assert st.result().equal(whole)
    check_pieces(groups, whole)
    # non-seekable: what was read is discarded (the clip is < 1 MiB, so at most the unread tail plus 1 MiB is held)
    assert st.stats["bytes_fed"] == path.stat().st_size
    assert st.stats["late_packets"] == 0


@pytest.mark.parametrize("kind", ["faststart", "moov_at_end"])
def test_irregular_chunks_split_box_headers(clips, kind):
    """1-byte chunks over the first boxes (headers split across feeds), then random sizes: same tokens, and the
    moov-after-mdat check still fires."""
    data = clips[kind].read_bytes()
    rng = np.random.default_rng(5)
    sizes = [1] * 200 + rng.integers(1, 30_000, 200).tolist()
    st = StreamTokenizer(CFG, keep=True)

    def run():
        pos, k = 0, 0
        while pos < len(data):
            n = sizes[k] if k < len(sizes) else 50_000
            st.feed(memoryview(data)[pos:pos + n])
            pos, k = pos + n, k + 1
        st.close()

    if kind == "moov_at_end":
        with pytest.raises(errors.VideoOpenError, match="moov"):
            run()
        return
    run()
    assert st.result().equal(ov2.tokenize_video(clips[kind], config=CFG))


def test_slot_temporal_coordinate_is_global(clips):
    cfg = CFG.replace(temporal_coord="slot", anchor="center", energy="log1p")
    whole = ov2.tokenize_video(clips["ts"], config=cfg)
    st = StreamTokenizer(cfg, keep=True)
    groups, _ = feed_chunks(st, clips["ts"].read_bytes(), chunk=1000)
    assert st.result().equal(whole)
    # slots of real tokens grow across groups (global candidate slots, not per-group positions)
    firsts = [int(g.pos_thw[0, 0]) for g in groups]
    assert firsts == sorted(firsts) and firsts[-1] > 0


def test_moov_at_end_needs_seekable(clips):
    data = clips["moov_at_end"].read_bytes()
    st = StreamTokenizer(CFG, name="cam-moov")
    with pytest.raises(errors.VideoOpenError, match="moov") as ei:
        feed_chunks(st, data)
    assert "cam-moov" in str(ei.value) and "seekable=True" in str(ei.value)
    whole = ov2.tokenize_video(clips["moov_at_end"], config=CFG)
    st = StreamTokenizer(CFG, seekable=True, keep=True)
    feed_chunks(st, data)
    assert st.result().equal(whole)
    assert st.stats["bytes_held"] == len(data)  # seekable keeps every byte (documented)


def test_groups_are_emitted_before_the_end_of_input(clips):
    data = clips["ts"].read_bytes()
    st = StreamTokenizer(CFG, max_pending_bytes=8192)
    groups, first = feed_chunks(st, data)
    # the first group (<= 6 s of a 20 s clip) closes long before the input ends
    assert first is not None and first < 0.6 * len(data), (first, len(data))
    assert len(groups) >= 3


@pytest.mark.parametrize("path", shared_video_paths()[:6] or [None], ids=lambda p: getattr(p, "name", "none"))
def test_shared_videos(path):
    if path is None:
        pytest.skip("../shared/videos is absent")
    try:
        whole = ov2.tokenize_video(path, config=CFG)
    except errors.Ov2Error as exc:
        pytest.skip(f"not tokenizable: {exc}")
    data = path.read_bytes()
    st = StreamTokenizer(CFG, name=path.name, keep=True)
    try:
        feed_chunks(st, data)
    except errors.VideoOpenError as exc:  # a plain MP4: moov after mdat needs seekable=True
        assert "moov" in str(exc)
        st = StreamTokenizer(CFG, name=path.name, keep=True, seekable=True)
        feed_chunks(st, data)
    assert st.result().equal(whole)


def test_from_path_growing_file(tmp_path, clips):
    src = clips["ts"].read_bytes()
    target = tmp_path / "live.ts"
    target.write_bytes(src[:50_000])

    def writer():
        with open(target, "ab") as fh:
            for i in range(50_000, len(src), 40_000):
                time.sleep(0.05)
                fh.write(src[i:i + 40_000])
                fh.flush()

    th = threading.Thread(target=writer)
    th.start()
    try:
        st = StreamTokenizer.from_path(target, follow=True, poll_s=0.02, idle_timeout_s=1.5, keep=True,
                                       config=CFG, chunk_size=8192)
        groups = list(st)
    finally:
        th.join()
    assert target.stat().st_size == len(src)
    whole = ov2.tokenize_video(target, config=CFG)
    assert st.result().equal(whole) and len(groups) == int(whole.groups["num_p"].shape[0])
    # without follow: reads what is there and stops
    st2 = StreamTokenizer.from_path(target, keep=True, config=CFG)
    list(st2)
    assert st2.result().equal(whole)
    with pytest.raises(errors.VideoOpenError, match="no such file"):
        StreamTokenizer.from_path(tmp_path / "missing.ts")


def test_truncated_stream(clips):
    data = clips["ts"].read_bytes()
    cut = data[: len(data) // 2 + 777]  # mid-packet
    st = StreamTokenizer(CFG, keep=True)
    groups, _ = feed_chunks(st, cut)
    assert groups, "the decodable half still gives groups"
    whole_cut = ov2.tokenize_video(cut, config=CFG)
    assert st.result().equal(whole_cut)
    assert float(st.result().groups["end_s"][-1]) < 12.0

    # a faststart MP4 cut short: the sample table promises more, on_error="raise" says so
    fast = clips["faststart"].read_bytes()
    st = StreamTokenizer(CFG.replace(on_error="raise"), name="cut.mp4")
    with pytest.raises(errors.CorruptVideoError, match="cut.mp4"):
        feed_chunks(st, fast[: len(fast) // 2])
    # default (skip): the decoded part is tokenized
    st = StreamTokenizer(CFG)
    assert feed_chunks(st, fast[: len(fast) // 2])[0]


def test_corrupt_and_empty_input():
    st = StreamTokenizer(CFG, name="junk")
    rng = np.random.default_rng(0)
    with pytest.raises(errors.VideoOpenError, match="junk"):
        feed_chunks(st, rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes())
    st = StreamTokenizer(CFG, name="nothing")
    with pytest.raises(errors.VideoOpenError, match="empty"):
        st.close()
    with pytest.raises(errors.VideoOpenError):
        ov2.tokenize_video(b"\x00" * 1000, config=CFG)


def test_corrupted_bytes_mid_stream(clips):
    data = bytearray(clips["ts"].read_bytes())
    rng = np.random.default_rng(1)
    for pos in rng.integers(len(data) // 3, len(data), 40):
        data[pos:pos + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    st = StreamTokenizer(CFG, keep=True)
    groups, _ = feed_chunks(st, bytes(data))
    assert groups and st.result().equal(ov2.tokenize_video(bytes(data), config=CFG))
    st = StreamTokenizer(CFG.replace(on_error="raise"), name="damaged")
    with pytest.raises(errors.CorruptVideoError, match="damaged"):
        feed_chunks(st, bytes(data))


def test_api_errors(clips):
    with pytest.raises(errors.ConfigError, match="schedule"):
        StreamTokenizer(ov2.TokenizerConfig())  # the global schedule needs the whole video
    with pytest.raises(errors.ConfigError, match="accumulate"):
        StreamTokenizer(CFG.replace(accumulate="interval"))
    with pytest.raises(errors.ConfigError):
        ov2.TokenizerConfig(schedule="live")
    with pytest.raises(errors.ConfigError):
        ov2.TokenizerConfig(schedule="stream", candidate_fps=0)
    st = StreamTokenizer(CFG)
    feed_chunks(st, clips["ts"].read_bytes())
    with pytest.raises(errors.ConfigError, match="keep=True"):
        st.result()
    with pytest.raises(errors.ConfigError, match="after close"):
        st.feed(b"more")
    with StreamTokenizer(CFG) as st:
        for bad in ("text", 5, None):  # a clear TypeError, not pybind11's overload listing
            with pytest.raises(TypeError, match="feed\\(\\) takes bytes"):
                st.feed(bad)
    with StreamTokenizer(CFG) as st:  # abort mid-stream joins the decoder thread
        st.feed(clips["ts"].read_bytes()[:100_000])
    assert st.close() == []


def test_schedule_properties(clips):
    vt = ov2.tokenize_video(clips["ts"], config=CFG.replace(stream_max_p_canvases=4))
    g = vt.meta["partition"]
    starts, ends = np.asarray(g["start"]), np.asarray(g["end"])
    assert starts[0] == 0 and np.all(starts[1:] == ends[:-1] + 1)  # contiguous bins
    lens = ends - starts + 1
    assert np.all(lens[:-1] >= 3) and np.all(lens[:-1] <= 12)  # [L_min, L_max] with Δ = 0.5, 1.5 s .. 6 s
    num_p = vt.groups["num_p"].numpy()
    assert num_p.min() >= 1 and num_p.max() <= 4
    # look-ahead: each group was decided with at most L_max bins past its first bin complete (+ the bin of the
    # candidate that completed them: candidates come every 1 / candidate_fps = 1 bin)
    st = StreamTokenizer(CFG, keep=True)
    groups, _ = feed_chunks(st, clips["ts"].read_bytes())
    for g in groups[:-1]:
        p = g.meta["partition"]
        assert g.meta["decided_with_bins"] <= p["start"][0] + 12 + 1, g.meta
        assert g.meta["decided_with_bins"] > p["end"][0]
    # candidates at 2 per second: 20 s -> 40
    assert len(vt.meta["candidates"]) == 40
    assert vt.num_canvases == int((num_p + 1).sum())


MEM_SCRIPT = r"""
import json, os, resource, sys
import torch  # noqa: F401
from ov2_tokenizer.stream import StreamTokenizer
PAGE = os.sysconf("SC_PAGE_SIZE")
def rss_kb():  # the current resident set (ru_maxrss is a high-water mark that the imports already set)
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE // 1024
path = sys.argv[1]
st = StreamTokenizer(name=path)
base = rss_kb()
peak = base
groups = held = 0
with open(path, "rb") as fh:
    while True:
        chunk = fh.read(1 << 16)
        if not chunk:
            break
        groups += len(st.feed(chunk))
        held = max(held, st.stats["bytes_held"])
        peak = max(peak, rss_kb())
groups += len(st.close())
peak = max(peak, rss_kb())
print(json.dumps({"base_kb": base, "peak_kb": peak, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "groups": groups, "max_bytes_held": held, "candidates": st.stats["num_candidates"]}))
"""


def _peak(path: Path) -> dict:
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-c", MEM_SCRIPT, str(path)], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_memory_is_bounded_30_minutes_vs_1_minute():
    short = make_video(60, fps=10)
    long = make_video(1800, fps=10)  # 30 minutes, 18,000 frames, ~23 MB (generated once, cached)
    a, b = _peak(short), _peak(long)
    print(f"\nRSS sampled after every feed: 1 min peak {a['peak_kb'] / 1024:.1f} MiB (start {a['base_kb'] / 1024:.1f}), "
          f"30 min peak {b['peak_kb'] / 1024:.1f} MiB (start {b['base_kb'] / 1024:.1f}); ru_maxrss {a['maxrss_kb'] / 1024:.1f}"
          f" / {b['maxrss_kb'] / 1024:.1f} MiB; groups {a['groups']} / {b['groups']}; "
          f"max bytes held {a['max_bytes_held']} / {b['max_bytes_held']}")
    assert b["candidates"] == 3600 and b["groups"] > 20 * a["groups"]
    assert b["peak_kb"] <= 1.2 * a["peak_kb"]
    assert b["maxrss_kb"] <= 1.2 * a["maxrss_kb"]
    # the part above the start does not grow with the stream either (a leak of ~1 KB per frame would show)
    assert b["peak_kb"] - b["base_kb"] <= 1.5 * (a["peak_kb"] - a["base_kb"]) + 8 * 1024
    assert b["max_bytes_held"] <= (2 << 20) + (1 << 16)  # non-seekable: read bytes are discarded


def _with_gaps(src: Path, dst: Path, gaps: dict) -> Path:
    """``src``'s packets remuxed to Matroska with every packet from index k on shifted by ``gaps[k]`` seconds."""
    av = pytest.importorskip("av")
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ist = inp.streams.video[0]
        ost = out.add_stream_from_template(ist)
        shift = 0
        for k, pkt in enumerate(p for p in inp.demux(ist) if p.dts is not None):
            shift += int(round(gaps.get(k, 0) / float(pkt.time_base)))
            pkt.pts += shift
            pkt.dts += shift
            pkt.stream = ost
            out.mux(pkt)
    return dst


@pytest.mark.parametrize("gaps", [{1: 400.0}, {90: 333.3, 300: 1500.0}, {599: 900.0}])
def test_timestamp_gaps_are_jumped_with_the_same_groups(clips, tmp_path, gaps, monkeypatch):
    """A stretch of bins without packets or frames closes empty groups merged forward; the schedule jumps over them
    at once (a file whose timestamps jumped by 3·10^8 s took hours one step at a time). The groups equal the
    step-by-step loop's, with a gap right after the first frame (no energy yet: θ = 0), mid-stream and at the end."""
    from ov2_tokenizer import stream as stream_mod

    path = _with_gaps(clips["ts"], tmp_path / "gaps.mkv", gaps)
    fast = ov2.tokenize_video(path, mode="codec_stream", config=CFG)
    st = StreamTokenizer(CFG, name="gaps", keep=True)
    groups, _ = feed_chunks(st, path.read_bytes())
    check_pieces(groups, fast)
    monkeypatch.setattr(stream_mod._Schedule, "_skip_empty", lambda self, avail: False)
    slow = ov2.tokenize_video(path, mode="codec_stream", config=CFG)
    assert fast.equal(slow)
    assert torch.equal(fast.groups["start_s"], slow.groups["start_s"])
    assert torch.equal(fast.groups["end_s"], slow.groups["end_s"])
    assert fast.groups["end_s"][-1] - fast.groups["start_s"][0] >= sum(gaps.values())


def test_months_between_two_frames_is_refused_at_once():
    """A 60-byte H.264 stream found by fuzzing: two frames whose times lie 224 days apart. The global schedule
    partitioned its 7.8·10^7 empty bins (12 s, 3.9 GB); the bound of 2^20 bins (64 per packet beyond) refuses it
    with a typed error naming the source, at once."""
    data = (Path(__file__).resolve().parents[1] / "robustness" / "regressions" / "tokenize" /
            "fuzz_tokenize_slow-unit-77033760156284425e65ed9e813f2499ebac9ba0").read_bytes()[1:]
    t = time.perf_counter()
    with pytest.raises(errors.CorruptVideoError, match="more than 1048576") as ei:
        ov2.tokenize_video(data, mode="codec_stream", max_canvases=4, num_frames=16)
    assert time.perf_counter() - t < 5 and ei.value.source == "<bytes>"
    vt = ov2.tokenize_video(data, mode="frames", num_frames=4)  # the frames themselves are fine
    assert vt.num_tokens > 0


def test_huge_timestamp_gap_is_typed_or_fast(clips, tmp_path):
    """3·10^8 s between two packets: the global schedule refuses the 6·10^8 bins with a typed error naming the file,
    the streaming schedule jumps the gap (it hung before)."""
    path = _with_gaps(clips["ts"], tmp_path / "huge.mkv", {300: 3e8})
    with pytest.raises(errors.CorruptVideoError, match="bins of bin_s=0.5 for .* packets, more than") as ei:
        ov2.tokenize_video(path, mode="codec_stream", max_canvases=8)
    assert ei.value.source == str(path)
    t = time.perf_counter()
    vt = ov2.tokenize_video(path, mode="codec_stream", config=CFG)
    assert time.perf_counter() - t < 60 and vt.num_canvases >= 2
