"""hf-rrg: radiology report generation methods as Hugging Face models.

Importing the package is cheap (no torch, no transformers): the public API (`hf_rrg.modeling`'s configs, models and
processing classes, e.g. ``hf_rrg.R2GenConfig``) is imported on first use, and every hf-rrg config, model and
processing class is registered with the transformers Auto classes as soon as those are loaded
(`hf_rrg.auto_registration`), so ``import hf_rrg; AutoModelForImageTextToText.from_pretrained(...)`` works.
"""

from . import auto_registration
from .modeling import __all__  # the public API, imported on first use by __getattr__ below

__version__ = "0.1.0.dev0"


def __getattr__(name: str):
    if name in __all__:
        from . import modeling

        value = getattr(modeling, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hf_rrg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


auto_registration.install()
