"""`export_model`: turn a training run (or a saved model folder) into a folder that *is* a Hub model repository.

The folder holds ``config.json`` (with ``auto_map`` for AutoConfig / AutoModel / AutoModelForImageTextToText and
``custom_pipelines`` for the ``radiology-report-generation`` pipeline), ``generation_config.json``,
``model.safetensors``, the tokenizer and processor files (with their own ``auto_map``), every modeling file the
classes import (relatively, from ``hf_rrg/modeling``), ``pipeline_rrg.py``, ``handler.py`` (Inference Endpoints)
with its ``requirements.txt``, example images (``examples/``, shown by the card's widget with the model's reports),
the run's ``metrics.json`` and training config, ``LICENSE.md`` when the licence is ``other``, and a ``README.md``
model card. It loads with ``trust_remote_code=True`` where hf-rrg is not installed.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..export_folder import check_output_folder, staged_folder, write_manifest
from . import card_metadata, endpoint_handler
from .examples import attribution, copy_examples
from .loading import check_model_dir, load_model_and_processor, transformers_bars_off
from .local_paths import scrub_run
from .model_card import DATASETS, render_model_card
from .run_folder import RunInfo, read_run

PIPELINE_MODULE = "pipeline_rrg"
PIPELINE_CLASS = "RadiologyReportGenerationPipeline"
PIPELINE_TASK = "radiology-report-generation"
MODEL_AUTO_CLASSES = ("AutoModel", "AutoModelForImageTextToText")
TRAINING_CONFIG_NAME = "training_config"  # saved as training_config.yaml / .json in the exported repo
EXPORT_KIND = "model"  # the kind recorded in the export's manifest (hf_rrg_export.json)
HANDLER_FILE = "handler.py"
HANDLER_REQUIREMENTS = (
    "# Packages the Inference Endpoints handler (handler.py) needs besides torch and transformers\n"
    "transformers>=5.0\ntimm>=1.0\npydicom>=3.0\nnumpy\npillow\n"
)


def custom_pipelines_entry() -> dict[str, Any]:
    """The ``custom_pipelines`` value of an exported ``config.json``."""
    return {
        PIPELINE_TASK: {
            "impl": f"{PIPELINE_MODULE}.{PIPELINE_CLASS}",
            "pt": ["AutoModelForImageTextToText"],
            "tf": [],
            "type": "multimodal",
        }
    }


def auto_map_entry(config: Any, model: Any) -> dict[str, str]:
    """The model-side ``auto_map`` of ``config.json``: ``module.Class`` of the config and the model class."""
    config_ref = f"{_module_name(type(config))}.{type(config).__name__}"
    model_ref = f"{_module_name(type(model))}.{type(model).__name__}"
    return {"AutoConfig": config_ref, **{name: model_ref for name in MODEL_AUTO_CLASSES}}


def _module_name(cls: type) -> str:
    return cls.__module__.rsplit(".", 1)[-1]


def export_model(
    source: str | Path,
    out_dir: str | Path,
    *,
    model_name: str | None = None,
    repo_id: str | None = None,
    license: str = "other",
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
    dataset_id: str | None = None,
) -> Path:
    """Export `source` (a run folder with ``model/``, ``metrics.json`` and its training config, or a model folder)
    to `out_dir` as a self-contained Hub model repository; returns `out_dir`.

    Args:
        model_name: name shown in the card and ``model-index`` (default: the repo name of `repo_id`, else the name
            of the run folder, else of `out_dir`).
        repo_id: ``org/name`` the folder will be pushed to; used in the card's usage examples.
        license: Hub licence identifier for the card metadata (default ``other``: the training data's terms apply).
        overwrite: replace a non-empty `out_dir`, which must then be a previous hf-rrg model export (it has
            ``hf_rrg_export.json``); a folder that is or contains the source is never replaced.
        provenance: where converted weights came from (`hf-rrg convert`): shown in the card and its metadata.
        dataset_id: Hub id of the training dataset for the card's ``datasets`` (default: the builder's name).

    The folder is written beside `out_dir` and swapped in (`hf_rrg.export_folder`); its manifest
    ``hf_rrg_export.json`` and the card record the sha256 of every weight file, checked when the folder is loaded.
    Absolute local paths in the run's metrics and training config become ``<local path>``.
    """
    out_dir = Path(out_dir)
    run = read_run(source)
    check_model_dir(run.model_dir)
    sources = [run.model_dir] + ([run.run_dir] if run.run_dir is not None else [])
    check_output_folder(out_dir, EXPORT_KIND, sources, overwrite, inside_forbidden=[run.model_dir])
    default_name = (run.run_dir or out_dir).resolve().name
    name = model_name or (repo_id.split("/")[-1] if repo_id else default_name)
    with staged_folder(out_dir) as staging, transformers_bars_off():  # one bar on screen: the export's own
        _write_repo(scrub_run(run), staging, name, repo_id, license, provenance, dataset_id)
    return out_dir


def _write_repo(
    run: RunInfo, folder: Path, model_name: str, repo_id: str | None, license: str, provenance: dict | None = None,
    dataset_id: str | None = None,
) -> None:
    steps = tqdm(total=6, desc="export", unit="step", leave=False, file=sys.stderr)
    model, processor = load_model_and_processor(run.model_dir)
    steps.update()

    # Model: weights, generation config, config with auto_map, modeling code (copied by save_pretrained).
    model.config.register_for_auto_class("AutoConfig")
    model.register_for_auto_class("AutoModelForImageTextToText")
    model.save_pretrained(folder)
    steps.update()

    # Processor: tokenizer + image processor + processor configs, with auto_map, and their code files.
    processor.register_for_auto_class("AutoProcessor")
    processor.tokenizer.register_for_auto_class("AutoTokenizer")
    processor.image_processor.register_for_auto_class("AutoImageProcessor")
    processor.save_pretrained(folder)
    steps.update()

    # Pipeline code and the config entries save_pretrained cannot write (one auto class per object).
    from ..modeling import pipeline_rrg

    copy_module_with_relative_imports(Path(pipeline_rrg.__file__), folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = {**config.get("auto_map", {}), **auto_map_entry(model.config, model)}
    config["custom_pipelines"] = custom_pipelines_entry()
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    steps.update()

    # The run's record and the model card.
    if run.metrics:
        (folder / "metrics.json").write_text(json.dumps(run.metrics, indent=2) + "\n", encoding="utf-8")
    if run.training_config_text is not None and run.training_config_file is not None:
        suffix = ".json" if run.training_config_file.suffix == ".json" else ".yaml"
        (folder / f"{TRAINING_CONFIG_NAME}{suffix}").write_text(run.training_config_text, encoding="utf-8")
    # Hosted inference: the endpoint handler, example images and the reports the model writes for them.
    shutil.copyfile(endpoint_handler.__file__, folder / HANDLER_FILE)
    (folder / "requirements.txt").write_text(HANDLER_REQUIREMENTS, encoding="utf-8")
    examples = copy_examples(folder)
    widget = card_metadata.widget_entries(examples, example_reports(model, processor, folder, examples), repo_id)
    steps.update()

    terms = card_metadata.data_terms(run.dataset)
    if license == "other":
        dataset_name = DATASETS.get(run.dataset or "", run.dataset or "its training data")
        (folder / card_metadata.LICENCE_FILE).write_text(card_metadata.licence_file(terms, dataset_name), "utf-8")
    manifest = write_manifest(folder, EXPORT_KIND, folder.glob("*.safetensors"))
    extra = card_metadata.card_metadata(license, terms, run.dataset, model.config, widget, dataset_id)
    card = render_model_card(run, model.config, model.generation_config, model_name, repo_id, license=license,
                             provenance=provenance, extra_metadata=extra,
                             preamble=card_metadata.data_use_warning(terms))  # fmt: skip
    card += card_metadata.try_it_section(repo_id, attribution())
    (folder / "README.md").write_text(card + checksum_section(manifest["sha256"]), encoding="utf-8")
    check_remote_code(folder)
    steps.update()
    steps.close()


def example_reports(model: Any, processor: Any, folder: Path, examples: list[str]) -> list[str]:
    """The model's report of each example image (one single-view study each), as the pipeline writes it."""
    import torch

    if not examples:
        return []
    inputs = processor(images=[[str(folder / path)] for path in examples])
    with torch.no_grad():
        ids = model.generate(**inputs)
    return processor.batch_decode(ids, skip_special_tokens=True)


