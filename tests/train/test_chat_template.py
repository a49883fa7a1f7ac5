"""Chat template and label masking against hand-written expectations."""
from __future__ import annotations

import pytest
import torch
from _util import SPECIALS, CharTokenizer, make_tokens

from ov2_model.chat import (IGNORE_INDEX, ChatTemplate, VisualLayout, VisualRun, collate_encodings,
                            format_timestamp, layout_from_visual_tokens)
from ov2_tokenizer.tokens import CANVAS_I, CANVAS_P

S = SPECIALS
IMS, IME, VS, VE, IP, VP = (S["<|im_start|>"], S["<|im_end|>"], S["<|vision_start|>"], S["<|vision_end|>"],
                            S["<|image_pad|>"], S["<|video_pad|>"])


def chars(s: str) -> list[int]:
    return [ord(c) for c in s]


def test_image_conversation_ids_and_labels_by_hand() -> None:
    conv = [{"role": "user", "content": "<image>What?"}, {"role": "assistant", "content": "A cat."}]
    enc = ChatTemplate(system_prompt="Sys").encode(CharTokenizer(), conv, [VisualLayout.image(3)])
    expected = (
        [IMS] + chars("system\n") + chars("Sys") + [IME] + chars("\n")
        + [IMS] + chars("user\n") + [VS, IP, IP, IP, VE] + chars("What?") + [IME] + chars("\n")
        + [IMS] + chars("assistant\n") + chars("A cat.") + [IME] + chars("\n")
    )
    assert enc.input_ids == expected
    trained = [t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE_INDEX]
    assert trained == chars("A cat.") + [IME]  # answer + closing <|im_end|>, not the newline after it
    # labels equal the ids where kept
    assert all(lab in (IGNORE_INDEX, t) for t, lab in zip(enc.input_ids, enc.labels))
    assert enc.n_visual == 3


def test_render_text_is_chatml() -> None:
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    text = ChatTemplate().render(conv, add_generation_prompt=False)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n")
    gen = ChatTemplate(system_prompt=None).render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert gen == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_video_runs_get_timestamps_and_vision_brackets() -> None:
    # canvases: I at 0.0 s, two P-canvases whose earliest evidence is at 0.5 s, frame at 2.04 s (-> "2.0")
    vt = make_tokens(4, kinds=[CANVAS_I, CANVAS_P, CANVAS_P, CANVAS_I], times=[0.0, 0.5, 0.5, 2.04])
    lay = layout_from_visual_tokens(vt)
    assert lay.modality == "video"
    assert lay.runs == [VisualRun(1, 0.0), VisualRun(2, 0.5), VisualRun(1, 2.0)]  # 28x28 canvas -> 1 token
    text = ChatTemplate(system_prompt=None).render([{"role": "user", "content": "<video>Q"}], [lay])
    assert text == ("<|im_start|>user\n<0.0 seconds><|vision_start|><|video_pad|><|vision_end|>"
                    "<0.5 seconds><|vision_start|><|video_pad|><|video_pad|><|vision_end|>"
                    "<2.0 seconds><|vision_start|><|video_pad|><|vision_end|>Q<|im_end|>\n")
    assert format_timestamp(12.34) == "<12.3 seconds>"


def test_p_canvas_time_is_earliest_source_and_padding_joins_previous_run() -> None:
    vt = make_tokens(3, hw=(56, 28), times=[1.0, 3.0, 3.0])  # 2 merged tokens per canvas
    # canvas 1 mixes blocks from 3.0 s and 2.5 s -> label 2.5; canvas 2 is all padding
    first_block = (vt.canvas == 1).nonzero().flatten()[:4]
    vt.t_s[first_block] = 2.5
    pad = vt.canvas == 2
    vt.frame[pad] = -1
    vt.t_s[pad] = float("nan")
    lay = layout_from_visual_tokens(vt)
    assert lay.runs == [VisualRun(2, 1.0), VisualRun(4, 2.5)]
    assert lay.num_tokens == vt.num_tokens // 4


