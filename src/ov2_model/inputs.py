"""Turn ``VisualTokens`` (the tokenizer's output, DESIGN.md 3.2) into the model's visual inputs.

Works by duck typing on the attribute names of ``VisualTokens`` -- ``canvases`` uint8 ``[S, 3, Hc, Wc]``,
``canvas_kind`` ``[S]`` (0 I, 1 P, 2 frame, 3 image), per-token ``group`` ``[N]`` and ``pos_thw`` ``[N, 3]``
and the method ``patches()`` -> float ``[N, 3*p*p]`` in merge-block order -- and never imports
``ov2_tokenizer``.

For a batch of videos (or of images) it returns, per DESIGN.md 5.9:

* ``pixel_values`` ``[sum N, 3*p*p]``: the patches, items concatenated;
* ``grid_thw`` ``[B, 3]``: ``[S, Hc/p, Wc/p]`` per item;
* ``patch_positions`` ``[sum N, 3]``: ``pos_thw`` (the 3D RoPE coordinates);
* ``group_ids`` ``[sum N]``: the per-token codec groups, renumbered so groups of different items never
  share an id (the encoder's attention segments when passed as ``video_group_ids`` / ``image_group_ids``);
* ``num_tokens``: merged LLM tokens per item (``N / m^2``), i.e. how many placeholders each item needs.

Example::

    >>> import torch
    >>> from types import SimpleNamespace
    >>> from ov2_model.inputs import visual_tokens_to_inputs
    >>> vt = SimpleNamespace(                                   # 1 image canvas of 2x2 patches, p = 14
    ...     canvases=torch.zeros(1, 3, 28, 28, dtype=torch.uint8), canvas_kind=torch.tensor([3]),
    ...     group=torch.zeros(4, dtype=torch.int32),
    ...     pos_thw=torch.tensor([[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1]], dtype=torch.int32),
    ...     patches=lambda: torch.zeros(4, 3 * 14 * 14))
    >>> inp = visual_tokens_to_inputs([vt])
    >>> inp.modality, inp.grid_thw.tolist(), inp.num_tokens
    ('image', [[1, 2, 2]], [1])
    >>> sorted(inp.model_kwargs())
    ['image_grid_thw', 'image_group_ids', 'patch_positions', 'pixel_values']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

__all__ = ["VisionInputs", "visual_tokens_to_inputs"]

_IMAGE_KIND = 3


@dataclass
class VisionInputs:
    """Visual inputs of one modality for :class:`~ov2_model.LlavaOnevision2ForConditionalGeneration`."""

    modality: str  #: ``"video"`` or ``"image"``
    pixel_values: torch.Tensor  #: ``[N, 3*p*p]`` float
    grid_thw: torch.Tensor  #: ``[B, 3]`` int64
    patch_positions: torch.Tensor  #: ``[N, 3]`` int64
    group_ids: Optional[torch.Tensor]  #: ``[N]`` int64 or None (released four-slice windows)
    num_tokens: list[int]  #: merged tokens per item

    def model_kwargs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments for the model's ``forward`` / ``generate``."""
        if self.modality == "video":
            out = {"pixel_values_videos": self.pixel_values, "video_grid_thw": self.grid_thw}
            key = "video_group_ids"
        else:
            out = {"pixel_values": self.pixel_values, "image_grid_thw": self.grid_thw}
            key = "image_group_ids"
        out["patch_positions"] = self.patch_positions
        if self.group_ids is not None:
            out[key] = self.group_ids
        return out

    def to(self, device: Any) -> "VisionInputs":
        """Copy of the inputs on ``device``."""
        return VisionInputs(
            self.modality, self.pixel_values.to(device), self.grid_thw.to(device), self.patch_positions.to(device),
            None if self.group_ids is None else self.group_ids.to(device), list(self.num_tokens),
        )


def _require(obj: Any, name: str) -> Any:
    if not hasattr(obj, name):
        raise TypeError(f"{type(obj).__name__} has no attribute {name!r}; expected a VisualTokens-like object")
    return getattr(obj, name)


