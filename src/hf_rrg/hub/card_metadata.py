"""Model card metadata about where a model may be used and tried: the licence fields the Hub asks for when the
licence is ``other`` (``license_name`` / ``license_link``, with a ``LICENSE.md`` in the repo), ``datasets``,
``base_model``, ``widget`` entries showing the shipped example images with the model's own reports, gating and a
data-use warning for models trained on credentialed data (MIMIC-CXR), and the card's "Try it" section (Inference
Endpoints request, Space, examples' attribution).

The training data's terms are read from the dataset card of its builder (``datasets_scripts/<name>/README.md``
front matter: ``license``, ``license_name``, ``license_link``), so each dataset states them once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..resources import resource_dir

PIPELINE_TAG = "image-text-to-text"  # `pipeline("image-text-to-text", model=..., trust_remote_code=True)` serves it
LICENCE_FILE = "LICENSE.md"
CREDENTIALED_LICENCE_PREFIX = "physionet-credentialed"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class DataTerms:
    """The licence of a training dataset as its card states it."""

    dataset: str
    licence: str
    name: str | None
    link: str | None

    @property
    def credentialed(self) -> bool:
        """Access needs credentials and a signed data use agreement (PhysioNet: MIMIC-CXR)."""
        return (self.name or "").startswith(CREDENTIALED_LICENCE_PREFIX)

    @property
    def label(self) -> str:
        return self.name or self.licence


def data_terms(dataset: str | None) -> DataTerms | None:
    """The terms in ``datasets_scripts/<dataset>/README.md``; None for an unknown or unrecorded dataset."""
    from .model_card import read_front_matter

    if not dataset or not re.fullmatch(r"[\w-]+", dataset):
        return None
    card = resource_dir("datasets_scripts") / dataset / "README.md"
    if not card.is_file():
        return None
    meta = read_front_matter(card.read_text(encoding="utf-8"))
    if not meta.get("license"):
        return None
    return DataTerms(dataset, str(meta["license"]), meta.get("license_name"), meta.get("license_link"))


def licence_metadata(licence: str, terms: DataTerms | None) -> dict[str, str]:
    """``license`` (+ ``license_name`` and ``license_link`` -> ``LICENSE.md`` when it is ``other``)."""
    if licence != "other":
        return {"license": licence}
    name = re.sub(r"[^a-z0-9.-]+", "-", (terms.label if terms else "training-data-terms").lower()).strip("-")
    return {"license": "other", "license_name": name or "training-data-terms", "license_link": LICENCE_FILE}


def licence_file(terms: DataTerms | None, dataset_name: str) -> str:
    """``LICENSE.md`` of a model whose licence is ``other``: the training data's terms apply to its uses."""
    if terms is None:
        where = "The training data's terms were not recorded with this model; find them before using or sharing it."
    else:
        link = f" (<{terms.link}>)" if terms.link else ""
        where = f"{dataset_name} is distributed under **{terms.label}**{link}."
    return (
        "# Licence\n\n"
        f"This model's weights were learned from {dataset_name}. {where} Those terms (for example non-commercial "
        "use, no derivatives, or a data use agreement) apply to every use and redistribution of the model and of "
        "the reports it writes.\n\n"
        "The code files of this repository come from hf-rrg (Apache-2.0).\n"
    )


def gating_metadata(terms: DataTerms | None) -> dict[str, Any]:
    """Hub access-request fields for a model trained on credentialed data (turn gating on in the repo settings)."""
    if terms is None or not terms.credentialed:
        return {}
    return {
        "extra_gated_prompt": (
            f"This model was trained on {terms.dataset}, credentialed data ({terms.label}). Request access only if you "
            "hold the credentials and have signed the data use agreement it requires."
        ),
        "extra_gated_fields": {
            "I am a credentialed user and have signed the data use agreement of the training data": "checkbox",
        },
    }


def data_use_warning(terms: DataTerms | None) -> str:
    """A blockquote for the top of the card of a model trained on credentialed data ("" otherwise)."""
    if terms is None or not terms.credentialed:
        return ""
    link = f" (<{terms.link}>)" if terms.link else ""
    return (
        f"> **Data use warning.** This model was trained on {terms.dataset}, credentialed data under the "
        f"{terms.label}{link}. Its weights and outputs may reproduce text of training reports. Use and share it "
        "only as that agreement allows: keep the repository gated or private, give access only to credentialed "
        "users, and never send its inputs or outputs to third-party services the agreement does not permit.\n\n"
    )


