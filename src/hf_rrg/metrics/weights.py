"""Where the learned metrics find their weights: a local path, or the Hub id their authors publish them under.

A Hub id is looked up in the local Hugging Face cache first and downloaded only when missing; with the Hub
unreachable (or ``HF_HUB_OFFLINE=1``) and the files absent, the error names the weights, the metric and the
two ways to provide them (download where the Hub is reachable, or pass a local path with the metric's option).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import MetricPackageMissingError, MetricWeightsNotFoundError


def _is_local(source: str) -> bool:
    return source.startswith((".", "/", "~")) or Path(source).expanduser().exists() or source.count("/") > 1


def _not_found(metric: str, what: str, source: str, option: str, reason: str) -> MetricWeightsNotFoundError:
    reason = reason.strip().splitlines()[0] if reason.strip() else "unknown reason"
    return MetricWeightsNotFoundError(
        f"{metric} needs {what} {source!r}, which is neither in the local Hugging Face cache nor downloadable "
        f"({reason}). Download it where the Hub is reachable (`hf download {source}`) and copy the cache "
        f"(~/.cache/huggingface), or pass a local copy with {option} PATH."
    )


def model_folder(source: str, metric: str, what: str, option: str, allow_patterns: list[str] | None = None) -> Path:
    """A local folder holding the model `source` (a folder path, or a Hub repo id fetched into the cache)."""
    if _is_local(source):
        path = Path(source).expanduser()
        if not path.is_dir():
            raise MetricWeightsNotFoundError(f"{metric}: {what} folder {path} does not exist (given with {option})")
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, allow_patterns=allow_patterns))
    except Exception as error:  # noqa: BLE001 - offline, unknown repo, network: all mean "not available here"
        raise _not_found(metric, what, source, option, f"{type(error).__name__}: {error}") from None


def model_file(source: str, filename: str, metric: str, what: str, option: str) -> Path:
    """A local file: `source` itself, `source/filename`, or `filename` of the Hub repo `source`."""
    if _is_local(source):
        path = Path(source).expanduser()
        path = path / filename if path.is_dir() else path
        if not path.is_file():
            raise MetricWeightsNotFoundError(f"{metric}: {what} {path} does not exist (given with {option})")
        return path
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(source, filename))
    except Exception as error:  # noqa: BLE001
        raise _not_found(metric, f"{what} {filename} of", source, option, f"{type(error).__name__}: {error}") from None


def require_package(module: str, metric: str, install: str) -> None:
    """A clear error when `module` (needed by `metric`) is not importable."""
    if importlib.util.find_spec(module) is None:
        raise MetricPackageMissingError(f"{metric} needs the package {module!r}: {install}")


def default_device(device: str | None) -> str:
    """`device`, else ``cuda`` when available, else ``cpu``."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


__all__ = ["default_device", "model_file", "model_folder", "require_package"]
