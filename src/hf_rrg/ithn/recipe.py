"""ITHN's training recipe: `labels` -> `prototypes` -> `mine` -> `train`, each stage writing its artifact in the run
folder (`config.method: ithn`, the backbone in `model.backbone_config`).

- `labels`, `prototypes`: the backbone's own preparation stages, run with the backbone's settings
  (`recipe_options.backbone_options` are the backbone recipe's options). XProNet: its pseudo-label file and K-means
  prototype matrix (`hf_rrg.xpronet.recipe`). R2GenCMN has none: both are recorded as skipped.
- `mine`: the prior hard negatives (§3.2): `RUN_DIR/neighbours.json`, each training study's `top_k` nearest
  training reports under the configured text encoder (`hf_rrg.ithn.mining`). `recipe_options.neighbour_file` uses
  an existing file instead (checked to cover the training ids, copied into the run folder).
- `train`: the shared loop. Every training batch gets its studies' neighbours, looked up by id in the training
  split: their images and reports (`negative_pixel_values`, `negative_view_mask`, `negative_decoder_input_ids`,
  `negative_decoder_attention_mask`, `negative_labels`, plus `negative_<x>` for each backbone field `x`, e.g.
  XProNet's `negative_observation_labels`). Which neighbour: the nearest (the paper's prior hard negative, used by
  the projection strategy and the ablations) or, for MoCHi (Eq. 2: "a randomly sampled u_ri⁻ among the k nearest
  neighbours"), one drawn per study and epoch from the `sample_top_k` nearest, seeded by (seed, epoch, index).
  Before each epoch the model is told the epoch number (`model.set_epoch(epoch + 1)`, counted from 1 like the
  R2Gen-family trainers) for λ = 1 − exp(−α·epoch). Evaluation generates from the images alone.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..modeling.configuration_ithn import ITHNConfig
from ..training.config import ConfigError, TrainingConfig, parse_section
from ..training.hooks import FitHooks
from ..training.recipes import Recipe, Stage, StageContext, fit_stage
from .mining import POOLINGS, TFIDF, NeighbourFile, mine_hard_negatives, read_neighbour_file

NEIGHBOURS_FILE = "neighbours.json"
NEGATIVE_PREFIX = "negative_"
NEIGHBOUR_CHOICES = ("auto", "nearest", "random_top_k")
_BACKBONES_WITH_STAGES = ("xpronet",)


@dataclass
class ITHNRecipeOptions:
    """`recipe_options` of an ITHN config.

    Attributes:
        encoder: text encoder of the mining (§3.2): a Hugging Face encoder id or local folder (the paper: RadBERT,
            e.g. `UCSD-VA-health/RadBERT-RoBERTa-4m`) or `tfidf` (a TF-IDF bag of words: offline, no model).
        pooling: `mean` over the real tokens or the first token (`cls`) of the encoder's last hidden state.
        top_k: neighbours kept per study in the neighbours file.
        neighbour_choice: `nearest` (the prior hard negative R_i⁻), `random_top_k` (one of the `sample_top_k`
            nearest per study and epoch, MoCHi's Eq. 2) or `auto` (random_top_k for `synthesis: mochi`, else nearest).
        sample_top_k: k of the random choice.
        exclude_same_patient: never pair studies of one patient (needs `patient_column` in the training split).
        patient_column: the dataset column holding the patient id.
        exclude_identical: never pair reports with identical text (the paper does not exclude them).
        batch_size / max_length: encoder batch size and report length (tokens) when embedding.
        block_size: rows per block of the exact cosine search.
        device: `auto` (the GPU when there is one and `training.cpu` is off), `cpu`, `cuda`, ...
        neighbour_file: use this neighbours file (from `hf-rrg ithn mine`) instead of mining in the `mine` stage.
        progress: show progress bars in the stages.
        backbone_options: the `recipe_options` of the backbone's own recipe (XProNet: text_encoder,
            use_prototype_init, label_file, ...).
    """

    encoder: str = TFIDF
    pooling: str = "mean"
    top_k: int = 10
    neighbour_choice: str = "auto"
    sample_top_k: int = 5
    exclude_same_patient: bool = False
    patient_column: str = "patient_id"
    exclude_identical: bool = False
    batch_size: int = 64
    max_length: int = 256
    block_size: int = 4096
    device: str = "auto"
    neighbour_file: str | None = None
    progress: bool = True
    backbone_options: dict[str, Any] = field(default_factory=dict)


def recipe_options(config: TrainingConfig) -> ITHNRecipeOptions:
    """The validated `recipe_options` of `config` (unknown keys are errors naming the valid ones)."""
    options = parse_section(ITHNRecipeOptions, config.recipe_options, "recipe_options")
    if options.pooling not in POOLINGS:
        raise ConfigError(f"recipe_options.pooling must be one of {POOLINGS}, got {options.pooling!r}")
    if options.neighbour_choice not in NEIGHBOUR_CHOICES:
        raise ConfigError(
            f"recipe_options.neighbour_choice must be one of {NEIGHBOUR_CHOICES}, got {options.neighbour_choice!r}"
        )
    for name in ("top_k", "sample_top_k", "batch_size", "max_length", "block_size"):
        if getattr(options, name) < 1:
            raise ConfigError(f"recipe_options.{name} must be >= 1, got {getattr(options, name)}")
    return options


def model_config(config: TrainingConfig) -> ITHNConfig:
    """The ITHN config the run's model will have."""
    if config.method != "ithn":
        raise ConfigError(f"the ithn recipe trains method 'ithn', the config says {config.method!r}")
    try:
        return ITHNConfig(**config.model)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model section of the config is not a valid ITHNConfig: {error}") from None


