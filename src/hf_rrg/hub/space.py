"""`write_space`: a folder that *is* a Hugging Face Space (Gradio) demonstrating one hf-rrg model.

The folder holds ``app.py`` (`hf_rrg.hub.space_app`), ``report_explanation.py`` (what explains each report),
``requirements.txt``, ``README.md`` with the Space metadata (``sdk: gradio``, ``models:``), ``space_config.json``
(the model, how the page names it, title, accepted DICOM modalities, examples) and ``examples/`` (CC BY chest X-rays of the demo set,
credited in the README). The model is named by its Hub id, or, for a local export, copied into ``model/`` so the
Space runs as written. The folder follows the rules of every hf-rrg export (`hf_rrg.export_folder`): written beside
the target and swapped in, replaced with ``overwrite`` only when it is a previous Space export.
"""

from __future__ import annotations

import json
import re
import shutil
from importlib import metadata
from pathlib import Path

import yaml

from ..export_folder import check_output_folder, staged_folder, write_manifest
from ..modeling import report_explanation
from . import space_app
from .examples import attribution, copy_examples
from .loading import check_model_dir

EXPORT_KIND = "space"
BUNDLED_MODEL_DIR = "model"
GRADIO_VERSION = "6.31.0"  # the Space's sdk_version when gradio is not installed here (tested version)
SPACE_REQUIREMENTS = (
    "torch>=2.4",
    "transformers>=5.0",
    "timm>=1.0",
    "pydicom>=3.0",
    "numpy>=1.26",
    "pillow>=10.0",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def write_space(
    model: str | Path,
    out_dir: str | Path,
    *,
    model_id: str | None = None,
    title: str | None = None,
    dicom_modalities: list[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a Gradio Space for `model` (a local model folder or a Hub id ``org/name``) to `out_dir`.

    Args:
        model_id: Hub id the Space loads the model from; a local `model` is then not copied into the Space.
        title: the page's title (default: the model's name).
        dicom_modalities: DICOM Modality codes the page accepts (default radiographs: CR, DX, RG).
        overwrite: replace `out_dir` when it is a previous `hf-rrg space` folder.
    """
    out_dir = Path(out_dir)
    local = Path(model).is_dir()
    if local:
        check_model_dir(model)
    elif not _HUB_ID.match(str(model)):
        raise FileNotFoundError(f"{model} is neither a model folder nor a Hub id of the form org/name.")
    hub_id = model_id or (None if local else str(model))
    if hub_id is not None and not _HUB_ID.match(hub_id):
        raise ValueError(f"--model-id {hub_id!r} is not a Hub id of the form org/name.")
    check_output_folder(out_dir, EXPORT_KIND, [Path(model)] if local else [], overwrite)
    name = title or (card_title(Path(model)) if local else None) or str(hub_id).split("/")[-1]
    with staged_folder(out_dir) as staging:
        shutil.copyfile(space_app.__file__, staging / "app.py")
        shutil.copyfile(report_explanation.__file__, staging / "report_explanation.py")
        examples = copy_examples(staging)
        source = hub_id
        if source is None:  # a local export: the Space carries it
            shutil.copytree(model, staging / BUNDLED_MODEL_DIR, ignore=shutil.ignore_patterns(".*"))
            source = BUNDLED_MODEL_DIR
        settings = {
            "model": source,
            "model_label": hub_id or name,
            "title": name,
            "dicom_modalities": list(dicom_modalities or space_app.XRAY_MODALITIES),
            "examples": examples,
        }
        (staging / space_app.CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        (staging / "requirements.txt").write_text(requirements_text(), encoding="utf-8")
        (staging / "README.md").write_text(space_card(name, hub_id), encoding="utf-8")
        write_manifest(staging, EXPORT_KIND, (staging / BUNDLED_MODEL_DIR).glob("*.safetensors"))
    return out_dir


def card_title(model_dir: Path) -> str:
    """The title of a model folder's card (the first ``# `` heading of its README.md), else the folder's name."""
    card = model_dir / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        body = text.split("---\n", 2)[-1] if text.startswith("---\n") else text  # after the YAML front matter
        for line in body.splitlines():
            if line.startswith("# ") and line[2:].strip():
                return line[2:].strip()
    return model_dir.resolve().name


def gradio_version() -> str:
    try:
        return metadata.version("gradio")
    except metadata.PackageNotFoundError:
        return GRADIO_VERSION


def requirements_text() -> str:
    major = gradio_version().split(".")[0]
    return "\n".join([f"gradio>={major}.0,<{int(major) + 1}", *SPACE_REQUIREMENTS]) + "\n"


def space_card(title: str, hub_id: str | None) -> str:
    """README.md of the Space: the metadata the Hub reads (sdk, app file, models) and what the page does."""
    meta = {
        "title": title[:60],
        "emoji": "🩻",
        "colorFrom": "blue",
        "colorTo": "gray",
        "sdk": "gradio",
        "sdk_version": gradio_version(),
        "app_file": "app.py",
        "pinned": False,
        "license": "apache-2.0",
        "short_description": "Chest X-ray report generation, with where the model looked",
        "tags": ["radiology-report-generation", "medical-imaging", "hf-rrg"],
    }
    if hub_id:
        meta["models"] = [hub_id]
    model_line = (
        f"The model is [`{hub_id}`](https://huggingface.co/{hub_id}), loaded with `trust_remote_code=True`."
        if hub_id
        else f"The model is bundled in `{BUNDLED_MODEL_DIR}/` (an `hf-rrg export`), loaded with `trust_remote_code=True`."
    )
    return f"""---
{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)}---

# {title}

Upload one chest X-ray study (1 or more views: PNG/JPEG in the image boxes, DICOM in the file box) and read the
report the model writes, with what explains it: for R2Gen-family models the cross-attention of each sentence over
every view, CoAtt's visual attention per sentence, ASGK's heat map, region and tags, XProNet's predicted labels,
DCRRG's per-observation probabilities. {model_line}

**Not for clinical use.** The reports are machine-generated and can be wrong. Do not upload identifiable patient
data. The model's own licence (its training data's terms) applies to its outputs.

Made with hf-rrg (`hf-rrg space`); the page's code is `app.py`, its settings
`space_config.json`. Run it locally with `pip install -r requirements.txt && python app.py`.

{attribution()}
"""


__all__ = ["write_space"]
