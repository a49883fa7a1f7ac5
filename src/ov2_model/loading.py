"""Checkpoint loading for the layouts LLaVA-OneVision-2 weights are published in.

* VLM layout (current): ``model.visual.*``, ``model.language_model.*``, ``lm_head.*`` -- what
  ``save_pretrained`` of the released class writes. ``from_pretrained`` reads it directly.
* VLM layout (older checkpoints): ``visual.*``, ``language_model.model.*`` (``language_model.lm_head.*``) or
  Qwen-style ``model.layers.*``. :meth:`LlavaOnevision2ForConditionalGeneration.from_pretrained` renames
  them on load (:data:`LEGACY_KEY_MAPPING`) and saves back in the current layout.
* Standalone OneVision-Encoder: ``embeddings.*``, ``layernorm_pre.*``,
  ``encoder.layers.{i}.self_attn.{q,k,v,out}_proj.*``, ``layernorm_post.*``, ``head.*`` (optionally under
  ``onevision_encoder.``). :func:`load_onevision_encoder` fuses q, k, v into ``qkv`` (rows stacked in that
  order) and renames ``out_proj`` to ``proj``; the merger does not exist there and keeps its
  initialisation.

Every loader checks the key set exactly and raises :class:`CheckpointMismatchError` listing the missing and
unexpected keys when a directory does not match.

Example::

    >>> from ov2_model.loading import load_llava_onevision2
    >>> model = load_llava_onevision2("../shared/fixtures/ov2_tiny_reference")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Optional, Union

import torch

__all__ = [
    "CheckpointMismatchError",
    "LEGACY_KEY_MAPPING",
    "checkpoint_keys",
    "read_state_dict",
    "legacy_key_mapping_for",
    "rename_legacy_keys",
    "convert_onevision_encoder_state_dict",
    "load_onevision_encoder",
    "load_llava_onevision2",
]

PathLike = Union[str, os.PathLike]

#: regex -> replacement applied to older VLM checkpoints (first matching rule wins).
LEGACY_KEY_MAPPING: dict[str, str] = {
    r"^visual\.": "model.visual.",
    r"^language_model\.lm_head\.": "lm_head.",
    r"^language_model\.model\.": "model.language_model.",
    r"^model\.(?!language_model\.|visual\.)": "model.language_model.",
}


class CheckpointMismatchError(ValueError):
    """A checkpoint's keys do not match the model: lists missing and unexpected keys."""

    def __init__(self, path: PathLike, missing: Iterable[str], unexpected: Iterable[str], layout: str,
                 shape_mismatch: Iterable[str] = ()):
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.shape_mismatch = sorted(shape_mismatch)

        def block(title: str, keys: list[str]) -> str:
            if not keys:
                return ""
            shown = "\n    ".join(keys[:40]) + (f"\n    ... ({len(keys) - 40} more)" if len(keys) > 40 else "")
            return f"\n  {title} ({len(keys)}):\n    {shown}"

        super().__init__(
            f"checkpoint {os.fspath(path)!r} does not match the {layout} layout:"
            + block("missing keys", self.missing)
            + block("unexpected keys", self.unexpected)
            + block("shape mismatches", self.shape_mismatch)
        )


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def _weight_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = path / index_name
        if index.exists():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [path / f for f in files]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).exists():
            return [path / name]
    found = sorted(path.glob("*.safetensors"))
    if found:
        return found
    raise FileNotFoundError(f"no weights (model.safetensors, pytorch_model.bin or an index) in {path}")


def checkpoint_keys(path: PathLike) -> Optional[list[str]]:
    """Parameter names stored in a local checkpoint directory/file, or None if ``path`` is not local."""
    p = Path(path)
    if not p.exists():
        return None
    keys: list[str] = []
    for f in _weight_files(p):
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(f, framework="pt") as fh:
                keys.extend(fh.keys())
        else:
            keys.extend(torch.load(f, map_location="meta", weights_only=True).keys())
    return keys


def read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a local checkpoint (safetensors or ``.bin``, sharded or not) on the CPU."""
    out: dict[str, torch.Tensor] = {}
    for f in _weight_files(Path(path)):
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            out.update(load_file(f))
        else:
            out.update(torch.load(f, map_location="cpu", weights_only=True))
    return out


# --------------------------------------------------------------------------------------------------
# VLM layouts
# --------------------------------------------------------------------------------------------------


def _is_legacy(keys: Iterable[str]) -> bool:
    return any(
        k.startswith(("visual.", "language_model.")) or re.match(r"^model\.(?!language_model\.|visual\.)", k)
        for k in keys
    )


def legacy_key_mapping_for(path: PathLike) -> Optional[dict[str, str]]:
    """:data:`LEGACY_KEY_MAPPING` when the local checkpoint at ``path`` uses an older layout, else None."""
    try:
        keys = checkpoint_keys(path)
    except FileNotFoundError:
        return None
    return dict(LEGACY_KEY_MAPPING) if keys and _is_legacy(keys) else None


def rename_legacy_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename older VLM keys to the current layout (first matching rule of :data:`LEGACY_KEY_MAPPING`)."""
    out = {}
    for key, value in state_dict.items():
        new = key
        for pattern, repl in LEGACY_KEY_MAPPING.items():
            if re.match(pattern, key):
                new = re.sub(pattern, repl, key, count=1)
                break
        out[new] = value
    return out


