"""Training LLaVA-OneVision-2 on mixed visual inputs with ``torch.distributed`` (DDP or FSDP).

Data: any number of *sources* (one per input form, e.g. ``codec_stream``, ``frames``, ``image``), each a
sequence (random access, reshuffled every epoch) or an iterable factory of samples. A sample is
``(visual, conversation)`` (or a dict with keys ``visual`` / ``conversation``): ``visual`` is a
``VisualTokens``-like object, a list of them, or ``None``; ``conversation`` a list of
``{"role", "content"}`` messages (LLaVA's ``{"from": "human"|"gpt", "value"}`` is accepted too).

The global sample stream interleaves the sources with the configured ratios by a fixed periodic schedule
(largest deficit first: 50 / 37.5 / 12.5 % gives the period ``[c, f, c, f, c, i, f, c]``-like pattern of length 8),
so the *k*-th sample of every form and the form of every global index are pure functions of the index.
Global step ``s`` consumes global samples ``[s·G, (s+1)·G)`` with ``G = batch_size · grad_accum · world_size``;
rank ``r`` takes its contiguous share. The data position is therefore one integer, and resuming -- on the
same or another world size -- continues the same stream.

Loss: the shifted cross-entropy summed over the assistant tokens of every micro-batch and divided by the
number of label tokens of the whole global batch (all-reduced), so a 2-process run computes the same loss
and gradients as a 1-process run with the same global batch (token-level mean, DESIGN §6).

Batches: the chat template (:mod:`ov2_model.chat`) renders each conversation with the visual placeholders;
the micro-batch is right-padded; images and videos of the micro-batch are packed into one
``pixel_values`` / ``pixel_values_videos`` tensor each by :func:`ov2_model.inputs.visual_tokens_to_inputs`
(segments per item and codec group). Text sequences are padded, not concatenated.

Checkpoints (``output_dir/checkpoint-NNNNNNN/``): the model in the released layout (``config.json`` +
safetensors, loadable with ``from_pretrained``), the tokenizer when it can be saved, ``optimizer.pt``,
``trainer_state.json`` (step, data position, scheduler) and ``rng_state_R.pt`` per rank (Python, NumPy,
torch CPU and CUDA generators). Resuming restores all of them; N steps straight and N/2 + resume + N/2 give
bit-identical parameters (tested).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .chat import IGNORE_INDEX, ChatTemplate, collate_encodings, layout_from_visual_tokens
from .inputs import visual_tokens_to_inputs

__all__ = [
    "TrainConfig",
    "Trainer",
    "MixSchedule",
    "SampleSource",
    "ManifestDataset",
    "Batch",
    "collate_samples",
    "normalize_conversation",
    "init_distributed",
    "load_config",
    "latest_checkpoint",
    "run_training",
]

log = logging.getLogger("ov2.train")

_FORMS_DEFAULT = {"codec_stream": 0.5, "frames": 0.375, "image": 0.125}


# ======================================================================================================
# configuration
# ======================================================================================================


@dataclass
class TrainConfig:
    """Every option of a training run (the YAML / JSON file of ``ov2 train`` holds these keys)."""

    # model and tokenizer
    model: Optional[str] = None  #: checkpoint directory (released layout) to start from
    model_config: Optional[dict] = None  #: or: ``LlavaOnevision2Config`` keyword arguments of a fresh model
    tokenizer: Optional[str] = None  #: tokenizer directory (default: ``model``)
    system_prompt: Optional[str] = "You are a helpful assistant."
    groups: str = "explicit"  #: attention groups: "explicit" (codec groups) | "windows" (released four-slice)
    freeze: list = field(default_factory=list)  #: any of "vision", "merger", "llm"
    # optimisation
    max_steps: int = 1000
    batch_size: int = 1  #: samples per rank per micro-step
    grad_accum: int = 1
    lr: float = 1e-5
    vision_lr: Optional[float] = None  #: learning rate of the vision tower (default: lr)
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    schedule: str = "cosine"  #: "cosine" | "linear" | "constant" (after warm-up)
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0  #: 0 disables clipping
    seed: int = 0
    bf16: bool = False  #: bf16 autocast (parameters and optimizer state stay fp32)
    gradient_checkpointing: bool = False
    distributed: str = "ddp"  #: "ddp" | "fsdp" (FSDP2 ``fully_shard`` per layer)
    find_unused_parameters: bool = True  #: DDP: a micro-batch without images/videos leaves the encoder unused
    max_length: Optional[int] = None  #: truncate text after the last visual token to this length
    # data
    mix: dict = field(default_factory=lambda: dict(_FORMS_DEFAULT))  #: ratio per input form
    data: dict = field(default_factory=dict)  #: form -> {"manifest": path, "mode": ..., tokenizer options}
    num_workers: int = 0  #: DataLoader workers building batches
    # output
    output_dir: str = "runs/ov2"
    save_every: int = 0  #: 0: only at the end
    keep_last: int = 0  #: keep this many checkpoints (0: all)
    log_every: int = 1
    progress: bool = True
    resume: Optional[str] = "auto"  #: "auto" (latest in output_dir), a checkpoint path, or None

    def __post_init__(self) -> None:
        if self.distributed not in ("ddp", "fsdp"):
            raise ValueError("distributed must be 'ddp' or 'fsdp'")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError("schedule must be 'cosine', 'linear' or 'constant'")
        if self.batch_size < 1 or self.grad_accum < 1 or self.max_steps < 0:
            raise ValueError("batch_size and grad_accum must be >= 1, max_steps >= 0")
        bad = set(self.freeze) - {"vision", "merger", "llm"}
        if bad:
            raise ValueError(f"unknown freeze targets {sorted(bad)}")
        if self.groups not in ("explicit", "windows"):
            raise ValueError("groups must be 'explicit' or 'windows'")
        self.betas = tuple(self.betas)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training options {unknown}")
        return cls(**dict(d))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


def load_config(path: Union[str, os.PathLike], overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML (``.yaml`` / ``.yml``) or JSON config; ``overrides`` are ``key=value`` (value parsed as YAML
    / JSON, dotted keys reach into dicts: ``mix.image=0.25``)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        d = yaml.safe_load(text) or {}
    else:
        d = json.loads(text)
    if not isinstance(d, dict):
        raise ValueError(f"{path}: the config must be a mapping")
    for ov in overrides:
        if "=" not in ov:
            raise ValueError(f"override {ov!r} is not key=value")
        key, raw = ov.split("=", 1)
        try:
            import yaml

            val = yaml.safe_load(raw)
        except Exception:  # noqa: BLE001 - plain string
            val = raw
        cur = d
        parts = key.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = val
    # relative paths in the config are relative to the config file
    base = path.parent
    for k in ("model", "tokenizer", "output_dir"):
        if isinstance(d.get(k), str) and not os.path.isabs(d[k]) and (base / d[k]).exists():
            d[k] = str(base / d[k])
    for spec in (d.get("data") or {}).values():
        if isinstance(spec, dict) and isinstance(spec.get("manifest"), str) and not os.path.isabs(spec["manifest"]):
            spec["manifest"] = str(base / spec["manifest"])
    return TrainConfig.from_dict(d)


# ======================================================================================================
# data
# ======================================================================================================


class MixSchedule:
    """Deterministic interleaving of input forms with given ratios.

    One period of length ``P`` (the common denominator of the ratios, at most 1000) is filled by
    largest-deficit-first; global index ``i`` has form ``pattern[i % P]`` and is the ``k``-th sample of that
    form, both in O(1)."""

    def __init__(self, ratios: Mapping[str, float]):
        items = [(k, float(v)) for k, v in ratios.items() if float(v) > 0]
        if not items:
            raise ValueError("every mix ratio is 0")
        total = sum(v for _, v in items)
        fracs = [(k, Fraction(v / total).limit_denominator(1000)) for k, v in items]
        period = 1
        for _, f in fracs:
            period = period * f.denominator // math.gcd(period, f.denominator)
        counts = {k: int(f * period) for k, f in fracs}
        short = period - sum(counts.values())  # rounding of limit_denominator
        for k, _ in sorted(fracs, key=lambda kv: -kv[1])[: max(0, short)]:
            counts[k] += 1
        self.forms = [k for k, _ in items]
        self.period = period
        self.counts = counts
        pattern: list[str] = []
        done = {k: 0 for k in self.forms}
        for i in range(period):
            k = max(self.forms, key=lambda f: (counts[f] * (i + 1) / period - done[f], -self.forms.index(f)))
            pattern.append(k)
            done[k] += 1
        self.pattern = pattern
        self._prefix = []
        run = {k: 0 for k in self.forms}
        for k in pattern:
            self._prefix.append(run[k])
            run[k] += 1

    def __call__(self, index: int) -> tuple[str, int]:
        """``(form, k)`` of global sample ``index``."""
        cyc, off = divmod(int(index), self.period)
        form = self.pattern[off]
        return form, cyc * self.counts[form] + self._prefix[off]


class SampleSource:
    """Random access to the ``k``-th sample of one form.

    A sequence is walked in a fresh permutation every epoch (``shuffle``, seeded by ``seed`` and the epoch);
    an iterable factory (a callable returning an iterator) is walked forward and re-opened when an earlier
    sample is requested or when it is exhausted (its next epoch)."""

    def __init__(self, data: Union[Sequence, Callable[[], Iterable]], shuffle: bool = True, seed: int = 0):
        self.data, self.shuffle, self.seed = data, shuffle, seed
        self._is_seq = hasattr(data, "__getitem__") and hasattr(data, "__len__")
        if not self._is_seq and not callable(data):
            raise TypeError("a source must be a sequence or a callable returning an iterable")
        if self._is_seq and len(data) == 0:
            raise ValueError("empty source")
        self._perm: tuple[int, Optional[torch.Tensor]] = (-1, None)
        self._it: Optional[Iterator] = None
        self._pos = 0

    def __getitem__(self, k: int) -> Any:
        if self._is_seq:
            n = len(self.data)
            epoch, j = divmod(int(k), n)
            if not self.shuffle:
                return self.data[j]
            if self._perm[0] != epoch:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._perm = (epoch, torch.randperm(n, generator=g))
            return self.data[int(self._perm[1][j])]
        if self._it is None or k < self._pos:
            self._it, self._pos = iter(self.data()), 0
        while True:
            try:
                item = next(self._it)
            except StopIteration:
                if self._pos == 0:
                    raise ValueError("empty iterable source") from None
                self._it = iter(self.data())
                continue
            self._pos += 1
            if self._pos - 1 == k:
                return item


def normalize_conversation(conv: Sequence[Mapping[str, Any]]) -> list[dict]:
    """``{"role", "content"}`` messages; LLaVA's ``{"from": "human"|"gpt"|"system", "value"}`` is converted."""
    roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
    out = []
    for m in conv:
        if "role" in m:
            out.append({"role": m["role"], "content": m.get("content", "")})
        elif "from" in m:
            if m["from"] not in roles:
                raise ValueError(f"unknown speaker {m['from']!r}")
            out.append({"role": roles[m["from"]], "content": m.get("value", "")})
        else:
            raise ValueError(f"message without role: {m!r}")
    return out


