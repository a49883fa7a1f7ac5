"""CoPE fine-tuning through the trainer: the tokenizer's ``cope`` mode -> interleaved I-token / Δ-token sequence ->
LLM, trained with ``Trainer`` and ``ov2 train`` (form ``cope``), saved and resumed exactly."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from _util import CharTokenizer, hf_char_tokenizer, tiny_model
from _videos import generated_manifest, options

from ov2_model.train import ManifestDataset, Trainer, TrainConfig, latest_checkpoint

DELTA = {"width": 32, "num_heads": 2, "num_layers": 1, "resnet_base": 8}


@pytest.fixture(scope="module")
def manifest(generated_dir: Path) -> Path:
    return generated_manifest(generated_dir / "train")


def _data(manifest: Path) -> dict:
    return {m: ManifestDataset(manifest, mode=m, options=options(m, cache=True)) for m in ("cope", "frames")}


def _trainer(out: Path, data: dict, steps: int = 6, seed: int = 0, **kw) -> Trainer:
    cfg = TrainConfig(max_steps=steps, batch_size=2, lr=3e-3, output_dir=str(out), progress=False,
                      mix={"cope": 0.5, "frames": 0.5}, resume=None, system_prompt=None, seed=1,
                      cope={"delta": dict(DELTA)}, **kw)
    torch.manual_seed(seed)
    return Trainer(tiny_model(seed=seed), CharTokenizer(), data, cfg)


def test_cope_batch_is_the_interleaved_i_and_delta_sequence(tmp_path: Path, manifest: Path) -> None:
    """The placeholders of a cope sample are its I-frame tokens and N tokens per P-step in temporal order, and the
    module's forward equals the LLM on hand-built embeddings (I-canvases encoded one by one, Δ-tokens per step,
    merged by time)."""
    data = _data(manifest)
    t = _trainer(tmp_path, data)
    vt, _ = data["cope"][0]
    assert vt.meta["mode"] == "cope" and vt.groups["delta_motion"].shape[0] > 0
    batches = t.step_batches(0)
    b = next(x for x in batches if "cope_pixel_values" in x.inputs)
    n_tok = t.cope_tokens
    assert n_tok == 8
    inp = b.inputs
    # per cope video: merged I tokens + N per P-step placeholders; the ordinary video gets its own
    n_cope = sum(int(g[0] * g[1] * g[2]) // 4 + n_tok * int(m.shape[0])
                 for g, m in zip(inp["cope_grid_thw"], inp["cope_motion"]))
    n_plain = int(inp["video_grid_thw"].prod(-1).sum()) // 4 if "video_grid_thw" in inp else 0
    assert int((inp["input_ids"] == 501).sum()) == n_cope + n_plain == b.n_visual
    assert b.packed["cope"].cu_seqlens.tolist()[-1] == inp["cope_pixel_values"].shape[0]

    module = t.train_module.eval()
    lm = module.lm
    with torch.no_grad():
        got = module(**inp, use_cache=False).logits
        # hand-built sequence
        seqs = []
        off = 0
        for v, g in enumerate(inp["cope_grid_thw"].tolist()):
            n = g[0] * g[1] * g[2]
            per = g[1] * g[2]
            blocks = []
            for c in range(g[0]):
                sl = slice(off + c * per, off + (c + 1) * per)
                f = lm.get_video_features(inp["cope_pixel_values"][sl], torch.tensor([[1, g[1], g[2]]]),
                                          inp["cope_patch_positions"][sl])[0]
                blocks.append((float(inp["cope_i_times"][v][c]), 0, f))
            off += n
            d = module.projector(module.delta(inp["cope_motion"][v], inp["cope_residual"][v]).tokens)
            blocks += [(float(tt), 1, d[k]) for k, tt in enumerate(inp["cope_delta_times"][v].tolist())]
            blocks.sort(key=lambda x: (x[0], x[1]))
            seqs.append(torch.cat([x[2] for x in blocks]))
        plain = []
        if "video_grid_thw" in inp:
            plain = lm.get_video_features(inp["pixel_values_videos"], inp["video_grid_thw"], inp["patch_positions"],
                                          inp.get("video_group_ids"))
        it_c, it_p = iter(seqs), iter(plain)
        feats = torch.cat([next(it_c) if c else next(it_p) for c in inp["video_is_cope"].tolist()])
        emb = lm.get_input_embeddings()(inp["input_ids"])
        mask = (inp["input_ids"] == 501).unsqueeze(-1).expand_as(emb)
        emb = emb.masked_scatter(mask, feats)
        want = lm(inputs_embeds=emb, attention_mask=inp["attention_mask"], use_cache=False).logits
    assert torch.allclose(got, want, atol=1e-5), float((got - want).abs().max())


def test_cope_finetuning_trains_the_delta_encoder_and_resumes_exactly(tmp_path: Path, manifest: Path) -> None:
    data = _data(manifest)
    straight = _trainer(tmp_path / "a", data)
    init = {k: v.clone() for k, v in straight.cope_module.delta.state_dict().items()}
    proj0 = [p.detach().clone() for p in straight.cope_module.projector.parameters()]
    straight.train()
    h = [r["loss"] for r in straight.history]
    assert h[-1] < h[0]
    moved = [k for k, v in straight.cope_module.delta.state_dict().items()
             if v.dtype.is_floating_point and not torch.equal(v, init[k])]
    assert any(k.startswith("motion_") for k in moved) and any(k.startswith("residual_tf") for k in moved)
    assert any(not torch.equal(a, b) for a, b in zip(proj0, straight.cope_module.projector.parameters()))
    ck = latest_checkpoint(tmp_path / "a")
    assert (ck / "delta_encoder.safetensors").exists() and json.loads((ck / "cope_config.json").read_text())[
        "delta"]["num_layers"] == 1
    from ov2_model import LlavaOnevision2ForConditionalGeneration

    LlavaOnevision2ForConditionalGeneration.from_pretrained(str(ck))  # the model part stays in the released layout
    # stop at 3, resume into a differently initialised trainer: bit-identical losses and Δ-encoder
    first = _trainer(tmp_path / "b", data)
    first.train(stop_at=3)
    resumed = _trainer(tmp_path / "b", data, seed=5)
    resumed.load_checkpoint(latest_checkpoint(tmp_path / "b"))
    resumed.train()
    assert [r["loss"] for r in resumed.history] == h[3:]
    for (k, a), b in zip(straight.train_module.state_dict().items(), resumed.train_module.state_dict().values()):
        assert torch.equal(a, b), k


def test_ov2_train_with_a_cope_form_and_a_pretrained_delta_encoder(tmp_path: Path, manifest: Path) -> None:
    """``ov2 train`` with ``mix: {cope: ...}``, ``data.cope`` read by ov2_tokenizer.data in ``cope`` mode and a
    pre-trained Δ-encoder (saved from a DeltaPretrainer) loaded from ``cope.checkpoint``."""
    from ov2_model import cli
    from ov2_model.delta import DeltaEncoder, DeltaEncoderConfig, DeltaPretrainer
    from ov2_model.train import save_delta_weights

    model_dir = tmp_path / "tiny"
    tiny_model().save_pretrained(str(model_dir))
    hf_char_tokenizer().save_pretrained(str(model_dir))
    torch.manual_seed(11)
    pre = DeltaPretrainer(DeltaEncoder(DeltaEncoderConfig(d_model=64, **DELTA)), image_dim=64)
    save_delta_weights(pre, tmp_path / "pretrained")
    conf = {"model": str(model_dir), "max_steps": 2, "batch_size": 2, "lr": 1e-3, "output_dir": str(tmp_path / "run"),
            "progress": False, "mix": {"cope": 1.0}, "system_prompt": None,
            "data": {"cope": {"manifest": str(manifest), **options("cope", cache=True)}},
            "cope": {"delta": dict(DELTA), "checkpoint": str(tmp_path / "pretrained")}}
    (tmp_path / "c.json").write_text(json.dumps(conf))
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["train", str(tmp_path / "c.json"), "--set", "max_steps=1"])
    assert args.func(args) == 0
    ck = tmp_path / "run" / "checkpoint-0000001"
    from safetensors.torch import load_file

    saved = load_file(str(ck / "delta_encoder.safetensors"))
    ref = pre.encoder.state_dict()
    # started from the pre-trained encoder: BatchNorm counted one forward per cope video of the step (2), and a
    # trained weight stays close to the pre-trained one (lr 1e-3, one AdamW step moves it by at most ~lr)
    assert torch.equal(saved["delta.resnet.layers.0.0.bn1.num_batches_tracked"],
                       ref["resnet.layers.0.0.bn1.num_batches_tracked"] + 2)
    w0, w1 = ref["motion_mlp.0.weight"], saved["delta.motion_mlp.0.weight"]
    assert 0 < float((w1 - w0).abs().max()) <= 1.5e-3
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["visual_share"] > 0
    args = parser.parse_args(["train", str(tmp_path / "c.json")])  # resume: auto, continue to max_steps
    assert args.func(args) == 0
    assert [json.loads(x)["step"] for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()] == [1, 2]


def _synthetic_cope_tokens(seed: int = 0):
    """A cope-mode VisualTokens without a video: 2 I-canvases (28x28: one merged token each) at 0 s and 1 s and
    3 P-steps of a 64x64 frame at 0.5, 1.0 and 1.5 s."""
    from _util import CANVAS_I, make_tokens

    vt = make_tokens(2, kinds=[CANVAS_I, CANVAS_I], times=[0.0, 1.0], seed=seed)
    g = torch.Generator().manual_seed(seed)
    vt.meta["mode"] = "cope"
    vt.groups = {"delta_motion": torch.randn(3, 16, 16, 2, generator=g) * 4,
                 "delta_residual": torch.randint(-40, 40, (3, 64, 64, 3), generator=g, dtype=torch.int16),
                 "delta_t_s": torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64)}
    return vt


def test_generate_reply_answers_from_a_cope_stream() -> None:
    from ov2_model.chat import generate_reply
    from ov2_model.delta import CopeVideoLM, DeltaEncoder, DeltaEncoderConfig
    from ov2_model.train import build_visual_inputs

    torch.manual_seed(0)
    module = CopeVideoLM(tiny_model(), DeltaEncoder(DeltaEncoderConfig(d_model=64, **DELTA))).eval()
    vt = _synthetic_cope_tokens()
    reply = generate_reply(module, CharTokenizer(), [vt], "What?", max_new_tokens=3)
    assert reply.visual_tokens == 2 * 1 + 3 * 8 and 1 <= reply.new_tokens <= 3 and reply.time_to_first_token_s > 0
    # the first generated token is the argmax of a plain forward on the same prompt
    from ov2_model.chat import ChatTemplate
    from ov2_model.delta import cope_layout

    enc = ChatTemplate().encode(CharTokenizer(), [{"role": "user", "content": "What?"}], [cope_layout(vt, 8, 2)],
                                add_generation_prompt=True)
    kw, _ = build_visual_inputs([], [], [vt], [True], 2)
    with torch.no_grad():
        logits = module(input_ids=torch.tensor([enc.input_ids]), **kw).logits
    first = int(logits[0, -1].argmax())
    expect = CharTokenizer().decode([first]) if first != 505 else ""
    assert reply.text.startswith(expect)
    # the Δ-tokens reach the answer: other motion / residual inputs change the logits
    vt2 = _synthetic_cope_tokens()
    vt2.groups["delta_residual"] = -vt2.groups["delta_residual"]
    kw2, _ = build_visual_inputs([], [], [vt2], [True], 2)
    with torch.no_grad():
        logits2 = module(input_ids=torch.tensor([enc.input_ids]), **kw2).logits
    assert not torch.allclose(logits[0, -1], logits2[0, -1])
    # a plain model refuses cope inputs with a clear message
    with pytest.raises(ValueError, match="CopeVideoLM"):
        generate_reply(module.lm, CharTokenizer(), [vt], "What?", max_new_tokens=1)
