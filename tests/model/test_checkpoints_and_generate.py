"""save_pretrained -> from_pretrained round trip, older and standalone layouts, clear loader errors, generate."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from _ov2_reference import perturb_, pooling_head, vision_forward
from ov2_model import (
    CheckpointMismatchError,
    LlavaOnevision2ForConditionalGeneration,
    LlavaOnevision2VisionConfig,
    LlavaOnevision2VisionModel,
    load_llava_onevision2,
    load_onevision_encoder,
)


def _states_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_from_pretrained_bit_identical(reference_model, fixture_dir, tmp_path):
    reference_model.save_pretrained(tmp_path)
    saved, original = load_file(str(tmp_path / "model.safetensors")), load_file(str(fixture_dir / "model.safetensors"))
    assert saved.keys() == original.keys()  # same (released) layout on disk
    assert all(torch.equal(saved[k], original[k]) for k in saved)
    again = LlavaOnevision2ForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert _states_equal(reference_model, again)
    c = load_file(str(fixture_dir / "case_image.safetensors"))
    with torch.no_grad():
        a = reference_model(input_ids=c["input_ids"], pixel_values=c["pixel_values"], image_grid_thw=c["image_grid_thw"],
                            patch_positions=c["patch_positions"]).logits
        b = again(input_ids=c["input_ids"], pixel_values=c["pixel_values"], image_grid_thw=c["image_grid_thw"],
                  patch_positions=c["patch_positions"]).logits
    assert torch.equal(a, b)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "llava_onevision2"


def _write_legacy(fixture_dir, out_dir):
    sd = load_file(str(fixture_dir / "model.safetensors"))
    legacy = {}
    for k, v in sd.items():
        if k.startswith("model.visual."):
            legacy["visual." + k[len("model.visual."):]] = v
        elif k.startswith("model.language_model."):
            legacy["language_model.model." + k[len("model.language_model."):]] = v
        elif k == "lm_head.weight":
            legacy["language_model.lm_head.weight"] = v
    out_dir.mkdir()
    shutil.copy(fixture_dir / "config.json", out_dir / "config.json")
    save_file(legacy, str(out_dir / "model.safetensors"))
    return out_dir


def test_legacy_prefixes_load_and_resave_current_layout(reference_model, fixture_dir, tmp_path):
    legacy_dir = _write_legacy(fixture_dir, tmp_path / "legacy")
    model = LlavaOnevision2ForConditionalGeneration.from_pretrained(legacy_dir)
    assert _states_equal(reference_model, model)
    assert _states_equal(reference_model, load_llava_onevision2(legacy_dir))
    model.save_pretrained(tmp_path / "resaved")
    keys = load_file(str(tmp_path / "resaved" / "model.safetensors")).keys()
    assert keys == load_file(str(fixture_dir / "model.safetensors")).keys()


def test_strict_loader_lists_missing_and_unexpected(fixture_dir, tmp_path):
    sd = load_file(str(fixture_dir / "model.safetensors"))
    sd.pop("model.visual.merger.ln_q.weight")
    sd["model.visual.extra.weight"] = torch.zeros(1)
    (tmp_path / "bad").mkdir()
    shutil.copy(fixture_dir / "config.json", tmp_path / "bad" / "config.json")
    save_file(sd, str(tmp_path / "bad" / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError) as err:
        load_llava_onevision2(tmp_path / "bad")
    msg = str(err.value)
    assert "missing keys (1)" in msg and "model.visual.merger.ln_q.weight" in msg
    assert "unexpected keys (1)" in msg and "model.visual.extra.weight" in msg
    assert err.value.missing == ["model.visual.merger.ln_q.weight"]


def _standalone_checkpoint(tmp_path):
    """A standalone OneVision-Encoder directory (separate q/k/v/out projections, pooling head)."""
    cfg = LlavaOnevision2VisionConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=2, patch_size=4, use_head=True, out_hidden_size=32)
    torch.manual_seed(0)
    tower = perturb_(LlavaOnevision2VisionModel(cfg).eval(), seed=2)
    sd = {}
    for k, v in tower.state_dict().items():
        if k.startswith("merger."):
            continue
        if ".self_attn.qkv." in k:
            for name, part in zip("qkv", v.chunk(3, dim=0)):
                sd[k.replace(".qkv.", f".{name}_proj.")] = part.clone()
        elif ".self_attn.proj." in k:
            sd[k.replace(".proj.", ".out_proj.")] = v
        else:
            sd[k] = v
    d = tmp_path / "ovenc"
    d.mkdir()
    config = {k: getattr(cfg, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                           "num_attention_heads", "patch_size", "use_head", "layer_norm_eps",
                                           "rope_theta", "hidden_act", "layer_norm_type")}
    config.update(model_type="onevision_encoder", rope_temporal_size=64,
                  auto_map={"AutoModel": "modeling_onevision_encoder.OneVisionEncoderModel"})
    (d / "config.json").write_text(json.dumps(config))
    save_file(sd, str(d / "model.safetensors"))
    return d, tower


def test_standalone_onevision_encoder_layout(tmp_path):
    d, tower = _standalone_checkpoint(tmp_path)
    loaded = load_onevision_encoder(d, out_hidden_size=32)
    for k, v in tower.state_dict().items():
        if not k.startswith("merger."):
            assert torch.equal(loaded.state_dict()[k], v), k
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(8, 48, generator=g)
    grid = torch.tensor([[2, 2, 2]])
    with torch.no_grad():
        out = loaded(pixels, grid_thw=grid, skip_merger=True)
    pos = torch.tensor([[t, i, j] for t in range(2) for i in range(2) for j in range(2)])
    _, feats = vision_forward(tower.state_dict(), tower.config, pixels, pos, torch.zeros(8))
    assert (out.last_hidden_state[0].double() - feats).abs().max().item() < 1e-4
    pooled = pooling_head(tower.state_dict(), tower.config, feats)
    assert (out.pooler_output[0].double() - pooled).abs().max().item() < 1e-4


def test_standalone_layout_error_names_keys(tmp_path):
    d, _ = _standalone_checkpoint(tmp_path)
    sd = load_file(str(d / "model.safetensors"))
    sd.pop("encoder.layers.1.self_attn.k_proj.weight")
    save_file(sd, str(d / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError) as err:
        load_onevision_encoder(d)
    msg = str(err.value)
    assert "encoder.layers.1.self_attn.qkv.weight" in msg  # cannot be fused: reported missing
    assert "encoder.layers.1.self_attn.q_proj.weight" in msg  # the leftovers are reported unexpected


def test_vision_tower_from_vlm_directory(reference_model, fixture_dir):
    tower = load_onevision_encoder(fixture_dir)
    ref = reference_model.model.visual.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in tower.state_dict().items())


def test_generate_greedy_matches_manual_decoding(reference_model, fixture_dir):
    c = load_file(str(fixture_dir / "case_video.safetensors"))
    vis = dict(pixel_values_videos=c["pixel_values_videos"], video_grid_thw=c["video_grid_thw"],
               patch_positions=c["patch_positions"])
    ids = c["input_ids"]
    out = reference_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4,
                                   do_sample=False, **vis)
    seq = ids
    with torch.no_grad():
        for _ in range(4):
            logits = reference_model(input_ids=seq, **vis).logits
            seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, seq)


def test_generate_beam_search_expands_packed_visual_inputs(reference_model, fixture_dir):
    c = load_file(str(fixture_dir / "case_image.safetensors"))
    out = reference_model.generate(input_ids=c["input_ids"], pixel_values=c["pixel_values"],
                                   image_grid_thw=c["image_grid_thw"], patch_positions=c["patch_positions"],
                                   max_new_tokens=3, num_beams=2, num_return_sequences=2, do_sample=False)
    assert out.shape == (2, c["input_ids"].shape[1] + 3)
    assert torch.equal(out[:, : c["input_ids"].shape[1]], c["input_ids"].repeat(2, 1))


def test_labels_give_token_mean_loss(reference_model, fixture_dir):
    c = load_file(str(fixture_dir / "case_image.safetensors"))
    labels = c["input_ids"].clone()
    labels[:, :15] = -100
    out = reference_model(input_ids=c["input_ids"], pixel_values=c["pixel_values"],
                          image_grid_thw=c["image_grid_thw"], patch_positions=c["patch_positions"], labels=labels)
    logits = out.logits[0, :-1]
    expected = torch.nn.functional.cross_entropy(logits, labels[0, 1:], ignore_index=-100)
    assert torch.allclose(out.loss, expected, atol=1e-6)


def test_placeholder_count_mismatch_is_reported(reference_model, fixture_dir):
    c = load_file(str(fixture_dir / "case_image.safetensors"))
    ids = c["input_ids"].clone()
    ids[0, 2] = 7  # one image placeholder (500) too few
    with pytest.raises(ValueError, match="appears 11 times but there are 12 visual features"):
        reference_model(input_ids=ids, pixel_values=c["pixel_values"], image_grid_thw=c["image_grid_thw"],
                        patch_positions=c["patch_positions"])
