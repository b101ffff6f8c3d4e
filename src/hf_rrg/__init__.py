"""hf-rrg: radiology report generation methods as Hugging Face models.

Importing the package registers every hf-rrg config, model and processing class with the transformers
Auto classes.
"""

from .auto_registration import register_auto_classes
from .modeling import *  # noqa: F403  (the public API: configs, models, processing classes)
from .modeling import __all__ as _modeling_all

__version__ = "0.1.0.dev0"

register_auto_classes()

__all__ = list(_modeling_all)
