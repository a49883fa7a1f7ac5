"""``generate_reply`` and the ``ov2 chat`` / ``ov2 train`` plug-in on a tiny random model in the released layout."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from _util import SPECIALS, CharTokenizer, make_tokens, tiny_model

from ov2_model import cli
from ov2_model.chat import ChatTemplate, generate_reply


def _hf_char_tokenizer():
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


def test_generate_reply_counts_and_timings() -> None:
    model = tiny_model().eval()
    vt = make_tokens(4)
    reply = generate_reply(model, CharTokenizer(), [vt], "What happens?", max_new_tokens=5)
    assert reply.visual_tokens == 4 and 1 <= reply.new_tokens <= 5
    assert reply.time_to_first_token_s > 0 and reply.prompt_tokens > reply.visual_tokens
    # the same prompt through the template: generate's first token is the argmax of a plain forward
    enc = ChatTemplate().encode(CharTokenizer(), [{"role": "user", "content": "What happens?"}],
                                [__import__("ov2_model.chat").chat.layout_from_visual_tokens(vt)],
                                add_generation_prompt=True)
    from ov2_model.inputs import visual_tokens_to_inputs

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([enc.input_ids]), **visual_tokens_to_inputs([vt]).model_kwargs()).logits
    first = int(logits[0, -1].argmax())
    expect = CharTokenizer().decode([first]) if first != SPECIALS["<|im_end|>"] else ""
    assert reply.text.startswith(expect)


def test_ov2_chat_end_to_end_on_saved_tiny_model(tmp_path: Path, monkeypatch, capsys) -> None:
    model_dir = tmp_path / "tiny"
    tiny_model().save_pretrained(str(model_dir))
    _hf_char_tokenizer().save_pretrained(str(model_dir))
    calls = []

    def fake_tokenize(path: str, mode: str, budget):
        calls.append((mode, budget))
        n = budget or 8
        vt = make_tokens(n if mode == "frames" else n, seed=1)
        vt.meta["mode"] = mode
        return vt

    monkeypatch.setattr(cli, "_tokenize", fake_tokenize)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["chat", "clip.mp4", "What happens?", "--model", str(model_dir), "--compare",
                              "--budget", "4", "--max-new-tokens", "3", "--device", "cpu", "--json"])
    assert args.func(args) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [r["mode"] for r in lines] == ["codec_stream", "frames"] and calls == [("codec_stream", 4), ("frames", 4)]
    for r in lines:
        assert r["visual_tokens"] == 4 and r["time_to_first_token_s"] >= r["model_ttft_s"] > 0
        assert isinstance(r["answer"], str) and 1 <= r["new_tokens"] <= 3


def test_ov2_train_cli_runs_a_json_config(tmp_path: Path, monkeypatch) -> None:
    """``ov2 train`` end to end: config file -> model + tokenizer from a directory -> manifest-free sources."""
    model_dir = tmp_path / "tiny"
    tiny_model().save_pretrained(str(model_dir))
    _hf_char_tokenizer().save_pretrained(str(model_dir))
    conf = {"model": str(model_dir), "max_steps": 3, "batch_size": 2, "lr": 1e-3, "output_dir": str(tmp_path / "run"),
            "progress": False, "mix": {"frames": 1.0}, "data": {"frames": {"manifest": "unused.jsonl"}}}
    (tmp_path / "c.json").write_text(json.dumps(conf))
    data = [(make_tokens(2, seed=i), [{"from": "human", "value": "<video>Hi"}, {"from": "gpt", "value": "ok"}])
            for i in range(3)]
    import ov2_model.train as T

    monkeypatch.setattr(T, "ManifestDataset", lambda manifest, mode, options: data)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["train", str(tmp_path / "c.json"), "--set", "max_steps=2"])
    assert args.func(args) == 0
    assert (tmp_path / "run" / "checkpoint-0000002" / "model.safetensors").exists()
    assert (tmp_path / "run" / "checkpoint-0000002" / "tokenizer.json").exists()
    # a second invocation resumes (resume: auto) and continues to max_steps
    args = parser.parse_args(["train", str(tmp_path / "c.json")])
    assert args.func(args) == 0
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]