def backbone_training_config(config: TrainingConfig) -> TrainingConfig:
    """`config` as the backbone's own recipe sees it: method = the backbone type, model = its settings, recipe
    options = `recipe_options.backbone_options`."""
    model = model_config(config)
    backbone = {key: value for key, value in dict(config.model.get("backbone_config") or {}).items()}
    backbone.pop("model_type", None)
    return dataclasses.replace(
        config, method=model.backbone_type, recipe=None, model=backbone,
        recipe_options=dict(recipe_options(config).backbone_options),
    )  # fmt: skip


def _backbone_context(context: StageContext) -> StageContext:
    return StageContext(config=backbone_training_config(context.config), run_dir=context.run_dir,
                        resume=context.resume, datasets=context.datasets, results=context.results)  # fmt: skip


def neighbour_choice(config: TrainingConfig) -> str:
    """`nearest` or `random_top_k` (resolving `auto` from the model's synthesis strategy)."""
    choice = recipe_options(config).neighbour_choice
    if choice == "auto":
        return "random_top_k" if model_config(config).synthesis == "mochi" else "nearest"
    return choice


def _state(config: TrainingConfig) -> Any:
    from ..training.loop import distributed_state

    return distributed_state(config)


def _splits(context: StageContext, state: Any) -> dict[str, Any]:
    from ..training.loop import prepare_splits

    return prepare_splits(context.config, state, context.datasets)


def _device(config: TrainingConfig, options: ITHNRecipeOptions) -> str:
    if options.device != "auto":
        return options.device
    return "cuda" if torch.cuda.is_available() and not config.training.cpu else "cpu"


# --------------------------------------------------------------------------------------------------- stages


def _backbone_stage(name: str) -> Callable[[StageContext], dict[str, Any]]:
    def run(context: StageContext) -> dict[str, Any]:
        backbone = model_config(context.config).backbone_type
        if backbone not in _BACKBONES_WITH_STAGES:
            options = recipe_options(context.config).backbone_options
            if options:
                raise ConfigError(
                    f"recipe_options.backbone_options {sorted(options)} are not used: backbone {backbone!r} has no "
                    "preparation stages; remove them"
                )
            return {"skipped": f"backbone {backbone!r} has no {name} stage"}
        from ..xpronet import recipe as xpronet_recipe

        stage = {"labels": xpronet_recipe.labels_stage, "prototypes": xpronet_recipe.prototypes_stage}[name]
        return {"backbone": backbone, **stage(_backbone_context(context))}

    run.__name__ = f"{name}_stage"
    return run


