"""Training loop: mixing, overfit, 2-process gloo DDP = 1 process, exact resume, configs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from _ddp_worker import clips, images
from _util import CharTokenizer, tiny_model

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


@pytest.fixture(scope="module")
def clips_manifest(generated_dir: Path) -> Path:
    """8 generated captioned clips and their training manifest (ov2_tokenizer.data format)."""
    from _videos import generated_manifest

    return generated_manifest(generated_dir / "train")


@pytest.fixture(scope="module")
def shared_train_manifest(tmp_path_factory) -> Path:
    from _videos import shared_manifest

    m = shared_manifest(tmp_path_factory.mktemp("shared_train"))
    if m is None:
        pytest.skip("shared test videos not found (../shared/videos)")
    return m


def _overfit(manifest: Path, out: Path, shared: bool, steps: int = 100, mix: dict | None = None) -> list[dict]:
    from _videos import options

    from ov2_model.train import ManifestDataset

    torch.manual_seed(0)
    mix = mix or {"codec_stream": 0.5, "frames": 0.5}
    data = {m: ManifestDataset(manifest, mode=m, options=options(m, shared, cache=True)) for m in mix}
    cfg = TrainConfig(max_steps=steps, batch_size=8, lr=5e-3, warmup_steps=5, output_dir=str(out), progress=False,
                      mix=mix, resume=None, max_grad_norm=1.0, system_prompt=None)
    trainer = Trainer(tiny_model(text_hidden=64), CharTokenizer(), data, cfg)
    # the batches really come from ov2_tokenizer.data: packed varlen sequences with cu_seqlens per video
    b = trainer.step_batches(0)[0]
    packed = b.packed["video"]
    assert packed.cu_seqlens.tolist()[-1] == b.inputs["pixel_values_videos"].shape[0]
    assert len(packed.cu_seqlens) == packed.batch_size + 1 and packed.batch_size == 8
    assert {md["dataset"]["source"] for md in packed.metadata} <= {str(r["path"]) for r in data[next(iter(mix))].records}
    assert {md["mode"] for md in packed.metadata} == set(mix)
    return trainer.train()


def test_overfit_100_steps_on_generated_clips_cuts_loss_by_90_percent(tmp_path: Path, clips_manifest: Path) -> None:
    """Acceptance: 100 steps on 8 captioned (generated) clips, codec_stream + frames batches built by
    ov2_tokenizer.data, cut the LM loss by >= 90%."""
    hist = _overfit(clips_manifest, tmp_path, False)
    first, last = hist[0]["loss"], sum(h["loss"] for h in hist[-3:]) / 3
    assert len(hist) == 100 and last < 0.1 * first, (first, last)
    assert 0 < hist[0]["visual_share"] < 1 and hist[0]["tokens_per_s"] > 0
    assert latest_checkpoint(tmp_path).name == "checkpoint-0000100"
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 100 and {"loss", "tokens_per_s", "visual_share", "lr"} <= set(log[0])


def test_overfit_on_shared_real_videos(tmp_path: Path, shared_train_manifest: Path) -> None:
    """The same on the shared real videos (frames form; skipped when ../shared/videos is absent)."""
    hist = _overfit(shared_train_manifest, tmp_path, True, steps=60, mix={"frames": 1.0})
    first, last = hist[0]["loss"], sum(h["loss"] for h in hist[-3:]) / 3
    assert last < 0.1 * first, (first, last)


def _trainer(out: Path, steps: int, data: dict, seed: int = 0) -> Trainer:
    from _ddp_worker import COPE, MIX

    cfg = TrainConfig(max_steps=steps, batch_size=1, grad_accum=2, lr=3e-3, warmup_steps=2, output_dir=str(out),
                      progress=False, mix=MIX, resume=None, weight_decay=0.1, cope=COPE, system_prompt=None)
    torch.manual_seed(seed)
    return Trainer(tiny_model(seed=seed), CharTokenizer(), data, cfg)


def test_stop_at_20_and_resume_gives_the_uninterrupted_losses(tmp_path: Path, clips_manifest: Path) -> None:
    """Acceptance: stop at step 20, resume (fresh model, optimizer, disturbed RNG) -> the losses and parameters of
    an uninterrupted run, bit for bit, on generated videos through ov2_tokenizer.data (all four forms, cope too)."""
    from _ddp_worker import sources

    data = sources(str(clips_manifest))
    straight = _trainer(tmp_path / "a", 24, data)
    straight.train()
    first = _trainer(tmp_path / "b", 24, data)
    first.train(stop_at=20)
    assert first.step == 20 and latest_checkpoint(tmp_path / "b").name == "checkpoint-0000020"
    torch.manual_seed(1234)  # disturb the global RNG: resume must restore it
    resumed = _trainer(tmp_path / "b", 24, data, seed=99)  # different init: the checkpoint must overwrite it
    resumed.load_checkpoint(latest_checkpoint(tmp_path / "b"))
    assert resumed.step == 20
    resumed.train()
    assert resumed.step == 24
    a = dict(straight.train_module.named_parameters())
    for n, p in resumed.train_module.named_parameters():  # the model, the Δ-encoder and its projector
        assert torch.equal(p, a[n]), n
    assert [h["loss"] for h in first.history] == [h["loss"] for h in straight.history[:20]]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history[20:]]
    # the optimizer state agrees too
    sa, sb = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"]) for k in sa)
    # the checkpoint is a released-layout model directory
    from ov2_model import LlavaOnevision2ForConditionalGeneration

    re = LlavaOnevision2ForConditionalGeneration.from_pretrained(str(latest_checkpoint(tmp_path / "b")))
    assert torch.equal(re.lm_head.weight, resumed.base_model.lm_head.weight)


def test_resume_on_shared_real_videos(tmp_path: Path, shared_train_manifest: Path) -> None:
    from _videos import options

    from ov2_model.train import ManifestDataset

    data = {"frames": ManifestDataset(shared_train_manifest, "frames", options("frames", True, cache=True))}

    def make(out: Path, seed: int = 0) -> Trainer:
        cfg = TrainConfig(max_steps=6, batch_size=2, lr=3e-3, output_dir=str(out), progress=False,
                          mix={"frames": 1.0}, resume=None)
        return Trainer(tiny_model(seed=seed), CharTokenizer(), data, cfg)

    straight = make(tmp_path / "a")
    straight.train()
    first = make(tmp_path / "b")
    first.train(stop_at=3)
    resumed = make(tmp_path / "b", seed=5)
    resumed.load_checkpoint(latest_checkpoint(tmp_path / "b"))
    resumed.train()
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history[3:]]


@pytest.mark.parametrize("distributed", ["ddp", "fsdp"])
def test_two_process_gloo_matches_one_process(tmp_path: Path, clips_manifest: Path, distributed: str) -> None:
    """Acceptance: DDP, and FSDP2 ``fully_shard`` (with a stop / checkpoint / resume half-way), on 2 gloo
    processes with 2 samples each give the losses (within 1e-4 on every step) and parameters of 1 process with 4
    samples, on codec_stream / frames / image / cope batches that ov2_tokenizer.data builds from generated videos."""
    from _ddp_worker import run

    steps = 5 if distributed == "ddp" else 4
    mp.spawn(_spawn, args=(2, str(tmp_path / "init"), str(tmp_path / "ddp.json"), str(tmp_path / "ddp"), 2, steps,
                           distributed, str(clips_manifest)), nprocs=2, join=True)
    run(0, 1, "", str(tmp_path / "single.json"), str(tmp_path / "single"), 4, steps, "ddp", str(clips_manifest))
    ddp = json.loads((tmp_path / "ddp.json").read_text())
    one = json.loads((tmp_path / "single.json").read_text())
    assert len(ddp["loss"]) == len(one["loss"]) == steps
    for a, b in zip(ddp["loss"], one["loss"]):
        assert abs(a - b) < 1e-4, (ddp["loss"], one["loss"])
    assert ddp["loss"][-1] < ddp["loss"][0]
    assert ddp["forms"] == ["codec_stream", "cope", "frames", "image"] and all(0 < v < 1 for v in ddp["visual_share"])
    assert ddp["cope_batches"] > 0
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
            TokenizerConfig(**{k: v for k, v in spec.items() if k not in ("manifest", "mode", "cache", "on_failure")})
    cope = budgets["cope_finetune"]  # CoPE fine-tuning: a cope form, a Δ-encoder at paper dimensions
    assert cope.data["cope"]["mode"] == "cope" and all(x % 16 == 0 for x in cope.cope["size"])
    from ov2_model.delta import DeltaEncoder, DeltaEncoderConfig, count_parameters

    enc = DeltaEncoder(DeltaEncoderConfig(**cope.cope["delta"]))
    assert enc.config.num_tokens == 8 and count_parameters(enc) < 15_000_000
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
