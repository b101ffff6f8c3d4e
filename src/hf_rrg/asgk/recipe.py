"""ASGK's training recipe: `tags` -> `glove` -> `textbook` -> `visual` -> `train` (§4 "Training Details").

- `tags`: the tag file `RUN_DIR/tags.json` (`hf_rrg.asgk.tags`: labeler, IU MeSH or a person's file) for every split;
  its tag names become `model.tag_names` (the graph nodes). Validation/test rows only score tag AUC.
- `glove`: the run's tokenizer (`RUN_DIR/tokenizer`, from the train reports, as `fit` makes it) and 300-d word
  vectors `RUN_DIR/glove.safetensors`: GloVe's weighted least squares on the train reports + the textbook, or a GloVe
  text file (`recipe_options.glove_file`).
- `textbook` (step 1, external auxiliary signals): sentences of the textbook, encoded by the GRU, feed the graph
  encoder; the decoder learns to generate them (Eq. 5) and the graph their tags (Eq. 4). 30 epochs, Adam 5e-4, max
  length 300. Writes `RUN_DIR/textbook.safetensors` (graph encoder, decoder, GRU). Skipped with
  `use_external_signals: false` (Table 2 rows without EA).
- `visual` (step 2): global + region DenseNets and their three tag classifiers, jointly, focal loss (BCE with
  `model.tag_loss: bce`), 50 epochs, lr 1e-2 x 0.1 every 10 epochs down to 1e-5, batch 32. Writes
  `RUN_DIR/visual.safetensors`. Skipped with `pretrain_visual: false` (the baseline: "a DenseNet-121 without
  pretraining").
- `train` (step 3): the shared Accelerate loop (30 epochs, Adam, lr 1e-5 visual / 5e-4 rest in the shipped configs)
  starting from the GloVe, textbook and visual weights; every training batch carries `tag_labels` (loss = CE + tag
  losses, weights 1). Generation reads only the images. After the test generation, the tag AUC of the node values on
  the test split is added to `metrics.json` (`test.tag_auc`) next to the NLG metrics.

Table 2 ablations (`TABLE2_ABLATIONS`): baseline = no IA, no EA; +IA = `model.use_internal_signals` + visual
pre-training; +IA+CE = +IA with `model.tag_loss: bce`; +EA = `recipe_options.use_external_signals`; +IA+EA = all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..training.config import ConfigError
from ..training.hooks import FitHooks
from ..training.recipes import Recipe, Stage, StageContext, fit_stage
from .options import (
    STAND_IN_NOTE,
    TABLE2_ABLATIONS,
    ASGKRecipeOptions,
    ablation_name,
    model_config,
    recipe_options,
    textbook_sentences,
    with_tags,
)
from .pretraining import VisualObjective, glove_stage, tag_auc, textbook_stage, visual_stage
from .stage_io import (
    GLOVE_FILE,
    TAGS_FIELD,
    TAGS_FILE,
    TEXTBOOK_FILE,
    VISUAL_FILE,
    TagLookup,
    glove_path,
    load_into,
    load_tensors,
    stage_splits,
    stage_state,
    tag_file,
    tag_loader,
)
from .tags import column_tags, labeler_tags, mesh_tags, read_tag_file


def tags_stage(context: StageContext) -> dict[str, Any]:
    """Write `RUN_DIR/tags.json` for every split."""
    config = context.config
    options = recipe_options(config)
    model_config(config)  # the model section is valid before anything runs
    state = stage_state(context)
    splits = stage_splits(context, state)
    path = context.artifact(TAGS_FILE)
    if state.is_main_process:
        if options.tag_source == "labeler":
            made = labeler_tags(splits, options.uncertain_as_present, progress=options.progress)
        elif options.tag_source == "mesh":
            data_dir = options.mesh_data_dir or config.data.data_dir
            if not data_dir:
                raise ConfigError("tag_source mesh needs recipe_options.mesh_data_dir (or data.data_dir)")
            made = mesh_tags(splits, data_dir, options.mesh_min_frequency)
        elif options.tag_source == "column":
            made = column_tags(splits, options.tag_column, options.tag_min_frequency)
        else:
            made = read_tag_file(options.tag_file)
            for role, data in splits.items():
                missing = [str(i) for i in data["id"] if str(i) not in made.labels]
                if missing:
                    raise ValueError(
                        f"tag file {options.tag_file} lacks {len(missing)} of the {len(data)} {role} study ids "
                        f"(e.g. {missing[:3]}); add them or drop them from the data"
                    )
        made.write(path)
        print(f"ASGK tags: {len(made.tag_names)} tags ({made.source}) for {len(made.labels)} studies -> {path}")
    state.wait_for_everyone()
    made = read_tag_file(path)
    return {"file": str(path), "source": made.source, "num_tags": len(made.tag_names),
            "studies": len(made.labels)}  # fmt: skip


def fit_hooks(context: StageContext) -> FitHooks:
    """Tag targets for training batches, the pre-trained weights for the fresh model, the run's choices."""
    options = recipe_options(context.config)
    tags = tag_file(context)
    sources = [glove_path(context)]
    for wanted, name, stage in ((options.use_external_signals, TEXTBOOK_FILE, "textbook"),
                                (options.pretrain_visual, VISUAL_FILE, "visual")):  # fmt: skip
        if wanted:
            path = context.artifact(name)
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: run the {stage} stage first (--stage {stage})")
            sources.append(path)

    def prepare_model(model: Any) -> None:
        model.load_word_embeddings(load_tensors(sources[0])["vectors"])
        for path in sources[1:]:
            load_into(model, load_tensors(path), path)

    textbook = None
    if options.use_external_signals:
        textbook = STAND_IN_NOTE if options.textbook_iu_xray_dir and not options.textbook_files else "given text"
    metadata = {
        "recipe": "asgk",
        "ablation": ablation_name(context.config),
        "tag_source": f"{tags.source} ({len(tags.tag_names)} tags)",
        "textbook": textbook or "none (no external signals)",
        "densenet_pretraining": bool(options.pretrain_visual),
        "word_vectors": options.glove_file or "GloVe trained on the train reports + textbook",
    }
    # the textbook GRU (step 1's sentence encoder) gets no gradient from report batches
    return FitHooks(columns=("id",), train_fields=TagLookup(tags), prepare_model=prepare_model, metadata=metadata,
                    find_unused_parameters=True)


