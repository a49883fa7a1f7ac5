"""Worker of the 2-process gloo DDP test (imported by torch.multiprocessing.spawn children)."""
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


def run(rank: int, world: int, init_file: str, out_file: str, out_dir: str, batch_size: int, steps: int,
        distributed: str = "ddp") -> None:
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from _util import CharTokenizer, tiny_model

        from ov2_model.train import Trainer, TrainConfig

        cfg = TrainConfig(max_steps=steps, batch_size=batch_size, lr=2e-3, output_dir=out_dir, progress=False,
                          mix={"frames": 0.75, "image": 0.25}, resume=None, max_grad_norm=0.0, seed=3,
                          distributed=distributed)
        trainer = Trainer(tiny_model(seed=0), CharTokenizer(), {"frames": clips(), "image": images()}, cfg)
        if distributed == "fsdp":  # stop half-way, resume in a fresh trainer from the (gathered) checkpoint
            from ov2_model.train import latest_checkpoint

            first = trainer.train(stop_at=steps // 2)
            trainer = Trainer(tiny_model(seed=7), CharTokenizer(), {"frames": clips(), "image": images()}, cfg)
            trainer.load_checkpoint(latest_checkpoint(out_dir))
            hist = first + trainer.train()
        else:
            hist = trainer.train()
        params = {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().double().sum().item()
                  for n, p in trainer.base_model.named_parameters()}
        if rank == 0:
            with open(out_file, "w") as fh:
                json.dump({"loss": [h["loss"] for h in hist], "params": params,
                           "visual_share": hist[0]["visual_share"]}, fh)
    finally:
        if world > 1:
            dist.destroy_process_group()


def spawn_entry(rank: int, world: int, init_file: str, out_file: str, out_dir: str, batch_size: int,
                steps: int, distributed: str = "ddp") -> None:
    run(rank, world, init_file, out_file, out_dir, batch_size, steps, distributed)
