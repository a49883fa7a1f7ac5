"""Results never depend on ``num_threads``: vectors, motion field, residual and coding cost of every frame are
identical for 1, 2 and 4 threads on every shared video (the B-frame ones included, where FFmpeg's frame
threading is known to change the exported vectors) and on a generated B-frame clip with many closed GOPs.
Frames are compared by hash to keep memory low."""
from __future__ import annotations

import numpy as np
import pytest

ov2 = pytest.importorskip("ov2_tokenizer")

from _codec_util import reader_digests, shared_video_paths  # noqa: E402

PRODUCTS = dict(with_luma=True, with_mvs=True, with_residual=True, with_coding_cost=True)


def _videos():
    vids = shared_video_paths()
    return [pytest.param(p, id=p.name) for p in vids] or [
        pytest.param(None, marks=pytest.mark.skip(reason="../shared/videos absent"))]


@pytest.mark.slow
@pytest.mark.parametrize("path", _videos())
def test_threads_do_not_change_results(path):
    ref, stats1 = reader_digests(path, num_threads=1, **PRODUCTS)
    assert len(ref) > 0 and stats1["frames_decoded"] == len(ref)
    for threads in (2, 4):
        got, stats = reader_digests(path, num_threads=threads, **PRODUCTS)
        assert len(got) == len(ref), f"{threads} threads: {len(got)} frames vs {len(ref)}"
        bad = [i for i, (a, b) in enumerate(zip(ref, got)) if a != b]
        assert not bad, f"{threads} threads: {len(bad)} frames differ, first {bad[0]}"
        assert stats["frames_decoded"] == stats1["frames_decoded"]


def test_parallel_decoding_is_exercised(shared_videos):
    """The comparison above is only meaningful if the B-frame videos really are split into parallel segments."""
    split = {}
    for p in shared_video_paths():
        r = ov2.open_video(p, num_threads=4)
        for _ in r.frames([0], with_luma=False):
            pass
        split[p.name] = (r.stats["parallel"], r.stats["segments"])
        if r.info.has_b_frames and r.info.motion_source == "codec" and r.info.num_frames > 300:
            assert r.stats["parallel"] and r.stats["segments"] >= 2, (p.name, r.stats)
    assert any(par for par, _ in split.values()), split


def test_threads_bframe_clip_with_many_gops(bframe_clip):
    ref, _ = reader_digests(bframe_clip.path, num_threads=1, **PRODUCTS)
    assert len(ref) == bframe_clip.num_frames
    for threads in (2, 3, 4, 8):
        got, stats = reader_digests(bframe_clip.path, num_threads=threads, **PRODUCTS)
        assert got == ref, f"{threads} threads"
        if threads == 2:  # products for every frame on two threads: one decoder + a product thread
            assert not stats["parallel"] and stats["pooled_products"], stats
        else:
            assert stats["parallel"] and stats["segments"] >= 2, stats
    got, stats = reader_digests(bframe_clip.path, num_threads=2, with_luma=True, with_mvs=True)
    assert stats["parallel"] and stats["segments"] >= 2, stats  # light products: two segment decoders
    assert got == reader_digests(bframe_clip.path, num_threads=1, with_luma=True, with_mvs=True)[0]


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_threads_with_index_selection(bframe_clip, threads):
    idx = [0, 4, 9, 10, 17, 29]
    full, _ = reader_digests(bframe_clip.path, num_threads=1, **PRODUCTS)
    got, _ = reader_digests(bframe_clip.path, num_threads=threads, indices=idx, **PRODUCTS)
    assert got == [full[i] for i in idx]


def test_repeated_runs_identical(bframe_clip):
    a, _ = reader_digests(bframe_clip.path, num_threads=4, **PRODUCTS)
    b, _ = reader_digests(bframe_clip.path, num_threads=4, **PRODUCTS)
    assert a == b
    assert len(set(a)) == len(a)  # frames really differ from each other (hashes are not trivially equal)
    assert np.all(np.array([len(x) for x in a]) == 40)


