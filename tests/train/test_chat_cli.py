"""``generate_reply`` and the ``ov2 chat`` / ``ov2 train`` plug-in on a tiny random model in the released layout."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _util import SPECIALS, CharTokenizer, hf_char_tokenizer as _hf_char_tokenizer, make_tokens, tiny_model

from ov2_model import cli
from ov2_model.chat import ChatTemplate, generate_reply


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


def test_ov2_chat_end_to_end_on_saved_tiny_model(tmp_path: Path, generated_dir: Path, capsys) -> None:
    """Acceptance: ``ov2 chat VIDEO "question" --model DIR --compare`` on a tiny random model saved in the released
    layout and a generated video (tokenized for real by ov2_tokenizer) prints, for codec_stream and frames at the
    same budget, the answer, the visual-token count and the time to first token."""
    from _videos import write_clips

    video = write_clips(generated_dir / "chat", n=1)[0]
    model_dir = tmp_path / "tiny"
    tiny_model().save_pretrained(str(model_dir))
    _hf_char_tokenizer().save_pretrained(str(model_dir))
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    base = ["chat", str(video), "What happens?", "--model", str(model_dir), "--compare", "--budget", "3",
            "--max-pixels", "3136", "--max-new-tokens", "3", "--device", "cpu"]
    args = parser.parse_args(base + ["--json"])
    assert args.func(args) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [r["mode"] for r in lines] == ["codec_stream", "frames"]
    for r in lines:  # same budget: 3 canvases of 56x56 -> 3 * 4 merged tokens in both modes
        assert r["canvases"] == 3 and r["visual_tokens"] == 12
        assert r["time_to_first_token_s"] >= r["model_ttft_s"] > 0 and r["tokenize_s"] > 0
        assert isinstance(r["answer"], str) and 1 <= r["new_tokens"] <= 3 and r["tokens_per_s"] >= 0
    # the human-readable form prints the answer line and the counts / timings line per mode
    args = parser.parse_args(base)
    assert args.func(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[codec_stream] ") and out[2].startswith("[frames] ")
    for line in (out[1], out[3]):
        assert "visual tokens 12 (3 canvases)" in line and "time to first token" in line and "tokens/s" in line


def test_ov2_train_cli_runs_a_yaml_config(tmp_path: Path, generated_dir: Path, capsys) -> None:
    """``ov2 train`` end to end: YAML config -> model + tokenizer from a directory -> a manifest of generated videos
    read by ov2_tokenizer.data in two forms (codec_stream, frames; DataLoader worker) -> checkpoints -> resume."""
    import yaml
    from _videos import generated_manifest, options

    manifest = generated_manifest(generated_dir / "train")
    model_dir = tmp_path / "tiny"
    tiny_model().save_pretrained(str(model_dir))
    _hf_char_tokenizer().save_pretrained(str(model_dir))
    conf = {"model": "tiny", "max_steps": 3, "batch_size": 2, "lr": 1e-3, "output_dir": str(tmp_path / "run"), "progress": True,
            "mix": {"codec_stream": 0.5, "frames": 0.5}, "num_workers": 1,
            "data": {m: {"manifest": str(manifest), **options(m)} for m in ("codec_stream", "frames")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(conf))
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["train", str(tmp_path / "c.yaml"), "--set", "max_steps=2"])
    assert args.func(args) == 0
    assert (tmp_path / "run" / "checkpoint-0000002" / "model.safetensors").exists()
    assert (tmp_path / "run" / "checkpoint-0000002" / "tokenizer.json").exists()
    err = capsys.readouterr().err  # the progress bar shows the loss, tokens/s and the visual-token share
    assert "train" in err and "loss=" in err and "tok_s=" in err and "vis=" in err
    # a second invocation resumes (resume: auto) and continues to max_steps
    args = parser.parse_args(["train", str(tmp_path / "c.yaml")])
    assert args.func(args) == 0
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]


def test_ov2_chat_cope_mode_on_a_cope_checkpoint(tmp_path: Path, generated_dir: Path) -> None:
    """``ov2 chat --mode cope`` loads model + Δ-encoder from the directory and answers from the interleaved
    I-token / Δ-token stream of the tokenizer's cope mode."""
    import ov2_tokenizer as ov2
    from _videos import write_clips

    from ov2_model.delta import CopeVideoLM, DeltaEncoder, DeltaEncoderConfig, cope_layout
    from ov2_model.train import save_delta_weights

    video = write_clips(generated_dir / "chat", n=1)[0]
    model_dir = tmp_path / "cope"
    torch.manual_seed(0)
    module = CopeVideoLM(tiny_model(), DeltaEncoder(DeltaEncoderConfig(d_model=64, width=32, num_heads=2,
                                                                       num_layers=1, resnet_base=8)))
    module.lm.save_pretrained(str(model_dir))
    save_delta_weights(module, model_dir)
    _hf_char_tokenizer().save_pretrained(str(model_dir))
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["chat", str(video), "What happens?", "--model", str(model_dir), "--mode", "cope",
                              "--budget", "2", "--max-pixels", "3136", "--max-new-tokens", "2", "--device", "cpu",
                              "--json"])
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert args.func(args) == 0
    rec = json.loads(buf.getvalue().strip().splitlines()[-1])
    vt = ov2.tokenize_video(str(video), mode="cope", max_canvases=2, max_pixels=3136)
    n_steps = int(vt.groups["delta_motion"].shape[0])
    assert rec["mode"] == "cope" and rec["canvases"] == 2 and n_steps > 0
    assert rec["visual_tokens"] == cope_layout(vt, 8).num_tokens == 2 * 4 + 8 * n_steps
    assert rec["time_to_first_token_s"] > 0 and 1 <= rec["new_tokens"] <= 2
