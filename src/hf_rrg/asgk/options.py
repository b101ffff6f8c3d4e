"""ASGK's `recipe_options`, the model config a run will have, and the Table 2 ablations as config overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..modeling.configuration_asgk import ASGKConfig
from ..training.config import ConfigError, TrainingConfig, parse_section
from .tags import TAG_SOURCES

STAND_IN_NOTE = "stand-in: IU X-Ray INDICATION + IMPRESSION sections outside R2Gen's validation/test split"

#: Table 2 rows as config overrides (`--set` strings) on top of a full ASGK config.
TABLE2_ABLATIONS: dict[str, list[str]] = {
    "baseline": ["model.use_internal_signals=false", "recipe_options.pretrain_visual=false",
                 "recipe_options.use_external_signals=false"],
    "baseline+IA+CE": ["model.use_internal_signals=true", "recipe_options.pretrain_visual=true", "model.tag_loss=bce",
                       "recipe_options.use_external_signals=false"],
    "baseline+IA": ["model.use_internal_signals=true", "recipe_options.pretrain_visual=true", "model.tag_loss=focal",
                    "recipe_options.use_external_signals=false"],
    "baseline+EA": ["model.use_internal_signals=false", "recipe_options.pretrain_visual=false",
                    "recipe_options.use_external_signals=true"],
    "baseline+IA+EA": ["model.use_internal_signals=true", "recipe_options.pretrain_visual=true",
                       "model.tag_loss=focal", "recipe_options.use_external_signals=true"],
}  # fmt: skip


@dataclass
class ASGKRecipeOptions:
    """`recipe_options` of an ASGK config.

    Attributes:
        tag_source: `labeler` (14 observations x present/absent), `mesh` (IU X-Ray MeSH), `column` (a dataset
            column of tag lists, COV-CTR's `terminologies`) or `file`.
        tag_column / tag_min_frequency: the column of tag_source column, and the fewest train studies a tag needs.
        tag_file: the person's tag file (tag_source file).
        mesh_data_dir: folder with `NLMCXR_reports.tgz` for MeSH tags (default: `data.data_dir`).
        mesh_min_frequency: keep MeSH head terms carried by at least this many train studies.
        uncertain_as_present: labeler tags: an uncertain mention counts as "present".
        glove_file: read word vectors from this GloVe text file instead of training them.
        glove_epochs / glove_window / glove_x_max / glove_alpha / glove_learning_rate: GloVe training (x_max 100,
            α 0.75, window 10 are GloVe's defaults).
        use_external_signals: run the textbook pre-training (EA of Table 2).
        textbook_files: `.txt` files or folders of the textbook.
        textbook_iu_xray_dir: use the stand-in textbook (IU X-Ray INDICATION + IMPRESSION outside R2Gen's val/test)
            read from this folder (`NLMCXR_reports.tgz`, optional `annotation.json`).
        textbook_language: `en` or `zh` (sentence splitting).
        textbook_max_sentences: keep the first N sentences (smoke runs).
        textbook_epochs / textbook_learning_rate / textbook_batch_size: §4 step 1 (30, 5e-4; batch not given: 16).
        pretrain_visual: run the DenseNet pre-training (step 2; part of IA in Table 2).
        visual_epochs / visual_learning_rate / visual_lr_step / visual_lr_gamma / visual_min_learning_rate /
            visual_batch_size: §4 step 2 (50, 1e-2, every 10 epochs x 0.1 down to 1e-5, 32).
        visual_optimizer: `sgd` (momentum `visual_momentum`) or `adam`; the paper gives no optimizer for step 2.
        progress: show progress bars.
    """

    tag_source: str = "labeler"
    tag_file: str | None = None
    tag_column: str = "terminologies"
    tag_min_frequency: int = 1
    mesh_data_dir: str | None = None
    mesh_min_frequency: int = 25
    uncertain_as_present: bool = True
    glove_file: str | None = None
    glove_epochs: int = 50
    glove_window: int = 10
    glove_x_max: float = 100.0
    glove_alpha: float = 0.75
    glove_learning_rate: float = 0.05
    use_external_signals: bool = True
    textbook_files: list[str] = field(default_factory=list)
    textbook_iu_xray_dir: str | None = None
    textbook_language: str = "en"
    textbook_max_sentences: int | None = None
    textbook_epochs: int = 30
    textbook_learning_rate: float = 5e-4
    textbook_batch_size: int = 16
    pretrain_visual: bool = True
    visual_epochs: int = 50
    visual_learning_rate: float = 1e-2
    visual_lr_step: int = 10
    visual_lr_gamma: float = 0.1
    visual_min_learning_rate: float = 1e-5
    visual_batch_size: int = 32
    visual_optimizer: str = "sgd"
    visual_momentum: float = 0.9
    progress: bool = True


def recipe_options(config: TrainingConfig) -> ASGKRecipeOptions:
    """The validated `recipe_options` (unknown keys are errors naming the valid ones)."""
    options = parse_section(ASGKRecipeOptions, config.recipe_options, "recipe_options")
    if options.tag_source not in TAG_SOURCES:
        raise ConfigError(f"recipe_options.tag_source must be one of {TAG_SOURCES}, got {options.tag_source!r}")
    if options.tag_source == "file" and not options.tag_file:
        raise ConfigError("recipe_options.tag_source is file: set recipe_options.tag_file to the tag JSON file")
    if options.visual_optimizer not in ("sgd", "adam"):
        raise ConfigError(f"recipe_options.visual_optimizer must be sgd or adam, got {options.visual_optimizer!r}")
    if options.use_external_signals and not (options.textbook_files or options.textbook_iu_xray_dir):
        raise ConfigError(
            "recipe_options.use_external_signals is true but no textbook is given: set textbook_files (text files "
            "or folders) or textbook_iu_xray_dir (the IU X-Ray stand-in), or use_external_signals: false"
        )
    return options


def model_config(config: TrainingConfig, tag_names: list[str] | None = None) -> ASGKConfig:
    """The ASGK config the run's model will have (with the tag file's names)."""
    if config.method != "asgk":
        raise ConfigError(f"the asgk recipe trains method 'asgk', the config says {config.method!r}")
    kwargs = dict(config.model)
    if tag_names is not None:
        kwargs["tag_names"] = tag_names
    try:
        return ASGKConfig(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model section of the config is not a valid ASGKConfig: {error}") from None


def with_tags(config: TrainingConfig, tag_names: list[str]) -> TrainingConfig:
    """A copy of `config` whose model section names the tags."""
    return dataclasses.replace(config, model={**config.model, "tag_names": list(tag_names)})


def ablation_name(config: TrainingConfig) -> str:
    """The Table 2 row a config is: baseline, +IA, +IA+CE, +EA, +IA+EA (with "(no DenseNet pre-training)" when IA
    runs without step 2)."""
    options, model = recipe_options(config), model_config(config)
    name = "baseline"
    if model.use_internal_signals:
        name += "+IA" + ("+CE" if model.tag_loss == "bce" else "")
        if not options.pretrain_visual:
            name += " (no DenseNet pre-training)"
    if options.use_external_signals:
        name = name.replace("baseline", "baseline+EA", 1) if "+IA" not in name else name.replace("+IA", "+IA+EA", 1)
    return name.replace("+IA+EA+CE", "+IA+CE+EA")


def textbook_sentences(options: ASGKRecipeOptions) -> tuple[list[str], str]:
    """(sentences, a description of the textbook)."""
    from .textbook import iu_xray_textbook, read_textbook

    sentences: list[str] = []
    parts = []
    if options.textbook_files:
        sentences += read_textbook(options.textbook_files, options.textbook_language)
        parts.append(f"text files {options.textbook_files}")
    if options.textbook_iu_xray_dir:
        sentences += iu_xray_textbook(options.textbook_iu_xray_dir)
        parts.append(STAND_IN_NOTE)
    if options.textbook_max_sentences is not None:
        sentences = sentences[: options.textbook_max_sentences]
    return sentences, "; ".join(parts)


__all__ = [
    "STAND_IN_NOTE",
    "TABLE2_ABLATIONS",
    "ASGKRecipeOptions",
    "ablation_name",
    "model_config",
    "recipe_options",
    "textbook_sentences",
    "with_tags",
]
