"""Dataset builder registry: find `datasets_scripts/<name>/<name>.py`, import it, prepare and load it.

`datasets` 5 no longer loads a dataset from a local script (`load_dataset("script.py")`), so this module
does the small part of that work the project needs: import the script by path, pick its single
`datasets.GeneratorBasedBuilder` subclass, instantiate it with the caller's config, run
`download_and_prepare()` and return `as_dataset()`.

Cache invalidation: the builder's cache folder is keyed (through the builder's `hash`) on the script's
bytes and on the size and modification time (ns) of the input files: every entry directly inside `data_dir`
(not recursive: image folders count by their own mtime, which changes when files are added or removed), the
`data_files`, any config value naming an existing path, and everything in the script's own folder. An edited
`annotation.json` therefore gives a fresh cache folder instead of a stale dataset.

Also holds `deterministic_split`, the hash-based split helper that builder scripts share.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..resources import resource_dir

if TYPE_CHECKING:  # pragma: no cover
    import datasets

__all__ = [
    "DEFAULT_SPLIT_RATIOS",
    "available_builders",
    "builder_script_path",
    "counted_split",
    "deterministic_split",
    "load_builder",
    "load_builder_class",
    "make_builder",
]

DEFAULT_SPLIT_RATIOS: tuple[float, float, float] = (0.7, 0.1, 0.2)
_SPLIT_NAMES = ("train", "validation", "test")


def available_builders() -> list[str]:
    """Names of the dataset builders shipped with hf-rrg (folders `datasets_scripts/<name>/<name>.py`)."""
    root = resource_dir("datasets_scripts")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / f"{p.name}.py").is_file())


def builder_script_path(name: str) -> Path:
    """Path of the builder script for `name`; `ValueError` listing the known builders when there is none."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"Invalid builder name {name!r}; choose one of {available_builders()}.")
    script = resource_dir("datasets_scripts") / name / f"{name}.py"
    if not script.is_file():
        raise ValueError(f"Unknown dataset builder {name!r}. Available builders: {available_builders()}.")
    return script


def load_builder_class(name: str) -> type[datasets.GeneratorBasedBuilder]:
    """Import `datasets_scripts/<name>/<name>.py` by path and return its single GeneratorBasedBuilder subclass."""
    import datasets

    script = builder_script_path(name)
    source_digest = hashlib.sha256(script.read_bytes()).hexdigest()[:12]
    module_name = f"hf_rrg_dataset_script_{name}_{source_digest}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, script)
        if spec is None or spec.loader is None:  # pragma: no cover - only for unreadable files
            raise ValueError(f"Cannot import dataset builder script {script}.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, datasets.GeneratorBasedBuilder)
        and obj is not datasets.GeneratorBasedBuilder
        and obj.__module__ == module_name
    ]
    if len(classes) != 1:
        found = [c.__name__ for c in classes]
        raise ValueError(
            f"Dataset script {script} must define exactly one datasets.GeneratorBasedBuilder subclass; found {found}."
        )
    return classes[0]


def _stat_entry(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path}|missing"
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def _fingerprint_paths(paths: Sequence[Path], recursive: bool = False) -> list[str]:
    """Size+mtime of each path; for a folder, also of the entries inside it (directly, or all if `recursive`)."""
    entries: list[str] = []
    for path in paths:
        entries.append(_stat_entry(path))
        if path.is_dir():
            if recursive:
                inside = sorted(p for p in path.rglob("*") if not _hidden(p.relative_to(path)))
            else:
                inside = sorted(p for p in path.iterdir() if not _hidden(Path(p.name)))
            entries.extend(_stat_entry(p) for p in inside)
    return entries


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in relative.parts)


def _flatten_data_files(data_files: Any) -> list[str]:
    if data_files is None:
        return []
    if isinstance(data_files, (str, os.PathLike)):
        return [os.fspath(data_files)]
    if isinstance(data_files, Mapping):
        return [f for v in data_files.values() for f in _flatten_data_files(v)]
    return [f for v in data_files for f in _flatten_data_files(v)]


