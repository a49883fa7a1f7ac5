"""tokenize_video end to end: structure of the output, determinism, persistence, and event coverage on a
generated clip with known bursts of motion (DESIGN §5, issue #3)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ov2_tokenizer as ov2
from ov2_tokenizer.samples import encode_video, texture
from ov2_testing import tokens_digest

SMALL = dict(num_frames=48, max_canvases=8)
FPS = 25
BURSTS = (3.0, 8.2, 12.5, 17.1)  # seconds; each lasts BURST_LEN
BURST_LEN = 0.3
DURATION = 20.0


_digest = tokens_digest  # shared with tests/packaging/token_digests.py


@pytest.fixture(scope="module")
def sample():
    return str(ov2.sample_video())


@pytest.fixture(scope="module")
def burst_clip(tmp_path_factory):
    """A static textured scene; a textured block jumps around only during 0.3-second bursts."""
    h, w = 240, 320
    bg = texture(h, w, seed=11)
    obj = texture(48, 48, seed=12, smooth=1)

    def render(i: int) -> np.ndarray:
        t = i / FPS
        img = bg.copy()
        x, y = 136, 96
        for b in BURSTS:
            if b <= t < b + BURST_LEN:
                k = int(round((t - b) * FPS))
                x, y = 40 + 12 * k, 40 + 9 * k
        img[y : y + 48, x : x + 48] = obj
        return img

    path = tmp_path_factory.mktemp("bursts") / "bursts.mp4"
    encode_video(path, int(DURATION * FPS), render, fps=FPS, options={"preset": "veryfast", "crf": "20"})
    return str(path)


def test_codec_stream_structure(sample):
    vt = ov2.tokenize_video(sample, **SMALL)
    p, m = vt.patch_size, vt.merge_size
    s, c, hc, wc = vt.canvases.shape
    assert (s, c) == (8, 3) and hc % (p * m) == 0 and wc % (p * m) == 0
    assert vt.num_tokens == s * (hc // p) * (wc // p)
    # groups: an I-canvas followed by its P-canvases; kinds and counts agree with the group table
    kinds = vt.canvas_kind.tolist()
    num_p = vt.groups["num_p"].tolist()
    expect = []
    for n in num_p:
        expect += [0] + [1] * n
    assert kinds == expect
    # records in m x m block order: the m*m tokens of a block are consecutive and form one block of the canvas
    blk = vt.can_hw.reshape(-1, m * m, 2).long()
    assert torch.all(blk[:, :, 0] // m == blk[:, :1, 0] // m) and torch.all(blk[:, :, 1] // m == blk[:, :1, 1] // m)
    # every real token's group matches its source time
    real = vt.frame >= 0
    g = vt.group[real].long()
    t = vt.t_s[real].double()
    assert torch.all(t >= vt.groups["start_s"][g] - 1e-6) and torch.all(t < vt.groups["end_s"][g] + 1e-6)
    # model-facing view
    mi = vt.model_inputs()
    assert mi["pixel_values"].shape == (vt.num_tokens, 3 * p * p)
    assert mi["grid_thw"].tolist() == [[s, hc // p, wc // p]]


@pytest.mark.parametrize("mode", ["codec_stream", "frames", "image"])
def test_deterministic_across_runs_and_threads(sample, mode):
    digests = {_digest(ov2.tokenize_video(sample, mode=mode, num_threads=n, **SMALL)) for n in (1, 2, 1)}
    assert len(digests) == 1


def test_same_tokens_from_path_bytes_and_file(sample, tmp_path):
    a = ov2.tokenize_video(sample, **SMALL)
    with open(sample, "rb") as fh:
        data = fh.read()
    b = ov2.tokenize_video(data, **SMALL)
    with open(sample, "rb") as fh:
        c = ov2.tokenize_video(fh, **SMALL)
    assert a.equal(b) and a.equal(c)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_save_load_round_trip(sample, tmp_path, suffix):
    vt = ov2.tokenize_video(sample, **SMALL)
    back = ov2.VisualTokens.load(vt.save(tmp_path / f"vt{suffix}"))
    assert back.equal(vt)
    assert back.meta["mode"] == "codec_stream"
    assert "groups" in back.summary()


def test_frames_mode_uniform_and_groups_of_four(sample):
    vt = ov2.tokenize_video(sample, mode="frames", num_frames=10)
    frames = vt.meta["frame_indices"]
    assert len(frames) == 10 and frames == sorted(frames)
    gaps = np.diff(frames)
    assert gaps.max() - gaps.min() <= 1  # uniform by time on a constant-rate clip
    per = vt.num_tokens // 10
    assert vt.group[::per].tolist() == [i // 4 for i in range(10)]
    assert (vt.canvas_kind == 2).all()


def test_image_mode_native_resolution():
    img = (np.arange(300 * 500 * 3) % 251).astype(np.uint8).reshape(300, 500, 3)
    vt = ov2.tokenize_image(img, min_pixels=28 * 28, max_pixels=1_000_000)
    _, _, hc, wc = vt.canvases.shape
    assert (hc, wc) == (308, 504)  # each side rounded to a multiple of 2p = 28
    assert vt.pos_thw[:, 0].eq(0).all() and vt.group.eq(0).all()
    small = ov2.tokenize_image(img, min_pixels=28 * 28, max_pixels=28 * 28 * 4)
    assert small.canvases.shape[2] * small.canvases.shape[3] <= 28 * 28 * 4
    with pytest.raises(ov2.ConfigError):  # no canvas of multiples of 28 fits [3136, 3136] at this aspect
        ov2.tokenize_image(img, min_pixels=3136, max_pixels=3136)


def test_image_from_a_tensor_or_a_pil_image():
    """A torch tensor or an RGB PIL image gives the numpy array's tokens; other arrays keep the typed error."""
    img = (np.arange(60 * 90 * 3) % 251).astype(np.uint8).reshape(60, 90, 3)
    ref = ov2.tokenize_image(img)
    assert ov2.tokenize_image(torch.from_numpy(img)).equal(ref)
    PIL = pytest.importorskip("PIL.Image")
    assert ov2.tokenize_image(PIL.fromarray(img)).equal(ref)
    with pytest.raises(ov2.ConfigError, match="RGB"):
        ov2.tokenize_image(PIL.fromarray(img[..., 0]))  # grey: H x W
    with pytest.raises(ov2.ConfigError, match="RGB"):
        ov2.tokenize_image(torch.zeros(3, 60, 90, dtype=torch.uint8))  # channels first


