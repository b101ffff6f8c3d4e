"""Model cards: a method template from `model_cards/` filled with a run's measured results.

The card's YAML front matter (library, pipeline tag, tags, licence, and the test scores as ``model-index``) is
built here from the numbers; the template supplies the prose. Templates use ``{{ name }}`` placeholders; every
placeholder must be one `card_context` provides, otherwise rendering fails naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ..resources import resource_dir
from .card_metadata import PIPELINE_TAG, merge_metadata
from .run_folder import RunInfo

GENERIC_TEMPLATE = "generic"
USAGE_TEMPLATE = "_usage"  # shared sections (how to use, intended use, limitations), the `{{ usage }}` placeholder
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

# Metric key (as hf_rrg.metrics names them) -> (model-index `type`, display name).
METRIC_NAMES: dict[str, tuple[str, str]] = {
    "bleu_1": ("bleu", "BLEU-1"),
    "bleu_2": ("bleu", "BLEU-2"),
    "bleu_3": ("bleu", "BLEU-3"),
    "bleu_4": ("bleu", "BLEU-4"),
    "meteor": ("meteor", "METEOR"),
    "rouge_l": ("rouge", "ROUGE-L"),
    "cider_d": ("cider", "CIDEr-D"),
    "cider": ("cider", "CIDEr"),
    "ce_micro_precision": ("precision", "CE precision (micro)"),
    "ce_micro_recall": ("recall", "CE recall (micro)"),
    "ce_micro_f1": ("f1", "CE F1 (micro)"),
    "ce_macro_precision": ("precision", "CE precision (macro)"),
    "ce_macro_recall": ("recall", "CE recall (macro)"),
    "ce_macro_f1": ("f1", "CE F1 (macro)"),
    "ce_example_precision": ("precision", "CE precision (example)"),
    "ce_example_recall": ("recall", "CE recall (example)"),
    "ce_example_f1": ("f1", "CE F1 (example)"),
    "ce_auroc_macro": ("roc_auc", "CE AUROC (macro)"),
}

DATASETS: dict[str, str] = {
    "iu_xray": "IU X-Ray (Open-i, Indiana University)",
    "mimic_cxr": "MIMIC-CXR",
    "demo": "hf-rrg demo set (chest X-rays with notes from the COVID-19 Image Data Collection)",
    "report_folder": "a local folder of images and reports",
    "peir_gross": "PEIR Gross (pathology images with captions, a local copy)",
    "cov_ctr": "COV-CTR (COVID-19 CT reports, a local copy)",
}

METHOD_TITLES: dict[str, str] = {
    "r2gen": "R2Gen (Memory-driven Transformer)",
    "r2gencmn": "R2GenCMN (Cross-modal Memory Networks)",
    "xpronet": "XProNet (Cross-modal Prototype Driven Network)",
    "coatt": "CoAtt (co-attention + hierarchical LSTM)",
    "ithn": "ITHN (learning with increasingly hard negatives)",
    "asgk": "ASGK (auxiliary signal-guided knowledge encoder-decoder)",
    "dcrrg": "DCRRG (observation-level pre-training + P-Tuning v2)",
}


def template_path(method: str | None, templates_dir: Path | None = None) -> Path:
    """The template of `method` (``model_cards/<method>.md``), or the generic one when it has none."""
    folder = templates_dir or resource_dir("model_cards")
    if method:
        specific = folder / f"{method}.md"
        if specific.is_file():
            return specific
    generic = folder / f"{GENERIC_TEMPLATE}.md"
    if not generic.is_file():
        raise FileNotFoundError(f"Model card template {generic} is missing; reinstall hf-rrg.")
    return generic


def metric_label(key: str) -> tuple[str, str]:
    """(model-index type, display name) of a metric key; unknown keys keep their name."""
    if key in METRIC_NAMES:
        return METRIC_NAMES[key]
    slug = re.sub(r"[^a-z0-9_]+", "_", key.lower()).strip("_") or "metric"
    return slug, key


def model_index(
    model_name: str, metrics: Mapping[str, float], dataset: str | None, split: str = "test"
) -> list[dict[str, Any]]:
    """The ``model-index`` entry (Hub metadata) for `metrics` measured on `dataset`'s `split`; empty without scores."""
    if not metrics:
        return []
    entries = []
    for key, value in metrics.items():
        kind, label = metric_label(key)
        entries.append({"type": kind, "name": label, "value": round(float(value), 6)})
    dataset_entry = {
        "type": dataset or "unknown",
        "name": DATASETS.get(dataset or "", dataset or "unknown"),
        "split": split,
    }
    return [
        {
            "name": model_name,
            "results": [
                {
                    "task": {"type": PIPELINE_TAG, "name": "Radiology report generation"},
                    "dataset": dataset_entry,
                    "metrics": entries,
                }
            ],
        }
    ]