def _absolute_data_files(data_files: Any) -> Any:
    """Make the paths in `data_files` (str, list or {split: str | list}) absolute; check that they exist."""
    if data_files is None:
        return None
    if isinstance(data_files, Mapping):
        return {str(k): _absolute_data_files(v) for k, v in data_files.items()}
    if isinstance(data_files, (str, os.PathLike)):
        path = Path(data_files).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"Data file {data_files!s} ({path}) does not exist.")
        return str(path)
    return [_absolute_data_files(v) for v in data_files]


def input_fingerprint(script: Path, data_dir: Path | None, data_files: Any, config_kwargs: Mapping) -> str:
    """A short hash of the script bytes and the size/mtime of the inputs that decide the dataset's content."""
    digest = hashlib.sha256(script.read_bytes())
    # The script's own folder is small package data (e.g. the demo builder's files): fingerprint all of it.
    for entry in _fingerprint_paths([script.parent], recursive=True):
        digest.update(entry.encode("utf-8", "surrogateescape"))
    paths: list[Path] = []
    if data_dir is not None:
        paths.append(data_dir)
    paths.extend(Path(f) for f in _flatten_data_files(data_files))
    for key in sorted(config_kwargs):
        value = config_kwargs[key]
        if isinstance(value, (str, os.PathLike)) and str(value) and Path(value).expanduser().exists():
            paths.append(Path(value).expanduser().resolve())
    for entry in _fingerprint_paths(paths):
        digest.update(entry.encode("utf-8", "surrogateescape"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def make_builder(
    name: str,
    /,
    data_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    **config_kwargs: Any,
) -> datasets.GeneratorBasedBuilder:
    """Instantiate builder `name` (not prepared yet) with a cache key that follows its input files.

    `name=` in `config_kwargs` selects a named BuilderConfig; the other kwargs override config fields;
    `data_files` (a path, a list, or `{split: path(s)}`) is passed to the builder with absolute paths.
    """
    builder_cls = load_builder_class(name)
    script = builder_script_path(name)
    config_name = config_kwargs.pop("name", None)
    data_files = _absolute_data_files(config_kwargs.pop("data_files", None))
    resolved_dir: Path | None = None
    if data_dir is not None:
        resolved_dir = Path(data_dir).expanduser().resolve()
        if not resolved_dir.is_dir():
            raise FileNotFoundError(
                f"data_dir {data_dir!s} ({resolved_dir}) is not a folder; pass the folder that holds the "
                f"{name!r} data (see datasets_scripts/{name}/README.md)."
            )
    for key, value in config_kwargs.items():
        if isinstance(value, Path):
            config_kwargs[key] = str(value)
    known = _config_fields(builder_cls)
    unknown = sorted(set(config_kwargs) - known)
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for dataset builder {name!r}; its options are {sorted(known)}."
        )
    fingerprint = input_fingerprint(script, resolved_dir, data_files, config_kwargs)
    return builder_cls(
        cache_dir=str(cache_dir) if cache_dir is not None else None,
        dataset_name=name,
        config_name=config_name,
        hash=fingerprint,
        data_dir=str(resolved_dir) if resolved_dir is not None else None,
        data_files=data_files,
        **config_kwargs,
    )


def builder_option_names(name: str) -> set[str]:
    """The options (config fields) builder `name` takes; empty when there is no such builder."""
    try:
        return _config_fields(load_builder_class(name))
    except (ValueError, OSError, ImportError):
        return set()


def _config_fields(builder_cls: type) -> set[str]:
    import dataclasses

    config_cls = builder_cls.BUILDER_CONFIG_CLASS
    fields = (
        {f.name for f in dataclasses.fields(config_cls)} if dataclasses.is_dataclass(config_cls) else set()
    )
    return fields - {"name", "version", "data_dir", "data_files", "description"}


def load_builder(
    name: str,
    /,
    data_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    split: str | None = None,
    image_cache_size: int | None = None,
    image_cache_eval_size: int | Sequence[int] = 224,
    image_cache_resample: int = 2,
    image_cache_num_proc: int | None = None,
    **config_kwargs: Any,
) -> datasets.DatasetDict | datasets.Dataset:
    """Prepare dataset `name` from `datasets_scripts/<name>/<name>.py` and return it.

    Args:
        name: builder folder name (see `available_builders()`); positional, so that `name=` stays free
            for choosing a BuilderConfig.
        data_dir: the folder holding the source data (`None` for builders that bring their own data).
        cache_dir: where the prepared Arrow files go (default: the `datasets` cache).
        split: return only this split (`"train"`, `"validation"`, `"test"`) as a `Dataset`.
        image_cache_size: serve the images from an image cache (`hf_rrg.data.image_cache`: every image decoded once
            and stored resized, shorter side `image_cache_size` for the train transform and
            `image_cache_eval_size` (int or [height, width]) for the eval transform, with the PIL filter
            `image_cache_resample`); it must match the image processor's `resize_shorter`, `eval_size` and
            `resample`. Made in the builder's cache folder on first use (`image_cache_num_proc` processes).
        **config_kwargs: `name=` picks a named BuilderConfig; other keys override config fields.

    Returns:
        A `DatasetDict` of all splits, or one `Dataset` when `split` is given.
    """
    builder = make_builder(name, data_dir, cache_dir=cache_dir, **config_kwargs)
    builder.download_and_prepare()
    if split is not None:
        available = list(builder.info.splits or {})
        if split not in available:
            raise ValueError(f"Dataset {name!r} has no split {split!r}; its splits are {available}.")
    if image_cache_size is not None:
        from .image_cache import ImageCacheSettings, cached_builder_dataset

        settings = ImageCacheSettings(image_cache_size, image_cache_eval_size, image_cache_resample)
        return cached_builder_dataset(builder, settings, split, image_cache_num_proc)
    return builder.as_dataset(split=split)


def deterministic_split(
    key: str,
    ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    *,
    names: Sequence[str] = _SPLIT_NAMES,
    salt: str = "",
) -> str:
    """Assign `key` to a split by a SHA-256 hash of `salt + key`: stable across runs, machines and Pythons.

    The hash's first 8 bytes, read as an integer and divided by 2**64, give a number u in [0, 1); the split is
    the first name whose cumulative ratio exceeds u. Ratios must be non-negative and sum to 1.
    """
    if len(ratios) != len(names):
        raise ValueError(
            f"Got {len(ratios)} split ratios {list(ratios)} for {len(names)} splits {list(names)}."
        )
    if any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise ValueError(f"Split ratios must be non-negative and sum to 1; got {list(ratios)}.")
    u = int.from_bytes(hashlib.sha256(f"{salt}{key}".encode()).digest()[:8], "big") / 2.0**64
    cumulative = 0.0
    for split_name, ratio in zip(names, ratios):
        cumulative += ratio
        if u < cumulative:
            return split_name
    return next(n for n, r in zip(reversed(names), reversed(ratios)) if r > 0)


def counted_split(keys: Sequence[Any], counts: Sequence[int], seed: int = 0) -> dict[Any, str]:
    """{key: split} for a seeded random draw of `counts` = (validation, test) keys, the rest train (e.g. CoAtt's
    500 / 500 images). The draw depends only on the set of keys and `seed`, not on their order."""
    n_validation, n_test = (int(n) for n in counts)
    if n_validation < 0 or n_test < 0 or n_validation + n_test >= len(keys):
        raise ValueError(
            f"split_counts={tuple(counts)} must be non-negative and leave training examples out of the {len(keys)}"
        )
    order = sorted(keys)
    random.Random(seed).shuffle(order)
    split = {key: "train" for key in order}
    split.update({key: "validation" for key in order[:n_validation]})
    split.update({key: "test" for key in order[n_validation : n_validation + n_test]})
    return split
