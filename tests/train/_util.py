"""Helpers of the training tests: a character-level tokenizer, tiny models and synthetic VisualTokens."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ov2_tokenizer.tokens import CANVAS_FRAME, CANVAS_I, CANVAS_IMAGE, CANVAS_P, VisualTokens

SPECIALS = {
    "<|image_pad|>": 500, "<|video_pad|>": 501, "<|vision_start|>": 502, "<|vision_end|>": 503,
    "<|im_start|>": 504, "<|im_end|>": 505, "<|endoftext|>": 506,
}
UNK = 499
VOCAB = 512


class CharTokenizer:
    """One id per character (code point < 499), the ChatML / vision specials at 500-506."""

    pad_token_id = SPECIALS["<|endoftext|>"]
    eos_token_id = SPECIALS["<|im_end|>"]
    unk_token_id = UNK

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) if ord(c) < UNK else UNK for c in text]

    def convert_tokens_to_ids(self, token: str) -> int:
        return SPECIALS.get(token, UNK)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        inv = {v: k for k, v in SPECIALS.items()}
        out = []
        for i in ids:
            i = int(i)
            if i in inv:
                if not skip_special_tokens:
                    out.append(inv[i])
            elif i < UNK:
                out.append(chr(i))
        return "".join(out)


def tiny_config(text_hidden: int = 32, text_layers: int = 1, vision_hidden: int = 64):
    from ov2_model import LlavaOnevision2Config

    return LlavaOnevision2Config(
        vision_config=dict(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, num_hidden_layers=1,
                           num_attention_heads=vision_hidden // 32, out_hidden_size=text_hidden),
        text_config=dict(model_type="qwen3", hidden_size=text_hidden, intermediate_size=2 * text_hidden,
                         num_hidden_layers=text_layers, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=text_hidden // 2, vocab_size=VOCAB),
        image_token_id=500, video_token_id=501, vision_start_token_id=502, vision_end_token_id=503)


def tiny_model(seed: int = 0, **kw):
    from ov2_model import LlavaOnevision2ForConditionalGeneration

    torch.manual_seed(seed)
    return LlavaOnevision2ForConditionalGeneration(tiny_config(**kw)).float()


def make_tokens(n_canvases: int, kinds: Optional[Sequence[int]] = None, times: Optional[Sequence[float]] = None,
                hw: tuple[int, int] = (28, 28), seed: int = 0, image: bool = False) -> VisualTokens:
    """Random canvases with complete records: frame = canvas, t_s = times[canvas], group = canvas // 4."""
    vt = VisualTokens.empty_like_geometry(num_canvases=n_canvases, canvas_hw=hw, patch_size=14, merge_size=2)
    g = torch.Generator().manual_seed(seed)
    vt.canvases = torch.randint(0, 256, vt.canvases.shape, generator=g, dtype=torch.uint8)
    if image:
        kinds = [CANVAS_IMAGE] * n_canvases
        times = [0.0] * n_canvases
    kinds = list(kinds) if kinds is not None else [CANVAS_FRAME] * n_canvases
    times = list(times) if times is not None else [float(i) for i in range(n_canvases)]
    vt.canvas_kind = torch.tensor(kinds, dtype=torch.int8)
    c = vt.canvas.long()
    vt.frame = c.to(torch.int32)
    vt.t_s = torch.tensor(times, dtype=torch.float32)[c]
    vt.group = (c // 4).to(torch.int32) if not image else torch.zeros_like(vt.group)
    t = torch.zeros_like(c) if image else c
    vt.pos_thw = torch.stack([t, vt.src_hw[:, 0].long(), vt.src_hw[:, 1].long()], 1).to(torch.int32)
    vt.meta["mode"] = "image" if image else "frames"
    return vt


def hf_char_tokenizer():
    """A transformers fast tokenizer with the same ids as :class:`CharTokenizer` (saved with a model directory)."""
    import pytest

    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    vocab = {chr(i): i for i in range(32, 127)}
    vocab["\n"] = 10
    vocab["[UNK]"] = 499
    vocab.update(SPECIALS)  # the specials keep the tiny model's ids (500..)
    tk = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex("[\\s\\S]"), "isolated")
    tk.decoder = tokenizers.decoders.Fuse()
    # specials get ids 500.. in this order, matching the tiny model config
    tk.add_special_tokens([tokenizers.AddedToken(t, special=True) for t in SPECIALS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="<|endoftext|>")
    assert [fast.convert_tokens_to_ids(t) for t in SPECIALS] == list(SPECIALS.values())
    return fast


__all__ = ["CharTokenizer", "hf_char_tokenizer", "SPECIALS", "tiny_config", "tiny_model", "make_tokens", "CANVAS_I", "CANVAS_P"]
