"""Worker of the 2-process gloo DDP / FSDP tests (imported by torch.multiprocessing.spawn children): training on
batches that ``ov2_tokenizer.data`` builds from generated videos."""
from __future__ import annotations

import json

import torch
import torch.distributed as dist


def clips(n: int = 8):
    from _util import make_tokens

    return [(make_tokens(2 + i % 2, seed=i), [{"role": "user", "content": "<video>Describe."},
                                            {"role": "assistant", "content": f"clip {i}: " + "xyzw"[i % 4] * (1 + i)}])
            for i in range(n)]


def images(n: int = 4):
    from _util import make_tokens

    return [(make_tokens(1, image=True, seed=50 + i), [{"role": "user", "content": "Name it."},
                                                      {"role": "assistant", "content": f"image {i}"}])
            for i in range(n)]


def sources(manifest: str, cache: bool = True) -> dict:
    """codec_stream / frames / image forms of the generated clips, tokenized by ov2_tokenizer.data (the image form
    reads the clips' first frames through a manifest whose question has an ``<image>`` marker)."""
    from pathlib import Path

    from _videos import generated_manifest, options

    from ov2_model.train import ManifestDataset

    d = Path(manifest).parent
    img = d / "clips_image.jsonl"
    if not img.exists():
        generated_manifest(d, question="<image>What is it?", name=img.name)
    return {mode: ManifestDataset(img if mode == "image" else manifest, mode=mode, options=options(mode, cache=cache))
            for mode in MIX}


#: every input form, CoPE streams included (period 8: 3 codec_stream, 2 frames, 2 cope, 1 image)
MIX = {"codec_stream": 0.375, "frames": 0.25, "cope": 0.25, "image": 0.125}
#: a small Δ-encoder for the cope form
COPE = {"delta": {"width": 32, "num_heads": 2, "num_layers": 1, "resnet_base": 8}}


def run(rank: int, world: int, init_file: str, out_file: str, out_dir: str, batch_size: int, steps: int,
        distributed: str = "ddp", manifest: str = "") -> None:
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from _util import CharTokenizer, tiny_model

        from ov2_model.train import Trainer, TrainConfig

        cfg = TrainConfig(max_steps=steps, batch_size=batch_size, lr=2e-3, output_dir=out_dir, progress=False,
                          mix=MIX, resume=None, max_grad_norm=0.0, seed=3, distributed=distributed, cope=COPE,
                          system_prompt=None)
        data = sources(manifest)
        torch.manual_seed(0)  # the Δ-encoder's initialisation
        trainer = Trainer(tiny_model(seed=0), CharTokenizer(), data, cfg)
        if distributed == "fsdp":  # stop half-way, resume in a fresh trainer from the (gathered) checkpoint
            from ov2_model.train import latest_checkpoint

            first = trainer.train(stop_at=steps // 2)
            trainer = Trainer(tiny_model(seed=7), CharTokenizer(), data, cfg)
            trainer.load_checkpoint(latest_checkpoint(out_dir))
            hist = first + trainer.train()
        else:
            hist = trainer.train()
        params = {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().double().sum().item()
                  for n, p in trainer.train_module.named_parameters()}
        # micro-batches with cope streams, over all ranks
        n_cope = torch.tensor(float(sum("cope_pixel_values" in b.inputs for s in range(steps)
                                        for b in trainer.step_batches(s))))
        if world > 1:
            dist.all_reduce(n_cope)
        if rank == 0:
            with open(out_file, "w") as fh:
                json.dump({"loss": [h["loss"] for h in hist], "params": params,
                           "visual_share": [h["visual_share"] for h in hist],
                           "forms": sorted({trainer.schedule(i)[0] for i in range(steps * 4)}),
                           "cope_batches": int(n_cope)}, fh)
    finally:
        if world > 1:
            dist.destroy_process_group()


def spawn_entry(rank: int, world: int, init_file: str, out_file: str, out_dir: str, batch_size: int,
                steps: int, distributed: str = "ddp", manifest: str = "") -> None:
    run(rank, world, init_file, out_file, out_dir, batch_size, steps, distributed, manifest)