def base_models(config: Any) -> list[str]:
    """Hub ids of the checkpoints the model started from: the timm ImageNet weights of its visual backbone (when
    `visual_pretrained`) and DCRRG's ClinicalBERT text encoder (when named by a Hub id)."""
    found = []
    sources = [config, getattr(config, "backbone_config", None)]  # ITHN wraps a backbone config
    for source in filter(None, sources):
        if getattr(source, "visual_pretrained", False) and getattr(source, "visual_backbone", None):
            found.append(timm_hub_id(source.visual_backbone))
        text = getattr(source, "text_encoder_name_or_path", None)
        if isinstance(text, str) and _HUB_ID.match(text) and not Path(text).exists():
            found.append(text)
    return list(dict.fromkeys(item for item in found if item))


def timm_hub_id(name: str) -> str | None:
    """The Hub repo of timm's default pretrained weights for `name` (None when timm has none)."""
    try:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(name)
    except Exception:  # an unknown or test-only architecture
        return None
    return getattr(cfg, "hf_hub_id", None) if cfg is not None else None


def widget_entries(examples: Sequence[str], reports: Sequence[str], repo_id: str | None) -> list[dict[str, Any]]:
    """One widget per example image shipped in the repo, with the model's report as its shown output (the Hub's
    hosted widget does not run remote code). `src` is the file's URL when the repo id is known, else its path."""
    entries = []
    for path, report in zip(examples, reports):
        src = f"https://huggingface.co/{repo_id}/resolve/main/{path}" if repo_id else path
        entries.append({"src": src, "text": "", "example_title": Path(path).stem, "output": {"text": report}})
    return entries


def widget_file(src: str) -> str:
    """The repo path a widget `src` points at (inverse of `widget_entries`)."""
    return src.split("/resolve/main/", 1)[1] if "/resolve/main/" in src else src


def try_it_section(repo_id: str | None, examples_credit: str) -> str:
    """The card's "Try it" section: the Inference Endpoints request, the Space command and the examples' credits."""
    location = repo_id or "ORG/NAME"
    return f"""
## Try it

**Inference Endpoints.** This repository carries `handler.py`: deploy it as a custom-handler endpoint and send one
study per request (base64 of PNG, JPEG or DICOM files; several views as a list):

```python
import base64, requests
views = [base64.b64encode(open(path, "rb").read()).decode() for path in ("frontal.dcm", "lateral.png")]
response = requests.post(ENDPOINT_URL, headers={{"Authorization": f"Bearer {{TOKEN}}"}},
                         json={{"inputs": views, "parameters": {{"num_beams": 3, "max_new_tokens": 60}}}})
print(response.json())   # [{{"generated_text": "..."}}]
```

**Standard pipeline.** `pipeline("{PIPELINE_TAG}", model="{location}", trust_remote_code=True)(images=image, text="")`
returns `[{{"input_text": "", "generated_text": report}}]` (PNG/JPEG decoded by PIL; for DICOM and multi-view studies
use the `radiology-report-generation` pipeline above). A non-empty `text` is a report prompt the model continues.

**Demo page.** `hf-rrg space {location} --out my-space` writes a Gradio Space (report, settings and what explains
the report for every view); `hf-rrg demo {location}` runs the same page locally.

{examples_credit}
"""


def card_metadata(
    licence: str,
    terms: DataTerms | None,
    dataset: str | None,
    config: Any,
    widget: list[dict[str, Any]],
    dataset_id: str | None = None,
) -> dict[str, Any]:
    """Front-matter entries beyond library/tags/model-index: licence fields, datasets, base_model, widget, gating."""
    meta: dict[str, Any] = licence_metadata(licence, terms)
    if dataset_id or dataset:
        meta["datasets"] = [dataset_id or dataset]
    bases = base_models(config)
    if bases:
        meta["base_model"] = bases if len(bases) > 1 else bases[0]
    if widget:
        meta["widget"] = widget
    meta.update(gating_metadata(terms))
    return meta


def merge_metadata(meta: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`meta` with `extra`'s entries inserted after ``license`` (the Hub shows licence fields together)."""
    merged: dict[str, Any] = {}
    for key, value in meta.items():
        merged[key] = extra.get(key, value)
        if key == "license":
            merged.update({k: v for k, v in extra.items() if k not in meta})
    merged.update({k: v for k, v in extra.items() if k not in merged})
    return merged


__all__ = [
    "LICENCE_FILE",
    "PIPELINE_TAG",
    "DataTerms",
    "base_models",
    "card_metadata",
    "data_terms",
    "data_use_warning",
    "gating_metadata",
    "licence_file",
    "licence_metadata",
    "merge_metadata",
    "try_it_section",
    "widget_entries",
    "widget_file",
]
