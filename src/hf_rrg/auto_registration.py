"""Register hf-rrg's configs, models and processing classes with the transformers Auto classes."""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForSeq2SeqLM,
    AutoProcessor,
    AutoTokenizer,
)

from .hub.pipeline_registration import register_pipeline
from .modeling import (
    ASGKConfig,
    ASGKForConditionalGeneration,
    CoAttConfig,
    CoAttForConditionalGeneration,
    DCRRGConfig,
    DCRRGForConditionalGeneration,
    ITHNConfig,
    ITHNForConditionalGeneration,
    R2GenCMNConfig,
    R2GenCMNForConditionalGeneration,
    R2GenConfig,
    R2GenForConditionalGeneration,
    RRGConfig,
    RRGImageProcessor,
    RRGProcessor,
    RRGTokenizer,
    XProNetConfig,
    XProNetForConditionalGeneration,
)

MODELS = {
    R2GenConfig: R2GenForConditionalGeneration,
    R2GenCMNConfig: R2GenCMNForConditionalGeneration,
    XProNetConfig: XProNetForConditionalGeneration,
    CoAttConfig: CoAttForConditionalGeneration,
    DCRRGConfig: DCRRGForConditionalGeneration,
    ASGKConfig: ASGKForConditionalGeneration,
    ITHNConfig: ITHNForConditionalGeneration,
}


# Models with a PEFT prompt-learning adapter (DCRRG's P-Tuning v2, task type SEQ_2_SEQ_LM): PEFT's
# `AutoPeftModelForSeq2SeqLM` loads their base through `AutoModelForSeq2SeqLM`.
SEQ2SEQ_ADAPTER_MODELS = {DCRRGConfig: DCRRGForConditionalGeneration}


def register_auto_classes() -> None:
    """Idempotent: `import hf_rrg` calls it once; calling it again changes nothing. Also registers the
    `radiology-report-generation` pipeline task."""
    for config_class in (RRGConfig, *MODELS):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoTokenizer.register(config_class, tokenizer_class=RRGTokenizer, exist_ok=True)
        # One PIL-based class serves whichever backend transformers asks for (it never needs torchvision).
        AutoImageProcessor.register(
            config_class,
            image_processor_classes={"pil": RRGImageProcessor, "torchvision": RRGImageProcessor},
            exist_ok=True,
        )
        AutoProcessor.register(config_class, RRGProcessor, exist_ok=True)
    for config_class, model_class in MODELS.items():
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoModelForImageTextToText.register(config_class, model_class, exist_ok=True)
    for config_class, model_class in SEQ2SEQ_ADAPTER_MODELS.items():
        AutoModelForSeq2SeqLM.register(config_class, model_class, exist_ok=True)
    register_pipeline()
