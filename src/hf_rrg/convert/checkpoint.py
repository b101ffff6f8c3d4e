"""Read an official checkpoint (`torch.save` of a trainer dict or of a bare state dict) without running its code.

The official trainers of R2Gen, R2GenCMN, XProNet and ITHN save ``{"epoch", "state_dict", "optimizer",
"monitor_best"}``: tensors, numbers and the optimizer's plain state, all readable with ``weights_only=True``. A file
that also pickles objects (an ``argparse.Namespace``, a numpy scalar, a whole model) can only be read by running
code it names; hf-rrg refuses it and says how to extract the state dict knowingly, once, with the official code.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

DATA_PARALLEL_PREFIX = "module."

#: The one-liner that turns a checkpoint pickling a few known classes into a plain state-dict file hf-rrg can read.
#: It still loads with `weights_only=True`: only the classes the user allows (`{classes}`, after importing
#: `{modules}`) are rebuilt, nothing else the file names is imported or run.
EXTRACT_STATE_DICT = (
    "python -c \"import torch, {modules}; torch.serialization.add_safe_globals([{classes}]); "
    "c = torch.load('{file}', map_location='cpu', weights_only=True); "
    "torch.save({{'state_dict': c.get('state_dict', c)}}, '{out}')\""
)
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)\.([A-Za-z_]\w*)")


@dataclass
class OfficialCheckpoint:
    """The tensors of an official checkpoint and what is known about the file.

    Attributes:
        state_dict: parameter and buffer name -> tensor, with DataParallel's `module.` prefix removed.
        path: the file read; sha256: its SHA-256 (hex).
        layout: how the file held the tensors ("trainer checkpoint" or "bare state dict").
        extras: the trainer dict's other plain entries that are not tensors (epoch, monitor_best), for the card.
    """

    state_dict: dict[str, torch.Tensor]
    path: Path
    sha256: str
    layout: str
    extras: dict[str, Any] = field(default_factory=dict)


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _refusal(path: Path, error: Exception) -> ValueError:
    detail = str(error).strip().splitlines()
    named = next((line.strip() for line in detail if "Unsupported global" in line or "GLOBAL" in line), None)
    refused = _REFUSED_GLOBAL.search(str(error))
    out = path.with_name(path.stem + ".state_dict.pth")
    if refused is None:
        remedy = ("If you trust the file, allow the classes torch names with torch.serialization.add_safe_globals, "
                  f"load it with weights_only=True and save its state dict as {out.name}.")  # fmt: skip
    else:
        module, name = refused.groups()
        remedy = ("If you trust the file, allow that class (still weights_only=True: nothing else is run), extract "
                  "the state dict once and convert the result:\n  "
                  + EXTRACT_STATE_DICT.format(modules=module, classes=f"{module}.{name}", file=path.name,
                                              out=out.name))  # fmt: skip
    return ValueError(
        f"{path} cannot be read as plain tensors: it pickles Python objects "
        f"({named or (detail[0] if detail else type(error).__name__)}), and reading it would run code the file "
        f"names. hf-rrg only loads checkpoints with torch.load(weights_only=True). {remedy}"
    )


def load_official_checkpoint(path: str | Path) -> OfficialCheckpoint:
    """Read `path` with `torch.load(..., weights_only=True)` and return its state dict.

    Accepts a bare state dict, a trainer dict with a `state_dict` entry, and DataParallel/DDP `module.` prefixes.
    Raises FileNotFoundError / ValueError naming the file and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise _refusal(path, error) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            raise _refusal(path, error) from None
        raise ValueError(
            f"{path} is not a readable torch checkpoint ({type(error).__name__}: {str(error).splitlines()[0]}); "
            "pass the .pth file the authors published (e.g. model_iu_xray.pth)."
        ) from None
    state, layout, extras = _state_dict_of(loaded, path)
    return OfficialCheckpoint(
        state_dict=_strip_data_parallel(state), path=path, sha256=file_sha256(path), layout=layout, extras=extras
    )


def _state_dict_of(loaded: Any, path: Path) -> tuple[dict[str, torch.Tensor], str, dict[str, Any]]:
    if not isinstance(loaded, Mapping):
        raise ValueError(
            f"{path} holds a {type(loaded).__name__}, not a state dict or a trainer checkpoint dict; pass the "
            "checkpoint the official trainer saved (a dict with 'state_dict')."
        )
    if isinstance(loaded.get("state_dict"), Mapping):
        extras = {
            key: value for key, value in loaded.items()
            if key not in ("state_dict", "optimizer") and isinstance(value, (int, float, str, bool))
        }  # fmt: skip
        state, layout = loaded["state_dict"], "trainer checkpoint (state_dict entry)"
    else:
        state, layout, extras = loaded, "bare state dict", {}
    not_tensors = sorted(str(key) for key, value in state.items() if not torch.is_tensor(value))
    if not_tensors:
        raise ValueError(
            f"{path} has no state dict of tensors: entries {not_tensors[:8]} are not tensors. Pass a bare state dict "
            "or a trainer checkpoint whose 'state_dict' holds the model's tensors."
        )
    if not state:
        raise ValueError(f"{path} holds an empty state dict.")
    return {str(key): value for key, value in state.items()}, layout, extras


def _strip_data_parallel(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the `module.` prefix DataParallel / DistributedDataParallel put on every key."""
    if state and all(key.startswith(DATA_PARALLEL_PREFIX) for key in state):
        return {key[len(DATA_PARALLEL_PREFIX) :]: value for key, value in state.items()}
    return state


def list_keys(keys: list[str] | set[str], limit: int = 12) -> str:
    """Sorted keys for an error message, the first `limit` with '... and N more'."""
    ordered = sorted(keys, key=lambda key: [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", key)])
    shown = ", ".join(ordered[:limit])
    return shown + (f", ... and {len(ordered) - limit} more" if len(ordered) > limit else "")
