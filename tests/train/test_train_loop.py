"""Training loop: mixing, overfit, 2-process gloo DDP = 1 process, exact resume, configs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from _ddp_worker import clips, images
from _util import CharTokenizer, make_tokens, tiny_model

from ov2_model.chat import IGNORE_INDEX
from ov2_model.train import (MixSchedule, SampleSource, Trainer, TrainConfig, collate_samples, latest_checkpoint,
                             load_config)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "train"


def test_mix_schedule_exact_ratios_and_o1_lookup() -> None:
    s = MixSchedule({"codec_stream": 0.5, "frames": 0.375, "image": 0.125})
    assert s.period == 8
    forms = [s(i)[0] for i in range(800)]
    assert forms.count("codec_stream") == 400 and forms.count("frames") == 300 and forms.count("image") == 100
    # k counts the samples of each form in order
    seen: dict[str, int] = {}
    for i in range(40):
        f, k = s(i)
        assert k == seen.get(f, 0)
        seen[f] = k + 1
    assert [s(i)[0] for i in range(3)] == forms[:3]
    with pytest.raises(ValueError):
        MixSchedule({"a": 0})


def test_sample_source_sequence_and_iterable() -> None:
    seq = SampleSource(list(range(5)), seed=1)
    epoch0 = [seq[k] for k in range(5)]
    assert sorted(epoch0) == list(range(5)) and [seq[k] for k in range(5)] == epoch0  # deterministic
    assert sorted(seq[k] for k in range(5, 10)) == list(range(5))
    it = SampleSource(lambda: iter("abc"))
    assert [it[k] for k in (0, 1, 2, 3, 1)] == ["a", "b", "c", "a", "b"]


def test_collate_packs_images_and_videos_and_masks_labels() -> None:
    samples = [clips(2)[1], images(1)[0], clips(1)[0]]
    b = collate_samples(samples, CharTokenizer(), __import__("ov2_model.chat").chat.ChatTemplate(), 2, 506)
    inp = b.inputs
    assert inp["video_grid_thw"].tolist() == [[3, 2, 2], [2, 2, 2]] and inp["image_grid_thw"].tolist() == [[1, 2, 2]]
    assert inp["pixel_values_videos"].shape == (20, 588) and inp["pixel_values"].shape == (4, 588)
    assert inp["patch_positions"].shape == (24, 3)
    assert int((inp["input_ids"] == 501).sum()) == 5 and int((inp["input_ids"] == 500).sum()) == 1
    assert b.n_visual == 6 and b.n_tokens == int(inp["attention_mask"].sum())
    assert bool((b.labels[inp["attention_mask"] == 0] == IGNORE_INDEX).all())
    assert b.n_label == int((b.labels[:, 1:] != IGNORE_INDEX).sum())
    # video groups are renumbered per item: 1 group per clip here (group = canvas // 4)
    assert inp["video_group_ids"].unique().tolist() == [0, 1]


def test_overfit_captioned_clips_cuts_loss_by_90_percent(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = [(make_tokens(2, seed=i), [{"role": "user", "content": "<video>Caption."},
                                      {"role": "assistant", "content": f"clip {i} " + "abcdefgh"[i] * 4}])
            for i in range(8)]
    cfg = TrainConfig(max_steps=70, batch_size=8, lr=5e-3, warmup_steps=5, output_dir=str(tmp_path), progress=False,
                      mix={"frames": 1.0}, resume=None, max_grad_norm=1.0)
    hist = Trainer(tiny_model(text_hidden=64), CharTokenizer(), {"frames": data}, cfg).train()
    first, last = hist[0]["loss"], sum(h["loss"] for h in hist[-3:]) / 3
    assert last < 0.1 * first, (first, last)
    assert 0 < hist[0]["visual_share"] < 1 and hist[0]["tokens_per_s"] > 0
    assert latest_checkpoint(tmp_path).name == "checkpoint-0000070"
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 70 and {"loss", "tokens_per_s", "visual_share", "lr"} <= set(log[0])


def _trainer(out: Path, steps: int, seed: int = 0) -> Trainer:
    cfg = TrainConfig(max_steps=steps, batch_size=2, grad_accum=2, lr=3e-3, warmup_steps=2, output_dir=str(out),
                      progress=False, mix={"frames": 0.75, "image": 0.25}, resume=None, weight_decay=0.1)
    return Trainer(tiny_model(seed=seed), CharTokenizer(), {"frames": clips(), "image": images()}, cfg)


def test_exact_resume_is_bit_identical(tmp_path: Path) -> None:
    straight = _trainer(tmp_path / "a", 6)
    straight.train()
    first = _trainer(tmp_path / "b", 6)
    first.train(stop_at=3)
    assert first.step == 3 and latest_checkpoint(tmp_path / "b").name == "checkpoint-0000003"
    torch.manual_seed(1234)  # disturb the global RNG: resume must restore it
    resumed = _trainer(tmp_path / "b", 6, seed=99)  # different init: the checkpoint must overwrite it
    resumed.load_checkpoint(latest_checkpoint(tmp_path / "b"))
    assert resumed.step == 3
    resumed.train()
    assert resumed.step == 6
    a = dict(straight.base_model.named_parameters())
    for n, p in resumed.base_model.named_parameters():
        assert torch.equal(p, a[n]), n
    assert [h["loss"] for h in resumed.history[-3:]] == [h["loss"] for h in straight.history[3:]]
    # the optimizer state agrees too
    sa, sb = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"]) for k in sa)
    # the checkpoint is a released-layout model directory
    from ov2_model import LlavaOnevision2ForConditionalGeneration

    re = LlavaOnevision2ForConditionalGeneration.from_pretrained(str(latest_checkpoint(tmp_path / "b")))
    assert torch.equal(re.lm_head.weight, resumed.base_model.lm_head.weight)


@pytest.mark.parametrize("distributed", ["ddp", "fsdp"])
def test_two_process_gloo_matches_one_process(tmp_path: Path, distributed: str) -> None:
    """DDP, and FSDP2 (with a stop / checkpoint / resume half-way), on 2 gloo processes with 2 samples each
    give the losses and parameters of 1 process with 4 samples."""
    from _ddp_worker import run

    steps = 5 if distributed == "ddp" else 4
    mp.spawn(_spawn, args=(2, str(tmp_path / "init"), str(tmp_path / "ddp.json"), str(tmp_path / "ddp"), 2, steps,
                           distributed), nprocs=2, join=True)
    run(0, 1, "", str(tmp_path / "single.json"), str(tmp_path / "single"), 4, steps)
    ddp = json.loads((tmp_path / "ddp.json").read_text())
    one = json.loads((tmp_path / "single.json").read_text())
    for a, b in zip(ddp["loss"], one["loss"]):
        assert abs(a - b) < 1e-4, (ddp["loss"], one["loss"])
    assert ddp["loss"][-1] < ddp["loss"][0]
    for n, v in one["params"].items():
        assert abs(ddp["params"][n] - v) < 1e-3 * max(1.0, abs(v)), n


def _spawn(rank: int, *args) -> None:
    from _ddp_worker import spawn_entry

    spawn_entry(rank, *args)


def test_example_configs_load() -> None:
    files = sorted(CONFIGS.glob("*.yaml"))
    assert len(files) >= 5
    budgets = {}
    for f in files:
        cfg = load_config(f)
        assert cfg.max_steps > 0 and sum(cfg.mix.values()) == pytest.approx(1.0)
        budgets[f.stem] = cfg
    s4 = budgets["stage4_codec"]
    assert s4.mix == {"codec_stream": 0.5, "frames": 0.375, "image": 0.125}
    assert s4.data["codec_stream"]["num_frames"] == 384
    from ov2_tokenizer.config import TokenizerConfig

    for cfg in budgets.values():  # every data spec is a valid tokenizer configuration
        for form, spec in cfg.data.items():
            assert form in cfg.mix
            TokenizerConfig(**{k: v for k, v in spec.items() if k not in ("manifest", "mode")})
    over = load_config(files[0], ["lr=0.5", "mix.image=0.5", "bf16=true"])
    assert over.lr == 0.5 and over.mix["image"] == 0.5 and over.bf16 is True
    with pytest.raises(ValueError, match="unknown training options"):
        TrainConfig.from_dict({"nope": 1})


def test_bf16_autocast_and_gradient_checkpointing_flags(tmp_path: Path) -> None:
    cfg = TrainConfig(max_steps=2, batch_size=2, lr=1e-3, output_dir=str(tmp_path), progress=False,
                      mix={"frames": 1.0}, resume=None, bf16=True, gradient_checkpointing=True)
    t = Trainer(tiny_model(), CharTokenizer(), {"frames": clips(4)}, cfg)
    assert t.base_model.model.language_model.gradient_checkpointing
    hist = t.train()
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    assert all(p.dtype == torch.float32 for p in t.base_model.parameters())  # fp32 master weights
    ref = Trainer(tiny_model(), CharTokenizer(), {"frames": clips(4)},
                  TrainConfig(max_steps=1, batch_size=2, lr=1e-3, output_dir=str(tmp_path / "fp32"), progress=False,
                              mix={"frames": 1.0}, resume=None)).train()
    assert abs(ref[0]["loss"] - hist[0]["loss"]) < 0.05 * ref[0]["loss"]  # bf16 is close to fp32, not equal
    assert ref[0]["loss"] != hist[0]["loss"]