def test_bad_config_and_mode(sample):
    with pytest.raises(ov2.ConfigError) as e:
        ov2.tokenize_video(sample, mode="nope")
    assert "mode" in str(e.value)
    with pytest.raises(ov2.ConfigError) as e:
        ov2.tokenize_video(sample, max_canvases=0)
    assert "max_canvases" in str(e.value)
    # ovenc_topk's sizes are bounded (they were a numpy MemoryError of 11 GiB, or an rgb_size error for the square)
    for field, kw in (("ovenc_size", dict(ovenc_size=10**5)), ("ovenc_topk", dict(ovenc_topk=10**9)),
                      ("ovenc_slots", dict(ovenc_slots=10**5)), ("ovenc_topk", dict(ovenc_slots=2, ovenc_topk=2593))):
        with pytest.raises(ov2.ConfigError) as e:
            ov2.TokenizerConfig(**kw)
        assert e.value.source == field, (kw, e.value)
    assert ov2.TokenizerConfig(ovenc_slots=2, ovenc_topk=2592).ovenc_topk == 2592  # every cell of both slots
    with pytest.raises(ov2.ConfigError) as e:  # a misspelt field names the one meant
        ov2.tokenize_video(sample, max_canvas=4)
    assert e.value.source == "max_canvas" and e.value.cause.endswith("(did you mean 'max_canvases'?)")
    import doctest

    from ov2_tokenizer import config

    assert doctest.testmod(config).failed == 0


def _share_near_bursts(vt: ov2.VisualTokens, window: float = 0.5) -> float:
    t = vt.t_s[vt.frame >= 0].double().numpy()
    near = np.zeros(t.shape, dtype=bool)
    for b in BURSTS:
        near |= (t >= b - window) & (t <= b + BURST_LEN + window)
    return float(near.mean())


def test_event_coverage_codec_stream_vs_frames(burst_clip):
    """At the same number of visual tokens, codec_stream takes at least twice the share of its tokens from
    frames within ±0.5 s of a burst than uniform frame sampling does."""
    cs = ov2.tokenize_video(burst_clip, mode="codec_stream", max_canvases=32, num_frames=256)
    fr = ov2.tokenize_video(burst_clip, mode="frames", num_frames=32)
    assert cs.num_tokens == fr.num_tokens
    share_cs, share_fr = _share_near_bursts(cs), _share_near_bursts(fr)
    assert share_cs >= 2 * share_fr, (share_cs, share_fr)


@pytest.mark.parametrize("accumulate", ["none", "interval"])
def test_group_by_group_packing_equals_keep_all(sample, monkeypatch, accumulate):
    """codec_stream packs each group's canvases as the group closes; the result equals the pass that keeps every
    candidate picture and packs at the end (forced here), for both accumulate modes."""
    from ov2_tokenizer import codec_stream as cs

    cfg = ov2.TokenizerConfig(num_frames=64, max_canvases=12, accumulate=accumulate)
    streamed = ov2.tokenize_video(sample, config=cfg)
    assert streamed.meta["decode_passes"] == 1
    assert len(streamed.groups["start_s"]) >= 2
    real = cs._decode

    def keep_all_only(*args, keep_all):
        return real(*args, keep_all=True)

    monkeypatch.setattr(cs, "_decode", keep_all_only)
    kept = ov2.tokenize_video(sample, config=cfg)
    assert kept.equal(streamed)


def test_group_by_group_packing_falls_back_on_missing_candidates(tmp_path):
    """A file cut short whose header (moov first) still lists every frame: candidates are missing, the planned
    layout is void, and a second pass keeps every candidate picture; the output is a valid token set."""
    bg = texture(96, 128, seed=3)
    path = encode_video(tmp_path / "cut.mp4", 120, lambda i: np.roll(bg, 2 * i, axis=1), fps=FPS,
                        options={"g": "30"}, container_options={"movflags": "faststart"})
    data = path.read_bytes()
    vt = ov2.tokenize_video(data[: len(data) * 2 // 3], config=ov2.TokenizerConfig(num_frames=64, max_canvases=8))
    assert vt.meta["decode_passes"] == 2
    assert 2 <= vt.num_canvases <= 8
    assert int(vt.frame.max()) >= 0
