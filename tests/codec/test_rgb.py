"""Frame RGB (csrc/codec/rgb.cpp, docs/decoding.md "Frame RGB"): swscale resizes the planes as 8-bit 4:4:4, ov2
converts with the frame's matrix and range in Q16 fixed point.

Flat-colour clips coded losslessly make the expectation exact: every decoded sample is the one written, so each
RGB pixel must equal the conversion of that (Y, U, V) — at the native size and resized (a bilinear resize of a
constant plane is the constant) — and lie within 1 of the exact BT.601/BT.709 value. A textured clip checks that
the resize and the chroma handling stay close to swscale's own RGB conversion."""
from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av")
ov2 = pytest.importorskip("ov2_tokenizer")

# (Y, U, V) of each frame: greys, saturated colours, the limited-range extremes and values outside them.
TRIPLES = [(16, 128, 128), (235, 128, 128), (128, 128, 128), (81, 90, 240), (145, 54, 34), (41, 240, 110),
           (0, 0, 0), (255, 255, 255), (200, 20, 230), (60, 200, 30)]
KR_KB = {"bt709": (0.2126, 0.0722), "bt470bg": (0.299, 0.114)}
Q16 = {  # the coefficients of csrc/codec/rgb.h, written out independently: (ys, yo, c0, c1, c2, c3)
    ("bt709", True): (65536, 0, 103206, 12276, 30679, 121609),
    ("bt709", False): (76309, 16, 117489, 13975, 34925, 138438),
    ("bt470bg", True): (65536, 0, 91881, 22553, 46802, 116130),
    ("bt470bg", False): (76309, 16, 104597, 25675, 53279, 132201),
}


