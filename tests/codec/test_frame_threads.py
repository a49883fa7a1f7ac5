"""FFmpeg frame threads on H.264 without re-ordering (csrc/codec/reader.cpp, docs/decoding.md "Frame threads").

A stream whose packets' pts increase in decoding order (no B-frames) and whose decoder reports no re-ordering
delay outputs every picture from the thread that decoded it, so frame threads give the same pixels, exported
vectors and products as one thread. The reader uses them when closed-GOP segments would leave the threads idle
(``threading="auto"``), or whenever allowed (``"frames"``), and stops them at the first sign that a file leaves
that model (a decoding error, a damaged frame, a re-ordering delay, a pts that does not increase): the frames not
delivered yet are then read again without them (``stats["thread_fallback"]``). Every test compares with one
thread, frame by frame (pixels, vectors, dense field, residual, coding cost, RGB) or error by error.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ov2 = pytest.importorskip("ov2_tokenizer")
from ov2_tokenizer import errors  # noqa: E402

from _codec_util import frame_digest, paste, textured  # noqa: E402
from conftest import Clip, _encode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "robustness"))

HEAVY = dict(with_luma=True, with_mvs=True, with_residual=True, with_coding_cost=True, with_rgb=True,
             rgb_size=(48, 64))


@pytest.fixture(scope="session")
def one_gop_clip(generated_dir) -> Clip:
    """192x128, 48 frames in one closed GOP, no B-frames, three references, a block moving by (+3, -1) px per frame."""
    W, H, n, fps = 192, 128, 48, 25
    bg = textured(H, W, seed=71, smooth=2)
    block = textured(40, 40, seed=72, smooth=1)

    def render(i):
        img = bg.copy()
        paste(img, block, 8 + 3 * i, 70 - i)
        return img

    path = _encode(generated_dir / "one_gop_ippp.mp4", n, render, fps=fps,
                   options={"x264-params": "bframes=0:ref=3:keyint=250:min-keyint=250:scenecut=0", "crf": "22",
                            "preset": "fast"})
    return Clip(path, n, fps, W, H)


def _read(source, threads, threading="auto", indices=None, on_error="skip", **kw):
    """(frames as (index, digest, rgb bytes) or the typed error, stats)."""
    out = []
    try:
        r = ov2.open_video(source, num_threads=threads, threading=threading, on_error=on_error)
        for f in r.frames(indices, **kw):
            out.append((f.index, frame_digest(f), None if f.rgb is None else f.rgb.tobytes()))
    except errors.Ov2Error as exc:
        out.append((type(exc).__name__, exc.cause))
        return out, dict(r.stats) if "r" in locals() else {"frame_threads": 0, "thread_fallback": False}
    return out, dict(r.stats)


@pytest.mark.parametrize("threading", ["auto", "frames"])
@pytest.mark.parametrize("threads", [2, 3])
def test_frame_threads_equal_one_thread(one_gop_clip, threads, threading):
    ref, st1 = _read(one_gop_clip.path, 1, **HEAVY)
    assert len(ref) == one_gop_clip.num_frames and st1["frame_threads"] == 0
    got, st = _read(one_gop_clip.path, threads, threading, **HEAVY)
    assert got == ref
    # products for every frame run in a product pool: auto keeps one decoder for them (measured faster), "frames"
    # forces frame threads
    if threading == "auto":
        assert st["frame_threads"] == 0 and st["pooled_products"], st
    else:
        assert st["frame_threads"] >= 2 and not st["thread_fallback"], st
    assert st["frames_decoded"] == one_gop_clip.num_frames


@pytest.mark.parametrize("threads", [2, 3])
def test_plain_decode_uses_frame_threads(one_gop_clip, threads):
    """One GOP, light products (luma, vector rows): auto decodes with frame threads."""
    ref, _ = _read(one_gop_clip.path, 1, with_luma=True, with_mvs=True)
    got, st = _read(one_gop_clip.path, threads, with_luma=True, with_mvs=True)
    assert got == ref and st["frame_threads"] == threads and not st["parallel"] and not st["pooled_products"]
    ref, _ = _read(one_gop_clip.path, 1, with_luma=True)
    got, st = _read(one_gop_clip.path, 2, "segments", with_luma=True)
    assert got == ref and st["frame_threads"] == 0


def test_sparse_requests(one_gop_clip):
    ref, _ = _read(one_gop_clip.path, 1, **HEAVY)
    for idx in ([0, 5, 17, 40], [47], list(range(3, 48, 7))):
        got, st = _read(one_gop_clip.path, 2, "frames", idx, **HEAVY)
        assert got == [ref[i] for i in idx] and st["frame_threads"] == 2


def test_not_for_reordered_streams(bframe_clip):
    """B-frames re-order: FFmpeg would export a picture's vectors from another thread while it decodes."""
    ref, _ = _read(bframe_clip.path, 1, **HEAVY)
    got, st = _read(bframe_clip.path, 2, "frames", **HEAVY)
    assert got == ref and st["frame_threads"] == 0


def test_not_for_push_sources_or_one_thread(one_gop_clip):
    data = one_gop_clip.path.read_bytes()
    _, st = _read(one_gop_clip.path, 1, "frames", with_luma=True)
    assert st["frame_threads"] == 0
    _, st = _read(data, 2, "frames", with_luma=True)  # bytes are re-readable: allowed
    assert st["frame_threads"] == 2
    ref, _ = _read(one_gop_clip.path, 1, with_luma=True, on_error="repeat")
    got, st = _read(one_gop_clip.path, 2, "frames", with_luma=True, on_error="repeat")
    assert got == ref and st["frame_threads"] == 0  # on_error="repeat" keeps one decoder


def test_bad_threading_value(one_gop_clip):
    with pytest.raises(errors.ConfigError, match="threading"):
        ov2.open_video(one_gop_clip.path, threading="slices")


def test_damaged_files_equal_one_thread(one_gop_clip, tmp_path):
    """Truncations, bit flips, zeroed ranges and packet-level damage of the one-GOP clip: frame threads (2 and 3,
    forced) give the frames or the typed error of one thread, under on_error skip and raise; some of the cases
    stop the frame threads and read on without them."""
    import corpus

    w = corpus._Writer(tmp_path)
    corpus._mutations(w, "ippp", one_gop_clip.path.read_bytes(), ".mp4", one_gop_clip.path, seed=5, full=True)
    assert len(w.cases) >= 20
    used = fell_back = 0
    products = dict(with_luma=True, with_mvs=True, with_residual=True, with_coding_cost=True)
    for case in w.cases:
        for on_error in ("skip", "raise"):
            ref, _ = _read(case["path"], 1, on_error=on_error, **products)
            for threads in (2, 3):
                got, st = _read(case["path"], threads, "frames", on_error=on_error, **products)
                assert got == ref, (case["name"], on_error, threads, st)
                used += st["frame_threads"] > 0
                fell_back += st["thread_fallback"]
    assert used > 0 and fell_back > 0, (used, fell_back)
