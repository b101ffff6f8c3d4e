"""What a run is built from: its splits, its tokenizer (built once from the train reports), its model, and the
data order of each epoch. `fit` and every recipe stage call these, so they all see the same examples and words."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Sampler

from .config import TrainingConfig
from .state_io import save_pretrained_atomic

TOKENIZER_DIR = "tokenizer"


class EpochPermutationSampler(Sampler[int]):
    """Shuffles `size` indices with a permutation that depends only on (seed, epoch)."""

    def __init__(self, size: int, seed: int, shuffle: bool = True) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def load_datasets(config: TrainingConfig, accelerator: Any) -> dict[str, Any]:
    """train/validation/test `datasets.Dataset`s of the configured builder (prepared once, main process first).
    `accelerator` is an `Accelerator` or a `PartialState` (anything with `main_process_first()`)."""
    from hf_rrg.data import load_builder

    data = config.data
    with accelerator.main_process_first():
        built = load_builder(data.builder, data.data_dir, **data.builder_kwargs)
    splits = {}
    for role, name in (("train", data.train_split), ("validation", data.validation_split), ("test", data.test_split)):
        if name not in built:
            raise ValueError(
                f"dataset {data.builder!r} has no split {name!r} (data.{role}_split); its splits are {list(built)}"
            )
        splits[role] = built[name]
    return splits


def _limit(dataset: Any, limit: int | None) -> Any:
    if limit is None or limit >= len(dataset):
        return dataset
    return dataset.select(range(limit)) if hasattr(dataset, "select") else dataset[:limit]


def prepare_splits(
    config: TrainingConfig, accelerator: Any, datasets: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The splits a run trains and evaluates on: `datasets` (or the configured builder's), cut to the
    `data.max_*_samples` limits. Recipe stages call this too, so they see exactly the examples `fit` sees."""
    splits = dict(datasets) if datasets is not None else load_datasets(config, accelerator)
    missing = [role for role in ("train", "validation", "test") if role not in splits]
    if missing:
        raise ValueError(f"datasets= lacks the split(s) {missing}; pass train, validation and test")
    splits["train"] = _limit(splits["train"], config.data.max_train_samples)
    splits["validation"] = _limit(splits["validation"], config.data.max_validation_samples)
    splits["test"] = _limit(splits["test"], config.data.max_test_samples)
    for role, dataset in splits.items():
        if len(dataset) == 0:
            raise ValueError(f"the {role} split is empty; check the dataset and the data.* settings")
    return splits


def prepare_tokenizer(config: TrainingConfig, run_dir: Path, train_reports: list[str], accelerator: Any) -> Any:
    """The run's tokenizer: built from the train reports at the start and saved in `RUN_DIR/tokenizer`; a
    resumed run (or any later process) reuses the saved one."""
    from hf_rrg.modeling.tokenization_rrg import RRGTokenizer

    folder = run_dir / TOKENIZER_DIR
    if accelerator.is_main_process and not (folder / "tokenizer.json").is_file():
        tokenizer = RRGTokenizer.from_reports(
            train_reports,
            cleaner=config.tokenizer.cleaner,
            min_count=config.tokenizer.min_count,
            max_words=config.tokenizer.max_words,
        )
        save_pretrained_atomic(folder, tokenizer)
    accelerator.wait_for_everyone()
    tokenizer = RRGTokenizer.from_pretrained(str(folder))
    if tokenizer.cleaner != config.tokenizer.cleaner:
        raise ValueError(
            f"{folder} was built with cleaner {tokenizer.cleaner!r} but the config asks for "
            f"{config.tokenizer.cleaner!r}; use a new --output-dir or the original config"
        )
    return tokenizer


def build_model(config: TrainingConfig, tokenizer: Any, image_processor: Any, load_backbone: bool) -> Any:
    """The method's model from `config.method` + `config.model`, sized to the tokenizer."""
    import hf_rrg  # noqa: F401  (registers the hf-rrg model types with the Auto classes)
    from transformers import AutoConfig, AutoModelForImageTextToText

    kwargs = dict(config.model)
    kwargs.update(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        unk_token_id=tokenizer.unk_token_id,
    )
    if getattr(image_processor, "max_views", None) is not None:
        kwargs.setdefault("max_views", image_processor.max_views)
    try:
        model_config = AutoConfig.for_model(config.method, **kwargs)
    except ValueError as error:
        raise ValueError(f"method {config.method!r} is not a registered hf-rrg model type: {error}") from None
    if hasattr(model_config, "sentence_end_token_id") and model_config.sentence_end_token_id is None:
        model_config.sentence_end_token_id = sentence_end_token_id(tokenizer)  # hierarchical decoders (CoAtt)
    model = AutoModelForImageTextToText.from_config(model_config)
    generation = model.generation_config
    for key, value in config.generation.as_kwargs().items():  # exported with the model: it decodes as evaluated
        setattr(generation, key, value)
    if generation.num_beams == 1:  # length_penalty only affects beam search; transformers refuses to save it unused
        generation.length_penalty = type(generation)().length_penalty
    if load_backbone and getattr(model_config, "visual_pretrained", False):
        model.load_pretrained_backbone()
    return model


def sentence_end_token_id(tokenizer: Any) -> int:
    """Id of the `.` token that ends a sentence; an error when the vocabulary has none."""
    token = tokenizer.convert_tokens_to_ids(".")
    if token is None or token == tokenizer.unk_token_id:
        raise ValueError(
            "the report vocabulary has no `.` token, but this model splits reports into sentences at it; use a "
            "cleaner that keeps `.` between sentences (r2gen_iu_xray, basic, alphabetic)"
        )
    return int(token)


__all__ = [
    "TOKENIZER_DIR",
    "EpochPermutationSampler",
    "build_model",
    "load_datasets",
    "prepare_splits",
    "prepare_tokenizer",
    "sentence_end_token_id",
]
