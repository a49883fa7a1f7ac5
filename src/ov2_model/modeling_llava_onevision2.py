"""LLaVA-OneVision-2 in PyTorch: OneVision-Encoder (3D RoPE, group-visible attention), merger, Qwen3.

Parameter names, config fields, forward signatures and numerics follow the released transformers
implementation (EvolvingLMMs-Lab/LLaVA-OneVision-2, ``transformers_impl/llavaonevision2``), so released
checkpoint directories load with ``from_pretrained`` and give the same logits. The language model is
``transformers``' Qwen3 (``AutoModel.from_config(config.text_config)``).

Data flow (N patch tokens, m = ``spatial_merge_size``)::

    pixel_values [N, 3*p*p] (merge-block order) --Conv2d(p, stride p, no bias)--> [N, D]
    --layernorm_pre--> L x [x + attn(LN1 x), x + MLP(LN2 x)]   (attention only inside groups, 3D RoPE)
    --(layernorm_post if use_head)--> merger: LN per token, m*m consecutive tokens concatenated,
    Linear-GELU-Linear --> [N / m^2, out_hidden_size] --masked_scatter at <image>/<video> tokens--> Qwen3

Example (tiny random model)::

    >>> import torch
    >>> from ov2_model import LlavaOnevision2Config, LlavaOnevision2ForConditionalGeneration
    >>> cfg = LlavaOnevision2Config(
    ...     vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
    ...                        num_attention_heads=2, out_hidden_size=32),
    ...     text_config=dict(model_type="qwen3", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
    ...                      num_attention_heads=2, num_key_value_heads=1, head_dim=16, vocab_size=64),
    ...     image_token_id=60, video_token_id=61, vision_start_token_id=62, vision_end_token_id=63)
    >>> model = LlavaOnevision2ForConditionalGeneration(cfg).eval()
    >>> grid = torch.tensor([[1, 2, 2]])                          # one image, 2x2 patches -> 1 merged token
    >>> ids = torch.tensor([[1, 62, 60, 63, 2]])
    >>> out = model(input_ids=ids, pixel_values=torch.randn(4, 3 * 14 * 14), image_grid_thw=grid)
    >>> out.logits.shape
    torch.Size([1, 5, 64])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.generation import GenerationMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling, ModelOutput
from transformers.modeling_utils import PreTrainedModel

from .attention.segment_attention import segment_attention
from .configuration_llava_onevision2 import LlavaOnevision2Config, LlavaOnevision2VisionConfig

__all__ = [
    "LlavaOnevision2PreTrainedModel",
    "LlavaOnevision2VisionModel",
    "LlavaOnevision2Model",
    "LlavaOnevision2ForConditionalGeneration",
    "LlavaOnevision2ModelOutputWithPast",
    "LlavaOnevision2CausalLMOutputWithPast",
    "VisionRotaryEmbedding",
    "apply_rotary_pos_emb_vision",
    "build_cu_seqlens",
    "default_patch_positions",
]


# ==================================================================================================
# Outputs
# ==================================================================================================


@dataclass
class LlavaOnevision2ModelOutputWithPast(ModelOutput):
    """Output of :class:`LlavaOnevision2Model` (last hidden state of the language model and its cache)."""

    last_hidden_state: Optional[torch.FloatTensor] = None
    past_key_values: Optional[Cache] = None
    hidden_states: Optional[tuple[torch.FloatTensor, ...]] = None
    attentions: Optional[tuple[torch.FloatTensor, ...]] = None


@dataclass
class LlavaOnevision2CausalLMOutputWithPast(ModelOutput):
    """Output of :class:`LlavaOnevision2ForConditionalGeneration` (loss when ``labels`` are given, logits)."""

    loss: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    past_key_values: Optional[Cache] = None
    hidden_states: Optional[tuple[torch.FloatTensor, ...]] = None
    attentions: Optional[tuple[torch.FloatTensor, ...]] = None


# ==================================================================================================
# Positions, rotary embedding and attention groups
# ==================================================================================================


class VisionRotaryEmbedding(nn.Module):
    """3D rotary angles from explicit ``(t, h, w)`` positions.

    ``head_dim / 2`` frequency slots are split 4:6:6 into T, H, W bands (64 -> 8:12:12); band ``a`` with
    ``n_a`` slots uses ``inv_freq_k = theta^(-k / n_a)``, ``k = 0..n_a-1``. The angles are recomputed on
    each call (cheap), so nothing depends on buffers surviving meta-device initialisation.
    """

    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        head_dim = config.hidden_size // config.num_attention_heads
        half = head_dim // 2
        if half % 16:
            raise ValueError(f"head_dim/2 = {half} must be divisible by 16 for the 4:6:6 split")
        unit = half // 16
        self.theta = float(config.rope_theta)
        self.sizes = (4 * unit, 6 * unit, 6 * unit)
        self.half = half

    def inv_freqs(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inverse frequencies of the T, H and W bands (fp32)."""
        return tuple(
            1.0 / (self.theta ** (torch.arange(n, dtype=torch.float32, device=device) / n)) for n in self.sizes
        )

    def forward(self, patch_positions: torch.Tensor) -> torch.Tensor:
        """Angles ``[N, head_dim / 2]`` (fp32) for positions ``[N, 3]`` = (t, h, w)."""
        pos = patch_positions.to(torch.float32)
        inv_t, inv_h, inv_w = self.inv_freqs(pos.device)
        return torch.cat(
            [torch.outer(pos[:, 0], inv_t), torch.outer(pos[:, 1], inv_h), torch.outer(pos[:, 2], inv_w)], dim=-1
        )


