"""Locate the data folders that ship with the package (dataset scripts, model card templates).

In a wheel they live inside the package (`hf_rrg/datasets_scripts`, `hf_rrg/model_cards`); in a source
checkout or an editable install they are at the repository root, next to `src/`.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parent.parent


def resource_dir(name: str) -> Path:
    """Return the folder `name` (`"datasets_scripts"`, `"model_cards"` or `"training_scripts"`) wherever this install
    keeps it."""
    for candidate in (_PACKAGE_DIR / name, _REPO_ROOT / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"hf-rrg resource folder {name!r} was not found in {_PACKAGE_DIR} or {_REPO_ROOT}; "
        "reinstall the package (`pip install hf-rrg`) or run from a full source checkout."
    )


def training_config_dir() -> Path:
    """Folder of the shipped training configs (`training_scripts/configs`)."""
    return resource_dir("training_scripts") / "configs"


def shipped_training_configs() -> list[str]:
    """Names of the training configs hf-rrg ships (`training_scripts/configs/<name>.yaml`, e.g. ``r2gencmn_demo``),
    sorted; empty when the folder is absent. Light: `hf-rrg train --help` lists them."""
    try:
        folder = training_config_dir()
    except FileNotFoundError:
        return []
    return sorted(path.stem for path in folder.glob("*.yaml"))
