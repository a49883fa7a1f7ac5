"""VisualTokens -> model inputs, and end to end through the tiny model (forward and generate)."""

from __future__ import annotations

import pytest
import torch

from _ov2_reference import perturb_, vision_forward
from ov2_model import LlavaOnevision2Config, LlavaOnevision2ForConditionalGeneration, visual_tokens_to_inputs

P, M = 14, 2


class FakeVisualTokens:
    """A VisualTokens-like object (DESIGN.md 3.2 attribute names) for codec groups of given canvas counts."""

    def __init__(self, group_sizes, hc=28, wc=56, image=False, seed=0):
        g = torch.Generator().manual_seed(seed)
        s = sum(group_sizes)
        self.canvases = torch.randint(0, 256, (s, 3, hc, wc), generator=g, dtype=torch.uint8)
        kinds = []
        for size in group_sizes:
            kinds += [3] if image else [0] + [1] * (size - 1)
        self.canvas_kind = torch.tensor(kinds, dtype=torch.int8)
        gh, gw = hc // P, wc // P
        per = gh * gw
        self.canvas = torch.arange(s, dtype=torch.int32).repeat_interleave(per)
        self.group = torch.repeat_interleave(torch.arange(len(group_sizes), dtype=torch.int32) * 10 + 3,
                                             torch.tensor(group_sizes) * per)
        # block-order cell of each record, source frame index as temporal coordinate
        cells = [(bh * M + i, bw * M + j) for bh in range(gh // M) for bw in range(gw // M)
                 for i in range(M) for j in range(M)]
        frames = torch.cumsum(torch.randint(1, 4, (s,), generator=g), 0) - 1
        self.frame = frames.to(torch.int32).repeat_interleave(per)
        self.pos_thw = torch.tensor([[int(frames[c]), h, w] for c in range(s) for h, w in cells], dtype=torch.int32)
        self.can_hw = torch.tensor([[h, w] for _ in range(s) for h, w in cells], dtype=torch.int16)
        self.src_hw = self.can_hw.clone()
        self.t_s = self.frame.float() / 25.0
        self._cells = cells

    def patches(self):
        x = self.canvases.float() / 255.0 - 0.5
        rows = []
        for c in range(x.shape[0]):
            for h, w in self._cells:
                rows.append(x[c, :, h * P:(h + 1) * P, w * P:(w + 1) * P].reshape(-1))
        return torch.stack(rows)


def _tiny_model(seed=0):
    cfg = LlavaOnevision2Config(
        vision_config=dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
                           out_hidden_size=32),
        text_config=dict(model_type="qwen3", hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, vocab_size=64),
        image_token_id=60, video_token_id=61, vision_start_token_id=62, vision_end_token_id=63,
    )
    torch.manual_seed(seed)
    return perturb_(LlavaOnevision2ForConditionalGeneration(cfg).eval(), seed=seed)


def test_fields_follow_design_5_9():
    a, b = FakeVisualTokens([4, 4], seed=1), FakeVisualTokens([5, 2, 1], seed=2)
    inp = visual_tokens_to_inputs([a, b])
    assert inp.modality == "video"
    assert inp.grid_thw.tolist() == [[8, 2, 4], [8, 2, 4]]
    assert torch.equal(inp.pixel_values, torch.cat([a.patches(), b.patches()]))
    assert torch.equal(inp.patch_positions, torch.cat([a.pos_thw, b.pos_thw]).long())
    assert inp.num_tokens == [16, 16]
    # groups renumbered densely, disjoint between items, boundaries preserved
    assert inp.group_ids.tolist() == ([0] * 32 + [1] * 32) + ([2] * 40 + [3] * 16 + [4] * 8)
    kw = inp.model_kwargs()
    assert set(kw) == {"pixel_values_videos", "video_grid_thw", "patch_positions", "video_group_ids"}
    assert visual_tokens_to_inputs(a, groups="windows").group_ids is None


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="mix modalities"):
        visual_tokens_to_inputs([FakeVisualTokens([4]), FakeVisualTokens([1], image=True)])
    with pytest.raises(TypeError, match="canvases"):
        visual_tokens_to_inputs(object())
    vt = FakeVisualTokens([2])
    vt.pos_thw = vt.pos_thw[:-1]
    with pytest.raises(ValueError, match="pos_thw"):
        visual_tokens_to_inputs(vt)


def test_end_to_end_variable_groups_forward_and_generate():
    model = _tiny_model()
    vt = FakeVisualTokens([5, 2, 1], seed=3)  # groups of 5, 2 and 1 canvases (not four-slice windows)
    inp = visual_tokens_to_inputs(vt)
    n_tok = inp.num_tokens[0]
    ids = torch.tensor([[1, 62] + [61] * n_tok + [63, 2, 3]])
    with torch.no_grad():
        feats = model.get_video_features(inp.pixel_values, inp.grid_thw, inp.patch_positions, inp.group_ids)[0]
    visual_sd = {k[len("model.visual."):]: v for k, v in model.state_dict().items() if k.startswith("model.visual.")}
    ref, _ = vision_forward(visual_sd, model.config.vision_config, inp.pixel_values, inp.patch_positions, inp.group_ids)
    assert (feats.double() - ref).abs().max().item() < 1e-4

    out = model(input_ids=ids, **inp.model_kwargs())
    assert out.logits.shape == (1, ids.shape[1], 64) and torch.isfinite(out.logits).all()
    gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False,
                         **inp.model_kwargs())
    assert gen.shape == (1, ids.shape[1] + 3)


def test_end_to_end_images_two_sizes():
    model = _tiny_model(seed=1)
    a, b = FakeVisualTokens([1], hc=28, wc=28, image=True, seed=4), FakeVisualTokens([1], image=True, seed=5)
    inp = visual_tokens_to_inputs([a, b])
    assert inp.modality == "image" and inp.num_tokens == [1, 2]
    ids = torch.tensor([[1, 62, 60, 63, 62, 60, 60, 63, 5]])
    out = model(input_ids=ids, **inp.model_kwargs())
    assert torch.isfinite(out.logits).all()


def test_tokenize_video_end_to_end():
    """Real tokens from ov2_tokenizer.tokenize_video on a shared video, when the tokenizer is built."""
    tok = pytest.importorskip("ov2_tokenizer", exc_type=ImportError)
    if not hasattr(tok, "tokenize_video"):
        pytest.skip("ov2_tokenizer.tokenize_video is not available in this checkout yet")
    from pathlib import Path

    videos = sorted((Path(__file__).resolve().parents[3] / "shared" / "videos").glob("ytb_*.mp4"))
    source = str(videos[0]) if videos else tok.sample_video()  # a generated clip where the shared ones are absent
    vt = tok.tokenize_video(source, num_frames=32, max_canvases=8)
    assert vt.num_canvases == 8 and vt.meta["mode"] == "codec_stream"
    inp = visual_tokens_to_inputs(vt)
    model = _tiny_model()
    n_tok = sum(inp.num_tokens)
    ids = torch.tensor([[1, 62] + [61] * n_tok + [63, 2]])
    out = model(input_ids=ids, **inp.model_kwargs())
    assert torch.isfinite(out.logits).all()
    gen = model.generate(input_ids=ids, max_new_tokens=2, do_sample=False, **inp.model_kwargs())
    assert gen.shape[1] == ids.shape[1] + 2