def _split_sample(sample: Any) -> tuple[list, list[dict]]:
    if isinstance(sample, Mapping):
        visual, conv = sample.get("visual"), sample["conversation"]
    else:
        visual, conv = sample
    visuals = [] if visual is None else (list(visual) if isinstance(visual, (list, tuple)) else [visual])
    return visuals, normalize_conversation(conv)


@dataclass
class Batch:
    """One micro-batch: model keyword arguments plus counts for the loss normalisation and the logs."""

    inputs: dict  #: input_ids, attention_mask and the visual inputs
    labels: torch.Tensor  #: ``[B, L]``
    n_tokens: int  #: non-padding text + placeholder tokens
    n_visual: int  #: placeholder tokens
    n_label: int  #: trained tokens (after the shift)

    def to(self, device: Any) -> "Batch":
        return Batch({k: v.to(device) for k, v in self.inputs.items()}, self.labels.to(device),
                     self.n_tokens, self.n_visual, self.n_label)


def collate_samples(samples: Sequence[Any], tokenizer: Any, template: ChatTemplate, merge_size: int,
                    pad_token_id: int, groups: str = "explicit", max_length: Optional[int] = None) -> Batch:
    """Render, tokenize, pad and pack a micro-batch (see the module docstring)."""
    encs, images, videos = [], [], []
    for sample in samples:
        visuals, conv = _split_sample(sample)
        layouts = [layout_from_visual_tokens(v, merge_size) for v in visuals]
        enc = template.encode(tokenizer, conv, layouts)
        if max_length is not None and len(enc.input_ids) > max_length:
            pad_ids = {template.special_ids(tokenizer)[k] for k in ("image_pad", "video_pad", "vision_end")}
            last_vis = max((i for i, t in enumerate(enc.input_ids) if t in pad_ids), default=-1)
            if last_vis >= max_length:
                raise ValueError(f"a sample needs {last_vis + 1} tokens up to its last visual token, more than "
                                 f"max_length={max_length}; lower the visual budget or raise max_length")
            enc.input_ids, enc.labels = enc.input_ids[:max_length], enc.labels[:max_length]
        encs.append(enc)
        for v, lay in zip(visuals, layouts):
            (images if lay.modality == "image" else videos).append(v)
    text = collate_encodings(encs, pad_token_id)
    inputs: dict[str, torch.Tensor] = {"input_ids": text["input_ids"], "attention_mask": text["attention_mask"]}
    positions = []
    if images:
        vi = visual_tokens_to_inputs(images, merge_size, groups=groups)
        inputs["pixel_values"], inputs["image_grid_thw"] = vi.pixel_values, vi.grid_thw
        if vi.group_ids is not None:
            inputs["image_group_ids"] = vi.group_ids
        positions.append(vi.patch_positions)
    if videos:
        vv = visual_tokens_to_inputs(videos, merge_size, groups=groups)
        inputs["pixel_values_videos"], inputs["video_grid_thw"] = vv.pixel_values, vv.grid_thw
        if vv.group_ids is not None:
            inputs["video_group_ids"] = vv.group_ids
        positions.append(vv.patch_positions)
    if positions:
        inputs["patch_positions"] = torch.cat(positions)
    labels = text["labels"]
    return Batch(inputs, labels, int(text["attention_mask"].sum()), sum(e.n_visual for e in encs),
                 int((labels[:, 1:] != IGNORE_INDEX).sum()))