def _flat_clip(path, matrix: str, full: bool, size=(48, 80), pix_fmt: str = "yuv420p"):
    h, w = size
    with av.open(str(path), mode="w", options={"fflags": "+bitexact"}) as out:
        st = out.add_stream("libx264", rate=10)
        st.width, st.height = w, h
        st.pix_fmt = pix_fmt  # the range is signalled (VUI), the samples are written as they are
        st.codec_context.color_range = 2 if full else 1  # AVCOL_RANGE_JPEG / MPEG
        st.options = {"qp": "0", "g": "4", "bf": "0",
                      "x264-params": f"colormatrix={matrix}:range={'pc' if full else 'tv'}"}
        for k, (y, u, v) in enumerate(TRIPLES):
            yuv = np.empty((h * 3 // 2, w), np.uint8)
            yuv[:h] = y
            yuv[h:].reshape(-1)[: (h // 2) * (w // 2)] = u
            yuv[h:].reshape(-1)[(h // 2) * (w // 2):] = v
            fr = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            fr.pts = k
            for p in st.encode(fr):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    return path


def _q16(y, u, v, matrix, full):
    ys, yo, c0, c1, c2, c3 = Q16[(matrix, full)]
    yy, u, v = (y - yo) * ys, u - 128, v - 128
    ch = [(yy + c0 * v + 32768) >> 16, (yy - c1 * u - c2 * v + 32768) >> 16, (yy + c3 * u + 32768) >> 16]
    return [min(255, max(0, c)) for c in ch]


def _exact(y, u, v, matrix, full):
    kr, kb = KR_KB[matrix]
    kg = 1 - kr - kb
    s = 1.0 if full else 255.0 / 224.0
    yy = y if full else (y - 16) * 255.0 / 219.0
    u, v = (u - 128) * s, (v - 128) * s
    ch = [yy + 2 * (1 - kr) * v, yy - 2 * (1 - kb) * kb / kg * u - 2 * (1 - kr) * kr / kg * v, yy + 2 * (1 - kb) * u]
    return [min(255.0, max(0.0, round(c))) for c in ch]


@pytest.mark.parametrize("matrix", ["bt709", "bt470bg"])
@pytest.mark.parametrize("full", [False, True], ids=["limited", "full"])
@pytest.mark.parametrize("rgb_size", [None, (30, 52)], ids=["native", "resized"])
def test_flat_colour_is_the_conversion_of_its_sample(tmp_path, matrix, full, rgb_size):
    path = _flat_clip(tmp_path / f"flat_{matrix}_{full}.mp4", matrix, full)
    video = ov2.open_video(path)
    assert (video.info.color_matrix, video.info.color_range) == (
        "bt709" if matrix == "bt709" else "bt601", "full" if full else "limited")
    frames = list(video.frames(with_luma=True, with_rgb=True, rgb_size=rgb_size))
    assert len(frames) == len(TRIPLES)
    for f, (y, u, v) in zip(frames, TRIPLES):
        assert (f.luma == y).all(), "the lossless clip must decode to the written samples"
        want = np.array(_q16(y, u, v, matrix, full), np.uint8)
        assert f.rgb.shape == ((48, 80, 3) if rgb_size is None else (*rgb_size, 3))
        assert (f.rgb == want).all(), (f.index, (y, u, v), np.unique(f.rgb.reshape(-1, 3), axis=0)[:4], want)
        assert np.abs(want.astype(float) - _exact(y, u, v, matrix, full)).max() <= 1


@pytest.mark.parametrize("pix_fmt", ["yuv422p", "yuv444p"])
def test_flat_colour_other_chroma_layouts(tmp_path, pix_fmt):
    """4:2:2 and 4:4:4 pictures take the same path (swscale to 4:4:4 at the output size, then the conversion)."""
    path = _flat_clip(tmp_path / f"flat_{pix_fmt}.mp4", "bt709", False, pix_fmt=pix_fmt)
    frames = list(ov2.open_video(path).frames(with_luma=True, with_rgb=True, rgb_size=(30, 52)))
    assert len(frames) == len(TRIPLES)
    for f, (y, u, v) in zip(frames, TRIPLES):
        assert (f.luma == y).all()
        assert (f.rgb == np.array(_q16(y, u, v, "bt709", False), np.uint8)).all(), (f.index, (y, u, v))


def test_textured_rgb_is_close_to_swscale_rgb(int_motion_clip):
    """The same pictures through PyAV's swscale RGB24 (4:2:0 chroma, its own rounding): close on average, with
    no channel swapped or range misread (those would differ by tens of levels)."""
    with av.open(str(int_motion_clip.path)) as c:
        ref = [fr.to_ndarray(format="rgb24").astype(np.int16) for fr in c.decode(video=0)]
    got = [f.rgb.astype(np.int16) for f in ov2.open_video(int_motion_clip.path).frames(with_luma=False, with_rgb=True)]
    assert len(got) == len(ref)
    diff = np.abs(np.stack(got) - np.stack(ref))
    assert diff.mean() < 2.0, diff.mean()
    assert np.percentile(diff, 99) <= 16, np.percentile(diff, 99)


@pytest.mark.parametrize("rgb_size", [None, (42, 70), (130, 200)], ids=["native", "down", "up"])
def test_rgb_does_not_depend_on_the_cpus_simd(int_motion_clip, rgb_size):
    """swscale picks SIMD code by CPU; in its bit-exact mode that code gives the C code's bytes (without it a 720p
    resize differs in about a third of its pixels). Forcing FFmpeg's plain C code must not change one byte."""
    from ov2_tokenizer._native import core

    def read():
        return [f.rgb.tobytes() for f in ov2.open_video(int_motion_clip.path, num_threads=1).frames(
            with_luma=False, with_rgb=True, rgb_size=rgb_size)]

    simd = read()
    core.force_cpu_flags(0)
    try:
        plain = read()
    finally:
        core.force_cpu_flags(-1)
    assert len(plain) == len(simd) == int_motion_clip.num_frames
    assert plain == simd


@pytest.mark.parametrize("matrix", ["bt709", "bt470bg"])
@pytest.mark.parametrize("full", [False, True], ids=["limited", "full"])
def test_every_triple_converts_by_the_q16_expressions_in_both_builds(matrix, full):
    """All 2^24 (Y, U, V) triples through the core's row conversion, its AVX2 build (16 pixels per step, saturating
    packs, byte-shuffle interleave) and its baseline build, against the Q16 expressions written out here in numpy.
    Rows are 263 pixels wide, so each row also ends in the scalar tail of the AVX2 build."""
    from ov2_tokenizer._native import core

    ys, yo, c0, c1, c2, c3 = Q16[(matrix, full)]
    name = "bt709" if matrix == "bt709" else "bt601"
    width = 263
    ycol = (np.arange(width) % 256).astype(np.uint8)
    builds = [True, False] if core.yuv_to_rgb_has_simd() else [False]
    for u0 in range(0, 256, 64):  # 64 U values x 256 V values per chunk
        uu, vv = np.meshgrid(np.arange(u0, u0 + 64), np.arange(256), indexing="ij")
        u = np.repeat(uu.reshape(-1, 1), width, axis=1).astype(np.uint8)
        v = np.repeat(vv.reshape(-1, 1), width, axis=1).astype(np.uint8)
        y = np.broadcast_to(ycol, u.shape)
        yy = (y.astype(np.int64) - yo) * ys
        ui, vi = u.astype(np.int64) - 128, v.astype(np.int64) - 128
        want = np.stack([(yy + c0 * vi + 32768) >> 16, (yy - c1 * ui - c2 * vi + 32768) >> 16,
                         (yy + c3 * ui + 32768) >> 16], axis=-1).clip(0, 255).astype(np.uint8)
        for simd in builds:
            got = core.yuv_to_rgb_rows(y, u, v, name, full, simd)
            bad = np.argwhere((got != want).any(axis=-1))
            assert bad.size == 0, (simd, [(int(y[r, c]), int(u[r, c]), int(v[r, c]), got[r, c].tolist(),
                                           want[r, c].tolist()) for r, c in bad[:3]])


def test_rgb_rows_reject_bad_planes():
    from ov2_tokenizer._native import core

    a = np.zeros((2, 4), np.uint8)
    with pytest.raises(ov2.errors.ConfigError, match="three 2-D planes"):
        core.yuv_to_rgb_rows(a, a[:1], a, "bt709", False)
    with pytest.raises(ov2.errors.ConfigError, match="matrix"):
        core.yuv_to_rgb_rows(a, a, a, "bt2020", False)


def test_info_names_the_conversion_of_the_shared_videos(shared_videos):
    """``VideoInfo.color_matrix`` / ``color_range`` say which conversion ``Frame.rgb`` applies."""
    want = {"tc_bt709_full_range.mp4": ("bt709", "full"), "mvx_h264_720p.mp4": ("bt601", "limited")}
    for name, tags in want.items():
        p = shared_videos / name
        if not p.exists():
            pytest.skip(f"{name} absent")
        info = ov2.open_video(p).info
        assert (info.color_matrix, info.color_range) == tags, (name, info)