@pytest.fixture(scope="module")
def one_gop_bframe_clips(generated_dir):
    """The same 160x128, 40-frame one-GOP libx264 clip with B-frames, as MP4 (an index of every sample) and as
    Matroska (cues need not list every packet)."""
    pytest.importorskip("av", reason="generated test videos are encoded with PyAV (pip install av)")
    from ov2_tokenizer.samples import encode_video

    from _codec_util import paste, textured

    bg = textured(128, 160, seed=91, smooth=2)
    block = textured(32, 32, seed=92, smooth=1)

    def render(i):
        img = bg.copy()
        paste(img, block, 10 + 2 * i, 30 + i)
        return img

    opts = {"x264-params": "bframes=2:b-adapt=0:keyint=250:min-keyint=250:scenecut=0", "crf": "22", "preset": "fast"}
    return {ext: encode_video(generated_dir / f"one_gop_bframes.{ext}", 40, render, fps=25, codec="libx264",
                              options=opts) for ext in ("mp4", "mkv")}


def _reads_container_index() -> bool:
    """Whether the core can read a stream's index: libavformat >= 58.78.100 (FFmpeg 5.0) has
    avformat_index_get_entry(); FFmpeg 4.4 keeps the index in non-public fields, which ov2 does not touch."""
    compiled = ov2.build_info()["ffmpeg"]["libraries"]["libavformat"]["compiled"]
    return tuple(int(x) for x in compiled.split(".")) >= (58, 78, 100)


def test_index_without_a_second_key_frame_skips_the_packet_prepass(one_gop_bframe_clips, bframe_clip):
    """Segments start at key frames: an MP4 whose index lists one key frame cannot be split, and with B-frames
    frame threads are ruled out too, so a full read on several threads does not demux the packets up front
    (``stats["packet_prepass"]``) — and still equals one thread. Where the index is not complete (Matroska), a
    sparse request on H.264 (the skip plan) or a video with several GOPs, the pre-pass runs as before. Built against
    FFmpeg 4.4, the core cannot read the index, so the pre-pass is not skipped for it (same frames)."""
    mp4, mkv = one_gop_bframe_clips["mp4"], one_gop_bframe_clips["mkv"]
    skips = _reads_container_index()
    ref, stats1 = reader_digests(mp4, num_threads=1, **PRODUCTS)
    assert len(ref) == 40 and not stats1["packet_prepass"]
    assert ov2.open_video(mp4).info.has_b_frames
    for threads in (2, 4):
        for products in (PRODUCTS, dict(with_luma=False), dict(with_luma=False, with_mvs=True)):
            got, stats = reader_digests(mp4, num_threads=threads, **products)
            assert stats["segments"] == 1 and not stats["frame_threads"], stats
            assert not (skips and stats["packet_prepass"]), stats
            if products is PRODUCTS:
                assert got == ref
    got, stats = reader_digests(mkv, num_threads=2, with_luma=False, with_mvs=True)
    assert stats["packet_prepass"], stats
    assert len(got) == 40
    idx = [3, 17, 30]
    got, stats = reader_digests(mp4, num_threads=2, indices=idx, **PRODUCTS)
    assert stats["packet_prepass"] and got == [ref[i] for i in idx], stats
    _, stats = reader_digests(bframe_clip.path, num_threads=2, with_luma=False, with_mvs=True)
    assert stats["packet_prepass"] and stats["segments"] >= 2, stats


