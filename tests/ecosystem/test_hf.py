"""Ov2VideoProcessor: HF call shape, shapes, VideoMetadata-compatible metadata, qwen-vl-utils knobs, and a
training-style loop where the processor replaces a transformers video processor."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ov2_tokenizer as ov2
from ov2_tokenizer.errors import ConfigError
from ov2_tokenizer.hf import Ov2VideoMetadata, Ov2VideoProcessor

from _eco_util import moving_clip


@pytest.fixture(scope="module")
def clip(generated_dir):
    return moving_clip(generated_dir / "eco_clip_0.mp4", seed=0)


def test_videos_and_images_shapes_and_metadata(clip):
    proc = Ov2VideoProcessor(num_frames=32, max_canvases=8, max_pixels=50176)
    img = np.asarray(ov2.samples.texture(100, 150, seed=7))
    sample = ov2.sample_video()
    out = proc(videos=[sample, clip.read_bytes()], images=[img], return_tensors="pt")
    vt_a = ov2.tokenize_video(sample, num_frames=32, max_canvases=8, max_pixels=50176, num_threads=None)
    vt_b = ov2.tokenize_video(clip, num_frames=32, max_canvases=8, max_pixels=50176)
    vi = ov2.tokenize_image(img, max_pixels=50176)
    assert out["video_grid_thw"].tolist() == [vt_a.grid_thw[0].tolist(), vt_b.grid_thw[0].tolist()]
    assert torch.equal(out["pixel_values_videos"], torch.cat([vt_a.patches(), vt_b.patches()]))
    assert out["pixel_values_videos"].shape[1] == 3 * 14 * 14
    assert torch.equal(out["pixel_values"], vi.patches())
    assert out["image_grid_thw"].tolist() == vi.grid_thw.tolist()
    # patch_positions: images first, then videos (the model's split order)
    assert torch.equal(out["patch_positions"], torch.cat([vi.pos_thw, vt_a.pos_thw, vt_b.pos_thw]).long())
    assert out["video_num_tokens"].tolist() == (out["video_grid_thw"].prod(-1) // proc.merge_size ** 2).tolist()
    assert out["video_group_ids"].shape[0] == out["pixel_values_videos"].shape[0]
    md_a, md_b = out["video_metadata"]
    assert isinstance(md_a, Ov2VideoMetadata) and md_b.video_backend == "ov2"
    info = ov2.open_video(sample).info
    assert (md_a.total_num_frames, md_a.fps, md_a.width, md_a.height) == (info.num_frames, info.fps, 640, 360)
    used = sorted(set(vt_a.frame[vt_a.frame >= 0].tolist()))
    assert md_a.frames_indices == used
    # timestamps are the pts of those frames (this clip: index / 30 exactly)
    assert np.allclose(md_a.timestamps, np.asarray(used) / 30.0, atol=1e-4)
    assert dict(md_a)["frames_indices"] == used and len(md_a.canvas_frames) == 8
    hf = md_a.to_hf()
    assert hf.total_num_frames == info.num_frames and list(hf.frames_indices) == used
    assert np.allclose(hf.timestamps, md_a.timestamps, atol=1e-4)
    # numpy output
    out_np = proc(videos=clip, return_tensors="np", return_metadata=False)
    assert isinstance(out_np["pixel_values_videos"], np.ndarray) and "video_metadata" not in out_np


def test_qwen_vl_utils_knobs(clip):
    with pytest.raises(ConfigError, match="fps or num_frames"):
        Ov2VideoProcessor(fps=2.0, num_frames=16)
    proc = Ov2VideoProcessor(mode="frames", fps=4.0, min_frames=2, max_frames=64, max_pixels=50176)
    info = ov2.open_video(clip).info  # 36 frames at 12 fps = 3 s
    out = proc(videos=clip)
    assert out["video_grid_thw"][0, 0].item() == round(info.duration_s * 4.0) == 12
    assert len(out["video_metadata"][0].frames_indices) == 12
    # per-call num_frames replaces the processor's fps; max_frames bounds what fps gives
    assert proc(videos=clip, num_frames=5)["video_grid_thw"][0, 0].item() == 5
    assert proc(videos=clip, fps=30.0, max_frames=7)["video_grid_thw"][0, 0].item() == 7
    small = Ov2VideoProcessor(mode="frames", num_frames=4, min_pixels=3136, max_pixels=6272)
    g = small(videos=clip)["video_grid_thw"][0]
    assert (g[1] * 14) * (g[2] * 14) <= 6272
    with pytest.raises(ConfigError, match="compressed videos"):
        proc(videos=[np.zeros((4, 32, 32, 3), np.uint8)])
    with pytest.raises(ConfigError, match="return_tensors"):
        proc(videos=clip, return_tensors="tf")


def _tiny_model():
    from ov2_model import LlavaOnevision2Config, LlavaOnevision2ForConditionalGeneration

    cfg = LlavaOnevision2Config(
        vision_config=dict(hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=2,
                           out_hidden_size=32),
        text_config=dict(model_type="qwen3", hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, vocab_size=64),
        image_token_id=60, video_token_id=61, vision_start_token_id=62, vision_end_token_id=63)
    torch.manual_seed(0)
    return LlavaOnevision2ForConditionalGeneration(cfg).float().train()


def train_step(processor, model, optimizer, videos, text_ids):
    """User code written against the transformers video-processor contract (Qwen2-VL style): it only uses
    ``pixel_values_videos`` / ``video_grid_thw`` (+ whatever else the processor returns, passed through) and
    ``processor.merge_size`` to expand one ``<video>`` placeholder per merged token."""
    feats = processor(videos=videos, return_tensors="pt")
    model_inputs = {k: v for k, v in feats.items() if isinstance(v, torch.Tensor) and not k.endswith("_num_tokens")}
    per_video = (feats["video_grid_thw"].prod(-1) // processor.merge_size ** 2).tolist()
    cfg = model.config
    ids = []
    for n in per_video:
        ids += [cfg.vision_start_token_id] + [cfg.video_token_id] * n + [cfg.vision_end_token_id]
    ids += text_ids
    input_ids = torch.tensor([ids])
    labels = torch.full_like(input_ids, -100)
    labels[0, -len(text_ids):] = torch.tensor(text_ids)
    out = model(input_ids=input_ids, labels=labels, **model_inputs)
    optimizer.zero_grad()
    out.loss.backward()
    optimizer.step()
    return out.loss.item()


def test_processor_swaps_into_a_training_loop(clip):
    model = _tiny_model()
    proc = Ov2VideoProcessor(num_frames=24, max_canvases=4, max_pixels=3136 * 4)
    vision_before = [p.detach().clone() for p in model.model.visual.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    text = [5, 9, 11, 7]
    loss0 = train_step(proc, model, opt, [clip], text)
    grads = [p.grad for p in model.model.visual.parameters() if p.grad is not None]
    assert np.isfinite(loss0) and grads and all(torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)  # gradients reach the vision tower through the tokens
    changed = [not torch.equal(a, b) for a, b in zip(vision_before, model.model.visual.parameters())]
    assert any(changed)
    loss1 = train_step(proc, model, opt, [clip], text)
    assert np.isfinite(loss1) and loss1 < loss0
