"""A PEFT adapter of an hf-rrg model as a Hub repository: its model card (DCRRG's step-4 P-Tuning v2 prefix, §3.4 of
Zhou & Wang, EMNLP 2024) and the copy of an adapter folder that `hf-rrg push` uploads.

The card is written from the adapter folder alone (`adapter_config.json` and the weights' shapes), so `save_pretrained`
and `push` write the same card, the latter with the repo id filled in. The base model is named only by a Hub id:
a local folder (what `adapter_config.json` holds after training, so the adapter loads on the training machine) is
shown as the placeholder `BASE_MODEL`, and `hf-rrg push --base-model ORG/NAME` puts the Hub id into the uploaded copy.
No absolute local path is written into a card.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from .local_paths import scrub_text

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
BASE_PLACEHOLDER = "BASE_MODEL"
REPO_PLACEHOLDER = "ORG/ADAPTER"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_adapter_folder(path: str | Path) -> bool:
    """A folder written by a PEFT model's `save_pretrained` (it holds `adapter_config.json`)."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def hub_model_id(value: str | None) -> str | None:
    """`value` when it reads as a Hub model id (`org/name`, not a folder on this machine), else None."""
    if not value or not _HUB_ID.match(value) or ".." in value or Path(value).exists():
        return None
    return value


def read_adapter_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / ADAPTER_CONFIG
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder} is not an adapter folder: {ADAPTER_CONFIG} is missing") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); save the adapter again") from None


def stored_parameters(folder: Path) -> int:
    """Number of parameter elements in the adapter's weights file (read from the safetensors header)."""
    from safetensors import safe_open

    path = Path(folder) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {ADAPTER_WEIGHTS}; save the adapter with safe_serialization")
    total = 0
    with safe_open(str(path), framework="pt") as handle:
        for name in handle.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
            count = 1
            for size in handle.get_slice(name).get_shape():
                count *= size
            total += count
    return total


def adapter_card(config: dict[str, Any], parameters: int, repo_id: str | None = None,
                 base_model: str | None = None) -> str:  # fmt: skip
    """README.md of a DCRRG prefix adapter: metadata, method, settings, how to load it, intended use."""
    base = hub_model_id(base_model) or hub_model_id(config.get("base_model_name_or_path"))
    repo = repo_id or REPO_PLACEHOLDER
    meta: dict[str, Any] = {"library_name": "peft"}
    if base:
        meta["base_model"] = base
    meta.update({
        "pipeline_tag": "image-text-to-text",
        "tags": ["dcrrg", "prefix-tuning", "p-tuning-v2", "peft", "radiology-report-generation", "chest-x-ray",
                 "hf-rrg"],
    })  # fmt: skip
    head = ", ".join(config.get("modules_to_save") or []) or "none"
    settings = "\n".join(f"- {key}: {_setting(config.get(key))}" for key in (
        "peft_type", "task_type", "num_virtual_tokens", "num_layers", "num_attention_heads", "token_dim",
        "prefix_projection", "encoder_hidden_size", "modules_to_save"))  # fmt: skip
    base_line = (f"[`{base}`](https://huggingface.co/{base})" if base else
                 f"`{BASE_PLACEHOLDER}`: the DCRRG step-3 model this adapter was trained on (a local folder when it "
                 "was saved). Push that model first (`hf-rrg push RUN_DIR/describe/model --repo-id ORG/NAME`), then "
                 "this adapter with `hf-rrg push ADAPTER_DIR --repo-id ... --base-model ORG/NAME`, which writes the "
                 "Hub id here and into `adapter_config.json`")  # fmt: skip
    body = f"""# DCRRG step-4 adapter (P-Tuning v2)

A PEFT adapter that turns a DCRRG model trained up to step 3 (observation descriptions) into a full-report
writer, as in step 4 of DCRRG (Zhou, Wang, *Divide and Conquer Radiology Report Generation via Observation Level
Fine-grained Pretraining and Prompt Tuning*, EMNLP 2024, §3.4). Trained with `hf-rrg`.

**Base model:** {base_line}.

## Method

P-Tuning v2: trainable key/value prefixes in every self-attention layer of the decoder, produced by PEFT's
`PrefixTuningConfig(prefix_projection=True)` (an embedding of the virtual tokens and a two-layer MLP), plus a
re-initialised output head (`modules_to_save`: {head}). The image encoder and the decoder stay frozen. PEFT saves
the prefix as the MLP computes it (num_virtual_tokens x num_layers x key and value x token_dim; the MLP is a
training-time reparameterisation) together with the head: {parameters:,} values in `{ADAPTER_WEIGHTS}`. The base
model is needed to use the adapter.

{settings}

## How to use

```python
import hf_rrg  # registers DCRRG with the transformers Auto classes
from hf_rrg.dcrrg import AutoPeftModelForImageTextToText
from transformers import AutoProcessor

model = AutoPeftModelForImageTextToText.from_pretrained("{repo}")   # loads the base model named above
processor = AutoProcessor.from_pretrained(model.peft_config["default"].base_model_name_or_path)
inputs = processor(images=[["frontal.png"]])                        # a batch of studies, views per study
print(processor.batch_decode(model.generate(**inputs), skip_special_tokens=True))
```

With PEFT alone (`peft.PeftModel.from_pretrained(base, "{repo}")` or `peft.AutoPeftModelForSeq2SeqLM`), PEFT's
seq2seq wrapper needs the decoder prompt: `model.generate(**inputs, input_ids=bos)` with `bos` a (batch, 1) tensor
of the base model's `bos_token_id`. `hf_rrg.dcrrg.prefix.merge_prefix(model)` bakes the adapter into a plain DCRRG
model that generates without PEFT.

## Intended use

Research on automatic radiology report generation only. **Not for clinical use**: not a medical device, not
validated clinically; generated reports can be fluent and wrong. The training data's licence terms apply.
"""
    header = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return scrub_text(f"---\n{header}---\n\n{body}")


