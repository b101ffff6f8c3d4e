"""XProNet's training recipe: `labels` -> `prototypes` -> `train`, each stage writing its artifact in the run folder.

- `labels`: the pseudo-label file `RUN_DIR/labels.json` (§3.2 Eq. 3; `hf_rrg.xpronet.labels`) for the train split
  (and the validation/test splits when `evaluation.use_reference_labels` is set), with the model config's label
  policy (`uncertain_as_positive`, `no_positive_slot`). `recipe_options.label_file` uses an existing file instead
  (checked to cover the ids, copied into the run folder).
- `prototypes`: the K-means initial prototype matrix `RUN_DIR/prototypes.safetensors` (§3.2 Eq. 4-7;
  `hf_rrg.xpronet.prototypes`) from the model's visual backbone (ImageNet weights when `visual_pretrained`) and the
  configured text encoder (`text_encoder: null` = image features only, text part zero). Skipped with
  `use_prototype_init: false` (the "w/o PI" ablation of Table 2: random PM). `recipe_options.prototype_file` uses
  an existing file.
- `train`: the shared Accelerate loop. The prototype matrix is loaded into the fresh model; every training batch
  carries `observation_labels` from the label file, matched by sample id. Validation and test generate from the
  image alone (the label head predicts the labels) unless `evaluation.use_reference_labels: true` (the paper's
  protocol, which feeds labels made from the reference report: leakage).

With `model.use_prototype_network: false` ("w/o CMPNet", an R2GenCMN-like Transformer) the first two stages are
recorded as skipped and training uses no labels.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..modeling.configuration_xpronet import XProNetConfig
from ..training.config import ConfigError, TrainingConfig, parse_section
from ..training.hooks import FitHooks
from ..training.recipes import Recipe, Stage, StageContext, fit_stage
from .labels import LabelFile, make_label_file, read_label_file

LABELS_FILE = "labels.json"
PROTOTYPES_FILE = "prototypes.safetensors"
LABELS_FIELD = "observation_labels"


@dataclass
class XProNetRecipeOptions:
    """`recipe_options` of an XProNet config.

    Attributes:
        use_prototype_init: initialise PM by K-means (§3.2 Eq. 4-7); False keeps the random PM ("w/o PI", Table 2).
        text_encoder: Hugging Face encoder id or local folder for the report features o^t (the paper: BERT, 768-d;
            must match `model.prototype_text_dim`); null uses no text encoder (text part of PM zero; offline).
        text_pooling: `mean` over the tokens or `cls` (first token) for o^t.
        text_max_length: reports are cut to this many text-encoder tokens.
        feature_batch_size: studies per batch when extracting features for the initialisation.
        prototype_seed: K-means seed (and of a randomly initialised backbone); null: `training.seed`.
        device: where features are extracted: `auto` (the GPU when there is one and `training.cpu` is off), `cpu`,
            `cuda`, ...
        impression_only: label only the IMPRESSION section of each report.
        label_file: use this label file (from `hf-rrg xpronet labels`) instead of labelling in the `labels` stage.
        prototype_file: use this PM file (from `hf-rrg xpronet init-prototypes`) instead of the K-means stage.
        progress: show progress bars in the labels/prototypes stages.
    """

    use_prototype_init: bool = True
    text_encoder: str | None = None
    text_pooling: str = "mean"
    text_max_length: int = 512
    feature_batch_size: int = 16
    prototype_seed: int | None = None
    device: str = "auto"
    impression_only: bool = False
    label_file: str | None = None
    prototype_file: str | None = None
    progress: bool = True


def recipe_options(config: TrainingConfig) -> XProNetRecipeOptions:
    """The validated `recipe_options` of `config` (unknown keys are errors naming the valid ones)."""
    options = parse_section(XProNetRecipeOptions, config.recipe_options, "recipe_options")
    if options.text_pooling not in ("mean", "cls"):
        raise ConfigError(f"recipe_options.text_pooling must be mean or cls, got {options.text_pooling!r}")
    if options.feature_batch_size < 1:
        raise ConfigError(f"recipe_options.feature_batch_size must be >= 1, got {options.feature_batch_size}")
    return options


def model_config(config: TrainingConfig) -> XProNetConfig:
    """The XProNet config the run's model will have (label policy, slots, prototype sizes)."""
    if config.method != "xpronet":
        raise ConfigError(f"the xpronet recipe trains method 'xpronet', the config says {config.method!r}")
    try:
        return XProNetConfig(**config.model)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model section of the config is not a valid XProNetConfig: {error}") from None


def _state(config: TrainingConfig) -> Any:
    from ..training.loop import distributed_state

    return distributed_state(config)


def _splits(context: StageContext, state: Any) -> dict[str, Any]:
    from ..training.loop import prepare_splits

    return prepare_splits(context.config, state, context.datasets)


