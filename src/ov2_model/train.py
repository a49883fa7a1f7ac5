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
the micro-batch is right-padded; images and videos of the micro-batch are packed into one varlen
``pixel_values`` / ``pixel_values_videos`` sequence each by :func:`ov2_tokenizer.data.collate_visual_tokens`
(``cu_seqlens`` per item, codec-group segments). Text sequences are padded, not concatenated. Manifests are
tokenized by :class:`ov2_tokenizer.data.VideoTokenDataset` (:class:`ManifestDataset`).

CoPE (``config.cope``): the model is wrapped in :class:`ov2_model.delta.CopeVideoLM`; ``cope``-mode samples
become interleaved I-frame / Δ-token sequences (see :func:`collate_samples`).

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
    "read_training_manifest",
    "build_visual_inputs",
    "load_cope_model",
    "save_delta_weights",
    "load_delta_weights",
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
    #: CoPE fine-tuning (paper §3.3): a Δ-encoder + projector next to the model, fed by ``cope``-mode samples.
    #: Keys: ``delta`` (DeltaEncoderConfig fields; ``d_model`` defaults to the vision width), ``checkpoint``
    #: (a pre-trained Δ-encoder: ``delta_encoder.safetensors`` or its directory), ``size`` ([H, W] the Δ-inputs
    #: are resized to; default: padded to a multiple of 16), ``freeze_delta`` (train only the projector).
    cope: Optional[dict] = None
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
        if self.cope is not None:
            bad_c = set(self.cope) - {"delta", "checkpoint", "size", "freeze_delta"}
            if bad_c:
                raise ValueError(f"unknown cope options {sorted(bad_c)}")
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
    """One micro-batch: model keyword arguments plus counts for the loss normalisation and the logs.

    ``packed`` holds the :class:`ov2_tokenizer.data.PackedVisualTokens` the visual inputs were built from
    (``"image"``, ``"video"``, ``"cope"``; ``cu_seqlens``, segment ids and per-sample metadata)."""

    inputs: dict  #: input_ids, attention_mask and the visual inputs (tensors, or lists of tensors for cope)
    labels: torch.Tensor  #: ``[B, L]``
    n_tokens: int  #: non-padding text + placeholder tokens
    n_visual: int  #: placeholder tokens
    n_label: int  #: trained tokens (after the shift)
    packed: dict = field(default_factory=dict)

    def to(self, device: Any) -> "Batch":
        def mv(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                return v.to(device)
            if isinstance(v, (list, tuple)):
                return [mv(x) for x in v]
            return v

        return Batch({k: mv(v) for k, v in self.inputs.items()}, self.labels.to(device),
                     self.n_tokens, self.n_visual, self.n_label, self.packed)


def _pack(items: Sequence[Any], merge_size: int, groups: str) -> tuple[dict, torch.Tensor, Any]:
    """Pack same-modality visual items with :func:`ov2_tokenizer.data.collate_visual_tokens` (varlen sequence with
    ``cu_seqlens`` and per-sample codec-group segments); ``VisualTokens``-like objects that are not
    ``ov2_tokenizer.VisualTokens`` go through :func:`ov2_model.inputs.visual_tokens_to_inputs`.
    Returns the model kwargs (without ``patch_positions``), the positions and the packed batch (or None)."""
    from ov2_tokenizer.data import collate_visual_tokens
    from ov2_tokenizer.tokens import VisualTokens

    if all(isinstance(v, VisualTokens) for v in items):
        for v in items:
            if int(v.merge_size) != merge_size:
                raise ValueError(f"visual tokens have merge size {v.merge_size}, the model {merge_size}")
        packed = collate_visual_tokens(items)
        kw = packed.model_kwargs(groups)
        return {k: v for k, v in kw.items() if k != "patch_positions"}, kw["patch_positions"], packed
    vi = visual_tokens_to_inputs(list(items), merge_size, groups=groups)
    kw = vi.model_kwargs()
    return {k: v for k, v in kw.items() if k != "patch_positions"}, kw["patch_positions"], None


def collate_samples(samples: Sequence[Any], tokenizer: Any, template: ChatTemplate, merge_size: int,
                    pad_token_id: int, groups: str = "explicit", max_length: Optional[int] = None,
                    cope_tokens: Optional[int] = None, cope_size: Optional[Sequence[int]] = None) -> Batch:
    """Render, tokenize, pad and pack a micro-batch (see the module docstring).

    ``cope``-mode samples (:func:`ov2_model.delta.is_cope_tokens`) need ``cope_tokens`` (N = K_τ + K_δ, the
    placeholders per P-step); their I-canvases are packed separately (``cope_*`` keys) and their Δ-inputs are
    listed per video (:func:`ov2_model.delta.cope_delta_inputs`), for :class:`ov2_model.delta.CopeVideoLM`."""
    from .delta import cope_layout, is_cope_tokens

    encs, images, videos, copes, video_is_cope = [], [], [], [], []
    for sample in samples:
        visuals, conv = _split_sample(sample)
        layouts = []
        for v in visuals:
            if is_cope_tokens(v):
                if cope_tokens is None:
                    raise ValueError("a cope-mode sample needs a trainer with a Δ-encoder (config key 'cope')")
                layouts.append(cope_layout(v, cope_tokens, merge_size))
            else:
                layouts.append(layout_from_visual_tokens(v, merge_size))
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
            if lay.modality == "image":
                images.append(v)
            elif is_cope_tokens(v):
                copes.append(v)
                video_is_cope.append(True)
            else:
                videos.append(v)
                video_is_cope.append(False)
    text = collate_encodings(encs, pad_token_id)
    inputs: dict[str, Any] = {"input_ids": text["input_ids"], "attention_mask": text["attention_mask"]}
    vis, packed = build_visual_inputs(images, videos, copes, video_is_cope, merge_size, groups, cope_size)
    inputs.update(vis)
    labels = text["labels"]
    return Batch(inputs, labels, int(text["attention_mask"].sum()), sum(e.n_visual for e in encs),
                 int((labels[:, 1:] != IGNORE_INDEX).sum()), packed)


def build_visual_inputs(images: Sequence[Any], videos: Sequence[Any], copes: Sequence[Any] = (),
                        video_is_cope: Optional[Sequence[bool]] = None, merge_size: int = 2,
                        groups: str = "explicit", cope_size: Optional[Sequence[int]] = None) -> tuple[dict, dict]:
    """Model keyword arguments of a batch's visual items, each list in the order of its placeholders: images,
    ordinary videos and ``cope``-mode videos (``video_is_cope`` interleaves the last two as they appear in the
    text). Returns ``(kwargs, packed)`` with the :class:`ov2_tokenizer.data.PackedVisualTokens` per kind."""
    from .delta import cope_delta_inputs

    inputs: dict[str, Any] = {}
    positions, packed = [], {}
    if images:
        kw, pos, packed["image"] = _pack(images, merge_size, groups)
        inputs.update(kw)
        positions.append(pos)
    if videos:
        kw, pos, packed["video"] = _pack(videos, merge_size, groups)
        inputs.update(kw)
        positions.append(pos)
    if positions:
        inputs["patch_positions"] = torch.cat(positions)
    if copes:
        kw, pos, packed["cope"] = _pack(copes, merge_size, groups)
        inputs["cope_pixel_values"] = kw["pixel_values_videos"]
        inputs["cope_grid_thw"] = kw["video_grid_thw"]
        inputs["cope_patch_positions"] = pos
        if "video_group_ids" in kw:
            inputs["cope_group_ids"] = kw["video_group_ids"]
        d = [cope_delta_inputs(v, cope_size) for v in copes]
        inputs["cope_motion"] = [x["motion"] for x in d]
        inputs["cope_residual"] = [x["residual"] for x in d]
        inputs["cope_i_times"] = [x["i_times"] for x in d]
        inputs["cope_delta_times"] = [x["delta_times"] for x in d]
        order = list(video_is_cope) if video_is_cope is not None else [False] * len(videos) + [True] * len(copes)
        inputs["video_is_cope"] = torch.tensor(order, dtype=torch.bool)
    return inputs, packed


def read_training_manifest(path: Union[str, os.PathLike], mode: str = "frames") -> list[dict]:
    """Lines of a training manifest (JSON lines; blank lines and ``#`` comments skipped).

    Each line is an :func:`ov2_tokenizer.data.read_manifest` entry -- ``"path"`` (relative to the manifest),
    optional ``"mode"`` and ``"config"`` (``TokenizerConfig`` overrides) -- plus the conversation under
    ``"conversations"`` (LLaVA) or ``"messages"``. ``{"video": path}`` / ``{"image": path}`` (mode ``image``) are
    accepted in place of ``"path"``; a line without any of them is a text-only sample."""
    path = Path(path)
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rec = json.loads(line)
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{lineno}: each line must be a JSON object")
        conv = rec.pop("conversations", rec.pop("messages", None))
        if conv is None:
            raise ValueError(f"{path}:{lineno}: no 'conversations' / 'messages'")
        src = rec.pop("path", None)
        item_mode = rec.pop("mode", None)
        if src is None and "video" in rec:
            src = rec.pop("video")
        elif src is None and "image" in rec:
            src, item_mode = rec.pop("image"), "image"
        if src is not None and not os.path.isabs(src):
            src = str(path.parent / src)
        out.append({"path": src, "mode": item_mode or mode, "config": rec.pop("config", {}),
                    "conversation": conv, "extra": rec, "where": f"{path}:{lineno}"})
    if not out:
        raise ValueError(f"{path}: empty manifest")
    return out


class ManifestDataset:
    """Training samples from a JSON-lines manifest (:func:`read_training_manifest`), tokenized on access by
    :class:`ov2_tokenizer.data.VideoTokenDataset` (the ``ov2_tokenizer`` data path: ``TokenizerConfig`` from
    ``options`` + per-line ``config``, per-line ``mode``, ``on_failure``, decode threads).

    Args:
        manifest: the manifest path.
        mode: default tokenizer mode (``codec_stream``, ``frames``, ``image``, ``cope``, ...).
        options: ``TokenizerConfig`` fields for every line (``num_frames``, ``max_canvases``, ...) and the
            dataset options ``cache`` (keep tokenized samples in memory; exact, since tokenization is
            deterministic), ``on_failure`` (``raise`` | ``skip``: a video that fails is replaced by the next line
            of the manifest, deterministically) and ``num_threads`` (decode threads per item, default 1).
    """

    def __init__(self, manifest: Union[str, os.PathLike], mode: str = "frames", options: Optional[dict] = None):
        from ov2_tokenizer.data import VideoTokenDataset

        opts = dict(options or {})
        self.cache = bool(opts.pop("cache", False))
        on_failure = opts.pop("on_failure", "raise")
        num_threads = opts.pop("num_threads", 1)
        self.path = Path(manifest)
        self.mode = mode
        self.records = read_training_manifest(self.path, mode)
        self._vis = [i for i, r in enumerate(self.records) if r["path"] is not None]
        self._ds_index = {rec_i: k for k, rec_i in enumerate(self._vis)}
        jobs = [{"path": self.records[i]["path"], "mode": self.records[i]["mode"],
                 "config": self.records[i]["config"], **self.records[i]["extra"]} for i in self._vis]
        self.dataset = VideoTokenDataset(jobs, mode=mode, on_failure=on_failure, num_threads=num_threads, **opts)
        self._cache: dict[int, Any] = {}
        self.failures: list = []

    def __len__(self) -> int:
        return len(self.records)

    def _visual(self, i: int) -> Any:
        if i in self._cache:
            return self._cache[i]
        vt = self.dataset[self._ds_index[i]]
        if self.cache:
            self._cache[i] = vt
        return vt

    def __getitem__(self, i: int) -> tuple[Any, list[dict]]:
        from ov2_tokenizer.data import TokenFailure

        n = len(self.records)
        for j in range(n):
            k = (int(i) + j) % n
            rec = self.records[k]
            if rec["path"] is None:
                return None, rec["conversation"]
            vt = self._visual(k)
            if not isinstance(vt, TokenFailure):
                return vt, rec["conversation"]
            if vt not in self.failures:
                self.failures.append(vt)
                log.warning("skipping %s (%s)", rec["where"], vt)
        raise RuntimeError(f"{self.path}: every video of the manifest failed to tokenize")


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


def _read_weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    index = directory / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state = {}
        for f in files:
            state.update(load_file(str(directory / f)))
        return state
    return load_file(str(directory / "model.safetensors"))


DELTA_WEIGHTS = "delta_encoder.safetensors"
DELTA_CONFIG = "cope_config.json"


def save_delta_weights(module: nn.Module, directory: Union[str, os.PathLike],
                       state_dict: Optional[Mapping[str, torch.Tensor]] = None) -> Path:
    """Write a :class:`~ov2_model.delta.CopeVideoLM`'s Δ-encoder and projector (keys ``delta.*``,
    ``projector.*``) to ``directory/delta_encoder.safetensors`` and the encoder config to ``cope_config.json``.
    A :class:`~ov2_model.delta.DeltaEncoder` or :class:`~ov2_model.delta.DeltaPretrainer` is saved as its
    encoder (``delta.*`` keys) -- the output of pre-training."""
    from safetensors.torch import save_file

    from .delta import DeltaEncoder, DeltaPretrainer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(module, DeltaPretrainer):
        module = module.encoder
    if isinstance(module, DeltaEncoder):
        sd, cfg = {"delta." + k: v for k, v in module.state_dict().items()}, module.config
    else:
        sd = dict(state_dict) if state_dict is not None else {k: v for k, v in module.state_dict().items()
                                                              if not k.startswith("lm.")}
        cfg = module.delta.config
    save_file({k: v.detach().cpu().contiguous() for k, v in sd.items()}, str(directory / DELTA_WEIGHTS))
    (directory / DELTA_CONFIG).write_text(json.dumps({"delta": cfg.to_dict()}, indent=1))
    return directory / DELTA_WEIGHTS


def load_delta_weights(module: nn.Module, path: Union[str, os.PathLike], encoder_only: bool = False) -> None:
    """Load ``delta_encoder.safetensors`` (a file or its directory) into a ``CopeVideoLM`` (or a
    ``DeltaEncoder``); ``encoder_only`` loads only the Δ-encoder (a pre-trained one) and keeps the projector."""
    from safetensors.torch import load_file

    from .delta import DeltaEncoder

    path = Path(path)
    state = load_file(str(path / DELTA_WEIGHTS if path.is_dir() else path))
    if isinstance(module, DeltaEncoder):
        module.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("delta.")})
        return
    if encoder_only:
        module.delta.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("delta.")})
        return
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("lm.")]
    if missing or unexpected:
        raise RuntimeError(f"{path} does not match the Δ-encoder: missing {missing[:5]}, unexpected {unexpected[:5]}")