def checksum_section(digests: Mapping[str, str]) -> str:
    """The model card's closing section: the sha256 of each weight file (also in ``hf_rrg_export.json``)."""
    rows = "\n".join(f"| {name} | {digest} |" for name, digest in digests.items())
    return (
        "\n## Files and checksums\n\n"
        "hf-rrg checks these digests when it loads this folder (a damaged download is refused, naming the file).\n\n"
        f"| file | sha256 |\n|---|---|\n{rows}\n"
    )


def copy_module_with_relative_imports(module_file: Path, folder: Path) -> list[Path]:
    """Copy `module_file` and every sibling it imports relatively (recursively) into `folder`."""
    from transformers.dynamic_module_utils import get_relative_import_files

    copied = []
    for path in [module_file, *map(Path, get_relative_import_files(module_file))]:
        target = folder / path.name
        if not target.exists():
            shutil.copyfile(path, target)
        copied.append(target)
    return copied


def check_remote_code(folder: Path) -> None:
    """Every module named in the folder's ``auto_map`` / ``custom_pipelines`` exists there with its relative imports,
    and no copied file imports hf_rrg (the folder must work without it)."""
    from transformers.dynamic_module_utils import get_imports, get_relative_import_files

    references: list[str] = []
    for name in ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json"):
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            for section in (data, data.get("image_processor") or {}):
                for value in (section.get("auto_map") or {}).values():
                    references.extend(v for v in (value if isinstance(value, list) else [value]) if v)
            for task in (data.get("custom_pipelines") or {}).values():
                references.append(task["impl"])
    for reference in references:
        module = folder / (reference.split("--")[-1].rsplit(".", 1)[0] + ".py")
        if not module.is_file():
            raise FileNotFoundError(f"Exported repo {folder} names {reference} but lacks {module.name}.")
        for needed in get_relative_import_files(module):
            if not Path(needed).is_file():
                raise FileNotFoundError(f"Exported repo {folder}: {module.name} imports {Path(needed).name}, missing.")
    for code in folder.glob("*.py"):
        if any(name == "hf_rrg" or name.startswith("hf_rrg.") for name in get_imports(code)):
            raise ValueError(
                f"Exported file {code.name} imports hf_rrg; modeling files must import their siblings relatively."
            )
