"""What ASGK's stages share: the run folder's artifact names, the splits / tokenizer / model every stage builds the
same way, tensor artifacts (safetensors with their summary as metadata), and tag targets looked up by study id."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..training.recipes import StageContext
from .options import with_tags
from .tags import TagFile, read_tag_file

TAGS_FILE = "tags.json"
GLOVE_FILE = "glove.safetensors"
TEXTBOOK_FILE = "textbook.safetensors"
VISUAL_FILE = "visual.safetensors"
TAGS_FIELD = "tag_labels"


def stage_state(context: StageContext) -> Any:
    from ..training.runtime import distributed_state

    return distributed_state(context.config)


def stage_splits(context: StageContext, state: Any) -> dict[str, Any]:
    from ..training.run_setup import prepare_splits

    return prepare_splits(context.config, state, context.datasets)


def stage_tokenizer(context: StageContext, state: Any, splits: dict[str, Any]) -> Any:
    """The run's tokenizer (`RUN_DIR/tokenizer`, built from the train reports once, as `fit` builds it)."""
    from ..training.run_setup import prepare_tokenizer

    context.run_dir.mkdir(parents=True, exist_ok=True)
    return prepare_tokenizer(context.config, context.run_dir, list(splits["train"]["report"]), state)


def tag_file(context: StageContext) -> TagFile:
    path = context.artifact(TAGS_FILE)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run the tags stage first (`hf-rrg train CONFIG --output-dir {context.run_dir} "
            "--stage tags`)"
        )
    return read_tag_file(path)


def build_asgk(context: StageContext, tokenizer: Any, load_backbone: bool) -> Any:
    """The run's ASGK model (with the tag file's graph nodes), freshly initialised."""
    from ..modeling.image_processing_rrg import RRGImageProcessor
    from ..training.run_setup import build_model

    config = with_tags(context.config, tag_file(context).tag_names)
    return build_model(config, tokenizer, RRGImageProcessor(**config.image_processor), load_backbone=load_backbone)


def fresh_stage_model(context: StageContext, load_backbone: bool) -> tuple[Any, dict[str, Any], Any, Any]:
    """(process state, splits, tokenizer, a freshly seeded ASGK model) for a stage that trains part of the model."""
    from ..training.runtime import seed_everything

    state = stage_state(context)
    splits = stage_splits(context, state)
    tokenizer = stage_tokenizer(context, state, splits)
    seed_everything(context.config.training.seed)
    return state, splits, tokenizer, build_asgk(context, tokenizer, load_backbone=load_backbone)


def glove_path(context: StageContext) -> Path:
    path = context.artifact(GLOVE_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the glove stage first (--stage glove)")
    return path


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Tensors as safetensors with `metadata` (the stage's summary) under `hf_rrg`, replaced atomically."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".tmp_{path.name}")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={"hf_rrg": json.dumps(metadata)})  # fmt: skip
    os.replace(tmp, path)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def read_summary(path: Path) -> dict[str, Any]:
    """The summary `save_tensors` stored with an artifact."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return json.loads((handle.metadata() or {}).get("hf_rrg", "{}"))


def load_into(model: Any, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Load a stage artifact's tensors into `model` (each must exist there with the same shape)."""
    state = model.state_dict()
    wrong = [k for k, v in tensors.items() if k not in state or tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise ValueError(
            f"{source} does not fit this model ({len(wrong)} tensors, e.g. {wrong[:3]}): it was made with other "
            "model settings; re-run its stage"
        )
    model.load_state_dict(tensors, strict=False)


class TagLookup:
    """Batch hook: the items' `id`s -> `{"tag_labels": (B, N)}` from a tag file (picklable for workers)."""

    def __init__(self, tags: TagFile, id_column: str = "id") -> None:
        self.tag_file = tags
        self.id_column = id_column

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        return {TAGS_FIELD: self.tag_file.tensor(item[self.id_column] for item in items)}


def tag_loader(context: StageContext, dataset: Any, batch_size: int, augment: bool, shuffle: bool) -> Any:
    """Images + tag targets of `dataset`; a shuffled loader's order of epoch e depends only on (seed, e)."""
    from torch.utils.data import DataLoader

    from ..data.collators import IndexedStudies, ReportGenerationCollator
    from ..modeling.image_processing_rrg import RRGImageProcessor
    from ..training.run_setup import EpochPermutationSampler

    config = context.config
    collator = ReportGenerationCollator(RRGImageProcessor(**config.image_processor), None, augment=augment,
                                        seed=config.training.seed, extra_fields=TagLookup(tag_file(context)))  # fmt: skip
    studies = IndexedStudies(dataset, extra_columns=("id",))
    sampler = EpochPermutationSampler(len(studies), config.training.seed, shuffle=shuffle)
    return DataLoader(studies, batch_size=batch_size, sampler=sampler, collate_fn=collator)


__all__ = [
    "GLOVE_FILE",
    "TAGS_FIELD",
    "TAGS_FILE",
    "TEXTBOOK_FILE",
    "VISUAL_FILE",
    "TagLookup",
    "build_asgk",
    "fresh_stage_model",
    "glove_path",
    "load_into",
    "load_tensors",
    "read_summary",
    "save_tensors",
    "stage_splits",
    "stage_state",
    "stage_tokenizer",
    "tag_file",
    "tag_loader",
]