def load_cope_model(directory: Union[str, os.PathLike], **from_pretrained_kwargs: Any) -> nn.Module:
    """A trained CoPE VideoLM from a checkpoint directory: the model (released layout) wrapped in a
    :class:`~ov2_model.delta.CopeVideoLM` with the Δ-encoder and projector of ``delta_encoder.safetensors`` (the
    plain model when the directory has no Δ-encoder)."""
    from .delta import CopeVideoLM, DeltaEncoder, DeltaEncoderConfig
    from .modeling_llava_onevision2 import LlavaOnevision2ForConditionalGeneration

    directory = Path(directory)
    model = LlavaOnevision2ForConditionalGeneration.from_pretrained(str(directory), **from_pretrained_kwargs)
    if not (directory / DELTA_WEIGHTS).exists():
        return model
    cfg = json.loads((directory / DELTA_CONFIG).read_text())["delta"]
    module = CopeVideoLM(model, DeltaEncoder(DeltaEncoderConfig(**cfg)))
    load_delta_weights(module, directory)
    return module.to(next(model.parameters()).dtype)


def _load_model_weights(model: nn.Module, directory: Path) -> None:
    state = _read_weights(directory)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = getattr(model, "_tied_weights_keys", None) or {}
    missing = [k for k in missing if k not in set(tied)]  # a tied weight may be stored once
    if missing or unexpected:
        raise RuntimeError(f"checkpoint {directory} does not match the model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")