def _labelled_roles(config: TrainingConfig) -> list[str]:
    """Splits that need labels: train always; validation and test only for the (leaky) reference-label protocol."""
    return ["train", "validation", "test"] if config.evaluation.use_reference_labels else ["train"]


def _check_covers(label_file: LabelFile, splits: dict[str, Any], roles: list[str], source: Path) -> None:
    for role in roles:
        ids = [str(i) for i in splits[role]["id"]]
        missing = [i for i in ids if i not in label_file.labels]
        if missing:
            raise ValueError(
                f"label file {source} lacks {len(missing)} of the {len(ids)} {role} sample ids (e.g. {missing[:3]}); "
                "make it for this dataset with `hf-rrg xpronet labels`, or drop recipe_options.label_file"
            )


def labels_stage(context: StageContext) -> dict[str, Any]:
    """Write `RUN_DIR/labels.json` (pseudo labels of the splits the run needs)."""
    config = context.config
    options, model = recipe_options(config), model_config(config)
    if not model.use_prototype_network:
        return {"skipped": "model.use_prototype_network is false: the model reads no labels"}
    state = _state(config)
    splits = _splits(context, state)
    roles = _labelled_roles(config)
    path = context.artifact(LABELS_FILE)
    if options.label_file is not None:
        source = Path(options.label_file)
        label_file = read_label_file(source)
        missing = [name for name in model.observation_names if name not in label_file.observation_names]
        if missing:
            raise ValueError(
                f"label file {source} has no slots {missing}; the model's slots are {model.observation_names}"
            )
        _check_covers(label_file, splits, roles, source)
        if state.is_main_process:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, path)
    else:
        label_file = None
        if state.is_main_process:
            label_file = make_label_file(
                {role: splits[role] for role in roles},
                observation_names=model.observation_names,
                uncertain_as_positive=model.uncertain_as_positive,
                no_positive_slot=model.no_positive_slot,
                impression_only=options.impression_only,
                progress=options.progress,
            )
            label_file.write(path)
            print(f"XProNet labels of {len(label_file.labels)} samples ({', '.join(roles)}) written to {path}")
    state.wait_for_everyone()
    label_file = read_label_file(path)
    return {
        "file": str(path),
        "source": options.label_file or "hf_rrg.labeling.CheXpertLabeler",
        "samples": len(label_file.labels),
        "splits": roles,
        "counts": label_file.counts,
    }


def _feature_device(config: TrainingConfig, options: XProNetRecipeOptions) -> str:
    if options.device != "auto":
        return options.device
    return "cuda" if torch.cuda.is_available() and not config.training.cpu else "cpu"


def prototypes_stage(context: StageContext) -> dict[str, Any]:
    """Write `RUN_DIR/prototypes.safetensors` (K-means PM), or record why there is none."""
    from ..modeling.image_processing_rrg import RRGImageProcessor
    from ..modeling.visual_extractor import VisualExtractor
    from .prototypes import initialize_prototypes, load_prototype_file, save_prototype_file

    config = context.config
    options, model = recipe_options(config), model_config(config)
    if not model.use_prototype_network:
        return {"skipped": "model.use_prototype_network is false: no prototype matrix"}
    path = context.artifact(PROTOTYPES_FILE)
    if not options.use_prototype_init:
        return {"skipped": "recipe_options.use_prototype_init is false: random PM (the w/o PI ablation)"}
    expected = (model.num_observations, model.num_prototypes_per_class, model.prototype_dim)
    state = _state(config)
    if options.prototype_file is not None:
        source = Path(options.prototype_file)
        tensor, metadata = load_prototype_file(source)
        if tuple(tensor.shape) != expected:
            raise ValueError(
                f"prototype file {source} holds a {tuple(tensor.shape)} matrix; the model expects {expected} "
                "(num_observations, num_prototypes_per_class, prototype_visual_dim + prototype_text_dim)"
            )
        if state.is_main_process:
            shutil.copyfile(source, path)
        state.wait_for_everyone()
        return {"file": str(path), "source": str(source), "shape": list(expected), "settings": metadata.get("settings")}
    seed = config.training.seed if options.prototype_seed is None else options.prototype_seed
    summary: dict[str, Any] = {}
    if state.is_main_process:
        splits = _splits(context, state)
        label_file = read_label_file(context.artifact(LABELS_FILE))
        torch.manual_seed(seed)  # a backbone without pretrained weights is random: the same one for the same seed
        extractor = VisualExtractor(model.visual_backbone)
        if extractor.num_features != model.prototype_visual_dim:
            raise ConfigError(
                f"model.prototype_visual_dim is {model.prototype_visual_dim} but backbone {model.visual_backbone!r} "
                f"gives {extractor.num_features}-d image features; set model.prototype_visual_dim="
                f"{extractor.num_features}"
            )
        if model.visual_pretrained:
            extractor.load_pretrained_backbone()
        processor = RRGImageProcessor(**config.image_processor)
        result = initialize_prototypes(
            extractor, splits["train"], processor, label_file, options.text_encoder,
            num_prototypes_per_class=model.num_prototypes_per_class, observation_names=model.observation_names,
            text_pooling=options.text_pooling, batch_size=options.feature_batch_size, seed=seed,
            device=_feature_device(config, options), progress=options.progress, text_dim=model.prototype_text_dim,
            text_max_length=options.text_max_length,
        )  # fmt: skip
        settings = {
            "backbone": model.visual_backbone, "backbone_pretrained": model.visual_pretrained,
            "text_encoder": options.text_encoder, "text_pooling": options.text_pooling, "seed": seed,
            "split": config.data.train_split, "dataset": config.data.builder,
        }  # fmt: skip
        save_prototype_file(path, result, model.observation_names, settings)
        summary = {"class_sizes": result.class_sizes, "small_classes": result.small_classes,
                   "empty_classes": result.empty_classes}  # fmt: skip
        print(f"XProNet prototype matrix {tuple(result.prototypes.shape)} written to {path}")
    state.wait_for_everyone()
    if not summary:
        _, metadata = load_prototype_file(path)
        summary = {key: metadata.get(key) for key in ("class_sizes", "small_classes", "empty_classes")}
    return {"file": str(path), "source": "kmeans", "shape": list(expected), "seed": seed,
            "text_encoder": options.text_encoder, **summary}  # fmt: skip