class ManifestDataset:
    """Samples from a JSON-lines manifest, tokenized on access with ``ov2_tokenizer``.

    Each line: ``{"video": path}`` or ``{"image": path}`` (relative to the manifest) and ``"conversations"``
    (LLaVA format) or ``"messages"``. ``mode`` is the tokenizer mode for videos (``codec_stream`` /
    ``frames``); ``options`` are :class:`ov2_tokenizer.TokenizerConfig` fields (e.g. ``num_frames``,
    ``max_canvases``, ``max_pixels``)."""

    def __init__(self, manifest: Union[str, os.PathLike], mode: str = "frames", options: Optional[dict] = None):
        self.path = Path(manifest)
        self.mode = mode
        self.options = dict(options or {})
        self.records = [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not self.records:
            raise ValueError(f"{self.path}: empty manifest")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[Any, list[dict]]:
        import ov2_tokenizer as ov2  # noqa: PLC0415 (the tokenizer is only needed to read files)

        rec = self.records[i]
        conv = rec.get("conversations", rec.get("messages"))
        if conv is None:
            raise ValueError(f"{self.path}:{i + 1}: no 'conversations' / 'messages'")
        cfg = ov2.TokenizerConfig(**self.options)
        if "image" in rec:
            vt = ov2.tokenize_image(str(self.path.parent / rec["image"]), config=cfg)
        elif "video" in rec:
            vt = ov2.tokenize_video(str(self.path.parent / rec["video"]), mode=self.mode, config=cfg)
        else:
            vt = None
        return vt, conv


# ======================================================================================================
# distributed helpers
# ======================================================================================================


def init_distributed() -> tuple[int, int]:
    """Initialise the default process group from the ``torchrun`` environment when ``WORLD_SIZE`` > 1
    (NCCL with CUDA, gloo otherwise); returns ``(rank, world_size)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    if _rank_world()[1] > 1:
        dist.all_reduce(t)
    return t.tolist()


def latest_checkpoint(output_dir: Union[str, os.PathLike]) -> Optional[Path]:
    """The newest complete ``checkpoint-*`` directory in ``output_dir`` (None if there is none)."""
    d = Path(output_dir)
    if not d.is_dir():
        return None
    cks = [p for p in d.iterdir() if re.fullmatch(r"checkpoint-\d+", p.name) and (p / "trainer_state.json").exists()]
    return max(cks, key=lambda p: int(p.name.split("-")[1])) if cks else None


def _rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _load_model_weights(model: nn.Module, directory: Path) -> None:
    from safetensors.torch import load_file

    index = directory / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state = {}
        for f in files:
            state.update(load_file(str(directory / f)))
    else:
        state = load_file(str(directory / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = getattr(model, "_tied_weights_keys", None) or {}
    missing = [k for k in missing if k not in set(tied)]  # a tied weight may be stored once
    if missing or unexpected:
        raise RuntimeError(f"checkpoint {directory} does not match the model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")


# ======================================================================================================
# trainer
# ======================================================================================================


class _StepDataset(torch.utils.data.Dataset):
    """Item ``s`` = this rank's micro-batches of global step ``start + s`` (built in DataLoader workers)."""

    def __init__(self, trainer: "Trainer", start: int, stop: int):
        self.t, self.start, self.stop = trainer, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, s: int) -> list[Batch]:
        return self.t.step_batches(self.start + s)


