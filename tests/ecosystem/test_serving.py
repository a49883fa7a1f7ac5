"""The vLLM video-loader protocol (without vLLM) and the registration path (with a stub registry)."""
from __future__ import annotations

import importlib.util
import inspect

import numpy as np
import pytest

import ov2_tokenizer as ov2
from ov2_tokenizer.errors import ConfigError, Ov2Error
from ov2_tokenizer.serving import LOADER_NAME, Ov2VideoLoader, register_vllm_loader, tokens_from_loader_output

from _eco_util import moving_clip


@pytest.fixture(scope="module")
def data(generated_dir):
    return moving_clip(generated_dir / "eco_clip_1.mp4", seed=1).read_bytes()


def test_signature_follows_vllm_protocol():
    # vLLM: ``@classmethod def load_bytes(cls, data: bytes, num_frames: int = -1, **kwargs)
    #        -> tuple[npt.NDArray, dict[str, Any]]``
    assert isinstance(inspect.getattr_static(Ov2VideoLoader, "load_bytes"), classmethod)
    params = list(inspect.signature(Ov2VideoLoader.load_bytes).parameters.values())
    assert [p.name for p in params] == ["data", "num_frames", "kwargs"]
    assert params[1].default == -1 and params[2].kind is inspect.Parameter.VAR_KEYWORD


def test_codec_stream_frames_and_metadata(data):
    frames, md = Ov2VideoLoader.load_bytes(data, num_frames=6, max_pixels=50176, num_candidates=24)
    assert isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4
    assert frames.shape[0] == 6 and frames.shape[-1] == 3
    for key in ("total_num_frames", "fps", "duration", "video_backend", "frames_indices", "do_sample_frames"):
        assert key in md, key
    info = ov2.open_video(data).info
    assert md["total_num_frames"] == info.num_frames == 36 and md["fps"] == pytest.approx(12.0)
    assert md["video_backend"] == LOADER_NAME and md["do_sample_frames"] is False
    assert len(md["frames_indices"]) == len(md["timestamps"]) == 6
    assert md["frames_indices"] == sorted(md["frames_indices"])
    assert np.allclose(md["timestamps"], np.asarray(md["frames_indices"]) / 12.0, atol=1e-4)
    # the exact tokens can be rebuilt on the model side
    ref = ov2.tokenize_video(data, num_frames=24, max_canvases=6, max_pixels=50176, num_threads=1)
    vt = tokens_from_loader_output(frames, md)
    assert vt.equal(ref)
    assert np.array_equal(frames, ref.canvases.permute(0, 2, 3, 1).numpy())
    # what vLLM's VideoMediaIO does: load_bytes(data, num_frames=self.num_frames, **media_io_kwargs)
    media_io_kwargs = {"video_backend": "ov2", "mode": "frames", "max_pixels": 50176, "max_duration": 300}
    frames2, md2 = Ov2VideoLoader.load_bytes(data, num_frames=5, **media_io_kwargs)
    assert frames2.shape[0] == 5 and md2["ov2"]["mode"] == "frames"
    assert md2["ov2"]["ignored_kwargs"] == ["max_duration"]
    ref2 = ov2.tokenize_video(data, mode="frames", num_frames=5, max_pixels=50176)
    assert md2["frames_indices"] == ref2.meta["frame_indices"]


def test_errors(data):
    with pytest.raises(Ov2Error, match="<bytes>"):
        Ov2VideoLoader.load_bytes(b"\x00" * 500)
    with pytest.raises(ConfigError, match="num_frames"):
        Ov2VideoLoader.load_bytes(data, num_frames=0)
    with pytest.raises(ConfigError, match="mode"):
        Ov2VideoLoader.load_bytes(data, mode="image")
    with pytest.raises(ConfigError, match="records"):
        tokens_from_loader_output(np.zeros((1, 28, 28, 3), np.uint8), {"fps": 1.0})
    with pytest.raises(ConfigError, match="records"):
        tokens_from_loader_output(np.zeros((1, 28, 28, 3), np.uint8), None)
    frames, md = Ov2VideoLoader.load_bytes(data, num_frames=8, max_pixels=50176, num_candidates=32)
    assert tokens_from_loader_output(frames, md).num_canvases == 8
    for cut in (frames[:3], frames[:, :84]):  # frames cut by the serving stack: refused, not tokens that fail later
        with pytest.raises(ConfigError, match="do not match"):
            tokens_from_loader_output(cut, md)


class StubRegistry:
    """The part of vLLM's ``VIDEO_LOADER_REGISTRY`` (an ExtensionManager) that loaders use."""

    def __init__(self):
        self.classes = {}

    def register(self, name):
        def wrap(cls):
            self.classes[name] = cls
            return cls

        return wrap

    def load(self, name):
        return self.classes[name]()


def test_registration_with_an_injected_registry(data):
    reg = StubRegistry()
    assert register_vllm_loader(reg) is True
    loader = reg.load("ov2")
    frames, md = loader.load_bytes(data, num_frames=4, max_pixels=50176, num_candidates=16)
    assert frames.shape[0] == 4 and md["video_backend"] == "ov2"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM installed: registration is real")
def test_without_vllm_registration_is_a_no_op():
    import ov2_tokenizer.serving as serving

    assert serving._REGISTERED is False and register_vllm_loader() is False
