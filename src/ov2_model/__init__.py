"""ov2_model: the LLaVA-OneVision-2 model (OneVision-Encoder with 3D RoPE and group-visible attention,
patch merger, Qwen3 through ``transformers``), its attention kernels and checkpoint loaders.

Importing the package registers the classes with the ``transformers`` Auto classes under the model types
``llava_onevision2`` (``AutoConfig``, ``AutoModel``, ``AutoModelForImageTextToText``,
``AutoModelForCausalLM``) and ``onevision_encoder`` (``AutoConfig``, ``AutoModel``), so released checkpoint
directories load without ``trust_remote_code``::

    >>> import ov2_model                                               # registers the Auto classes
    >>> from transformers import AutoModelForImageTextToText
    >>> model = AutoModelForImageTextToText.from_pretrained("../shared/fixtures/ov2_tiny_reference")  # doctest: +SKIP
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
)

from .attention import segment_attention, segment_attention_reference, set_attention_backend
from .configuration_llava_onevision2 import LlavaOnevision2Config, LlavaOnevision2VisionConfig
from .inputs import VisionInputs, visual_tokens_to_inputs
from .loading import CheckpointMismatchError, load_llava_onevision2, load_onevision_encoder
from .modeling_llava_onevision2 import (
    LlavaOnevision2ForConditionalGeneration,
    LlavaOnevision2Model,
    LlavaOnevision2PreTrainedModel,
    LlavaOnevision2VisionModel,
)


def _register() -> None:
    AutoConfig.register("llava_onevision2", LlavaOnevision2Config, exist_ok=True)
    AutoConfig.register("onevision_encoder", LlavaOnevision2VisionConfig, exist_ok=True)
    AutoModel.register(LlavaOnevision2Config, LlavaOnevision2Model, exist_ok=True)
    AutoModel.register(LlavaOnevision2VisionConfig, LlavaOnevision2VisionModel, exist_ok=True)
    AutoModelForImageTextToText.register(
        LlavaOnevision2Config, LlavaOnevision2ForConditionalGeneration, exist_ok=True
    )
    AutoModelForCausalLM.register(LlavaOnevision2Config, LlavaOnevision2ForConditionalGeneration, exist_ok=True)


_register()

__all__ = [
    "LlavaOnevision2Config",
    "LlavaOnevision2VisionConfig",
    "LlavaOnevision2PreTrainedModel",
    "LlavaOnevision2VisionModel",
    "LlavaOnevision2Model",
    "LlavaOnevision2ForConditionalGeneration",
    "VisionInputs",
    "visual_tokens_to_inputs",
    "segment_attention",
    "segment_attention_reference",
    "set_attention_backend",
    "CheckpointMismatchError",
    "load_llava_onevision2",
    "load_onevision_encoder",
]
