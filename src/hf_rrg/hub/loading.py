"""Check and load a saved hf-rrg model folder (model + processor) with errors that name the missing or bad file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from .run_folder import MODEL_SUBDIR

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")  # either one holds the image processor


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors file(s) of a model folder (one file, or the shards listed in its index)."""
    single = model_dir / WEIGHTS_FILE
    if single.is_file():
        return [single]
    index = model_dir / WEIGHTS_INDEX_FILE
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{index} is not a valid safetensors index ({error}); re-save the model.") from error
        return [model_dir / name for name in shards]
    if any(model_dir.glob("*.bin")) or any(model_dir.glob("*.pt")) or any(model_dir.glob("*.pth")):
        raise ValueError(
            f"{model_dir} holds pickled weights (*.bin/*.pt) but no {WEIGHTS_FILE}; hf-rrg loads safetensors only. "
            "Re-save the model with `save_pretrained` (safetensors is the default); an official R2Gen / R2GenCMN / "
            "XProNet / ITHN checkpoint converts with `hf-rrg convert` (docs/reproduce.md)."
        )
    raise FileNotFoundError(
        f"{model_dir / WEIGHTS_FILE} is missing: the folder has no model weights. Point to the folder written by "
        "`save_pretrained` / `hf-rrg export` (or a training run's `model/` folder)."
    )


def check_model_dir(model_dir: str | Path, processor: bool = True) -> Path:
    """Verify that `model_dir` holds a loadable model (and processor): every file present, the config valid JSON,
    the weights readable safetensors whose sha256 matches the export manifest (when the folder has one). A training
    run folder (`hf-rrg train --output-dir`) stands for its ``model/``. Returns the model folder as a `Path`;
    raises FileNotFoundError / ValueError naming the file and what to do."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"Model folder {model_dir} does not exist (or is not a folder).")
    config = model_dir / CONFIG_FILE
    if not config.is_file() and (model_dir / MODEL_SUBDIR / CONFIG_FILE).is_file():
        return check_model_dir(model_dir / MODEL_SUBDIR, processor)  # a training run folder
    if not config.is_file():
        raise FileNotFoundError(
            f"{config} is missing: {model_dir} is not a saved model folder (expected config.json, model.safetensors, "
            f"tokenizer and processor files) nor a training run folder (with {MODEL_SUBDIR}/config.json)."
        )
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{config} is not valid JSON ({error}); re-export the model.") from error
    for weights in weight_files(model_dir):
        check_safetensors(weights)
    check_checksums(model_dir)  # a readable file can still be damaged (flipped bytes in a tensor)
    if processor:
        for name in TOKENIZER_FILES:
            if not (model_dir / name).is_file():
                raise FileNotFoundError(
                    f"{model_dir / name} is missing: the model folder has no complete tokenizer. Save the processor "
                    "next to the model (`processor.save_pretrained(model_dir)`)."
                )
        if not any((model_dir / name).is_file() for name in PROCESSOR_FILES):
            raise FileNotFoundError(
                f"{model_dir / PROCESSOR_FILES[0]} is missing: the model folder has no image processor config. Save "
                "the processor next to the model (`processor.save_pretrained(model_dir)`)."
            )
    return model_dir


def check_checksums(model_dir: Path) -> None:
    """Compare each file's sha256 with the one `hf-rrg export` recorded in ``hf_rrg_export.json`` (folders without
    that manifest, e.g. a run's ``model/``, are not checked). A mismatch is a ValueError naming the file."""
    from ..export_folder import MANIFEST_FILE, read_manifest, sha256_file

    manifest = read_manifest(model_dir)
    for name, expected in ((manifest or {}).get("sha256") or {}).items():
        path = model_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (listed in {model_dir / MANIFEST_FILE}); download it again.")
        actual = sha256_file(path)
        if actual != expected:
            raise ValueError(
                f"{path} does not match the sha256 recorded at export in {MANIFEST_FILE} (expected {expected[:16]}..., "
                f"got {actual[:16]}...): the file is damaged. Download or export the model again."
            )


def check_safetensors(path: Path) -> None:
    """Raise a ValueError naming `path` when it is not a complete, readable safetensors file."""
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (listed in the model's safetensors index).")
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
            if keys:  # touch the last tensor: a truncated file fails here
                handle.get_slice(keys[-1])
    except Exception as error:  # safetensors raises its own error types for every kind of damage
        raise ValueError(
            f"{path} is not a readable safetensors file ({type(error).__name__}: {error}). It is corrupt or "
            "truncated; re-export the model or download it again."
        ) from error


@contextmanager
def transformers_bars_off() -> Iterator[None]:
    """transformers' (and huggingface_hub's) progress bars ("Loading weights", "Writing model shards") off inside, as
    they were after: for a command whose own bar (or `--quiet`) must not be interleaved with them."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging

    transformers_bars, hub_bars = logging.is_progress_bar_enabled(), not are_progress_bars_disabled()
    logging.disable_progress_bar()  # turns huggingface_hub's off too
    try:
        yield
    finally:
        if transformers_bars:
            logging.enable_progress_bar()  # turns huggingface_hub's on too
        (enable_progress_bars if hub_bars else disable_progress_bars)()


def load_model_and_processor(
    model_dir: str | Path,
    *,
    trust_remote_code: bool = False,
    device: str | None = None,
    loading_bars: bool = True,
    **model_kwargs: Any,
) -> tuple[Any, Any]:
    """Load the model (`AutoModelForImageTextToText`, eval mode) and processor (`AutoProcessor`) of a model folder
    or a training run folder (its ``model/``).

    With hf-rrg imported its own classes are used; `trust_remote_code=True` lets a folder whose code hf-rrg does
    not have (a newer method) load through its exported modeling files. `loading_bars=False` hides transformers'
    weight-loading progress bars.
    """
    import hf_rrg  # noqa: F401  (registers the hf-rrg classes with the Auto classes)
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model_dir = check_model_dir(model_dir)
    with nullcontext() if loading_bars else transformers_bars_off():
        model = AutoModelForImageTextToText.from_pretrained(
            str(model_dir), trust_remote_code=trust_remote_code, **model_kwargs
        )
        processor = AutoProcessor.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    if device is not None:
        model = model.to(device)
    return model.eval(), processor
