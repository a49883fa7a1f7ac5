"""Corrupt-data policy (DESIGN §5.10, issue #7): ``on_error`` = skip / raise / repeat, timestamps that are finite
and never go backwards, frame counts never taken from headers. Also runs the kept regression inputs."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ov2 = pytest.importorskip("ov2_tokenizer")
pytest.importorskip("av")
from ov2_tokenizer import errors  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402

REGRESSIONS = Path(__file__).resolve().parent / "regressions"
X264 = {"g": "8", "bf": "2", "x264-params": "keyint=8:min-keyint=8:scenecut=0"}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return corpus.encode(tmp_path_factory.mktemp("onerr") / "clean.mp4", frames=24, options=X264)


@pytest.fixture(scope="module")
def zeroed(clean):
    """Every third packet after the first zeroed: the decoder rejects those packets."""
    data = bytearray(clean.read_bytes())
    for off, size in corpus.packet_spans(clean)[1::3]:
        data[off : off + size] = bytes(size)
    p = clean.with_name("zeroed.mp4")
    p.write_bytes(bytes(data))
    return p


def _read(src, **kw):
    r = ov2.open_video(src, **kw)
    frames = list(r.frames(with_mvs=True, with_residual=True))
    return r, frames


def test_skip_drops_and_counts(zeroed):
    r, frames = _read(zeroed, on_error="skip", num_threads=1)
    n = len(r.packets())
    assert 0 < len(frames) < n
    assert r.stats["corrupt_packets"] > 0


def test_raise_names_the_file(zeroed):
    with pytest.raises(errors.CorruptVideoError) as ei:
        _read(zeroed, on_error="raise", num_threads=1)
    assert ei.value.source == str(zeroed)


@pytest.mark.parametrize("threads", [1, 4])
def test_repeat_frame_count_follows_packets(zeroed, threads):
    r, frames = _read(zeroed, on_error="repeat", num_threads=threads)
    _, skipped = _read(zeroed, on_error="skip", num_threads=1)
    n = len(r.packets())
    assert len(frames) == n
    assert [f.index for f in frames] == list(range(n))
    repeats = sum(np.array_equal(a.luma, b.luma) for a, b in zip(frames, frames[1:]))
    assert repeats >= n - len(skipped)  # each lost packet became a copy of the frame before it
    # every decoded (non-repeated) picture of the skip policy is in the repeat output, in order
    lumas = [f.luma.tobytes() for f in frames]
    pos = 0
    for f in skipped:
        pos = lumas.index(f.luma.tobytes(), pos) + 1
    pts = np.array([f.pts_s for f in frames])
    assert np.isfinite(pts).all() and (np.diff(pts) >= 0).all()
    for f in frames:  # repeated frames carry well-formed products
        assert f.mv_field.shape == ((f.height + 3) // 4, (f.width + 3) // 4, 4)
        assert f.residual.shape == (f.height, f.width)


def test_repeat_same_for_any_threads(zeroed):
    outs = []
    for t in (1, 2, 4):
        _, frames = _read(zeroed, on_error="repeat", num_threads=t)
        outs.append([(f.index, f.pts_s, f.luma.tobytes(), f.mv_field.tobytes(), f.residual.tobytes()) for f in frames])
    assert outs[0] == outs[1] == outs[2]


def test_repeat_changes_nothing_on_clean_input(clean):
    _, a = _read(clean, on_error="skip", num_threads=1)
    _, b = _read(clean, on_error="repeat", num_threads=1)
    assert len(a) == len(b) == 24
    for x, y in zip(a, b):
        assert x.index == y.index and x.pts_s == y.pts_s and x.pict_type == y.pict_type
        assert np.array_equal(x.luma, y.luma) and np.array_equal(x.mv_field, y.mv_field)
        assert np.array_equal(x.residual, y.residual)


def test_repeat_tokenizes(zeroed):
    vt = ov2.tokenize_video(zeroed, mode="frames", on_error="repeat", num_frames=24)
    assert vt.num_tokens > 0 and vt.meta["corrupt_packets"] > 0


# -- frame counts never come from headers --------------------------------------------------------------------------
@pytest.mark.parametrize("box, factor", [("stsz", 10.0), ("stts", 10.0), ("stts", 0.25)])
def test_lying_header_frame_count(clean, tmp_path, box, factor):
    data = corpus.patch_sample_count(clean.read_bytes(), box, factor)
    p = tmp_path / f"lying_{box}.mp4"
    p.write_bytes(data)
    try:
        r = ov2.open_video(p, num_threads=1)
        pk = r.packets()
        frames = list(r.frames())
    except errors.Ov2Error as e:  # the demuxer may refuse the table outright: typed and named
        assert e.source == str(p)
        return
    assert r.info.num_frames == len(frames) <= len(pk)
    assert len(frames) <= 24
    if r.info.num_frames_header is not None and r.info.num_frames_header != 24:
        assert r.info.num_frames != r.info.num_frames_header  # the claim is kept apart, not used


def test_faststart_cut_claims_more_frames(tmp_path):
    src = corpus.encode(tmp_path / "fs.mp4", frames=24, options={"bf": "0", "g": "6"},
                        container_options={"movflags": "+faststart"})
    spans = corpus.packet_spans(src)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: spans[10][0]])
    r = ov2.open_video(cut, num_threads=1)
    assert r.info.num_frames_header == 24
    frames = list(r.frames())
    assert 0 < len(frames) <= 10
    assert r.info.num_frames == len(frames)  # the decoded count, not the header's 24
    assert r.stats["truncated"]
    with pytest.raises(errors.CorruptVideoError):
        list(ov2.open_video(cut, num_threads=1, on_error="raise").frames())


def test_missing_pts_are_filled_and_ordered(tmp_path):
    # MPEG-4 part 2 with B-frames in AVI: the last frame comes out of the decoder without a pts
    p = corpus.encode(tmp_path / "b.avi", codec="mpeg4", frames=24, options={"g": "6", "bf": "1"})
    for t in (1, 3):
        frames = list(ov2.open_video(p, num_threads=t).frames(with_luma=False))
        pts = np.array([f.pts_s for f in frames])
        assert len(frames) == 24 and np.isfinite(pts).all() and (np.diff(pts) >= 0).all()
    assert ov2.tokenize_video(p, mode="codec_stream").num_tokens > 0


def test_huge_declared_dimensions_rejected(tmp_path):
    src = corpus.encode(tmp_path / "a.h264", fmt="h264", frames=8, options=X264)
    data = corpus.patch_annexb_sps(src.read_bytes(), 512, 540)  # 8192 x 8640 > 2^26 pixels
    assert data is not None
    p = tmp_path / "huge.h264"
    p.write_bytes(data)
    with pytest.raises(errors.CorruptVideoError) as ei:
        ov2.open_video(p)
    assert ei.value.source == str(p) and "large" in ei.value.cause


# -- kept regression inputs: every mode gives tokens or a typed, named error -------------------------------------
REG_FILES = sorted(p for p in REGRESSIONS.glob("*") if p.is_file() and p.suffix not in (".md", ".json", ".txt"))


@pytest.mark.parametrize("path", REG_FILES, ids=[p.name for p in REG_FILES])
@pytest.mark.parametrize("mode", ["codec_stream", "frames", "image", "ovenc_topk", "cope"])
def test_regression_inputs(path, mode):
    try:
        vt = ov2.tokenize_video(path, mode=mode, timeout_s=20)
    except errors.Ov2Error as e:
        assert not isinstance(e, errors.ConfigError) and e.source == str(path), repr(e)
    else:
        assert vt.num_tokens > 0
