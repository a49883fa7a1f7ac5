"""Parity of ov2's reader with an independent oracle, PyAV (its own FFmpeg 8 build), on the shared real videos.

For every frame of every H.264 / MPEG-4 video stream in ../shared/videos: the motion-vector rows equal PyAV's
``export_mvs`` rows exactly (same order, ``flags`` dropped), and frame count, pts (seconds) and picture types
equal PyAV's (single-threaded PyAV decode of the same stream). Packet sizes and key flags equal PyAV's demuxer
on every shared video.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
ov2 = pytest.importorskip("ov2_tokenizer")

from _codec_util import pyav_frames, pyav_packets, shared_video_paths  # noqa: E402

MV_CODECS = ("h264", "mpeg4")


def _streams(codecs=None):
    """(path, stream_index) for every video stream of the shared videos (optionally of the given codecs)."""
    out = []
    for p in shared_video_paths():
        with av.open(str(p)) as c:
            for s in c.streams.video:
                if codecs is None or s.codec_context.codec.canonical_name in codecs:
                    out.append(pytest.param(p, s.index, id=f"{p.name}#{s.index}"))
    return out or [pytest.param(None, None, marks=pytest.mark.skip(reason="../shared/videos absent or has no such video"))]


@pytest.mark.slow
@pytest.mark.parametrize("path,stream_index", _streams(MV_CODECS))
def test_motion_vectors_pts_types_equal_pyav(path, stream_index):
    reader = ov2.open_video(path, num_threads=1, stream_index=stream_index)
    assert reader.info.stream_index == stream_index
    assert reader.info.motion_source == "codec"
    oracle = pyav_frames(path, stream_index, mvs=True)
    n = 0
    compare_luma = reader.info.bit_depth == 8
    bit_exact = reader.info.codec == "h264"  # H.264 decoding is bit-exact by the standard
    for frame, ref in zip(reader.frames(with_mvs=True), oracle):
        ctx = f"{Path(path).name}#{stream_index} frame {n}"
        assert frame.index == n, ctx
        assert frame.pict_type == ref["pict_type"], ctx
        assert frame.pts_s == ref["pts_s"] or (np.isnan(frame.pts_s) and np.isnan(ref["pts_s"])), ctx
        assert frame.keyframe == ref["key"], ctx
        mv = frame.motion_vectors
        assert mv.dtype == np.int32 and mv.ndim == 2 and mv.shape[1] == 10, ctx
        assert mv.shape == ref["rows"].shape, f"{ctx}: {mv.shape[0]} rows vs PyAV {ref['rows'].shape[0]}"
        if not np.array_equal(mv, ref["rows"]):
            bad = np.flatnonzero((mv != ref["rows"]).any(axis=1))
            pytest.fail(f"{ctx}: {bad.size} rows differ, first #{bad[0]}: ov2 {mv[bad[0]].tolist()} "
                        f"PyAV {ref['rows'][bad[0]].tolist()}")
        if compare_luma:  # the decoded pictures themselves (8-bit: ov2's luma is the Y plane)
            assert frame.luma.shape == ref["luma"].shape, ctx
            if bit_exact:
                assert np.array_equal(frame.luma, ref["luma"]), ctx
            else:  # MPEG-4 part 2's IDCT is not bit-exact: FFmpeg 5.1 and 8 differ by 1 on a few pixels
                d = np.abs(frame.luma.astype(np.int16) - ref["luma"].astype(np.int16))
                assert d.max() <= 2 and np.count_nonzero(d) <= 1e-4 * d.size, (ctx, int(d.max()), np.count_nonzero(d))
        n += 1
    rest = sum(1 for _ in oracle)
    assert rest == 0, f"PyAV decoded {rest} more frames than ov2's {n}"
    assert n > 0
    assert reader.stats["frames_decoded"] == n
    assert reader.info.num_frames == n


@pytest.mark.parametrize("path,stream_index", _streams())
def test_packets_equal_pyav_demuxer(path, stream_index):
    reader = ov2.open_video(path, stream_index=stream_index)
    pk = reader.packets()
    ref = pyav_packets(path, stream_index)
    assert len(pk) == len(ref["size"])
    assert pk.size.dtype == np.int64 and pk.pts_s.dtype == np.float64 and pk.keyframe.dtype == bool
    np.testing.assert_array_equal(pk.size, ref["size"])
    np.testing.assert_array_equal(pk.keyframe, ref["keyframe"])
    np.testing.assert_array_equal(pk.pts_s, ref["pts_s"])  # NaN == NaN here
    np.testing.assert_array_equal(pk.dts_s, ref["dts_s"])
    assert not pk.truncated and pk.read_errors == 0
    assert pk.pict_type.dtype == np.dtype("S1")
    assert set(pk.pict_type.tolist()) <= {b"I", b"P", b"B", b"?"}, set(pk.pict_type.tolist())


@pytest.mark.parametrize("path,stream_index", _streams(MV_CODECS))
def test_packet_picture_types_match_decoded_types(path, stream_index):
    """The parser's picture type of a packet (where it knows it) equals the decoder's type of the frame with the
    same pts, and the container's key packets are I-frames."""
    reader = ov2.open_video(path, num_threads=1, stream_index=stream_index)
    pk = reader.packets()
    by_pts = {f.pts_s: f.pict_type for f in reader.frames(with_luma=False)}
    assert len(by_pts) == len(pk)
    known = np.flatnonzero(pk.pict_type != b"?")
    assert known.size, "the parser gave no picture type at all"
    for i in known:
        assert pk.pict_type[i].decode() == by_pts[pk.pts_s[i]], f"packet {i} (pts {pk.pts_s[i]})"
    for i in np.flatnonzero(pk.keyframe):
        assert by_pts[pk.pts_s[i]] == "I", f"key packet {i} decodes to a non-I frame"


@pytest.mark.parametrize("path,stream_index", _streams())
def test_info_matches_pyav(path, stream_index):
    reader = ov2.open_video(path, stream_index=stream_index)
    info = reader.info
    with av.open(str(path)) as c:
        s = c.streams[stream_index]
        assert info.width == s.codec_context.width and info.height == s.codec_context.height
        assert info.time_base == s.time_base
        assert info.codec == s.codec_context.codec.canonical_name
        if s.average_rate:
            assert info.fps == pytest.approx(float(s.average_rate), rel=1e-9)
        assert info.pix_fmt == s.codec_context.format.name
        expect_source = "codec" if info.codec in ("h264", "mpeg4", "mpeg1video", "mpeg2video") else None
        if expect_source:
            assert info.motion_source == expect_source
        else:
            assert info.motion_source != "codec"
