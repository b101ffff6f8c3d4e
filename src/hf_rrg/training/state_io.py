"""Training state as safetensors + JSON only: nothing the engine writes is read back with pickle.

- `save_tensors_json` / `load_tensors_json`: a nested state (an optimizer's `state_dict()`, a grad scaler's, ...)
  split into its tensors (one `.safetensors` file, keys are the JSON paths) and everything else (one `.json` file
  holding the structure, with `{"__tensor__": key}` where a tensor stood).
- `save_module_state` / `load_module_state`: a `state_dict` as safetensors (tensors that share storage, e.g. tied
  embeddings, stored once and restored by name).
- `capture_rng_state` / `restore_rng_state`: Python's, NumPy's and torch's (CPU and every CUDA device) random
  states of one process, as one safetensors file with the Python/NumPy states in its JSON metadata.
- `write_json_atomic`, `save_pretrained_atomic`, `file_digest`: atomic JSON / `save_pretrained` folder writes and
  the SHA-256 a checkpoint manifest records per file.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_INT_KEYS = "__int_keys__"


class StateFileError(ValueError):
    """A state file that is missing, truncated or not what the engine wrote; the message names the file."""


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` through a temporary sibling and one rename (readers never see half a file)."""
    tmp = path.with_name(f".tmp_{path.name}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=2))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_pretrained_atomic(folder: Path, *objects: Any) -> Path:
    """`save_pretrained` of every object (a model, its processor, ...) into a temporary sibling of `folder`, which
    then replaces `folder` (readers see the old folder or the complete new one)."""
    folder = Path(folder)
    tmp = folder.with_name(f".tmp_{folder.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    for item in objects:
        item.save_pretrained(str(tmp))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def read_json(path: Path) -> Any:
    """JSON of `path`; a missing or damaged file is a `StateFileError` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StateFileError(f"{path} is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StateFileError(f"{path} is damaged (not readable JSON: {error})") from None


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise StateFileError(f"{path} is missing")
    try:
        return load_file(str(path))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise StateFileError(f"{path} is damaged (not a readable safetensors file: {error})") from None


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as error:  # noqa: BLE001
        raise StateFileError(f"{path} is damaged (not a readable safetensors file: {error})") from None


def _save_safetensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    save_file({key: value.detach().cpu().contiguous() for key, value in tensors.items()}, str(path), metadata=metadata)


# ---------------------------------------------------------------------------------------------- nested states


def _split(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """The JSON skeleton of `value`; its tensors go into `tensors` under their path."""
    if torch.is_tensor(value):
        tensors[path] = value
        return {_TENSOR: path}
    if isinstance(value, Mapping):
        keys = list(value)
        skeleton = {str(key): _split(item, f"{path}.{key}", tensors) for key, item in value.items()}
        int_keys = [str(key) for key in keys if isinstance(key, int)]
        if int_keys:
            skeleton[_INT_KEYS] = int_keys
        return skeleton
    if isinstance(value, tuple):
        return {_TUPLE: [_split(item, f"{path}.{i}", tensors) for i, item in enumerate(value)]}
    if isinstance(value, list):
        return [_split(item, f"{path}.{i}", tensors) for i, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} at {path!r} as JSON or a tensor")


def _join(skeleton: Any, tensors: Mapping[str, torch.Tensor], where: Path) -> Any:
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            key = skeleton[_TENSOR]
            if key not in tensors:
                raise StateFileError(f"{where} names tensor {key!r}, which its .safetensors file lacks")
            return tensors[key]
        if _TUPLE in skeleton:
            return tuple(_join(item, tensors, where) for item in skeleton[_TUPLE])
        int_keys = set(skeleton.get(_INT_KEYS, ()))
        return {
            (int(key) if key in int_keys else key): _join(item, tensors, where)
            for key, item in skeleton.items()
            if key != _INT_KEYS
        }
    if isinstance(skeleton, list):
        return [_join(item, tensors, where) for item in skeleton]
    return skeleton


def save_tensors_json(folder: Path, name: str, state: Any) -> list[str]:
    """Write `state` as `folder/name.json` + `folder/name.safetensors`; returns the file names written."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, name, tensors)
    _save_safetensors(folder / f"{name}.safetensors", tensors)
    write_json_atomic(folder / f"{name}.json", skeleton)
    return [f"{name}.json", f"{name}.safetensors"]


def load_tensors_json(folder: Path, name: str, device: torch.device | str = "cpu") -> Any:
    """What `save_tensors_json(folder, name, ...)` wrote (tensors moved to `device`)."""
    skeleton = read_json(folder / f"{name}.json")
    tensors = {key: value.to(device) for key, value in _load_safetensors(folder / f"{name}.safetensors").items()}
    return _join(skeleton, tensors, folder / f"{name}.json")


# ---------------------------------------------------------------------------------------------- module weights


def save_module_state(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    """A `state_dict` as safetensors; a tensor sharing storage with an earlier one is stored once and recorded
    as an alias in the metadata."""
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], str] = {}
    for key, tensor in state.items():
        if not torch.is_tensor(tensor):
            continue
        identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
                    tuple(tensor.stride()))  # fmt: skip
        if tensor.numel() and identity in seen:
            aliases[key] = seen[identity]
            continue
        seen[identity] = key
        unique[key] = tensor
    _save_safetensors(path, unique, {"aliases": json.dumps(aliases)})


def load_module_state(path: Path) -> dict[str, torch.Tensor]:
    """The `state_dict` `save_module_state` wrote (aliases restored)."""
    tensors = _load_safetensors(path)
    aliases = json.loads(_safetensors_metadata(path).get("aliases", "{}"))
    for key, source in aliases.items():
        tensors[key] = tensors[source]
    return tensors


# ---------------------------------------------------------------------------------------------- random states


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of this process's Python, NumPy and torch random states."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_{index}"] = state
    metadata = {
        "python": json.dumps([version, list(internal), gauss]),
        "numpy": json.dumps([kind, np.asarray(keys).tolist(), int(position), int(has_gauss), float(cached)]),
    }
    return tensors, metadata


def save_rng_state(path: Path) -> None:
    tensors, metadata = capture_rng_state()
    _save_safetensors(path, tensors, metadata)


def load_rng_state(path: Path) -> None:
    """Restore the random states `save_rng_state` wrote; a missing or damaged file is a `StateFileError`."""
    tensors = _load_safetensors(path)
    metadata = _safetensors_metadata(path)
    try:
        version, internal, gauss = json.loads(metadata["python"])
        kind, keys, position, has_gauss, cached = json.loads(metadata["numpy"])
        python_state = (version, tuple(internal), gauss)
        numpy_state = (kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached)
        torch_state = tensors["torch"]
    except (KeyError, ValueError, TypeError) as error:
        raise StateFileError(f"{path} does not hold the random states the engine writes ({error})") from None
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    torch.set_rng_state(torch_state)
    if torch.cuda.is_available():
        states = [tensors[f"cuda_{i}"] for i in range(torch.cuda.device_count()) if f"cuda_{i}" in tensors]
        if states:
            torch.cuda.set_rng_state_all(states)


__all__ = [
    "StateFileError",
    "capture_rng_state",
    "file_digest",
    "load_module_state",
    "load_rng_state",
    "load_tensors_json",
    "read_json",
    "save_module_state",
    "save_pretrained_atomic",
    "save_rng_state",
    "save_tensors_json",
    "write_json_atomic",
]