def _rotate_interleaved(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)."""
    return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)


def apply_rotary_pos_emb_vision(
    q: torch.Tensor, k: torch.Tensor, angles: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the released encoder's rotary embedding to ``q, k`` of shape ``[N, H, D]``.

    ``angles`` ``[N, D/2]`` are duplicated by concatenation to ``[N, D]`` and combined with the interleaved
    pair rotation: ``out = x * cos(a) + rot(x) * sin(a)``. Element ``2i`` and ``2i+1`` therefore use the
    angles ``a[2i mod D/2]`` and ``a[(2i+1) mod D/2]`` -- not a true 2D rotation, but the released numerics.
    Computed in fp32, returned in the input dtypes.
    """
    full = torch.cat([angles, angles], dim=-1)[:, None, :]
    cos, sin = full.cos(), full.sin()
    qf, kf = q.float(), k.float()
    q_out = qf * cos + _rotate_interleaved(qf) * sin
    k_out = kf * cos + _rotate_interleaved(kf) * sin
    return q_out.to(q.dtype), k_out.to(k.dtype)


def default_patch_positions(grid_thw: torch.Tensor, spatial_merge_size: int) -> torch.Tensor:
    """``(t, h, w)`` of every patch of dense grids ``[[t, h, w], ...]`` in merge-block order.

    Used when no ``patch_positions`` are given: rows are raster grids (t = slice index) whose patches
    the processor emitted in m x m block order (the Qwen2-VL layout).
    """
    out = []
    m = int(spatial_merge_size)
    for t, h, w in grid_thw.tolist():
        if h % m or w % m:
            raise ValueError(f"grid {t}x{h}x{w} is not divisible by spatial_merge_size {m}")
        tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
        pos = torch.stack([tt, hh, ww], dim=-1)  # [t, h, w, 3]
        pos = pos.view(t, h // m, m, w // m, m, 3).permute(0, 1, 3, 2, 4, 5).reshape(-1, 3)
        out.append(pos)
    if not out:
        return torch.zeros(0, 3, dtype=torch.long, device=grid_thw.device)
    return torch.cat(out).to(grid_thw.device)


def build_cu_seqlens(grid_thw: torch.Tensor, frame_windows_size: Optional[int], total: int) -> torch.Tensor:
    """Attention segments of the released encoder as cumulative lengths.

    Each ``grid_thw`` row ``[t, h, w]`` is cut into windows of ``frame_windows_size`` temporal slices
    (the remainder is a shorter last window); ``frame_windows_size`` None or <= 0 keeps rows whole.
    """
    lengths: list[int] = []
    for t, h, w in grid_thw.tolist():
        per_slice = int(h) * int(w)
        if frame_windows_size and frame_windows_size > 0 and t > frame_windows_size:
            full, rem = divmod(int(t), int(frame_windows_size))
            lengths += [frame_windows_size * per_slice] * full + ([rem * per_slice] if rem else [])
        else:
            lengths.append(int(t) * per_slice)
    if sum(lengths) != total:
        raise ValueError(f"grid_thw {grid_thw.tolist()} describes {sum(lengths)} patches but {total} were given")
    cu = torch.tensor([0] + lengths, dtype=torch.int64).cumsum(0)
    return cu.to(device=grid_thw.device, dtype=torch.int32)


# ==================================================================================================
# Vision tower modules
# ==================================================================================================


def _norm(config: LlavaOnevision2VisionConfig) -> nn.Module:
    if config.layer_norm_type == "rms_norm":
        return nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class OneVisionEncoderEmbeddings(nn.Module):
    """Conv2d patch embedding (kernel = stride = p, no bias) of pre-cut patches ``[N, 3*p*p]``."""

    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        self.num_channels = config.num_channels
        self.patch_size = config.patch_size
        self.embed_dim = config.hidden_size
        self.patch_embedding = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size,
            bias=False,
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = pixel_values.reshape(-1, self.num_channels, self.patch_size, self.patch_size)
        x = x.to(self.patch_embedding.weight.dtype)
        return self.patch_embedding(x).reshape(-1, self.embed_dim)


class OneVisionEncoderMLP(nn.Module):
    """fc1 -> activation -> fc2 (SigLIP MLP layout)."""

    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class OneVisionEncoderAttention(nn.Module):
    """Fused-qkv multi-head attention with 3D RoPE, restricted to groups by :func:`segment_attention`."""

    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        self.embed_dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        self.scale = self.head_dim ** -0.5
        self.dropout = config.attention_dropout
        self.backend = config.attention_backend
        self.qkv = nn.Linear(self.embed_dim, 3 * self.embed_dim)
        self.proj = nn.Linear(self.embed_dim, self.embed_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        rotary_angles: torch.Tensor,
        segment_ids: torch.Tensor,
        window_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        n = hidden_states.shape[0]
        q, k, v = self.qkv(hidden_states).view(n, 3, self.num_heads, self.head_dim).unbind(1)
        q, k = apply_rotary_pos_emb_vision(q, k, rotary_angles)
        out = segment_attention(
            q, k, v, segment_ids=segment_ids, window_ids=window_ids, scale=self.scale,
            dropout_p=self.dropout if self.training else 0.0,
            backend=None if self.backend == "auto" else self.backend,
        )
        return self.proj(out.reshape(n, self.embed_dim))


class OneVisionEncoderEncoderLayer(GradientCheckpointingLayer):
    """Pre-LN transformer block: ``x + attn(LN1 x)`` then ``x + MLP(LN2 x)``."""

    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        self.self_attn = OneVisionEncoderAttention(config)
        self.layer_norm1 = _norm(config)
        self.mlp = OneVisionEncoderMLP(config)
        self.layer_norm2 = _norm(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        rotary_angles: torch.Tensor,
        segment_ids: torch.Tensor,
        window_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        hidden_states = hidden_states + self.self_attn(
            self.layer_norm1(hidden_states), rotary_angles, segment_ids, window_ids
        )
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))


class OneVisionEncoderEncoder(nn.Module):
    """Stack of :class:`OneVisionEncoderEncoderLayer` (``encoder.layers.{i}``)."""

    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList([OneVisionEncoderEncoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def forward(
        self,
        hidden_states: torch.Tensor,
        rotary_angles: torch.Tensor,
        segment_ids: torch.Tensor,
        window_ids: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        all_hidden = [] if output_hidden_states else None
        for layer in self.layers:
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            hidden_states = layer(hidden_states, rotary_angles, segment_ids, window_ids)
        if all_hidden is not None:
            all_hidden.append(hidden_states)
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=tuple(all_hidden) if all_hidden is not None else None
        )


class OneVisionEncoderPoolingHead(nn.Module):
    """SigLIP-style attention pooling: a learned probe attends over the tokens, then ``a + MLP(RMSNorm(a))``."""

    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        self.probe = nn.Parameter(torch.randn(1, 1, config.hidden_size))
        self.attention = nn.MultiheadAttention(config.hidden_size, config.num_attention_heads, batch_first=True)
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = OneVisionEncoderMLP(config)

    def forward(self, hidden_states: torch.Tensor, key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``hidden_states`` ``[B, L, D]`` (``key_padding_mask`` True = ignore) -> pooled ``[B, D]``."""
        probe = self.probe.expand(hidden_states.shape[0], -1, -1).to(hidden_states.dtype)
        attn, _ = self.attention(probe, hidden_states, hidden_states, key_padding_mask=key_padding_mask,
                                 need_weights=False)
        return (attn + self.mlp(self.norm(attn)))[:, 0]


class LlavaOnevision2VisionPatchMerger(nn.Module):
    """LayerNorm per token, ``m*m`` consecutive tokens concatenated, Linear-GELU-Linear to the LLM width."""

    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__()
        m = config.spatial_merge_size
        self.spatial_merge_size = m
        self.hidden_size = config.hidden_size * m * m
        self.ln_q = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(
            nn.Linear(self.hidden_size, self.hidden_size), nn.GELU(), nn.Linear(self.hidden_size, config.out_hidden_size)
        )
        self.use_patch_position_encoding = config.use_patch_position_encoding
        if self.use_patch_position_encoding:
            if config.patch_position_encoding_type != "absolute":
                raise ValueError(f"unknown patch_position_encoding_type {config.patch_position_encoding_type!r}")
            self.pos_emb_h = nn.Embedding(config.max_position_embeddings, config.out_hidden_size)
            self.pos_emb_w = nn.Embedding(config.max_position_embeddings, config.out_hidden_size)

    def forward(self, x: torch.Tensor, patch_positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x.shape[0] % (self.spatial_merge_size ** 2):
            raise ValueError(f"{x.shape[0]} tokens cannot be merged in groups of {self.spatial_merge_size ** 2}")
        x = self.mlp(self.ln_q(x).reshape(-1, self.hidden_size))
        if self.use_patch_position_encoding and patch_positions is not None:
            first = patch_positions.reshape(-1, self.spatial_merge_size ** 2, 3)[:, 0]
            cell = torch.div(first, self.spatial_merge_size, rounding_mode="floor").long()
            x = x + self.pos_emb_h(cell[:, 1]) + self.pos_emb_w(cell[:, 2])
        return x


# ==================================================================================================
# Pretrained base and vision model
# ==================================================================================================


class LlavaOnevision2PreTrainedModel(PreTrainedModel):
    """Shared ``PreTrainedModel`` settings (weight init, checkpointing, attention support flags)."""

    config_class = LlavaOnevision2Config
    config: LlavaOnevision2Config
    base_model_prefix = "model"
    input_modalities = ("image", "video", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["OneVisionEncoderEncoderLayer", "Qwen3DecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, OneVisionEncoderPoolingHead):
            std = getattr(self.config, "initializer_range", None)
            if std is None:
                std = getattr(self.config.get_text_config(), "initializer_range", 0.02)
            with torch.no_grad():
                module.probe.normal_(mean=0.0, std=std)


class LlavaOnevision2VisionModel(LlavaOnevision2PreTrainedModel):
    """The OneVision-Encoder tower with the patch merger (``model.visual`` in the VLM).

    Inputs are pre-cut patches in merge-block order. Attention groups come from ``segment_ids`` when
    given (arbitrary per-token groups, ov2), else from ``grid_thw`` cut into ``frame_windows_size``-slice
    windows (released behaviour); ``window_ids`` restricts attention further.
    """

    config_class = LlavaOnevision2VisionConfig
    config: LlavaOnevision2VisionConfig
    base_model_prefix = "visual"
    main_input_name = "hidden_state"
    input_modalities = ("image", "video")
    _no_split_modules = ["OneVisionEncoderEncoderLayer"]

    def __init__(self, config: LlavaOnevision2VisionConfig):
        super().__init__(config)
        self.spatial_merge_size = config.spatial_merge_size
        self.embeddings = OneVisionEncoderEmbeddings(config)
        self.layernorm_pre = _norm(config)
        self.encoder = OneVisionEncoderEncoder(config)
        self.video_rope = VisionRotaryEmbedding(config)
        if config.use_head:
            self.layernorm_post = _norm(config)
            self.head = OneVisionEncoderPoolingHead(config)
        else:
            self.layernorm_post = None
            self.head = None
        self.merger = LlavaOnevision2VisionPatchMerger(config)
        self.post_init()

    def _segments(
        self, grid_thw: Optional[torch.Tensor], segment_ids: Optional[torch.Tensor], n: int, device: torch.device
    ) -> torch.Tensor:
        if segment_ids is not None:
            seg = segment_ids.reshape(-1).to(device)
            if seg.numel() != n:
                raise ValueError(f"segment_ids has {seg.numel()} entries for {n} patches")
            return seg
        if grid_thw is None or grid_thw.numel() == 0:
            return torch.zeros(n, dtype=torch.int32, device=device)
        cu = build_cu_seqlens(grid_thw, self.config.frame_windows_size, n).to(device)
        return torch.repeat_interleave(torch.arange(cu.numel() - 1, device=device), (cu[1:] - cu[:-1]).long())

    def _pool(self, seq: torch.Tensor, grid_thw: Optional[torch.Tensor]) -> torch.Tensor:
        """Attention pooling per ``grid_thw`` row (one vector per image / video)."""
        lengths = [seq.shape[0]] if grid_thw is None else [int(t * h * w) for t, h, w in grid_thw.tolist()]
        parts = torch.split(seq, lengths)
        batch = nn.utils.rnn.pad_sequence(parts, batch_first=True)
        pad = torch.arange(batch.shape[1], device=seq.device)[None, :] >= torch.tensor(lengths, device=seq.device)[:, None]
        return self.head(batch, key_padding_mask=pad if bool(pad.any()) else None)

    def forward(
        self,
        hidden_state: torch.Tensor,
        grid_thw: Optional[torch.Tensor] = None,
        patch_positions: Optional[torch.Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        skip_merger: Optional[bool] = False,
        segment_ids: Optional[torch.Tensor] = None,
        window_ids: Optional[torch.Tensor] = None,
    ) -> Union[tuple, BaseModelOutputWithPooling]:
        r"""Encode packed patches.

        Args:
            hidden_state: patches ``[N, 3*p*p]`` or ``[N, 3, p, p]``, merge-block order.
            grid_thw: ``[S, 3]`` rows ``[t, h, w]`` (canvases/frames, patch rows, patch columns) per sample.
            patch_positions: ``[N, 3]`` RoPE coordinates ``(t, h, w)`` of each patch; default: the dense
                grid positions of ``grid_thw`` in merge-block order.
            output_attentions: not supported (attention maps are never materialised); must be falsy.
            output_hidden_states: also return the input and output of every block (``[1, N, D]`` each).
            return_dict: return a :class:`BaseModelOutputWithPooling` (default) or a tuple.
            skip_merger: return the per-patch features ``[1, N, D]`` (after ``layernorm_post`` if any).
            segment_ids: ``[N]`` ov2 per-token attention groups (overrides the ``grid_thw`` windows).
            window_ids: ``[N]`` optional further restriction to equal window ids.

        Returns:
            ``last_hidden_state``: merged tokens ``[N / m^2, out_hidden_size]`` (or per-patch features
            with ``skip_merger``); ``pooler_output``: attention-pooled ``[S, D]`` when ``use_head``.
        """
        if output_attentions:
            raise ValueError("output_attentions is not supported by the segment-attention encoder")
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        x = self.embeddings(hidden_state)
        n = x.shape[0]
        if patch_positions is not None:
            if patch_positions.dim() == 3:
                patch_positions = patch_positions.squeeze(0)
            if patch_positions.shape != (n, 3):
                raise ValueError(f"patch_positions must be [{n}, 3], got {tuple(patch_positions.shape)}")
        elif grid_thw is not None:
            patch_positions = default_patch_positions(grid_thw, self.spatial_merge_size)
        else:
            raise ValueError("pass patch_positions or grid_thw")
        angles = self.video_rope(patch_positions.to(x.device))
        seg = self._segments(grid_thw, segment_ids, n, x.device)
        win = window_ids.reshape(-1).to(x.device) if window_ids is not None else None

        x = self.layernorm_pre(x)
        enc = self.encoder(x, angles, seg, win, output_hidden_states=output_hidden_states)
        seq = enc.last_hidden_state
        if self.layernorm_post is not None:
            seq = self.layernorm_post(seq)
        pooled = self._pool(seq, grid_thw) if self.head is not None else None
        hidden = tuple(h.unsqueeze(0) for h in enc.hidden_states) if output_hidden_states else None

        out = seq.unsqueeze(0) if skip_merger else self.merger(seq, patch_positions=patch_positions)
        if not return_dict:
            return tuple(v for v in (out, pooled, hidden) if v is not None)
        return BaseModelOutputWithPooling(last_hidden_state=out, pooler_output=pooled, hidden_states=hidden)


# ==================================================================================================
# Vision-language model
# ==================================================================================================


def _split_positions(
    patch_positions: Optional[torch.Tensor], n_image: int, n_video: int
) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """One ``patch_positions`` argument serves images, videos, or both (images first, then videos)."""
    if patch_positions is None:
        return None, None
    pp = patch_positions.squeeze(0) if patch_positions.dim() == 3 else patch_positions
    if n_image and n_video:
        if pp.shape[0] != n_image + n_video:
            raise ValueError(
                f"with images and videos together, patch_positions must have {n_image} + {n_video} rows "
                f"(images first), got {pp.shape[0]}"
            )
        return pp[:n_image], pp[n_image:]
    return (pp, None) if n_image else (None, pp)


class LlavaOnevision2Model(LlavaOnevision2PreTrainedModel):
    """Vision tower (``visual``) + language model (``language_model``, Qwen3) without the LM head."""

    base_model_prefix = ""

    def __init__(self, config: LlavaOnevision2Config):
        super().__init__(config)
        self.visual = LlavaOnevision2VisionModel._from_config(config.vision_config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_decoder(self) -> nn.Module:
        return self.language_model

    def set_decoder(self, decoder: nn.Module) -> None:
        self.language_model = decoder

    def _encode(self, pixels, grid_thw, patch_positions, group_ids) -> list[torch.Tensor]:
        pixels = pixels.to(self.visual.embeddings.patch_embedding.weight.dtype)
        merged = self.visual(
            pixels, grid_thw=grid_thw, patch_positions=patch_positions, segment_ids=group_ids, return_dict=True
        ).last_hidden_state
        if grid_thw is None:
            return [merged]
        sizes = (grid_thw.prod(-1) // self.visual.spatial_merge_size ** 2).tolist()
        return list(torch.split(merged, sizes))

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        image_grid_thw: Optional[torch.Tensor] = None,
        patch_positions: Optional[torch.Tensor] = None,
        image_group_ids: Optional[torch.Tensor] = None,
    ) -> list[torch.Tensor]:
        """Merged visual tokens of each image, ``[t*h*w / m^2, out_hidden_size]`` per ``image_grid_thw`` row."""
        return self._encode(pixel_values, image_grid_thw, patch_positions, image_group_ids)

    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        video_grid_thw: Optional[torch.Tensor] = None,
        patch_positions: Optional[torch.Tensor] = None,
        video_group_ids: Optional[torch.Tensor] = None,
    ) -> list[torch.Tensor]:
        """Merged visual tokens of each video, ``[t*h*w / m^2, out_hidden_size]`` per ``video_grid_thw`` row."""
        return self._encode(pixel_values_videos, video_grid_thw, patch_positions, video_group_ids)

    def get_placeholder_mask(
        self, input_ids: Optional[torch.Tensor], inputs_embeds: torch.Tensor, token_id: int, n_features: int
    ) -> torch.Tensor:
        """Boolean ``[B, L, D]`` mask of the placeholder ``token_id``; checks it matches ``n_features``."""
        if input_ids is None:
            ref = self.get_input_embeddings()(torch.tensor(token_id, dtype=torch.long, device=inputs_embeds.device))
            mask = (inputs_embeds == ref).all(-1)
        else:
            mask = input_ids == token_id
        n_tokens = int(mask.sum())
        if n_tokens != n_features:
            raise ValueError(
                f"placeholder token {token_id} appears {n_tokens} times but there are {n_features} visual features"
            )
        return mask.unsqueeze(-1).expand_as(inputs_embeds).to(inputs_embeds.device)

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        past_key_values: Optional[Cache] = None,
        inputs_embeds: Optional[torch.FloatTensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        pixel_values: Optional[torch.Tensor] = None,
        pixel_values_videos: Optional[torch.FloatTensor] = None,
        image_grid_thw: Optional[torch.LongTensor] = None,
        patch_positions: Optional[torch.LongTensor] = None,
        video_grid_thw: Optional[torch.LongTensor] = None,
        cache_position: Optional[torch.LongTensor] = None,
        second_per_grid_ts: Optional[torch.Tensor] = None,
        image_group_ids: Optional[torch.Tensor] = None,
        video_group_ids: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> Union[tuple, LlavaOnevision2ModelOutputWithPast]:
        r"""Embed text, scatter merged visual tokens at the placeholders, run the language model.

        ``patch_positions`` belongs to the only visual modality given, or to images then videos when both
        are given. ``image_group_ids`` / ``video_group_ids`` are optional per-patch attention groups
        (ov2). ``second_per_grid_ts`` and ``cache_position`` are accepted for compatibility and unused
        (the LLM uses plain 1-D positions).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        n_img = pixel_values.shape[0] if pixel_values is not None else 0
        n_vid = pixel_values_videos.shape[0] if pixel_values_videos is not None else 0
        img_pos, vid_pos = _split_positions(patch_positions, n_img, n_vid)

        if pixel_values is not None:
            feats = torch.cat(self.get_image_features(pixel_values, image_grid_thw, img_pos, image_group_ids))
            feats = feats.to(inputs_embeds.device, inputs_embeds.dtype)
            mask = self.get_placeholder_mask(input_ids, inputs_embeds, self.config.image_token_id, feats.shape[0])
            inputs_embeds = inputs_embeds.masked_scatter(mask, feats)
        if pixel_values_videos is not None:
            feats = torch.cat(
                self.get_video_features(pixel_values_videos, video_grid_thw, vid_pos, video_group_ids)
            )
            feats = feats.to(inputs_embeds.device, inputs_embeds.dtype)
            mask = self.get_placeholder_mask(input_ids, inputs_embeds, self.config.video_token_id, feats.shape[0])
            inputs_embeds = inputs_embeds.masked_scatter(mask, feats)

        if position_ids is None:
            batch, length = inputs_embeds.shape[:2]
            if attention_mask is not None and attention_mask.dim() == 2:
                pos = attention_mask.long().cumsum(-1) - 1
                pos = pos.masked_fill(attention_mask == 0, 1)
                position_ids = pos[:, -length:]
            else:
                past = past_key_values.get_seq_length() if past_key_values is not None else 0
                position_ids = (torch.arange(length, device=inputs_embeds.device) + past).unsqueeze(0).expand(batch, -1)

        outputs = self.language_model(
            input_ids=None,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        out = LlavaOnevision2ModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return out if return_dict else out.to_tuple()


_VISUAL_KWARGS = ("pixel_values", "pixel_values_videos", "image_grid_thw", "video_grid_thw",
                  "patch_positions", "image_group_ids", "video_group_ids", "second_per_grid_ts")


class LlavaOnevision2ForConditionalGeneration(LlavaOnevision2PreTrainedModel, GenerationMixin):
    """LLaVA-OneVision-2: :class:`LlavaOnevision2Model` + ``lm_head``; supports ``generate``."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    accepts_loss_kwargs = False

    def __init__(self, config: LlavaOnevision2Config):
        super().__init__(config)
        self.model = LlavaOnevision2Model(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """``PreTrainedModel.from_pretrained`` that also reads legacy key layouts (``visual.*``,
        ``language_model.model.*``) and re-saves in the current layout."""
        from .loading import legacy_key_mapping_for

        if "key_mapping" not in kwargs:
            mapping = legacy_key_mapping_for(pretrained_model_name_or_path)
            if mapping:
                kwargs["key_mapping"] = mapping
                model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
                model._weight_conversions = None  # save_pretrained writes the current layout
                return model
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def get_decoder(self) -> nn.Module:
        return self.model.get_decoder()

    def set_decoder(self, decoder: nn.Module) -> None:
        self.model.set_decoder(decoder)

    def get_image_features(self, pixel_values, image_grid_thw=None, patch_positions=None, image_group_ids=None):
        """See :meth:`LlavaOnevision2Model.get_image_features`."""
        return self.model.get_image_features(pixel_values, image_grid_thw, patch_positions, image_group_ids)

    def get_video_features(self, pixel_values_videos, video_grid_thw=None, patch_positions=None,
                           video_group_ids=None):
        """See :meth:`LlavaOnevision2Model.get_video_features`."""
        return self.model.get_video_features(pixel_values_videos, video_grid_thw, patch_positions, video_group_ids)

    @property
    def language_model(self) -> nn.Module:
        return self.model.language_model

    @property
    def visual(self) -> LlavaOnevision2VisionModel:
        return self.model.visual

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        past_key_values: Optional[Cache] = None,
        inputs_embeds: Optional[torch.FloatTensor] = None,
        labels: Optional[torch.LongTensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        pixel_values: Optional[torch.Tensor] = None,
        pixel_values_videos: Optional[torch.FloatTensor] = None,
        image_grid_thw: Optional[torch.LongTensor] = None,
        patch_positions: Optional[torch.LongTensor] = None,
        video_grid_thw: Optional[torch.LongTensor] = None,
        cache_position: Optional[torch.LongTensor] = None,
        second_per_grid_ts: Optional[torch.Tensor] = None,
        logits_to_keep: Union[int, torch.Tensor] = 0,
        return_dict: Optional[bool] = None,
        image_group_ids: Optional[torch.Tensor] = None,
        video_group_ids: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> Union[tuple, LlavaOnevision2CausalLMOutputWithPast]:
        r"""Forward pass (same arguments as the released model plus ov2's optional group ids).

        Args:
            labels: ``[B, L]`` next-token targets (-100 = ignored); the loss is the token-level mean of
                the shifted cross-entropy.
            logits_to_keep: compute logits only for the last ``k`` positions (0 = all) or given indices.
            Other arguments: see :meth:`LlavaOnevision2Model.forward`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos,
            image_grid_thw=image_grid_thw,
            patch_positions=patch_positions,
            video_grid_thw=video_grid_thw,
            cache_position=cache_position,
            second_per_grid_ts=second_per_grid_ts,
            image_group_ids=image_group_ids,
            video_group_ids=video_group_ids,
            **kwargs,
        )
        hidden = outputs.last_hidden_state
        sl = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, sl, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size)
        out = LlavaOnevision2CausalLMOutputWithPast(
            loss=loss, logits=logits, past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states, attentions=outputs.attentions,
        )
        return out if return_dict else out.to_tuple()

    # ----------------------------------------------------------------------------------------------
    # generation helpers
    # ----------------------------------------------------------------------------------------------

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None,
                                      inputs_embeds=None, is_first_iteration=False, **kwargs):
        """Visual inputs are consumed at prefill only; later steps see text tokens and the cache."""
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
            inputs_embeds=inputs_embeds, is_first_iteration=is_first_iteration, **kwargs,
        )
        prefill = is_first_iteration or past_key_values is None or past_key_values.get_seq_length() == 0
        if not prefill and model_inputs.get("use_cache", True):
            for key in ("pixel_values", "pixel_values_videos"):
                model_inputs[key] = None
        return model_inputs

    def _expand_inputs_for_generation(self, expand_size: int = 1, is_encoder_decoder: bool = False,
                                      input_ids: Optional[torch.LongTensor] = None, **model_kwargs):
        """Repeat each sample ``expand_size`` times (beam search / num_return_sequences).

        Packed visual tensors have no batch dimension: they are split per sample (by the number of
        image / video spans of each sample's ``input_ids``) and repeated sample by sample.
        """
        if expand_size == 1:
            return input_ids, model_kwargs
        if input_ids is None:
            raise ValueError("expanding visual inputs for generation requires input_ids")
        starts = input_ids == self.config.vision_start_token_id
        follow = torch.zeros_like(starts)
        follow[:, 1:] = starts[:, :-1]
        n_img = ((input_ids == self.config.image_token_id) & follow).sum(1).tolist()
        n_vid = ((input_ids == self.config.video_token_id) & follow).sum(1).tolist()

        def repeat(x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
            return torch.cat([p.repeat(expand_size, *([1] * (x.dim() - 1))) for p in torch.split(x, lengths)])

        def patch_counts(grid: Optional[torch.Tensor], per_sample: list[int]) -> list[int]:
            rows = torch.split(grid, per_sample)
            return [int(r.prod(-1).sum()) for r in rows]

        img_grid, vid_grid = model_kwargs.get("image_grid_thw"), model_kwargs.get("video_grid_thw")
        img_patches = patch_counts(img_grid, n_img) if img_grid is not None else None
        vid_patches = patch_counts(vid_grid, n_vid) if vid_grid is not None else None
        for key in ("pixel_values", "image_group_ids"):
            if model_kwargs.get(key) is not None and img_patches is not None:
                model_kwargs[key] = repeat(model_kwargs[key], img_patches)
        for key in ("pixel_values_videos", "video_group_ids"):
            if model_kwargs.get(key) is not None and vid_patches is not None:
                model_kwargs[key] = repeat(model_kwargs[key], vid_patches)
        if img_grid is not None:
            model_kwargs["image_grid_thw"] = repeat(img_grid, n_img)
        if vid_grid is not None:
            model_kwargs["video_grid_thw"] = repeat(vid_grid, n_vid)
        if model_kwargs.get("second_per_grid_ts") is not None:
            model_kwargs["second_per_grid_ts"] = repeat(model_kwargs["second_per_grid_ts"], n_vid)
        pp = model_kwargs.get("patch_positions")
        if pp is not None:
            pp = pp.squeeze(0) if pp.dim() == 3 else pp
            has_img, has_vid = model_kwargs.get("pixel_values") is not None, model_kwargs.get("pixel_values_videos") is not None
            if has_img and has_vid:
                ni = sum(img_patches)
                model_kwargs["patch_positions"] = torch.cat([repeat(pp[:ni], img_patches), repeat(pp[ni:], vid_patches)])
            elif has_img and img_patches is not None:
                model_kwargs["patch_positions"] = repeat(pp, img_patches)
            elif has_vid and vid_patches is not None:
                model_kwargs["patch_positions"] = repeat(pp, vid_patches)

        input_ids = input_ids.repeat_interleave(expand_size, dim=0)
        for key, value in model_kwargs.items():
            if key in _VISUAL_KWARGS or key == "cache_position" or not isinstance(value, torch.Tensor):
                continue
            model_kwargs[key] = value.repeat_interleave(expand_size, dim=0)
        return input_ids, model_kwargs