class LabelLookup:
    """Batch hook: the items' `id`s -> `{"observation_labels": (B, N_l) float}` from a label file, in the model's
    slot order. A picklable class (DataLoader workers)."""

    def __init__(self, label_file: LabelFile, observation_names: list[str], id_column: str = "id") -> None:
        self.label_file = label_file
        self.observation_names = list(observation_names)
        self.id_column = id_column

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        ids = [str(item[self.id_column]) for item in items]
        return {LABELS_FIELD: self.label_file.tensor(ids, self.observation_names)}


def fit_hooks(context: StageContext) -> FitHooks:
    """What the `train` stage adds to `fit`: labels for training (and, only when asked, evaluation) batches, the
    initial PM, and a record of the protocol for `metrics.json`."""
    from .prototypes import load_prototypes_into

    config = context.config
    options, model = recipe_options(config), model_config(config)
    reference = config.evaluation.use_reference_labels
    if not model.use_prototype_network:
        if reference:
            raise ConfigError(
                "evaluation.use_reference_labels needs the prototype network (model.use_prototype_network: true)"
            )
        return FitHooks(metadata={"recipe": "xpronet", "prototype_network": False, "labels_at_evaluation": "none",
                                  "prototype_initialisation": "none"})  # fmt: skip
    label_file = read_label_file(context.artifact(LABELS_FILE))
    lookup = LabelLookup(label_file, model.observation_names)
    prototypes = context.artifact(PROTOTYPES_FILE)
    if options.use_prototype_init and not prototypes.is_file():
        raise FileNotFoundError(
            f"{prototypes} is missing: run the prototypes stage first (`hf-rrg train CONFIG --output-dir "
            f"{context.run_dir} --stage prototypes`) or set recipe_options.use_prototype_init=false"
        )

    def prepare_model(built: Any) -> None:
        if options.use_prototype_init:
            load_prototypes_into(built, prototypes)

    metadata = {
        "recipe": "xpronet",
        "prototype_network": True,
        "labels_at_evaluation": (
            "reference: labels of the reference report (the paper's protocol; leaks the answer)"
            if reference
            else "predicted: the model's label head, from the image alone"
        ),
        "prototype_initialisation": "kmeans" if options.use_prototype_init else "random",
        "text_encoder": options.text_encoder if options.use_prototype_init else None,
        "contrastive_improved": model.contrastive_improved,
    }
    return FitHooks(
        columns=("id",),
        train_fields=lookup,
        eval_fields=lookup if reference else None,
        prepare_model=prepare_model,
        metadata=metadata,
    )


def train_stage(context: StageContext) -> dict[str, Any]:
    """The shared loop with XProNet's hooks."""
    return fit_stage(context, fit_hooks(context))


def xpronet_recipe() -> Recipe:
    """`labels` -> `prototypes` -> `train`."""
    return Recipe(
        "xpronet",
        (Stage("labels", labels_stage), Stage("prototypes", prototypes_stage), Stage("train", train_stage)),
    )


def options_as_dict(config: TrainingConfig) -> dict[str, Any]:
    """The effective recipe options (defaults filled in), e.g. for logging."""
    return json.loads(json.dumps(asdict(recipe_options(config))))


__all__ = [
    "LABELS_FIELD",
    "LABELS_FILE",
    "PROTOTYPES_FILE",
    "LabelLookup",
    "XProNetRecipeOptions",
    "fit_hooks",
    "labels_stage",
    "model_config",
    "options_as_dict",
    "prototypes_stage",
    "recipe_options",
    "train_stage",
    "xpronet_recipe",
]