# ======================================================================================================
# trainer
# ======================================================================================================


def _touch_root_parameters(module: nn.Module, args: Any, kwargs: Any, output: Any) -> Any:
    """Forward hook: ``logits += 0 · Σ_p p[0]`` over the trainable parameters outside the sharded LLM layers."""
    touch = None
    for name, p in module.named_parameters():
        if p.requires_grad and ".language_model.layers." not in name:
            t = p.reshape(-1)[:1].sum()
            touch = t if touch is None else touch + t
    if touch is not None and getattr(output, "logits", None) is not None:
        output.logits = output.logits + 0.0 * touch.to(output.logits.dtype)
    return output


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
        delta_encoder: a :class:`~ov2_model.delta.DeltaEncoder` for CoPE fine-tuning (default: built from
            ``config.cope`` when it is set). The trained module is then a :class:`~ov2_model.delta.CopeVideoLM`;
            checkpoints hold the model in the released layout plus ``delta_encoder.safetensors`` (Δ-encoder and
            projector) and ``cope_config.json``.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, sources: Mapping[str, Any], config: TrainConfig,
                 template: Optional[ChatTemplate] = None, delta_encoder: Optional[nn.Module] = None):
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
        self.cope_module = None
        if delta_encoder is not None or config.cope is not None:
            self.cope_module = self._build_cope(delta_encoder)
        self.step = 0
        self.history: list[dict] = []
        self._setup_model()
        self.optimizer = self._build_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda)

    # -- setup --------------------------------------------------------------------------------------------
    def _build_cope(self, delta_encoder: Optional[nn.Module]) -> nn.Module:
        from .delta import CopeVideoLM, DeltaEncoder, DeltaEncoderConfig

        opts = dict(self.cfg.cope or {})
        if delta_encoder is None:
            dcfg = {"d_model": int(self.base_model.config.vision_config.hidden_size), **dict(opts.get("delta") or {})}
            delta_encoder = DeltaEncoder(DeltaEncoderConfig(**dcfg))
        module = CopeVideoLM(self.base_model, delta_encoder)
        if opts.get("checkpoint"):
            load_delta_weights(module, opts["checkpoint"], encoder_only=True)
        return module.to(self.device)

    @property
    def cope_tokens(self) -> Optional[int]:
        """Placeholders per P-step (N = K_τ + K_δ), or None without a Δ-encoder."""
        return None if self.cope_module is None else int(self.cope_module.delta.config.num_tokens)

    def _setup_model(self) -> None:
        cfg, model = self.cfg, self.base_model
        for p in model.parameters():
            p.requires_grad_(True)
        if self.cope_module is not None:
            for p in self.cope_module.parameters():
                p.requires_grad_(True)
            if (cfg.cope or {}).get("freeze_delta"):
                for p in self.cope_module.delta.parameters():
                    p.requires_grad_(False)
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
        if self.cope_module is not None:
            self.cope_module.train()
            model = self.cope_module
        #: the module that is trained and saved (the LLaVA model, or the CopeVideoLM around it)
        self.train_module: nn.Module = model
        self.model: nn.Module = model
        if self.world > 1:
            if cfg.distributed == "ddp":
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [self.device.index] if self.device.type == "cuda" else None
                self.model = DDP(model, device_ids=ids, find_unused_parameters=cfg.find_unused_parameters)
            else:
                self.model = self._fsdp(model, self.base_model)
        elif cfg.distributed == "fsdp" and dist.is_available() and dist.is_initialized():
            self.model = self._fsdp(model, self.base_model)

    @staticmethod
    def _fsdp(model: nn.Module, lm: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import fully_shard

        # Language-model layers are sharded one by one. The vision tower (and a Δ-encoder) stays in the root
        # group: a micro-batch with images and videos runs it twice, one with neither not at all, so per-layer
        # all-gathers of its layers would differ in number between ranks and deadlock.
        for layer in lm.model.language_model.layers:
            fully_shard(layer)
        # FSDP2 reduce-scatters only the gradients that exist, so a root-group parameter unused on one rank (the
        # vision tower in a text-only micro-batch, the Δ-encoder without a cope sample) would make the ranks'
        # reduce-scatters differ in size. A zero-weighted touch of every root parameter gives each one a
        # (zero) gradient on every rank. The hook is registered before fully_shard, so it runs while the root
        # parameters are still unsharded.
        model.register_forward_hook(_touch_root_parameters, with_kwargs=True)
        fully_shard(model)
        return model

    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        groups: dict[tuple[float, float], list] = {}
        for n, p in self.train_module.named_parameters():
            if not p.requires_grad:
                continue
            if self.cope_module is not None:
                n = n[3:] if n.startswith("lm.") else "delta." + n
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
                                       self.merge_size, self.pad_token_id, cfg.groups, cfg.max_length,
                                       self.cope_tokens, (cfg.cope or {}).get("size")))
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
        return self.train_module.state_dict(), self.optimizer.state_dict()

    def _split_state(self, sd: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
        """(LLaVA model state, Δ-encoder + projector state) of a ``train_module`` state dict."""
        if self.cope_module is None:
            return dict(sd), {}
        lm = {k[3:]: v for k, v in sd.items() if k.startswith("lm.")}
        return lm, {k: v for k, v in sd.items() if not k.startswith("lm.")}

    def save_checkpoint(self, directory: Optional[Union[str, os.PathLike]] = None) -> Path:
        """Write a checkpoint of the current step (every rank must call it)."""
        out = Path(directory) if directory is not None else Path(self.cfg.output_dir) / f"checkpoint-{self.step:07d}"
        model_sd, optim_sd = self._full_state()
        if self.rank == 0:
            tmp = out.with_name(out.name + ".tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            lm_sd, extra_sd = self._split_state(model_sd)
            self.base_model.save_pretrained(str(tmp), state_dict={k: v.detach().cpu() for k, v in lm_sd.items()},
                                            safe_serialization=True)
            if self.cope_module is not None:
                save_delta_weights(self.cope_module, tmp, state_dict=extra_sd)
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

            model_sd = _read_weights(d)
            if self.cope_module is not None:
                model_sd = {"lm." + k: v for k, v in model_sd.items()}
                model_sd.update(load_file(str(d / DELTA_WEIGHTS)))
            tied = getattr(self.base_model, "_tied_weights_keys", None) or {}
            for k, src in dict(tied).items():  # a tied weight may be stored once
                pre = "lm." if self.cope_module is not None else ""
                if pre + k not in model_sd and pre + src in model_sd:
                    model_sd[pre + k] = model_sd[pre + src]
            set_state_dict(self.model, self.optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd,
                           options=StateDictOptions(full_state_dict=True))
        else:
            _load_model_weights(self.base_model, d)
            if self.cope_module is not None:
                load_delta_weights(self.cope_module, d)
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
            mode = spec.pop("mode", form if form in ("codec_stream", "frames", "image", "cope") else "frames")
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