def mine_stage(context: StageContext) -> dict[str, Any]:
    """Write `RUN_DIR/neighbours.json` (each training study's nearest training reports, §3.2)."""
    config = context.config
    options = recipe_options(config)
    model_config(config)
    state = _state(config)
    train = _splits(context, state)["train"]
    columns = getattr(train, "column_names", None) or []
    for needed in ("id", "report") + ((options.patient_column,) if options.exclude_same_patient else ()):
        if needed not in columns:
            raise ValueError(
                f"the training split has no {needed!r} column (columns: {columns}); ITHN's mining needs it"
                + (" (recipe_options.patient_column)" if needed == options.patient_column else "")
            )
    rows = train.select_columns([c for c in ("id", "report", options.patient_column) if c in columns])
    ids = [str(i) for i in rows["id"]]
    path = context.artifact(NEIGHBOURS_FILE)
    if options.neighbour_file is not None:
        source = Path(options.neighbour_file)
        neighbours = read_neighbour_file(source)
        neighbours.check_covers(ids, source)
        if state.is_main_process:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, path)
        state.wait_for_everyone()
        return {"file": str(path), "source": str(source), "studies": len(ids), "metadata": neighbours.metadata}
    metadata: dict[str, Any] = {}
    if state.is_main_process:
        result = mine_hard_negatives(
            ids, list(rows["report"]), encoder=options.encoder, pooling=options.pooling, top_k=options.top_k,
            patient_ids=list(rows[options.patient_column]) if options.exclude_same_patient else None,
            exclude_identical=options.exclude_identical, batch_size=options.batch_size,
            max_length=options.max_length, block_size=options.block_size, device=_device(config, options),
            progress=options.progress,
        )  # fmt: skip
        result.metadata.update(split=config.data.train_split, dataset=config.data.builder)
        result.write(path)
        metadata = result.metadata
        print(f"ITHN neighbours of {len(ids)} training studies written to {path}")
    state.wait_for_everyone()
    if not metadata:
        metadata = read_neighbour_file(path).metadata
    return {"file": str(path), "source": "mined", "studies": len(ids), "metadata": metadata}


# ----------------------------------------------------------------------------------------- the train hooks


class NeighbourBatch:
    """Batch hook: the items' `id`s -> their neighbours' images and reports as `negative_*` fields (and the
    backbone's own fields, for the anchors and, prefixed, for the neighbours). Picklable (DataLoader workers).

    Args:
        train: the training split (rows with `id`, `images`, `report`).
        neighbours: the neighbours file.
        collator: a `ReportGenerationCollator` with the run's tokenizer, max length and augmentation; its
            `extra_fields` (the backbone's hook, if any) are applied to the neighbours.
        choice: `nearest` or `random_top_k`; sample_top_k: k of the random choice; seed: its seed.
        backbone_fields: the backbone's hook for the anchors (e.g. XProNet's label lookup), or None.
    """

    def __init__(
        self,
        train: Any,
        neighbours: NeighbourFile,
        collator: Any,
        choice: str = "nearest",
        sample_top_k: int = 5,
        seed: int = 0,
        backbone_fields: Callable[[Sequence[dict]], Mapping[str, torch.Tensor]] | None = None,
        columns: Sequence[str] = ("id",),
    ) -> None:
        from ..data.collators import IndexedStudies

        if choice not in ("nearest", "random_top_k"):
            raise ValueError(f"choice must be nearest or random_top_k, got {choice!r}")
        self.studies = IndexedStudies(train, extra_columns=tuple(columns))
        ids = [str(i) for i in train["id"]]
        self.rows = {study_id: row for row, study_id in enumerate(ids)}
        neighbours.check_covers(ids)
        self.neighbours = {
            key: [n for n, _ in value] for key, value in neighbours.neighbours.items() if key in self.rows
        }
        self.collator = collator
        self.choice = choice
        self.sample_top_k = sample_top_k
        self.seed = seed
        self.backbone_fields = backbone_fields
        self.epoch = 0

    def neighbour_of(self, item: dict) -> str:
        """The id of the neighbour of `item` in this epoch."""
        candidates = self.neighbours[str(item["id"])]
        if self.choice == "nearest":
            return candidates[0]
        pool = candidates[: self.sample_top_k]
        generator = np.random.default_rng([int(self.seed), int(self.epoch), int(item["index"]), 104_729])
        return pool[int(generator.integers(len(pool)))]

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        neighbour_items = [self.studies[self.rows[self.neighbour_of(item)]] for item in items]
        self.collator.epoch = self.epoch
        batch = self.collator(neighbour_items)
        fields = {NEGATIVE_PREFIX + key: value for key, value in batch.items() if key != "index"}
        if self.backbone_fields is not None:
            fields.update(self.backbone_fields(items))
        return fields


