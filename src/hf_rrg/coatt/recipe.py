"""CoAtt's training recipe: `tags` -> `train`.

- `tags`: the MLC's tag vocabulary `RUN_DIR/tags.json` from the training split (`hf_rrg.coatt.tags`; IU X-Ray: the
  MTI tags of the NLM reports, §4.1; PEIR Gross / the demo: report words), or a given file (`tag_file`).
- `train`: the shared Accelerate loop; `model.num_tags` is set to the vocabulary's size and every training batch
  carries `tag_labels` (multi-hot l for ℓ_tag, Eq. 8). Generation reads only the images (the MLC predicts the tags).
  `model.sentence_end_token_id` is filled in from the run's tokenizer (the `.` token) by `build_model`.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from typing import Any

from ..training.config import ConfigError, TrainingConfig, parse_section
from ..training.hooks import FitHooks
from ..training.recipes import Recipe, Stage, StageContext, fit_stage
from .tags import TAG_SOURCES, TagLookup, TagVocabulary, build_tag_vocabulary

TAGS_FILE = "tags.json"


@dataclass
class CoAttRecipeOptions:
    """`recipe_options` of a CoAtt config.

    Attributes:
        tag_source: `mti` (IU X-Ray MTI tags, the paper), `mesh` (manual MeSH terms) or `words` (report words,
            the paper's PEIR Gross tags).
        max_tags: keep the most frequent tags only (PEIR Gross: 1,000); null = all.
        min_tag_count: keep tags seen in at least this many training examples.
        lowercase_tags: merge case variants of MTI/MeSH tags.
        tag_cleaner: cleaning preset for `words` tags (null: the tokenizer's).
        tag_file: use this vocabulary (from `hf-rrg coatt tags`) instead of building one.
    """

    tag_source: str = "mti"
    max_tags: int | None = None
    min_tag_count: int = 1
    lowercase_tags: bool = True
    tag_cleaner: str | None = None
    tag_file: str | None = None


def recipe_options(config: TrainingConfig) -> CoAttRecipeOptions:
    """The validated `recipe_options` of `config` (unknown keys are errors naming the valid ones)."""
    if config.method != "coatt":
        raise ConfigError(f"the coatt recipe trains method 'coatt', the config says {config.method!r}")
    options = parse_section(CoAttRecipeOptions, config.recipe_options, "recipe_options")
    if options.tag_source not in TAG_SOURCES:
        raise ConfigError(f"recipe_options.tag_source must be one of {sorted(TAG_SOURCES)}, got {options.tag_source!r}")
    if config.evaluation.use_reference_labels:
        raise ConfigError("evaluation.use_reference_labels does not apply to CoAtt: generation predicts its own tags")
    return options


def tags_stage(context: StageContext) -> dict[str, Any]:
    """Write `RUN_DIR/tags.json` from the training split (or copy `tag_file`)."""
    from ..training.loop import distributed_state, prepare_splits

    config = context.config
    options = recipe_options(config)
    path = context.artifact(TAGS_FILE)
    state = distributed_state(config)
    if state.is_main_process:
        if options.tag_file is not None:
            TagVocabulary.load(options.tag_file)  # validates
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(options.tag_file, path)
        else:
            train = prepare_splits(config, state, context.datasets)["train"]
            vocabulary = build_tag_vocabulary(
                train, options.tag_source, min_count=options.min_tag_count, max_tags=options.max_tags,
                lowercase=options.lowercase_tags, cleaner=options.tag_cleaner or config.tokenizer.cleaner,
            )  # fmt: skip
            vocabulary.save(path)
            print(f"CoAtt tag vocabulary: {len(vocabulary)} {options.tag_source} tags written to {path}")
    state.wait_for_everyone()
    vocabulary = TagVocabulary.load(path)
    return {
        "file": str(path),
        "source": vocabulary.source,
        "num_tags": len(vocabulary),
        "most_frequent": vocabulary.tags[:10],
        "given_file": options.tag_file,
    }


def with_num_tags(config: TrainingConfig, num_tags: int) -> TrainingConfig:
    """`config` whose model section has `num_tags`; a different explicit value is an error."""
    given = config.model.get("num_tags")
    if given is not None and int(given) != num_tags:
        raise ConfigError(
            f"model.num_tags is {given} but the tag vocabulary has {num_tags} tags; remove model.num_tags (the "
            "recipe sets it) or use a matching recipe_options.tag_file"
        )
    return dataclasses.replace(config, model={**config.model, "num_tags": num_tags})


def train_stage(context: StageContext) -> dict[str, Any]:
    """The shared loop with the tag labels of every training batch."""
    recipe_options(context.config)
    path = context.artifact(TAGS_FILE)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run the tags stage first (`hf-rrg train CONFIG --output-dir {context.run_dir} "
            "--stage tags`)"
        )
    vocabulary = TagVocabulary.load(path)
    config = with_num_tags(context.config, len(vocabulary))
    metadata = {"recipe": "coatt", "tag_source": vocabulary.source, "num_tags": len(vocabulary), "tags_file": TAGS_FILE}
    hooks = FitHooks(columns=(vocabulary.column,), train_fields=TagLookup(vocabulary), metadata=metadata)
    return fit_stage(context, hooks, config)


def coatt_recipe() -> Recipe:
    """`tags` -> `train`."""
    return Recipe("coatt", (Stage("tags", tags_stage), Stage("train", train_stage)))


__all__ = ["TAGS_FILE", "CoAttRecipeOptions", "coatt_recipe", "recipe_options", "tags_stage", "train_stage", "with_num_tags"]
