"""Training: one Accelerate engine for every stage (`engine`: `Engine`, `TrainingTask`), its report-generator
client `fit` (`loop`), configs, optimizers/schedules, safetensors + JSON checkpoints, resume checks and
per-method recipes.

Light to import: the names below are imported on first use, so that `hf-rrg --help` loads no torch.
"""

from ..modeling.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "config": ("ConfigError", "TrainingConfig", "config_from_dict", "load_config"),
        "hooks": ("FitHooks",),
        "loop": ("fit",),
        "recipes": (
            "Recipe",
            "Stage",
            "StageContext",
            "get_recipe",
            "register_recipe",
            "run_recipe",
            "run_training",
        ),
    },
)