def front_matter(
    model_name: str,
    method: str | None,
    metrics: Mapping[str, float],
    dataset: str | None,
    license: str = "other",
) -> dict[str, Any]:
    """The card's YAML metadata: library, pipeline tag, tags, licence and model-index."""
    tags = ["radiology-report-generation", "medical-imaging", "chest-x-ray", "hf-rrg", "custom_code"]
    if method:
        tags.insert(0, method)
    meta: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": PIPELINE_TAG,
        "license": license,
        "tags": tags,
    }
    index = model_index(model_name, metrics, dataset)
    if index:
        meta["model-index"] = index
    return meta


def results_table(
    test: Mapping[str, float], validation: Mapping[str, float], intervals: Mapping[str, Any] | None = None
) -> str:
    """Markdown table of the measured scores (test, and validation of the selected checkpoint when recorded);
    a test score with a bootstrap interval in `intervals` (metrics.json ``test_ci``) shows it: ``0.1234 [0.11, 0.14]``."""
    if not test and not validation:
        return "_No measured results were recorded with this model (no `metrics.json` in the run folder)._"
    keys = list(test) + [key for key in validation if key not in test]
    header = "| metric | test |" + (" validation |" if validation else "")
    rule = "|---|---:|" + ("---:|" if validation else "")
    rows = [header, rule]
    for key in keys:
        row = f"| {metric_label(key)[1]} | {_fmt(test.get(key))}{_fmt_interval((intervals or {}).get(key))} |"
        if validation:
            row += f" {_fmt(validation.get(key))} |"
        rows.append(row)
    shown = [intervals[key] for key in test if _fmt_interval((intervals or {}).get(key))]
    if shown:
        level = f"{100 * float(shown[0]['level']):g}% " if shown[0].get("level") else ""
        rows.append(f"\nIn brackets: the {level}bootstrap confidence interval over the test studies "
                    "(`hf-rrg evaluate --ci`).")
    return "\n".join(rows)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _fmt_interval(interval: Any) -> str:
    """`` [low, high]`` of a ``{"low", "high"}`` record; empty when there is none."""
    if not isinstance(interval, Mapping) or not {"low", "high"} <= set(interval):
        return ""
    return f" [{float(interval['low']):.4f}, {float(interval['high']):.4f}]"

# (row label, config attributes shown as "a / b / ...") of the card's model details table.
MODEL_DETAIL_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("visual backbone", ("visual_backbone",)),
    ("d_model / d_ff / layers / heads", ("d_model", "d_ff", "num_layers", "num_heads")),
    ("hidden / embedding size", ("hidden_size", "embedding_size")),
    ("tags / semantic tags used", ("num_tags", "num_semantic_tags")),
    ("max sentences / words per sentence", ("max_sentences", "max_words_per_sentence")),
    ("vocabulary size", ("vocab_size",)),
    ("views per study", ("max_views",)),
    ("max report length (tokens)", ("max_seq_length",)),
)


def card_context(
    run: RunInfo,
    config: Any,
    generation_config: Any,
    model_name: str,
    repo_id: str | None = None,
) -> dict[str, str]:
    """Every value a template may use, as strings."""
    import hf_rrg

    method = getattr(config, "model_type", None) or "unknown"
    dataset = run.dataset
    location = repo_id or "PATH/TO/THIS/FOLDER"
    if run.training_config_text:
        training = "```yaml\n" + run.training_config_text.strip() + "\n```"
    else:
        training = "_The training configuration was not recorded with this model._"
    details = {"architecture": type(config).__name__.replace("Config", "")}
    for label, names in MODEL_DETAIL_FIELDS:  # only the rows this model's config has
        if all(hasattr(config, name) for name in names):
            details[label] = " / ".join(str(getattr(config, name)) for name in names)
    details["beam size (generation_config.json)"] = getattr(generation_config, "num_beams", "?")
    details_table = "\n".join(["| | |", "|---|---|"] + [f"| {key} | {value} |" for key, value in details.items()])
    return {
        "recipe_details": recipe_details(run.metrics.get("recipe")),
        "model_name": model_name,
        "repo_id": location,
        "method": method,
        "method_title": METHOD_TITLES.get(method, method),
        "dataset": dataset or "unknown",
        "dataset_name": DATASETS.get(dataset or "", dataset or "not recorded"),
        "results_table": results_table(run.test_metrics, run.validation_metrics, run.metrics.get("test_ci")),
        "training_config": training,
        "model_details": details_table,
        "hf_rrg_version": hf_rrg.__version__,
    }


