"""ov2's tower and VLM against an independent implementation written from the equations
(tests/model/_ov2_reference.py), for configurations the parity fixture does not cover."""

from __future__ import annotations

import pytest
import torch

from _ov2_reference import perturb_, pooling_head, vision_forward, window_groups
from ov2_model import (
    LlavaOnevision2Config,
    LlavaOnevision2ForConditionalGeneration,
    LlavaOnevision2VisionConfig,
    LlavaOnevision2VisionModel,
)

TOL = 1e-4


def _tower(seed=0, **kw):
    base = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
                patch_size=4, out_hidden_size=24, attention_backend="torch")
    base.update(kw)
    torch.manual_seed(seed)
    return perturb_(LlavaOnevision2VisionModel(LlavaOnevision2VisionConfig(**base)).eval(), seed=seed)


def _inputs(grid, p, seed=0, tmax=30, smax=40):
    g = torch.Generator().manual_seed(seed)
    n = int(sum(t * h * w for t, h, w in grid))
    pixels = torch.randn(n, 3 * p * p, generator=g)
    # arbitrary (codec-like) positions: RoPE only depends on the given coordinates
    pos = torch.stack([torch.randint(0, tmax, (n,), generator=g), torch.randint(0, smax, (n,), generator=g),
                       torch.randint(0, smax, (n,), generator=g)], 1)
    return pixels, torch.tensor(grid), pos


CASES = {
    # merge size 3, 5 canvases: windows of 4 + 1 (count not a multiple of four)
    "merge3_5canvases": (dict(spatial_merge_size=3), [[5, 3, 6]]),
    # more layers and heads (head_dim 32), two videos: windows 4 + 2 and 3
    "3layers_4heads_two_videos": (dict(num_hidden_layers=3, num_attention_heads=4, hidden_size=128),
                                  [[6, 2, 4], [3, 4, 2]]),
    # images of different sizes, head_dim 64, frame_windows_size 2
    "images_fws2": (dict(frame_windows_size=2, num_attention_heads=1), [[1, 2, 4], [1, 4, 4], [3, 2, 2]]),
    # RMSNorm variant with the pooling head (layernorm_post is applied before the merger)
    "rms_norm_with_head": (dict(layer_norm_type="rms_norm", use_head=True), [[2, 2, 2]]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tower_matches_equations(name):
    overrides, grid = CASES[name]
    model = _tower(**overrides)
    cfg = model.config
    pixels, grid_thw, pos = _inputs(grid, cfg.patch_size)
    with torch.no_grad():
        out = model(pixels, grid_thw=grid_thw, patch_positions=pos)
    ref, feats = vision_forward(model.state_dict(), cfg, pixels, pos, window_groups(grid_thw, cfg.frame_windows_size))
    assert out.last_hidden_state.shape == ref.shape
    assert (out.last_hidden_state.double() - ref).abs().max().item() < TOL
    if cfg.use_head:
        lengths = [t * h * w for t, h, w in grid]
        pooled_ref = torch.stack([pooling_head(model.state_dict(), cfg, f) for f in torch.split(feats, lengths)])
        assert (out.pooler_output.double() - pooled_ref).abs().max().item() < TOL


def test_explicit_variable_groups_and_windows():
    """Arbitrary codec groups (5, 2 and 1 canvases) plus interleaved window ids."""
    model = _tower(seed=3)
    cfg = model.config
    grid = [[8, 2, 2]]
    pixels, grid_thw, pos = _inputs(grid, cfg.patch_size, seed=3)
    groups = torch.repeat_interleave(torch.tensor([7, 2, 9]), torch.tensor([5 * 4, 2 * 4, 1 * 4]))
    windows = torch.arange(32) % 3
    with torch.no_grad():
        out = model(pixels, grid_thw=grid_thw, patch_positions=pos, segment_ids=groups, window_ids=windows)
        released = model(pixels, grid_thw=grid_thw, patch_positions=pos)
    ref, _ = vision_forward(model.state_dict(), cfg, pixels, pos, groups, windows)
    assert (out.last_hidden_state.double() - ref).abs().max().item() < TOL
    assert (out.last_hidden_state - released.last_hidden_state).abs().max().item() > 1e-3


def test_default_positions_are_block_ordered_grid():
    model = _tower(seed=4, spatial_merge_size=3)
    grid_thw = torch.tensor([[2, 3, 6]])
    pixels, _, _ = _inputs(grid_thw.tolist(), 4, seed=4)
    pos = []
    for t in range(2):
        for bh in range(1):
            for bw in range(2):
                for i in range(3):
                    for j in range(3):
                        pos.append([t, bh * 3 + i, bw * 3 + j])
    pos = torch.tensor(pos)
    with torch.no_grad():
        a = model(pixels, grid_thw=grid_thw).last_hidden_state
        b = model(pixels, grid_thw=grid_thw, patch_positions=pos).last_hidden_state
    assert torch.equal(a, b)


def test_skip_merger_and_hidden_states():
    model = _tower(seed=5)
    pixels, grid_thw, pos = _inputs([[2, 2, 2]], 4, seed=5)
    with torch.no_grad():
        out = model(pixels, grid_thw=grid_thw, patch_positions=pos, skip_merger=True, output_hidden_states=True)
    _, feats = vision_forward(model.state_dict(), model.config, pixels, pos, torch.zeros(8))
    assert out.last_hidden_state.shape == (1, 8, 64)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert (out.last_hidden_state[0].double() - feats).abs().max().item() < TOL


def test_vlm_merge3_logits_against_reference_features():
    """Full VLM, merge size 3, 6-canvas video: logits equal Qwen3 fed with the reference's merged tokens."""
    cfg = LlavaOnevision2Config(
        vision_config=dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
                           patch_size=4, spatial_merge_size=3, out_hidden_size=48),
        text_config=dict(model_type="qwen3", hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=24, vocab_size=80),
        image_token_id=76, video_token_id=77, vision_start_token_id=78, vision_end_token_id=79,
    )
    torch.manual_seed(0)
    model = perturb_(LlavaOnevision2ForConditionalGeneration(cfg).eval(), seed=1)
    pixels, grid_thw, pos = _inputs([[6, 3, 3]], 4, seed=6)  # 54 patches -> 6 merged tokens
    ids = torch.tensor([[1, 2, 78] + [77] * 6 + [79, 3, 4]])
    with torch.no_grad():
        logits = model(input_ids=ids, pixel_values_videos=pixels, video_grid_thw=grid_thw,
                       patch_positions=pos).logits
        visual_sd = {k[len("model.visual."):]: v for k, v in model.state_dict().items() if k.startswith("model.visual.")}
        feats, _ = vision_forward(visual_sd, cfg.vision_config, pixels, pos, window_groups(grid_thw, 4))
        emb = model.model.language_model.embed_tokens(ids).double()
        slots = (ids[0] == 77).nonzero().flatten().tolist()
        for r, s in enumerate(slots):
            emb[0, s] = feats[r]
        lm = model.model.language_model.double()
        h = lm(inputs_embeds=emb, position_ids=torch.arange(ids.shape[1])[None]).last_hidden_state
        ref = h @ model.lm_head.weight.double().T
        model.float()
    assert (logits.double() - ref).abs().max().item() < TOL
