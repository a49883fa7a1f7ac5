"""Configuration classes of LLaVA-OneVision-2 (``model_type`` ``"llava_onevision2"``).

The field names and defaults follow the released transformers implementation
(EvolvingLMMs-Lab/LLaVA-OneVision-2, ``transformers_impl/llavaonevision2``) so that a released
``config.json`` loads unchanged. Two ov2 additions are optional and off by default.

Example::

    >>> from ov2_model import LlavaOnevision2Config
    >>> cfg = LlavaOnevision2Config(
    ...     vision_config={"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
    ...                    "intermediate_size": 256, "out_hidden_size": 96},
    ...     text_config={"model_type": "qwen3", "hidden_size": 96, "num_hidden_layers": 2,
    ...                  "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 24,
    ...                  "intermediate_size": 192, "vocab_size": 512},
    ...     image_token_id=500, video_token_id=501, vision_start_token_id=502, vision_end_token_id=503)
    >>> cfg.vision_config.model_type, cfg.text_config.model_type
    ('onevision_encoder', 'qwen3')
"""

from __future__ import annotations

from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec
from transformers.models.auto.configuration_auto import AutoConfig

__all__ = ["LlavaOnevision2VisionConfig", "LlavaOnevision2Config"]


class LlavaOnevision2VisionConfig(PreTrainedConfig):
    r"""Configuration of the OneVision-Encoder vision tower (``model_type`` ``"onevision_encoder"``).

    Args:
        hidden_size: width of the ViT (1024 in the released model).
        intermediate_size: width of the MLP of each block (4096).
        num_hidden_layers: number of pre-LN blocks (24).
        num_attention_heads: attention heads (16); ``hidden_size / heads`` must be a multiple of 32 so
            that ``head_dim / 2`` splits 4:6:6 into the T, H, W rotary bands.
        num_channels: input channels (3).
        image_size: nominal image size (unused by the forward, kept for compatibility).
        patch_size: patch side p; inputs are pre-cut patches ``[N, 3*p*p]`` or ``[N, 3, p, p]``.
        hidden_act: activation of the block MLP (``"gelu"``: exact erf GELU).
        layer_norm_eps: epsilon of every LayerNorm of the tower and of the merger.
        layer_norm_type: ``"layer_norm"`` or ``"rms_norm"``.
        attention_dropout: dropout on the attention probabilities in training.
        initializer_range: standard deviation of the initialisation.
        rope_theta: base of the 3D rotary inverse frequencies.
        use_head: build ``layernorm_post`` and the attention-pooling ``head`` (standalone encoder).
        out_hidden_size: output width of the merger (the language model's hidden size).
        spatial_merge_size: m; the merger concatenates m*m consecutive patch tokens.
        tokens_per_second, temporal_patch_size: kept for compatibility (unused by the forward).
        frame_windows_size: number of temporal slices per attention window of a ``grid_thw`` row.
        use_patch_position_encoding: add learned absolute (h, w) embeddings after the merger.
        patch_position_encoding_type: only ``"absolute"``.
        max_position_embeddings: table size of those embeddings.
        attention_backend: ov2 addition; ``"auto"`` (Triton on CUDA, torch elsewhere), ``"triton"`` or
            ``"torch"`` for the group-visible attention of the tower.
    """

    model_type = "onevision_encoder"
    base_config_key = "vision_config"

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    num_channels: int = 3
    image_size: int = 448
    patch_size: int = 14
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    layer_norm_type: str = "layer_norm"
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    rope_theta: float = 10000.0
    use_head: bool = False
    out_hidden_size: int = 1024
    spatial_merge_size: int = 2
    tokens_per_second: int = 1
    temporal_patch_size: int = 1
    frame_windows_size: int = 4
    use_patch_position_encoding: bool = False
    patch_position_encoding_type: str = "absolute"
    max_position_embeddings: int = 8192
    attention_backend: str = "auto"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        head_dim = self.hidden_size // self.num_attention_heads
        if head_dim % 32:
            raise ValueError(
                f"head_dim {head_dim} must be a multiple of 32 (head_dim/2 is split 4:6:6 into T, H, W bands)"
            )
        if self.layer_norm_type not in ("layer_norm", "rms_norm"):
            raise ValueError(f"layer_norm_type must be 'layer_norm' or 'rms_norm', got {self.layer_norm_type!r}")
        if self.attention_backend not in ("auto", "triton", "torch"):
            raise ValueError(f"attention_backend must be 'auto', 'triton' or 'torch', got {self.attention_backend!r}")


class LlavaOnevision2Config(PreTrainedConfig):
    r"""Configuration of :class:`~ov2_model.LlavaOnevision2ForConditionalGeneration`.

    Args:
        vision_config: a :class:`LlavaOnevision2VisionConfig` or its dict.
        text_config: the language model's config or its dict (``model_type`` defaults to ``"qwen3"``).
        image_token_id: placeholder token replaced by merged image tokens (151655 in the released model).
        video_token_id: placeholder token replaced by merged video tokens (151656).
        vision_start_token_id, vision_end_token_id: delimiters of a visual span (151652, 151653).
        tie_word_embeddings: tie ``lm_head`` to the input embeddings.
    """

    model_type = "llava_onevision2"
    sub_configs_defaults = {
        "vision_config": LlavaOnevision2VisionConfig,
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen3"),
    }
    keys_to_ignore_at_inference = ["past_key_values"]

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    tie_word_embeddings: bool = False
