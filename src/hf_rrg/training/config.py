"""The training configuration: YAML file + `--set key=value` overrides -> a typed `TrainingConfig`.

A config file has one mapping per section (`model`, `data`, `tokenizer`, `image_processor`, `optimizer`,
`scheduler`, `training`, `evaluation`, `generation`) plus the top-level `method` (the model type registered with
`AutoConfig`, e.g. `r2gencmn`). Unknown keys are errors that name the key and list the valid ones, so a typo never
silently trains with a default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hf_rrg.resources import shipped_training_configs, training_config_dir

from .config_parsing import ConfigError, build_dataclass, plain_data, apply_overrides, parse_override, parse_section


@dataclass
class DataConfig:
    """Dataset to train on.

    Attributes:
        builder: `hf_rrg.data.load_builder` name (`demo`, `iu_xray`, `mimic_cxr`, `report_folder`).
        data_dir: folder of the source data (None for builders that bring their own, e.g. `demo`).
        builder_kwargs: builder config options (`name=` picks a BuilderConfig).
        train_split / validation_split / test_split: split names in the built `DatasetDict`.
        max_train_samples / max_validation_samples / max_test_samples: keep only the first N examples (smoke runs).
        augment: use the image processor's training transform (random crop + flip) on the train split.
    """

    builder: str = "demo"
    data_dir: str | None = None
    builder_kwargs: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    validation_split: str = "validation"
    test_split: str = "test"
    max_train_samples: int | None = None
    max_validation_samples: int | None = None
    max_test_samples: int | None = None
    augment: bool = True


@dataclass
class TokenizerConfig:
    """Report vocabulary, built from the TRAIN split only at the start of a run (and reused on resume).

    Attributes:
        cleaner: report cleaning preset (`r2gen_iu_xray`, `r2gen_mimic_cxr`, `basic`, `chinese_char`).
        min_count: keep words seen at least this often (R2Gen: 3 for IU X-Ray, 10 for MIMIC-CXR).
        max_words: keep at most this many words, the most frequent (CoAtt: 1,000); null = no cap.
    """

    cleaner: str = "basic"
    min_count: int = 3
    max_words: int | None = None


@dataclass
class OptimizerConfig:
    """Two parameter groups: the visual extractor (`lr_visual`) and everything else (`lr_rest`).

    Attributes:
        name: `adam`, `adamw` or `sgd`.
        lr_visual / lr_rest: learning rates (R2Gen: 5e-5 / 1e-4; R2GenCMN: 1e-4 / 5e-4).
        weight_decay: applied to both groups (R2Gen: 5e-5).
        amsgrad: AMSGrad variant of Adam/AdamW (R2Gen: True).
        betas: Adam betas (PyTorch's (0.9, 0.999), which R2Gen's trainer uses; R2GenCMN, XProNet and ITHN pass
            (0.9, 0.98)).
        eps: Adam's epsilon (PyTorch's 1e-8, R2Gen's; R2GenCMN, XProNet and ITHN pass 1e-9).
        momentum: SGD momentum.
    """

    name: str = "adam"
    lr_visual: float = 5e-5
    lr_rest: float = 1e-4
    weight_decay: float = 5e-5
    amsgrad: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9


@dataclass
class SchedulerConfig:
    """Learning-rate schedule, stepped once per epoch (as R2Gen does).

    Attributes:
        name: `step` (StepLR), `exponential`, `cosine` (to 0 over `epochs`) or `constant`.
        step_size / gamma: StepLR period in epochs and factor (R2Gen IU: 50, 0.1); `exponential` uses gamma.
        warmup_epochs: linear warm-up from lr/warmup_epochs over this many epochs before the schedule (0: none).
    """

    name: str = "step"
    step_size: int = 50
    gamma: float = 0.1
    warmup_epochs: int = 0


@dataclass
class TrainingLoopConfig:
    """The loop itself.

    Attributes:
        epochs: maximum epochs; batch_size: per-process train batch; eval_batch_size: per-process eval batch.
        gradient_accumulation_steps: micro-batches per optimizer step.
        clip_grad_value: clip every gradient element to [-v, v] (R2Gen/R2GenCMN official code: 0.1); None: off.
        max_grad_norm: clip the global gradient norm instead/as well; None: off.
        mixed_precision: `no`, `fp16`, `bf16` or `auto` (bf16 on a GPU that has it, else no).
        seed: seeds Python, numpy and torch; the data order and augmentations derive from it per epoch/sample.
        num_workers: DataLoader workers.
        val_metric: validation score that selects the best epoch (higher is better); never a test score.
        patience: stop after this many epochs without improvement (None: never).
        eval_every: validate every N epochs (the last epoch is always validated).
        keep_checkpoints: how many checkpoints to keep (the newest).
        log_every: write a step record to the logs every N optimizer steps.
        cpu: force CPU even when an accelerator is present.
        checkpoint_every_steps: also checkpoint inside an epoch every N optimizer steps (a resume then continues
            from that step, exactly); None: at the end of each epoch only. Applies to every stage of a recipe.
    """

    epochs: int = 100
    batch_size: int = 16
    eval_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    clip_grad_value: float | None = 0.1
    max_grad_norm: float | None = None
    mixed_precision: str = "no"
    seed: int = 9223
    num_workers: int = 0
    val_metric: str = "bleu_4"
    patience: int | None = 50
    eval_every: int = 1
    keep_checkpoints: int = 1
    log_every: int = 1
    cpu: bool = False
    checkpoint_every_steps: int | None = None


@dataclass
class EvaluationConfig:
    """How generated reports are scored.

    Attributes:
        protocol: `hf_rrg.metrics` protocol (`r2gen`: cleaned, vocabulary-mapped strings, references cut to
            max_seq_length - 1 tokens, as the R2Gen family scores; `default`; `chinese`).
        val_metrics: metric families computed every epoch on validation (fast ones).
        test_metrics: metric families computed once on test (`meteor` needs Java; a failing optional metric is
            reported and skipped, never fatal).
        use_reference_labels: for methods whose model reads labels derived from the report (XProNet): give it the
            labels of the *reference* report at validation and test too. That is the published XProNet protocol
            and it leaks the answer into the prediction; the default (False) lets the model predict its labels
            from the image, as at inference. Methods without such inputs reject True.
    """

    protocol: str = "r2gen"
    val_metrics: list[str] = field(default_factory=lambda: ["bleu", "rouge_l", "cider_d"])
    test_metrics: list[str] = field(default_factory=lambda: ["bleu", "rouge_l", "cider_d", "meteor"])
    use_reference_labels: bool = False


@dataclass
class GenerationConfig:
    """Decoding used for validation and test, also written into the trained model's `generation_config` so the
    exported model decodes as it was evaluated (None: the model's default, e.g. beam 3).

    Attributes:
        num_beams: beam size.
        max_new_tokens: longest report in tokens written after `<bos>` (`<eos>` included); default the model's
            own, `max_seq_length` for the R2Gen family, as the official beam search.
        max_length: deprecated spelling in transformers' sense (the decoder start token counts, so it means
            `max_new_tokens = max_length - 1`); read for older configs, converted, and never set with max_new_tokens.
        no_repeat_ngram_size: forbid repeating any n-gram of this size (off in the papers' settings).
    """

    num_beams: int | None = None
    max_new_tokens: int | None = None
    max_length: int | None = None
    no_repeat_ngram_size: int | None = None

    def __post_init__(self) -> None:
        if self.max_length is not None:
            if self.max_new_tokens is not None:
                raise ConfigError(
                    f"generation.max_length ({self.max_length}) and generation.max_new_tokens "
                    f"({self.max_new_tokens}) are both set; keep only max_new_tokens (tokens after <bos>)"
                )
            if self.max_length < 2:
                raise ConfigError(f"generation.max_length must be >= 2 (it counts <bos>), got {self.max_length}")
            self.max_new_tokens, self.max_length = self.max_length - 1, None

    def as_kwargs(self) -> dict[str, int]:
        """The settings that are set, as `generate()` keyword arguments."""
        return {key: value for key, value in vars(self).items() if value is not None}


@dataclass
class TrainingConfig:
    """Everything a training run needs; `method` is the model type (`r2gen`, `r2gencmn`, ...).

    `recipe` names the recipe (default: the method's); `recipe_options` holds the settings of a multi-stage
    recipe's own stages (e.g. XProNet's text encoder for prototype initialisation), checked by that recipe.
    """

    method: str = "r2gencmn"
    recipe: str | None = None
    recipe_options: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    image_processor: dict[str, Any] = field(default_factory=dict)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    training: TrainingLoopConfig = field(default_factory=TrainingLoopConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists), ready for YAML/JSON."""
        return plain_data(asdict(self))

    def save(self, path: str | Path) -> None:
        """Write the config as YAML (what `load_config` reads back)."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def config_from_dict(data: dict[str, Any]) -> TrainingConfig:
    """Validate a plain mapping (as read from YAML) into a `TrainingConfig`. `method` is required: a config without
    it would otherwise train the default method silently."""
    config = build_dataclass(TrainingConfig, data, "")
    if "method" not in data or data["method"] in (None, ""):
        raise ConfigError(
            "the config has no `method:` (the model to train); add e.g. `method: r2gencmn`, or start from a shipped "
            f"config ({', '.join(shipped_training_configs()[:4])}, ...)"
        )
    validate_config(config)
    return config


def validate_config(config: TrainingConfig) -> None:
    """Value checks that types alone cannot express: finite numbers in their ranges, the method's own `model` and
    `image_processor` keys, metric names the evaluation computes (`hf_rrg.training.config_checks`)."""
    from .config_checks import check_config

    _check_basics(config)
    check_config(config)


def _check_basics(config: TrainingConfig) -> None:
    loop = config.training
    for name in ("epochs", "batch_size", "eval_batch_size", "gradient_accumulation_steps", "eval_every", "log_every"):
        if getattr(loop, name) < 1:
            raise ConfigError(f"training.{name} must be >= 1, got {getattr(loop, name)}")
    if loop.keep_checkpoints < 1:
        raise ConfigError(f"training.keep_checkpoints must be >= 1, got {loop.keep_checkpoints}")
    if loop.mixed_precision not in ("no", "fp16", "bf16", "auto"):
        raise ConfigError(f"training.mixed_precision must be no, fp16, bf16 or auto; got {loop.mixed_precision!r}")
    if config.optimizer.name not in ("adam", "adamw", "sgd"):
        raise ConfigError(f"optimizer.name must be adam, adamw or sgd; got {config.optimizer.name!r}")
    if config.scheduler.name not in ("step", "exponential", "cosine", "constant"):
        raise ConfigError(
            f"scheduler.name must be step, exponential, cosine or constant; got {config.scheduler.name!r}"
        )
    if config.tokenizer.min_count < 1:
        raise ConfigError(f"tokenizer.min_count must be >= 1, got {config.tokenizer.min_count}")
    if config.tokenizer.max_words is not None and config.tokenizer.max_words < 1:
        raise ConfigError(f"tokenizer.max_words must be >= 1 or null, got {config.tokenizer.max_words}")


def packaged_config_dir() -> Path:
    """Folder of the shipped configs (`training_scripts/configs` in a checkout or wheel)."""
    return training_config_dir()


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config path, or a bare name (`r2gencmn_demo`) of a shipped config."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix in ("", ".yaml", ".yml") and len(path.parts) == 1:
        try:
            folder = packaged_config_dir()
        except FileNotFoundError:
            folder = None
        if folder is not None:
            for candidate in (folder / path.name, folder / f"{path.stem}.yaml"):
                if candidate.is_file():
                    return candidate
            raise FileNotFoundError(
                f"training config {str(name_or_path)!r} is neither a file nor a shipped config; shipped configs: "
                f"{shipped_training_configs()}"
            )
    raise FileNotFoundError(f"training config file {path} does not exist")


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> TrainingConfig:
    """Read a YAML config (path or shipped name), apply `--set` overrides, validate."""
    from hf_rrg.text_files import read_text

    path = resolve_config_path(name_or_path)
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as error:
        raise ConfigError(f"training config {path} is not valid YAML: {error}") from None
    if data is None:
        raise ConfigError(
            f"training config {path} is empty; write the sections of a config there (start from a shipped one, e.g. "
            "`hf-rrg train r2gencmn_demo`, whose file is in training_scripts/configs)"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"training config {path} must be a YAML mapping of sections, got {type(data).__name__}")
    try:
        return config_from_dict(apply_overrides(data, overrides or []))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


__all__ = [
    "ConfigError",
    "DataConfig",
    "EvaluationConfig",
    "GenerationConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "TokenizerConfig",
    "TrainingConfig",
    "TrainingLoopConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "packaged_config_dir",
    "parse_override",
    "parse_section",
    "resolve_config_path",
    "validate_config",
]
