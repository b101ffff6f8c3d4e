"""Everything a Hub repo's remote code needs: configs, models, tokenizer, image processor, processor.

Modules in this folder import only the standard library, torch, transformers, tokenizers, numpy, PIL, timm
(pydicom guarded at use) and each other, relatively, so that `save_pretrained` can copy them into a model repo.

The names below are imported on first use (``from hf_rrg.modeling import R2GenConfig`` imports
`configuration_r2gen` only), so that a light module of this folder (`report_cleaning`) costs no torch import.
"""

from .lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "configuration_asgk": ("ASGK_LABELER_TAGS", "ASGKConfig"),
        "configuration_coatt": ("CoAttConfig",),
        "configuration_dcrrg": ("DCRRG_OBSERVATIONS", "DCRRGConfig"),
        "configuration_ithn": ("ITHNConfig",),
        "configuration_r2gen": ("R2GenCMNConfig", "R2GenConfig", "RRGTransformerConfig"),
        "configuration_rrg": ("RRGConfig",),
        "configuration_xpronet": ("XPRONET_OBSERVATIONS", "XProNetConfig"),
        "decoder_cache": ("RRGDecoderCache",),
        "image_loading": ("ImageLoadError", "load_image"),
        "image_processing_rrg": ("RRGImageProcessor",),
        "modeling_asgk": ("ASGKForConditionalGeneration",),
        "modeling_coatt": ("CoAttForConditionalGeneration",),
        "modeling_dcrrg": ("DCRRGForConditionalGeneration",),
        "modeling_ithn": ("ITHNForConditionalGeneration",),
        "modeling_r2gen": ("R2GenForConditionalGeneration",),
        "modeling_r2gencmn": ("R2GenCMNForConditionalGeneration",),
        "modeling_xpronet": ("XProNetForConditionalGeneration",),
        "processing_rrg": ("RRGProcessor",),
        "report_cleaning": ("CLEANERS", "clean_report", "get_cleaner"),
        "tokenization_rrg": ("RRGTokenizer",),
    },
)