def _load_strict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], path: PathLike, layout: str,
                 allowed_missing: tuple[str, ...] = ()) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.startswith(allowed_missing)]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
              for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(path, missing, unexpected, layout, shapes)
    model.load_state_dict(state_dict, strict=False)


def load_llava_onevision2(path: PathLike, dtype: Optional[torch.dtype] = None):
    """Load a LLaVA-OneVision-2 VLM directory (current or older key layout) with an exact key check.

    Unlike ``from_pretrained`` this never tolerates missing or unexpected weights: any difference raises
    :class:`CheckpointMismatchError`. ``lm_head.weight`` may be absent when embeddings are tied.
    """
    from .configuration_llava_onevision2 import LlavaOnevision2Config
    from .modeling_llava_onevision2 import LlavaOnevision2ForConditionalGeneration

    config = LlavaOnevision2Config.from_pretrained(path)
    state = rename_legacy_keys(read_state_dict(path))
    model = LlavaOnevision2ForConditionalGeneration(config)
    tied = getattr(config, "tie_word_embeddings", False)
    if tied and "lm_head.weight" not in state:
        state["lm_head.weight"] = state.get("model.language_model.embed_tokens.weight")
    _load_strict(model, state, path, "LLaVA-OneVision-2")
    if tied:
        model.tie_weights()
    model.eval()
    return model.to(dtype) if dtype is not None else model


# --------------------------------------------------------------------------------------------------
# Standalone OneVision-Encoder
# --------------------------------------------------------------------------------------------------

_QKV = re.compile(r"^(encoder\.layers\.\d+\.self_attn\.)([qkv])_proj\.(weight|bias)$")


def convert_onevision_encoder_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Standalone encoder keys -> ov2 vision-model keys (fused ``qkv``, ``proj``); prefixes stripped."""
    sd = {}
    for key, value in state_dict.items():
        for prefix in ("onevision_encoder.", "vision_model."):
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        sd[key] = value
    out: dict[str, torch.Tensor] = {}
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        m = _QKV.match(key)
        if m:
            parts.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
        elif ".self_attn.out_proj." in key and key.startswith("encoder.layers."):
            out[key.replace(".self_attn.out_proj.", ".self_attn.proj.")] = value
        else:
            out[key] = value
    for (prefix, kind), qkv in parts.items():
        if set(qkv) != {"q", "k", "v"}:
            # leave the incomplete set under its original names so the key check reports it
            for name, value in qkv.items():
                out[f"{prefix}{name}_proj.{kind}"] = value
            continue
        out[f"{prefix}qkv.{kind}"] = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)
    return out


def load_onevision_encoder(path: PathLike, dtype: Optional[torch.dtype] = None, **config_overrides):
    """Load the vision tower from a standalone OneVision-Encoder directory or from a VLM directory.

    Returns a :class:`~ov2_model.LlavaOnevision2VisionModel`. From a standalone checkpoint the merger is
    not stored and keeps its fresh initialisation (use ``model(..., skip_merger=True)`` for patch features
    and ``pooler_output`` for the pooled embedding); ``config_overrides`` (e.g. ``spatial_merge_size``,
    ``out_hidden_size``) adjust the merger geometry. A VLM directory yields its trained ``model.visual``.
    """
    from .configuration_llava_onevision2 import LlavaOnevision2VisionConfig
    from .modeling_llava_onevision2 import LlavaOnevision2VisionModel

    p = Path(path)
    cfg = json.loads((p / "config.json").read_text())
    state = read_state_dict(p)
    if "vision_config" in cfg:  # a VLM directory: take its tower
        state = rename_legacy_keys(state)
        state = {k[len("model.visual."):]: v for k, v in state.items() if k.startswith("model.visual.")}
        fields = dict(cfg["vision_config"])
        allowed_missing: tuple[str, ...] = ()
        layout = "LLaVA-OneVision-2 vision tower"
    else:
        state = convert_onevision_encoder_state_dict(state)
        fields = dict(cfg)
        allowed_missing = ("merger.",)
        layout = "OneVision-Encoder"
    for k in ("auto_map", "architectures", "model_type", "transformers_version", "_name_or_path", "torch_dtype",
              "dtype"):
        fields.pop(k, None)
    fields.update(config_overrides)
    config = LlavaOnevision2VisionConfig(**fields)
    model = LlavaOnevision2VisionModel(config)
    _load_strict(model, state, path, layout, allowed_missing=allowed_missing)
    model.eval()
    return model.to(dtype) if dtype is not None else model