class Trainer:
    """The training loop.

    Args:
        model: a :class:`~ov2_model.LlavaOnevision2ForConditionalGeneration` (fp32 parameters; CPU or CUDA).
        tokenizer: text tokenizer knowing the ChatML and vision special tokens.
        sources: ``{form: sequence or iterable factory}``; forms are mixed with ``config.mix`` (forms absent
            from ``mix`` get ratio 0; a ratio for a missing source is an error).
        config: :class:`TrainConfig`.
        template: chat template (default: ``ChatTemplate(system_prompt=config.system_prompt)``).
    """

    def __init__(self, model: nn.Module, tokenizer: Any, sources: Mapping[str, Any], config: TrainConfig,
                 template: Optional[ChatTemplate] = None):
        self.cfg = config
        self.rank, self.world = _rank_world()
        self.tokenizer = tokenizer
        self.template = template or ChatTemplate(system_prompt=config.system_prompt)
        mix = {k: v for k, v in config.mix.items() if float(v) > 0}
        missing = sorted(set(mix) - set(sources))
        if missing:
            raise ValueError(f"mix names forms without a data source: {missing}")
        self.schedule = MixSchedule(mix)
        self.sources = {k: SampleSource(v, seed=config.seed + 7919 * i) for i, (k, v) in enumerate(sorted(sources.items()))}
        self.base_model = model
        mcfg = model.config
        self.merge_size = int(mcfg.vision_config.spatial_merge_size)
        sp = self.template.special_ids(tokenizer)
        for name, key in (("image_pad", "image_token_id"), ("video_pad", "video_token_id"),
                          ("vision_start", "vision_start_token_id"), ("vision_end", "vision_end_token_id")):
            if getattr(mcfg, key, None) is not None and int(getattr(mcfg, key)) != sp[name]:
                raise ValueError(f"tokenizer id of {getattr(self.template, name)} is {sp[name]} but the model's "
                                 f"{key} is {getattr(mcfg, key)}")
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = int(pad) if pad is not None else sp["im_end"]
        self.device = next(model.parameters()).device
        self.step = 0
        self.history: list[dict] = []
        self._setup_model()
        self.optimizer = self._build_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda)

    # -- setup --------------------------------------------------------------------------------------------
    def _setup_model(self) -> None:
        cfg, model = self.cfg, self.base_model
        for p in model.parameters():
            p.requires_grad_(True)
        if "vision" in cfg.freeze:
            for n, p in model.model.visual.named_parameters():
                if not n.startswith("merger."):
                    p.requires_grad_(False)
        if "merger" in cfg.freeze:
            for p in model.model.visual.merger.parameters():
                p.requires_grad_(False)
        if "llm" in cfg.freeze:
            for p in list(model.model.language_model.parameters()) + list(model.lm_head.parameters()):
                p.requires_grad_(False)
        if cfg.gradient_checkpointing:
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 name
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        model.train()
        self.model: nn.Module = model
        if self.world > 1:
            if cfg.distributed == "ddp":
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [self.device.index] if self.device.type == "cuda" else None
                self.model = DDP(model, device_ids=ids, find_unused_parameters=cfg.find_unused_parameters)
            else:
                self.model = self._fsdp(model)
        elif cfg.distributed == "fsdp" and dist.is_available() and dist.is_initialized():
            self.model = self._fsdp(model)

    @staticmethod
    def _fsdp(model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import fully_shard

        # Language-model layers are sharded one by one. The vision tower stays in the root group: a micro-batch
        # with images and videos runs it twice, one with neither not at all, so per-layer all-gathers of its
        # layers would differ in number between ranks and deadlock.
        for layer in model.model.language_model.layers:
            fully_shard(layer)
        fully_shard(model)
        return model

    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        groups: dict[tuple[float, float], list] = {}
        for n, p in self.base_model.named_parameters():
            if not p.requires_grad:
                continue
            lr = cfg.vision_lr if (cfg.vision_lr is not None and n.startswith("model.visual.")
                                   and not n.startswith("model.visual.merger.")) else cfg.lr
            wd = 0.0 if p.ndim < 2 else cfg.weight_decay
            groups.setdefault((lr, wd), []).append(p)
        params = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                                 foreach=True)

    def _lr_lambda(self, step: int) -> float:
        cfg = self.cfg
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        span = max(1, cfg.max_steps - cfg.warmup_steps)
        prog = min(1.0, (step - cfg.warmup_steps) / span)
        f = 0.5 * (1.0 + math.cos(math.pi * prog)) if cfg.schedule == "cosine" else 1.0 - prog
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * f

    # -- data ---------------------------------------------------------------------------------------------
    @property
    def global_batch(self) -> int:
        return self.cfg.batch_size * self.cfg.grad_accum * self.world

    def sample(self, index: int) -> Any:
        """Global sample ``index`` of the mixed stream."""
        form, k = self.schedule(index)
        return self.sources[form][k]

    def step_batches(self, step: int) -> list[Batch]:
        """This rank's micro-batches of global step ``step``."""
        cfg = self.cfg
        per_rank = cfg.batch_size * cfg.grad_accum
        base = step * self.global_batch + self.rank * per_rank
        out = []
        for a in range(cfg.grad_accum):
            idx = range(base + a * cfg.batch_size, base + (a + 1) * cfg.batch_size)
            out.append(collate_samples([self.sample(i) for i in idx], self.tokenizer, self.template,
                                       self.merge_size, self.pad_token_id, cfg.groups, cfg.max_length))
        return out

    # -- one step -----------------------------------------------------------------------------------------
    def _autocast(self):
        if not self.cfg.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def train_step(self, batches: Sequence[Batch]) -> dict:
        """Forward / backward over the micro-batches, clip, optimizer and scheduler step. Returns the step's
        global statistics (loss = token-level mean over the global batch)."""
        t0 = time.perf_counter()
        local = [sum(b.n_label for b in batches), sum(b.n_tokens for b in batches), sum(b.n_visual for b in batches)]
        n_label, n_tok, n_vis = _all_reduce_sum(local, self.device)
        denom = max(1.0, n_label)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for i, b in enumerate(batches):
            b = b.to(self.device)
            sync = i == len(batches) - 1
            ctx = self.model.no_sync() if (not sync and hasattr(self.model, "no_sync")) else contextlib.nullcontext()
            with ctx:
                with self._autocast():
                    out = self.model(**b.inputs, use_cache=False)
                logits = out.logits[:, :-1].float()
                target = b.labels[:, 1:]
                ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                     ignore_index=IGNORE_INDEX, reduction="sum")
                (ce * (self.world / denom)).backward()
            loss_sum += ce.detach().double()
        grad_norm = None
        if self.cfg.max_grad_norm and self.cfg.max_grad_norm > 0:
            params = [p for p in self.model.parameters() if p.requires_grad]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        total = _all_reduce_sum([float(loss_sum)], self.device)[0]
        dt = time.perf_counter() - t0
        return {"step": self.step, "loss": total / denom, "lr": lr, "grad_norm": grad_norm,
                "tokens": int(n_tok), "label_tokens": int(n_label), "visual_share": n_vis / max(1.0, n_tok),
                "tokens_per_s": n_tok / max(dt, 1e-9), "step_s": dt}

    # -- checkpoints --------------------------------------------------------------------------------------
    def _full_state(self) -> tuple[dict, dict]:
        if self.cfg.distributed == "fsdp" and dist.is_available() and dist.is_initialized():
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

            return get_state_dict(self.model, self.optimizer,
                                  options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return self.base_model.state_dict(), self.optimizer.state_dict()

    def save_checkpoint(self, directory: Optional[Union[str, os.PathLike]] = None) -> Path:
        """Write a checkpoint of the current step (every rank must call it)."""
        out = Path(directory) if directory is not None else Path(self.cfg.output_dir) / f"checkpoint-{self.step:07d}"
        model_sd, optim_sd = self._full_state()
        if self.rank == 0:
            tmp = out.with_name(out.name + ".tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            self.base_model.save_pretrained(str(tmp), state_dict={k: v.detach().cpu() for k, v in model_sd.items()},
                                            safe_serialization=True)
            if hasattr(self.tokenizer, "save_pretrained"):
                try:
                    self.tokenizer.save_pretrained(str(tmp))
                except Exception as exc:  # noqa: BLE001 - a tokenizer that cannot be saved is not fatal
                    log.warning("tokenizer not saved: %s", exc)
            torch.save(optim_sd, tmp / "optimizer.pt")
            state = {"step": self.step, "samples_seen": self.step * self.global_batch, "world_size": self.world,
                     "global_batch": self.global_batch, "scheduler": self.scheduler.state_dict(),
                     "config": self.cfg.to_dict()}
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1, default=str))
        if self.world > 1:
            dist.barrier()
        torch.save(_rng_state(), out.with_name(out.name + ".tmp") / f"rng_state_{self.rank}.pt")
        if self.world > 1:
            dist.barrier()
        if self.rank == 0:
            if out.exists():
                shutil.rmtree(out)
            out.with_name(out.name + ".tmp").rename(out)
            self._prune()
        if self.world > 1:
            dist.barrier()
        return out

    def _prune(self) -> None:
        if self.cfg.keep_last <= 0:
            return
        d = Path(self.cfg.output_dir)
        cks = sorted((p for p in d.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)),
                     key=lambda p: int(p.name.split("-")[1]))
        for p in cks[: -self.cfg.keep_last]:
            shutil.rmtree(p, ignore_errors=True)

    def load_checkpoint(self, directory: Union[str, os.PathLike]) -> None:
        """Restore model, optimizer, scheduler, step / data position and this rank's RNG states."""
        d = Path(directory)
        state = json.loads((d / "trainer_state.json").read_text())
        optim_sd = torch.load(d / "optimizer.pt", map_location="cpu", weights_only=False)
        if self.cfg.distributed == "fsdp" and dist.is_available() and dist.is_initialized():
            from safetensors.torch import load_file
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

            model_sd = load_file(str(d / "model.safetensors"))
            set_state_dict(self.model, self.optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd,
                           options=StateDictOptions(full_state_dict=True))
        else:
            _load_model_weights(self.base_model, d)
            self.optimizer.load_state_dict(optim_sd)
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        if int(state.get("global_batch", self.global_batch)) != self.global_batch:
            log.warning("global batch changed from %s to %s: the data position is kept in samples",
                        state.get("global_batch"), self.global_batch)
        rng = d / f"rng_state_{self.rank}.pt"
        if rng.exists():
            _set_rng_state(torch.load(rng, weights_only=False))
        else:
            log.warning("no RNG state for rank %d in %s; reseeding", self.rank, d)
            _seed_everything(self.cfg.seed + self.rank + 1000 * self.step)

    # -- loop ---------------------------------------------------------------------------------------------
    def _batches(self, start: int, stop: int) -> Iterator[list[Batch]]:
        if self.cfg.num_workers > 0:
            loader = torch.utils.data.DataLoader(_StepDataset(self, start, stop), batch_size=None, shuffle=False,
                                                 num_workers=self.cfg.num_workers, persistent_workers=False)
            yield from loader
        else:
            for s in range(start, stop):
                yield self.step_batches(s)

    def train(self, max_steps: Optional[int] = None, stop_at: Optional[int] = None) -> list[dict]:
        """Train from the current step to ``max_steps`` (default ``config.max_steps``); ``stop_at`` ends the
        loop early (after saving a checkpoint there), as an interrupted run would. Returns the step logs."""
        cfg = self.cfg
        end = cfg.max_steps if max_steps is None else max_steps
        stop = end if stop_at is None else min(end, stop_at)
        bar = None
        if cfg.progress and self.rank == 0 and stop > self.step:
            from tqdm.auto import tqdm

            bar = tqdm(total=end, initial=self.step, desc="train", dynamic_ncols=True)
        log_path = Path(cfg.output_dir) / "log.jsonl"
        if self.rank == 0:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        for batches in self._batches(self.step, stop):
            rec = self.train_step(batches)
            self.history.append(rec)
            if self.rank == 0:
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec) + "\n")
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", tok_s=f"{rec['tokens_per_s']:.0f}",
                                    vis=f"{rec['visual_share']:.0%}")
                if cfg.log_every and self.step % cfg.log_every == 0:
                    log.info("step %d loss %.4f lr %.3g tokens/s %.0f visual %.1f%%", self.step, rec["loss"],
                             rec["lr"], rec["tokens_per_s"], 100 * rec["visual_share"])
            if cfg.save_every and self.step % cfg.save_every == 0 and self.step != stop:
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        if stop > 0 and (latest_checkpoint(cfg.output_dir) is None
                         or int(latest_checkpoint(cfg.output_dir).name.split("-")[1]) != self.step):
            self.save_checkpoint()
        return self.history


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


