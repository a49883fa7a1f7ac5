"""tokenize_batch on the CPU: same tokens as tokenize_video per source, in order, any worker count; typed errors."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import ov2_tokenizer as ov2
from ov2_tokenizer.errors import ConfigError, Ov2Error, VideoOpenError

CFG = dict(num_frames=24, max_canvases=8)
FIELDS = ("canvases", "canvas_kind", "canvas", "frame", "t_s", "can_hw", "src_hw", "group", "pos_thw")


def _same(a, b) -> None:
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.shape == y.shape, f
        assert torch.equal(torch.nan_to_num(x.float(), nan=-7.0) if f == "t_s" else x,
                           torch.nan_to_num(y.float(), nan=-7.0) if f == "t_s" else y), f
    for k in a.groups:
        assert torch.equal(a.groups[k], b.groups[k]), k
    assert a.meta["source"] == b.meta["source"]
    assert a.meta.get("candidates") == b.meta.get("candidates")


@pytest.mark.parametrize("workers", [1, 3])
def test_batch_equals_tokenize_video(small_videos, workers) -> None:
    cfg = ov2.TokenizerConfig(**CFG)
    ref = [ov2.tokenize_video(p, config=cfg) for p in small_videos]
    got = ov2.tokenize_batch(small_videos, config=cfg, workers=workers)
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        _same(a, b)
    # distinct videos: the order of the output follows the input
    assert [g.meta["canvas_hw"] for g in got] == [r.meta["canvas_hw"] for r in ref]
    assert len({tuple(g.meta["canvas_hw"]) for g in got}) == 3


def test_batch_sources_of_every_kind_and_repeats(small_videos) -> None:
    p = small_videos[1]
    data = p.read_bytes()
    srcs = [str(p), data, io.BytesIO(data), p]
    got = ov2.tokenize_batch(srcs, config=ov2.TokenizerConfig(**CFG), workers=2)
    for g in got[1:]:
        assert torch.equal(g.canvases, got[0].canvases) and torch.equal(g.pos_thw, got[0].pos_thw)


def test_batch_other_modes_and_overrides(small_videos) -> None:
    got = ov2.tokenize_batch(small_videos[:2], mode="frames", num_frames=8, workers=2)
    ref = [ov2.tokenize_video(p, mode="frames", num_frames=8) for p in small_videos[:2]]
    for a, b in zip(got, ref):
        _same(a, b)


def test_batch_errors_are_typed(small_videos, tmp_path) -> None:
    bad = tmp_path / "missing.mp4"
    srcs = [small_videos[0], bad, small_videos[2]]
    with pytest.raises(VideoOpenError, match="missing.mp4"):
        ov2.tokenize_batch(srcs, config=ov2.TokenizerConfig(**CFG), workers=2)
    got = ov2.tokenize_batch(srcs, config=ov2.TokenizerConfig(**CFG), workers=2, return_exceptions=True)
    assert isinstance(got[1], VideoOpenError) and isinstance(got[1], Ov2Error)
    assert got[0].num_canvases == 8 and got[2].num_canvases == 8


def test_batch_argument_checks(small_videos) -> None:
    assert ov2.tokenize_batch([]) == []
    with pytest.raises(ConfigError, match="sources"):
        ov2.tokenize_batch(str(small_videos[0]))
    with pytest.raises(ConfigError, match="workers"):
        ov2.tokenize_batch(small_videos, workers=0)
    with pytest.raises(ConfigError, match="prefetch"):
        ov2.tokenize_batch(small_videos, prefetch=0)
    with pytest.raises(ConfigError, match="device"):
        ov2.tokenize_batch(small_videos, device="tpu")
    with pytest.raises(ConfigError, match="mode"):
        ov2.tokenize_batch(small_videos, mode="nope")


def test_cuda_request_without_a_gpu_is_a_config_error(small_videos) -> None:
    from ov2_tokenizer.gpu import cuda_status

    ok, why = cuda_status()
    if ok:
        pytest.skip("a CUDA device is present")
    assert why
    with pytest.raises(ConfigError, match="device"):
        ov2.tokenize_batch(small_videos[:1], device="cuda")
    with pytest.raises(ConfigError, match="device"):
        ov2.tokenize_video(small_videos[0], device="cuda")
