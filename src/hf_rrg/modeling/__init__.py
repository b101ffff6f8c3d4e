"""Everything a Hub repo's remote code needs: configs, models, tokenizer, image processor, processor.

Modules in this folder import only the standard library, torch, transformers, tokenizers, numpy, PIL, timm
(pydicom guarded at use) and each other, relatively, so that `save_pretrained` can copy them into a model repo.
"""

from .configuration_asgk import ASGK_LABELER_TAGS, ASGKConfig
from .configuration_coatt import CoAttConfig
from .configuration_dcrrg import DCRRG_OBSERVATIONS, DCRRGConfig
from .configuration_ithn import ITHNConfig
from .configuration_r2gen import R2GenCMNConfig, R2GenConfig, RRGTransformerConfig
from .configuration_rrg import RRGConfig
from .configuration_xpronet import XPRONET_OBSERVATIONS, XProNetConfig
from .decoder_cache import RRGDecoderCache
from .modeling_asgk import ASGKForConditionalGeneration
from .modeling_coatt import CoAttForConditionalGeneration
from .modeling_dcrrg import DCRRGForConditionalGeneration
from .modeling_ithn import ITHNForConditionalGeneration
from .image_loading import ImageLoadError, load_image
from .image_processing_rrg import RRGImageProcessor
from .modeling_r2gen import R2GenForConditionalGeneration
from .modeling_r2gencmn import R2GenCMNForConditionalGeneration
from .modeling_xpronet import XProNetForConditionalGeneration
from .processing_rrg import RRGProcessor
from .report_cleaning import CLEANERS, clean_report, get_cleaner
from .tokenization_rrg import RRGTokenizer

__all__ = [
    "ASGKConfig",
    "ASGKForConditionalGeneration",
    "ASGK_LABELER_TAGS",
    "CLEANERS",
    "CoAttConfig",
    "CoAttForConditionalGeneration",
    "DCRRGConfig",
    "DCRRGForConditionalGeneration",
    "DCRRG_OBSERVATIONS",
    "ITHNConfig",
    "ITHNForConditionalGeneration",
    "ImageLoadError",
    "R2GenCMNConfig",
    "R2GenCMNForConditionalGeneration",
    "R2GenConfig",
    "R2GenForConditionalGeneration",
    "RRGConfig",
    "RRGDecoderCache",
    "RRGImageProcessor",
    "RRGProcessor",
    "RRGTokenizer",
    "RRGTransformerConfig",
    "XPRONET_OBSERVATIONS",
    "XProNetConfig",
    "XProNetForConditionalGeneration",
    "clean_report",
    "get_cleaner",
    "load_image",
]