# ======================================================================================================
# entry point of `ov2 train`
# ======================================================================================================


def build_model_and_tokenizer(cfg: TrainConfig, device: torch.device) -> tuple[nn.Module, Any]:
    """The model (from ``cfg.model`` or a fresh ``cfg.model_config``) and its tokenizer."""
    from transformers import AutoTokenizer

    from .configuration_llava_onevision2 import LlavaOnevision2Config
    from .modeling_llava_onevision2 import LlavaOnevision2ForConditionalGeneration

    if cfg.model:
        model = LlavaOnevision2ForConditionalGeneration.from_pretrained(cfg.model, dtype=torch.float32)
    elif cfg.model_config:
        model = LlavaOnevision2ForConditionalGeneration(LlavaOnevision2Config(**cfg.model_config))
    else:
        raise ValueError("the config needs 'model' (a checkpoint directory) or 'model_config'")
    tok_dir = cfg.tokenizer or cfg.model
    if not tok_dir:
        raise ValueError("the config needs 'tokenizer' when the model is built from 'model_config'")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    return model.to(device), tokenizer


def run_training(cfg: TrainConfig, sources: Optional[Mapping[str, Any]] = None) -> list[dict]:
    """Initialise the process group (``torchrun``), seed, build model / tokenizer / data, resume and train."""
    rank, world = init_distributed()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if torch.cuda.is_available() \
        else torch.device("cpu")
    _seed_everything(cfg.seed + rank)
    model, tokenizer = build_model_and_tokenizer(cfg, device)
    if sources is None:
        sources = {}
        for form, spec in cfg.data.items():
            spec = dict(spec)
            manifest = spec.pop("manifest")
            mode = spec.pop("mode", "image" if form == "image" else ("codec_stream" if form == "codec_stream" else "frames"))
            sources[form] = ManifestDataset(manifest, mode=mode, options=spec)
    trainer = Trainer(model, tokenizer, sources, cfg)
    ck = None
    if cfg.resume == "auto":
        ck = latest_checkpoint(cfg.output_dir)
    elif cfg.resume:
        ck = Path(cfg.resume)
    if ck is not None:
        trainer.load_checkpoint(ck)
        if rank == 0:
            log.info("resumed from %s at step %d", ck, trainer.step)
    return trainer.train()