def _setting(value: Any) -> str:
    return ", ".join(str(item) for item in value) if isinstance(value, (list, tuple)) else str(value)


def write_adapter_card(folder: Path, repo_id: str | None = None, base_model: str | None = None) -> Path:
    """Write `folder/README.md` for the adapter saved in `folder`; returns its path."""
    folder = Path(folder)
    card = adapter_card(read_adapter_config(folder), stored_parameters(folder), repo_id, base_model)
    path = folder / "README.md"
    path.write_text(card, encoding="utf-8")
    return path


def stage_adapter(source: Path, target: Path, repo_id: str, base_model: str | None = None) -> Path:
    """The upload copy of adapter folder `source` in `target`: its config with the base model as a Hub id
    (`base_model` or the one it already names) and a card for `repo_id`. A base that is a local folder, with no
    `base_model` given, is an error saying what to pass."""
    config = read_adapter_config(source)
    named = config.get("base_model_name_or_path")
    base = hub_model_id(base_model) if base_model else hub_model_id(named)
    if base_model and base is None:
        raise ValueError(f"--base-model {base_model!r} is not a Hub model id (ORG/NAME)")
    if base is None:
        raise ValueError(
            f"{Path(source) / ADAPTER_CONFIG} names its base model by a local path ({scrub_text(str(named))}), "
            "which nobody else can load: push the base model first and pass its Hub id with --base-model ORG/NAME"
        )
    target.mkdir(parents=True, exist_ok=False)
    shutil.copyfile(Path(source) / ADAPTER_WEIGHTS, target / ADAPTER_WEIGHTS)
    (target / ADAPTER_CONFIG).write_text(json.dumps({**config, "base_model_name_or_path": base}, indent=2) + "\n",
                                         encoding="utf-8")  # fmt: skip
    write_adapter_card(target, repo_id, base)
    return target


__all__ = [
    "ADAPTER_FILES",
    "BASE_PLACEHOLDER",
    "adapter_card",
    "hub_model_id",
    "is_adapter_folder",
    "stage_adapter",
    "stored_parameters",
    "write_adapter_card",
]
