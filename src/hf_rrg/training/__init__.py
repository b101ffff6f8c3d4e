"""Training: one Accelerate engine for every stage (`engine`: `Engine`, `TrainingTask`), its report-generator
client `fit` (`loop`), configs, optimizers/schedules, safetensors + JSON checkpoints, resume checks and
per-method recipes.

Light to import: torch, accelerate and the models are imported by the modules that need them.
"""

from .config import ConfigError, TrainingConfig, config_from_dict, load_config
from .hooks import FitHooks
from .recipes import Recipe, Stage, StageContext, get_recipe, register_recipe, run_recipe, run_training


def fit(*args, **kwargs):
    """`hf_rrg.training.loop.fit` (imported on first use)."""
    from .loop import fit as _fit

    return _fit(*args, **kwargs)


__all__ = [
    "ConfigError",
    "FitHooks",
    "Recipe",
    "Stage",
    "StageContext",
    "TrainingConfig",
    "config_from_dict",
    "fit",
    "get_recipe",
    "load_config",
    "register_recipe",
    "run_recipe",
    "run_training",
]
