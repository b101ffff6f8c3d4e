"""Official checkpoints (R2Gen, R2GenCMN, XProNet, ITHN) -> hf-rrg models: key maps per method family, the
official vocabulary rebuilt and permuted into hf-rrg's layout, strict tensor-only reading, the Hub folder writer.

`convert_checkpoint(method, checkpoint, annotation, out_dir, ...)` is `hf-rrg convert`; `convert(...)` returns the
model and processor without writing; `ours_to_official(model, key_map_for(model), vocabulary_map)` writes a model
back in the official layout (what the official code would load).

Names are imported lazily, so that `hf-rrg --help` (which registers `commands`) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "OfficialCheckpoint": "checkpoint",
    "load_official_checkpoint": "checkpoint",
    "KeyMap": "key_maps",
    "key_map_for": "key_maps",
    "official_to_ours": "state",
    "ours_to_official": "state",
    "NEVER_LOGIT": "vocabulary",
    "VocabularyMap": "vocabulary",
    "official_tokens": "vocabulary",
    "tokenizer_for": "vocabulary",
    "Converted": "writer",
    "convert": "writer",
    "convert_checkpoint": "writer",
    "read_train_reports": "writer",
    "predict_split": "predict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