def recipe_details(recipe: Any) -> str:
    """The run's recipe choices (`metrics.json` ``recipe``: e.g. XProNet's labels at evaluation) as a list."""
    if not isinstance(recipe, Mapping) or not recipe:
        return "_No recipe details were recorded with this model._"
    return "\n".join(f"- {key.replace('_', ' ')}: {value}" for key, value in recipe.items() if key != "recipe")


def render_template(template: str, context: Mapping[str, str], source: str = "template") -> str:
    """Fill ``{{ name }}`` placeholders; a name `context` lacks is an error naming it and `source`."""
    missing = sorted({name for name in _PLACEHOLDER.findall(template) if name not in context})
    if missing:
        raise ValueError(
            f"Model card {source} uses unknown placeholder(s) {missing}; available: {sorted(context)}."
        )
    return _PLACEHOLDER.sub(lambda match: str(context[match.group(1)]), template)


def render_model_card(
    run: RunInfo,
    config: Any,
    generation_config: Any,
    model_name: str,
    repo_id: str | None = None,
    license: str = "other",
    templates_dir: Path | None = None,
    provenance: Mapping[str, Any] | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
    preamble: str = "",
) -> str:
    """The full README.md of an exported model: YAML front matter + the method's template, filled in.

    For converted weights (`provenance`) a provenance section and `converted_from` metadata; `extra_metadata` adds
    front-matter entries (`card_metadata`: licence fields, datasets, widget, ...); `preamble` is Markdown put before
    the body (a data-use warning)."""
    method = getattr(config, "model_type", None)
    path = template_path(method, templates_dir)
    if provenance and run.dataset is None and provenance.get("dataset"):
        run = replace(run, metrics={**run.metrics, "dataset": provenance["dataset"]})
    context = card_context(run, config, generation_config, model_name, repo_id)
    usage = path.parent / f"{USAGE_TEMPLATE}.md"
    if not usage.is_file():  # it holds the intended use and the clinical disclaimer: never render without it
        raise FileNotFoundError(f"Model card template {usage} is missing; reinstall hf-rrg.")
    context["usage"] = render_template(usage.read_text(encoding="utf-8"), context, source=str(usage)).strip()
    body = render_template(path.read_text(encoding="utf-8"), context, source=str(path))
    meta = front_matter(model_name, method, run.test_metrics, run.dataset, license=license)
    if provenance:
        meta["converted_from"] = dict(provenance)
        body = _CONVERTED_WORDING.sub(_CONVERTED_TEXT, body).replace("Trained and exported with", "Converted with")
        body = body.rstrip() + "\n\n" + provenance_section(provenance)
    meta = merge_metadata(meta, extra_metadata or {})
    header = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{header}---\n\n{preamble}{body.lstrip()}"


# The templates' "trained on **DATA** with `hf-rrg`" reads, for converted weights, as who trained them.
_CONVERTED_WORDING = re.compile(r"\*\* with\s+`hf-rrg`")
_CONVERTED_TEXT = "** by the authors' official code, converted with `hf-rrg convert`"


def provenance_section(provenance: Mapping[str, Any]) -> str:
    """The card section of converted weights: what was converted, from where, and how (one row per fact)."""
    rows = ["| | |", "|---|---|"]
    for key, value in provenance.items():
        shown = ", ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, Mapping) else value
        rows.append(f"| {key.replace('_', ' ')} | {str(shown).replace('|', '/')} |")
    return (
        "## Provenance\n\nThese weights are the authors' published checkpoint, converted by `hf-rrg convert` "
        "(every tensor mapped, none left over; the vocabulary rebuilt from the annotation file as the official code "
        "builds it). Measured scores of the converted model are not part of this card unless listed above.\n\n"
        + "\n".join(rows)
        + "\n"
    )


def read_front_matter(card: str) -> dict[str, Any]:
    """The YAML metadata block at the top of a model card (empty when it has none)."""
    if not card.startswith("---\n"):
        return {}
    end = card.find("\n---\n", 4)
    if end < 0:
        raise ValueError("Model card front matter is not closed by a '---' line.")
    return yaml.safe_load(card[4:end]) or {}