def test_pixels_the_decoder_never_wrote_do_not_depend_on_threads():
    """A fuzzed H.264 stream (tests/robustness/regressions/fuzz_decode_crash-9f72…: 8 frames, no error flagged)
    whose last picture is predicted from pixels FFmpeg never wrote: it conceals a frame_num gap after recovery
    without a picture to copy, so the gap picture keeps what its reused buffer held. With two threads the product
    tasks released earlier frames at times of their own, which changed that content: frame 7's luma and RGB came
    out as one of three pictures (about half the reads differed from one thread's). Picture buffers of reads with
    products now start zeroed (docs/decoding.md "Picture buffers"): every read gives the same bytes."""
    import hashlib
    from pathlib import Path

    data = (Path(__file__).resolve().parents[1] / "robustness" / "regressions" /
            "fuzz_decode_crash-9f72ea707679da713ed5a56fbfa31de5921fa80a").read_bytes()[1:]
    kw = dict(with_rgb=True, with_mvs=True, with_residual=True, with_coding_cost=True)

    def digest(threads):
        out = []
        for f in ov2.open_video(data, num_threads=threads).frames(**kw):
            h = hashlib.blake2b(digest_size=16)
            for a in (f.luma, f.rgb, f.residual, f.coding_cost, f.motion_vectors):
                h.update(a.tobytes())
            out.append(h.hexdigest())
        return out

    ref = digest(1)
    assert len(ref) == 8
    for threads in (2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 4, 4):
        assert digest(threads) == ref, threads


def test_pixels_never_written_do_not_depend_on_what_a_read_asks_for():
    """An 18-byte H.261 stream found by fuzzing (tests/robustness/regressions/fuzz_decode_crash-4c18…): its second
    picture shows pixels the decoder never wrote. When only reads with products zeroed their buffers, a read with
    products saw zeros there and a plain read the pool's grey, and the motion estimated from those pixels differed
    (99 vector rows against none). Every read now zeroes its buffers: the same pixels and vectors whatever it asks."""
    from pathlib import Path

    data = (Path(__file__).resolve().parents[1] / "robustness" / "regressions" /
            "fuzz_decode_crash-4c185fd08a677ade5fb8e122da1f97b3bf703e58").read_bytes()[1:]
    reads = [dict(with_luma=True), dict(with_luma=True, with_mvs=True),
             dict(with_luma=True, with_mvs=True, with_residual=True, with_coding_cost=True)]
    got = [[(f.luma.tobytes(), None if f.motion_vectors is None else f.motion_vectors.tobytes())
            for f in ov2.open_video(data, num_threads=1, on_error="repeat").frames(**kw)] for kw in reads]
    assert len(got[0]) == 2
    assert [p for p, _ in got[0]] == [p for p, _ in got[1]] == [p for p, _ in got[2]]
    assert [m for _, m in got[1]] == [m for _, m in got[2]]


def test_raw_palette_pictures_from_short_packets_are_the_same_on_every_read():
    """A fuzzed AVI holding one 8-bit palette picture in a packet shorter than the picture
    (tests/robustness/regressions/fuzz_decode_crash-ac22…): FFmpeg's raw decoder unpacks such pictures into a buffer
    it allocates itself and writes only what the packet holds, so the rest was uninitialised memory -- another
    picture on nearly every read, whatever num_threads. ov2 pads such packets with zeros (docs/decoding.md)."""
    from pathlib import Path

    from ov2_tokenizer import errors

    data = (Path(__file__).resolve().parents[1] / "robustness" / "regressions" /
            "fuzz_decode_crash-ac223e24ca79e31c1cb331b7d2d77a84b75bfd82").read_bytes()[1:]
    seen = set()
    for threads in (1, 2, 1, 2, 1, 2):
        r = ov2.open_video(data, num_threads=threads, on_error="raise")
        assert (r.info.codec, r.info.pix_fmt) == ("rawvideo", "pal8")
        frames = []
        with pytest.raises(errors.CorruptVideoError, match="truncated"):
            for f in r.frames(with_mvs=True, with_residual=True, with_coding_cost=True, with_rgb=True):
                frames.append(f)
        assert len(frames) == 1
        seen.add((frames[0].luma.tobytes(), frames[0].rgb.tobytes()))
    assert len(seen) == 1
