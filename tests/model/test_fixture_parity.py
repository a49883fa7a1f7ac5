"""Parity with the released LLaVA-OneVision-2 implementation on the shared tiny fixture (fp32, CPU)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

TOL = 1e-4


def _case(fixture_dir, name):
    return load_file(str(fixture_dir / f"case_{name}.safetensors"))


def test_video_logits_match_released(reference_model, fixture_dir):
    c = _case(fixture_dir, "video")
    with torch.no_grad():
        out = reference_model(
            input_ids=c["input_ids"], attention_mask=torch.ones_like(c["input_ids"]),
            pixel_values_videos=c["pixel_values_videos"], video_grid_thw=c["video_grid_thw"],
            patch_positions=c["patch_positions"],
        )
    assert out.logits.shape == c["logits"].shape
    assert (out.logits - c["logits"]).abs().max().item() < TOL


def test_video_features_match_released(reference_model, fixture_dir):
    c = _case(fixture_dir, "video")
    with torch.no_grad():
        feats = reference_model.get_video_features(
            c["pixel_values_videos"], c["video_grid_thw"], c["patch_positions"]
        )
    assert len(feats) == 1
    assert (feats[0] - c["video_features"]).abs().max().item() < TOL


def test_image_logits_match_released(reference_model, fixture_dir):
    c = _case(fixture_dir, "image")
    with torch.no_grad():
        out = reference_model(
            input_ids=c["input_ids"], attention_mask=torch.ones_like(c["input_ids"]),
            pixel_values=c["pixel_values"], image_grid_thw=c["image_grid_thw"], patch_positions=c["patch_positions"],
        )
    assert (out.logits - c["logits"]).abs().max().item() < TOL


def test_video_windows_matter(reference_model, fixture_dir):
    """The fixture discriminates the attention groups: one group over all 8 canvases gives other logits."""
    c = _case(fixture_dir, "video")
    n = c["pixel_values_videos"].shape[0]
    with torch.no_grad():
        out = reference_model(
            input_ids=c["input_ids"], pixel_values_videos=c["pixel_values_videos"],
            video_grid_thw=c["video_grid_thw"], patch_positions=c["patch_positions"],
            video_group_ids=torch.zeros(n, dtype=torch.long),
        )
    assert (out.logits - c["logits"]).abs().max().item() > 1e-3
    # explicit group ids equal to the released four-canvas windows reproduce the released logits
    groups = torch.arange(n) // (4 * 16)
    with torch.no_grad():
        out = reference_model(
            input_ids=c["input_ids"], pixel_values_videos=c["pixel_values_videos"],
            video_grid_thw=c["video_grid_thw"], patch_positions=c["patch_positions"], video_group_ids=groups,
        )
    assert (out.logits - c["logits"]).abs().max().item() < TOL


def test_image_default_positions_are_block_order_grid(reference_model, fixture_dir):
    """Without patch_positions the positions are the dense grid in 2x2-block order (the fixture's)."""
    from ov2_model.modeling_llava_onevision2 import default_patch_positions

    c = _case(fixture_dir, "image")
    assert torch.equal(default_patch_positions(c["image_grid_thw"], 2), c["patch_positions"])


def test_strict_loader_matches_from_pretrained(reference_model, fixture_dir):
    from ov2_model import load_llava_onevision2

    model = load_llava_onevision2(fixture_dir)
    ref = reference_model.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_fixture_config_fields(reference_model):
    cfg = reference_model.config
    assert cfg.model_type == "llava_onevision2"
    assert cfg.vision_config.model_type == "onevision_encoder"
    assert cfg.text_config.model_type == "qwen3"
    assert (cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id) == (
        500, 501, 502, 503)
    assert type(reference_model.model.language_model).__name__ == "Qwen3Model"