def test_tag_auc(context: StageContext, model_dir: Path) -> dict[str, Any]:
    """Tag AUC of the trained model's node values (tag probabilities) on the test split."""
    from transformers import AutoModelForImageTextToText

    import hf_rrg  # noqa: F401

    state = stage_state(context)
    device = state.device
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir)).eval().to(device)
    splits = stage_splits(context, state)
    loader = tag_loader(context, splits["test"], context.config.training.eval_batch_size, False, False)
    probabilities, targets = [], []
    with torch.no_grad():
        for batch in loader:
            out = model.predict_tags(batch["pixel_values"].to(device), batch["view_mask"].to(device))
            probabilities.append(out.node_values.float().cpu())
            targets.append(batch[TAGS_FIELD])
    return tag_auc(torch.cat(probabilities), torch.cat(targets), model.config.tag_names)


def train_stage(context: StageContext) -> dict[str, Any]:
    """Step 3: the shared loop with ASGK's hooks, then the test tag AUC next to the NLG metrics."""
    from ..training.loop import reexport_run_model

    hooks = fit_hooks(context)
    summary = fit_stage(context, hooks, with_tags(context.config, tag_file(context).tag_names))
    state = stage_state(context)
    if state.is_main_process:
        auc = test_tag_auc(context, context.run_dir / "model")
        metrics_path = context.run_dir / "metrics.json"
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        metrics["test"]["tag_auc"] = auc["macro"]
        metrics["tag_auc"] = auc
        tmp = metrics_path.with_name(".tmp_metrics.json")
        tmp.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        os.replace(tmp, metrics_path)
        reexport_run_model(context.run_dir)  # the card shows the tag AUC
        summary["test"] = {**(summary.get("test") or {}), "tag_auc": auc["macro"]}
        print(f"ASGK test tag AUC (macro over {auc['tags_scored']} tags): {auc['macro']:.4f}")
    state.wait_for_everyone()
    return summary


def asgk_recipe() -> Recipe:
    """`tags` -> `glove` -> `textbook` -> `visual` -> `train`."""
    return Recipe(
        "asgk",
        (
            Stage("tags", tags_stage),
            Stage("glove", glove_stage),
            Stage("textbook", textbook_stage),
            Stage("visual", visual_stage),
            Stage("train", train_stage),
        ),
    )


__all__ = [
    "GLOVE_FILE",
    "STAND_IN_NOTE",
    "TABLE2_ABLATIONS",
    "TAGS_FIELD",
    "TAGS_FILE",
    "TEXTBOOK_FILE",
    "VISUAL_FILE",
    "ASGKRecipeOptions",
    "TagLookup",
    "VisualObjective",
    "ablation_name",
    "asgk_recipe",
    "fit_hooks",
    "glove_stage",
    "model_config",
    "recipe_options",
    "tag_auc",
    "tags_stage",
    "test_tag_auc",
    "textbook_sentences",
    "textbook_stage",
    "train_stage",
    "visual_stage",
    "with_tags",
]