def test_image_tokens_layout_and_marker_placement() -> None:
    img = make_tokens(1, hw=(56, 56), image=True)
    lay = layout_from_visual_tokens(img)
    assert lay == VisualLayout("image", [VisualRun(4, None)])
    # no marker: visuals go first in the first user turn
    conv = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    enc = ChatTemplate(system_prompt=None).encode(CharTokenizer(), conv, [lay])
    assert enc.input_ids[:12] == [IMS] + chars("user\n") + [VS, IP, IP, IP, IP, VE]
    # structured content parts
    conv2 = [{"role": "user", "content": [{"type": "text", "text": "Q"}, {"type": "image"}]}]
    enc2 = ChatTemplate(system_prompt=None).encode(CharTokenizer(), conv2, [lay])
    assert enc2.input_ids[6:13] == chars("Q") + [VS, IP, IP, IP, IP, VE]


def test_multi_turn_masks_every_answer_only() -> None:
    conv = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}, {"role": "assistant", "content": "de"}]
    enc = ChatTemplate(system_prompt=None).encode(CharTokenizer(), conv)
    trained = [t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE_INDEX]
    assert trained == chars("b") + [IME] + chars("de") + [IME]


def test_errors() -> None:
    t = ChatTemplate(system_prompt=None)
    with pytest.raises(ValueError, match="2 visual markers but 1"):
        t.encode(CharTokenizer(), [{"role": "user", "content": "<image><image>"}], [VisualLayout.image(1)])
    with pytest.raises(ValueError, match="matched with a video"):
        t.encode(CharTokenizer(), [{"role": "user", "content": "<image>"}], [VisualLayout.video([(0.0, 1)])])
    with pytest.raises(ValueError, match="unknown role"):
        t.encode(CharTokenizer(), [{"role": "bot", "content": "x"}])

    class NoSpecial(CharTokenizer):
        def convert_tokens_to_ids(self, token: str) -> int:
            return self.unk_token_id

    with pytest.raises(ValueError, match="no single id"):
        t.encode(NoSpecial(), [{"role": "user", "content": "x"}])


def test_collate_pads_right_and_masks_padding() -> None:
    t = ChatTemplate(system_prompt=None)
    a = t.encode(CharTokenizer(), [{"role": "user", "content": "x"}, {"role": "assistant", "content": "yy"}])
    b = t.encode(CharTokenizer(), [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])
    out = collate_encodings([a, b], pad_token_id=506)
    assert out["input_ids"].shape == (2, len(a.input_ids))
    assert out["attention_mask"][1].tolist() == [1] * len(b.input_ids) + [0]
    assert out["input_ids"][1, -1] == 506 and out["labels"][1, -1] == IGNORE_INDEX
    left = collate_encodings([a, b], pad_token_id=506, padding_side="left")
    assert left["attention_mask"][1, 0] == 0 and left["input_ids"][1, 1:].tolist() == b.input_ids


def test_with_transformers_tokenizer() -> None:
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(set("abcdefghijklmnopqrstuvwxyz .?\n<>0123456789")))}
    vocab["[UNK]"] = len(vocab)
    tk = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex("."), "isolated")
    tk.decoder = tokenizers.decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]")
    fast.add_special_tokens({"additional_special_tokens": list(SPECIALS)})
    conv = [{"role": "user", "content": "<video>why?"}, {"role": "assistant", "content": "because."}]
    lay = VisualLayout.video([(1.25, 2)])
    enc = ChatTemplate(system_prompt=None).encode(fast, conv, [lay])
    # the ids decode back to the rendered text and only the answer (+ <|im_end|>) is trained
    assert fast.decode(enc.input_ids) == ChatTemplate(system_prompt=None).render(conv, [lay])
    trained = [t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE_INDEX]
    assert fast.decode(trained) == "because.<|im_end|>"
    assert enc.input_ids.count(fast.convert_tokens_to_ids("<|video_pad|>")) == 2
    assert "<1.2 seconds>" in fast.decode(enc.input_ids)
    assert torch.equal(enc.tensors()["input_ids"][0], torch.tensor(enc.input_ids))