def fit_hooks(context: StageContext) -> FitHooks:
    """What the `train` stage adds to `fit`: the neighbour fields of every training batch, the epoch for λ, the
    backbone's hooks (XProNet: labels and the initial prototype matrix) and the run's ITHN settings."""
    from ..data.collators import ReportGenerationCollator
    from ..modeling.image_processing_rrg import RRGImageProcessor
    from ..training.loop import prepare_tokenizer

    config = context.config
    options, model = recipe_options(config), model_config(config)
    backbone_hooks = FitHooks()
    if model.backbone_type in _BACKBONES_WITH_STAGES:
        from ..xpronet.recipe import fit_hooks as xpronet_fit_hooks

        backbone_hooks = xpronet_fit_hooks(_backbone_context(context))
    elif config.evaluation.use_reference_labels:
        raise ConfigError(
            f"evaluation.use_reference_labels applies to backbones that read report-derived labels (xpronet); "
            f"{model.backbone_type!r} has none. Remove the setting."
        )
    path = context.artifact(NEIGHBOURS_FILE)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run the mine stage first (`hf-rrg train CONFIG --output-dir {context.run_dir} "
            "--stage mine`) or set recipe_options.neighbour_file"
        )
    neighbours = read_neighbour_file(path)
    state = _state(config)
    train = _splits(context, state)["train"]
    tokenizer = prepare_tokenizer(config, context.run_dir, list(train["report"]), state)  # fit reuses it
    collator = ReportGenerationCollator(
        RRGImageProcessor(**config.image_processor), tokenizer, max_length=model.max_seq_length,
        augment=config.data.augment, seed=config.training.seed, extra_fields=backbone_hooks.train_fields,
    )  # fmt: skip
    choice = neighbour_choice(config)
    columns = tuple(dict.fromkeys(("id", *backbone_hooks.columns)))
    hook = NeighbourBatch(train, neighbours, collator, choice, options.sample_top_k, config.training.seed,
                          backbone_hooks.train_fields, columns)  # fmt: skip

    def on_epoch_start(built: Any, epoch: int) -> None:
        hook.epoch = epoch
        built.set_epoch(epoch + 1)  # λ = 1 − exp(−α·#epoch), epochs counted from 1

    def prepare_model(built: Any) -> None:
        if backbone_hooks.prepare_model is not None:
            backbone_hooks.prepare_model(built.backbone)

    metadata = {
        "recipe": "ithn",
        "backbone": model.backbone_type,
        "synthesis": model.synthesis,
        "hardness_alpha": model.hardness_alpha,
        "losses": "L_CE" + (f" + {model.clip_loss_weight}·L_CP" if model.use_clip_loss else "")
        + (f" + {model.cs_loss_weight}·L_CS" if model.use_cs_loss else ""),
        "neighbours": f"{choice} of the {neighbours.metadata.get('top_k', '?')} mined with "
        f"{neighbours.metadata.get('encoder', '?')}"
        + (f" ({neighbours.metadata['pooling']} pooling)" if neighbours.metadata.get("pooling") else ""),
        **{f"backbone_{k}": v for k, v in backbone_hooks.metadata.items() if k != "recipe"},
    }
    return FitHooks(
        columns=columns,
        train_fields=hook,
        eval_fields=backbone_hooks.eval_fields,
        prepare_model=prepare_model,
        metadata=metadata,
        on_epoch_start=on_epoch_start,
    )


def train_stage(context: StageContext) -> dict[str, Any]:
    """The shared loop with ITHN's hooks."""
    return fit_stage(context, fit_hooks(context))


def ithn_recipe() -> Recipe:
    """`labels` -> `prototypes` (backbone preparation; skipped for R2GenCMN) -> `mine` -> `train`."""
    return Recipe(
        "ithn",
        (
            Stage("labels", _backbone_stage("labels")),
            Stage("prototypes", _backbone_stage("prototypes")),
            Stage("mine", mine_stage),
            Stage("train", train_stage),
        ),
    )


__all__ = [
    "ITHNRecipeOptions",
    "NEIGHBOURS_FILE",
    "NeighbourBatch",
    "backbone_training_config",
    "fit_hooks",
    "ithn_recipe",
    "mine_stage",
    "model_config",
    "neighbour_choice",
    "recipe_options",
    "train_stage",
]