def visual_tokens_to_inputs(
    tokens: Any | Sequence[Any],
    spatial_merge_size: int = 2,
    groups: str = "explicit",
    dtype: torch.dtype = torch.float32,
) -> VisionInputs:
    """Convert one or several ``VisualTokens`` of the same modality into model inputs.

    Args:
        tokens: a ``VisualTokens`` or a sequence of them (all videos or all images).
        spatial_merge_size: m of the model; every canvas side (in patches) must be divisible by it.
        groups: ``"explicit"`` -- attention groups are the tokens' ``group`` ids (arbitrary codec groups);
            ``"windows"`` -- no group ids, the encoder cuts each item into ``frame_windows_size`` windows
            (the released behaviour, identical when every group is four consecutive canvases).
        dtype: dtype of ``pixel_values``.

    Returns:
        :class:`VisionInputs`.
    """
    if groups not in ("explicit", "windows"):
        raise ValueError(f"groups must be 'explicit' or 'windows', got {groups!r}")
    items = list(tokens) if isinstance(tokens, (list, tuple)) else [tokens]
    if not items:
        raise ValueError("no VisualTokens given")

    pixels, grids, positions, group_ids, counts, kinds = [], [], [], [], [], []
    offset = 0
    for i, vt in enumerate(items):
        canvases = _require(vt, "canvases")
        kind = _require(vt, "canvas_kind")
        pos = _require(vt, "pos_thw")
        patches = _require(vt, "patches")()
        n, width = patches.shape
        p = math.isqrt(width // 3)
        if 3 * p * p != width:
            raise ValueError(f"item {i}: patch width {width} is not 3*p*p")
        s, _, hc, wc = canvases.shape
        if hc % p or wc % p:
            raise ValueError(f"item {i}: canvas {hc}x{wc} is not a multiple of the patch size {p}")
        gh, gw = hc // p, wc // p
        if gh % spatial_merge_size or gw % spatial_merge_size:
            raise ValueError(f"item {i}: canvas grid {gh}x{gw} is not divisible by merge size {spatial_merge_size}")
        if n != s * gh * gw:
            raise ValueError(
                f"item {i}: {n} token records but {s} canvases of {gh}x{gw} patches ({s * gh * gw}); the model "
                "needs every canvas complete (padding included)"
            )
        if pos.shape != (n, 3):
            raise ValueError(f"item {i}: pos_thw has shape {tuple(pos.shape)}, expected ({n}, 3)")
        is_image = bool((kind.to(torch.int64) == _IMAGE_KIND).all())
        if not is_image and bool((kind.to(torch.int64) == _IMAGE_KIND).any()):
            raise ValueError(f"item {i}: mixes image canvases with video canvases")
        kinds.append("image" if is_image else "video")
        pixels.append(patches if patches.dtype == dtype else patches.to(dtype))
        grids.append([s, gh, gw])
        positions.append(pos.to(torch.int64))
        counts.append(n // spatial_merge_size ** 2)
        if groups == "explicit":
            g = _require(vt, "group").to(torch.int64).reshape(-1)
            if g.numel() != n:
                raise ValueError(f"item {i}: group has {g.numel()} entries for {n} tokens")
            # renumber densely (order of first appearance) and shift past the previous items' groups
            _, dense = torch.unique(g, return_inverse=True)
            group_ids.append(dense + offset)
            offset += int(dense.max()) + 1 if n else 0
    if len(set(kinds)) != 1:
        raise ValueError(f"items mix modalities {sorted(set(kinds))}; convert images and videos separately")

    device = pixels[0].device
    return VisionInputs(
        modality=kinds[0],
        pixel_values=pixels[0] if len(pixels) == 1 else torch.cat(pixels),  # one item: its patches, not a copy
        grid_thw=torch.tensor(grids, dtype=torch.int64, device=device),
        patch_positions=torch.cat(positions).to(device),
        group_ids=torch.cat(group_ids).to(device) if group_ids else None,
        num_tokens=counts,
    )
