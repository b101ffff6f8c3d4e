"""ASGK's pre-training stages, each a task of the shared training engine (devices, DDP, mixed precision,
checkpoints and exact resume in `RUN_DIR/<stage>/checkpoints`, logs in `RUN_DIR/logs/<stage>_*.jsonl`):

- `glove`: 300-d word vectors (GloVe's weighted least squares, `hf_rrg.asgk.glove`) on the train reports + the
  textbook, or read from a GloVe text file -> `RUN_DIR/glove.safetensors`.
- `textbook` (§4 step 1, external auxiliary signals): the graph encoder, decoder and GRU learn the textbook's
  sentences (Eq. 5) and their tags (Eq. 4); the visual extractor is frozen -> `RUN_DIR/textbook.safetensors`.
- `visual` (§4 step 2): both DenseNets and their three tag classifiers, focal (or BCE) loss, lr 1e-2 x 0.1 every
  10 epochs down to 1e-5 -> `RUN_DIR/visual.safetensors`, with the validation tag AUC.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..training.config import ConfigError
from ..training.engine import LoopSettings, TrainingTask, run_stage_task
from ..training.recipes import StageContext
from ..training.run_setup import EpochPermutationSampler
from .options import model_config, recipe_options, textbook_sentences
from .stage_io import (
    GLOVE_FILE,
    TAGS_FIELD,
    TEXTBOOK_FILE,
    VISUAL_FILE,
    fresh_stage_model,
    glove_path,
    load_tensors,
    read_summary,
    save_tensors,
    stage_splits,
    stage_state,
    stage_tokenizer,
    tag_file,
    tag_loader,
)


def _loss_span(history: list[dict[str, Any]]) -> dict[str, Any]:
    losses = [record.get("train/loss") for record in history]
    return {"first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}


def _engine_facts(run: Any) -> dict[str, Any]:
    return {"num_processes": run.num_processes, "replicas_in_sync": run.replicas_in_sync,
            "mixed_precision": run.mixed_precision}


def glove_stage(context: StageContext) -> dict[str, Any]:
    """Write the run's tokenizer and `RUN_DIR/glove.safetensors` (vocab_size x d_model)."""
    from .glove import glove_task, read_glove_text

    config = context.config
    options, model = recipe_options(config), model_config(config)
    state = stage_state(context)
    splits = stage_splits(context, state)
    tokenizer = stage_tokenizer(context, state, splits)
    path = context.artifact(GLOVE_FILE)
    summary: dict[str, Any] = {"file": str(path), "vocab_size": len(tokenizer), "dim": model.d_model}
    if options.glove_file:
        vectors, found = read_glove_text(options.glove_file, tokenizer.get_vocab(), model.d_model,
                                         seed=config.training.seed)  # fmt: skip
        summary.update(source=str(options.glove_file), words_found=found)
    else:
        corpus = list(splits["train"]["report"])
        textbook = textbook_sentences(options)[0] if options.use_external_signals else []
        ids = tokenizer(corpus + textbook, add_special_tokens=False)["input_ids"]
        specials = [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id]
        task = glove_task(
            ids, len(tokenizer), dim=model.d_model, window=options.glove_window, x_max=options.glove_x_max,
            alpha=options.glove_alpha, learning_rate=options.glove_learning_rate, ignore=specials,
            seed=config.training.seed,
            settings=LoopSettings.for_stage(config.training, options.glove_epochs, options.progress),
        )  # fmt: skip
        run = run_stage_task(context, task, "glove")
        vectors = run.unwrapped.vectors()
        summary.update(source="trained", reports=len(corpus), textbook_sentences=len(textbook),
                       **_loss_span(run.history), **_engine_facts(run))  # fmt: skip
    if state.is_main_process:
        save_tensors(path, {"vectors": vectors}, summary)
        print(f"ASGK word vectors {tuple(vectors.shape)} written to {path}")
    state.wait_for_everyone()
    return summary


def textbook_stage(context: StageContext) -> dict[str, Any]:
    """Step 1: pre-train the graph encoder, decoder and GRU on textbook sentences; write `textbook.safetensors`."""
    from torch.utils.data import DataLoader

    from .textbook import TextbookCollator, TextbookSentences

    config = context.config
    options = recipe_options(config)
    if not options.use_external_signals:
        return {"skipped": "recipe_options.use_external_signals is false: no textbook pre-training (no EA)"}
    state, _, tokenizer, model = fresh_stage_model(context, load_backbone=False)
    tags = tag_file(context)
    if model.sentence_encoder is None:
        raise ConfigError("textbook pre-training needs model.use_sentence_encoder: true")
    model.load_word_embeddings(load_tensors(glove_path(context))["vectors"])
    model.encoder.visual_extractor.requires_grad_(False)  # step 1 trains the graph encoder, decoder and GRU
    sentences, description = textbook_sentences(options)
    data = TextbookSentences(sentences, tags.tag_names, tags.source, progress=options.progress)
    loader = DataLoader(data, batch_size=options.textbook_batch_size,
                        sampler=EpochPermutationSampler(len(data), config.training.seed),
                        collate_fn=TextbookCollator(tokenizer, model.config.textbook_max_length))  # fmt: skip
    task = TrainingTask(
        name="textbook", model=model, train_loader=loader,
        optimizer=lambda m: torch.optim.Adam([p for p in m.parameters() if p.requires_grad],
                                             lr=options.textbook_learning_rate),
        settings=LoopSettings.for_stage(config.training, options.textbook_epochs, options.progress),
        find_unused_parameters=True,  # the tag classifiers of the images get no gradient from text
    )  # fmt: skip
    run = run_stage_task(context, task, "textbook")
    path = context.artifact(TEXTBOOK_FILE)
    summary = {"file": str(path), "textbook": description, "sentences": len(data), "epochs": options.textbook_epochs,
               **_loss_span(run.history), **_engine_facts(run)}  # fmt: skip
    if state.is_main_process:
        tensors = {k: v for k, v in run.unwrapped.state_dict().items() if not k.startswith("encoder.visual_extractor.")}
        save_tensors(path, tensors, summary)
        print(f"ASGK textbook pre-training on {len(data)} sentences -> {path}")
    state.wait_for_everyone()
    return summary


def tag_auc(probabilities: torch.Tensor, targets: torch.Tensor, tag_names: list[str]) -> dict[str, Any]:
    """Macro AUC over the tags with both classes present (`hf_rrg.metrics.clinical.auroc`), and per tag."""
    from ..metrics.clinical import auroc

    per_tag = {name: auroc(probabilities[:, k].numpy(), targets[:, k].numpy()) for k, name in enumerate(tag_names)}
    valid = [v for v in per_tag.values() if not math.isnan(v)]
    return {"macro": sum(valid) / len(valid) if valid else float("nan"), "tags_scored": len(valid), "per_tag": per_tag}


class VisualObjective(nn.Module):
    """Step 2's loss: the tag loss (focal, or BCE) of each of the visual extractor's three classifiers (global,
    region, fusion), summed with weight 1."""

    def __init__(self, extractor: nn.Module, tag_loss: str, focal_alpha: float, focal_gamma: float) -> None:
        super().__init__()
        self.extractor = extractor
        self.tag_loss, self.focal_alpha, self.focal_gamma = tag_loss, focal_alpha, focal_gamma

    def forward(self, pixel_values: torch.Tensor, view_mask: torch.Tensor, tag_labels: torch.Tensor) -> torch.Tensor:
        from ..modeling.asgk_losses import tag_classification_loss

        out = self.extractor(pixel_values, view_mask)
        return sum(tag_classification_loss(logits, tag_labels, self.tag_loss, self.focal_alpha, self.focal_gamma)
                   for logits in self.extractor.branch_logits(out))  # fmt: skip


@torch.no_grad()
def visual_probabilities(extractor: Any, loader: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(fusion (or global) classifier probabilities, targets) over a loader."""
    extractor.eval()
    probabilities, targets = [], []
    for batch in loader:
        out = extractor(batch["pixel_values"].to(device), batch["view_mask"].to(device))
        logits = out.fusion_logits if out.fusion_logits is not None else out.global_logits
        probabilities.append(torch.sigmoid(logits).float().cpu())
        targets.append(batch[TAGS_FIELD])
    return torch.cat(probabilities), torch.cat(targets)


def _visual_optimizer(options: Any):
    def build(module: nn.Module) -> torch.optim.Optimizer:
        if options.visual_optimizer == "sgd":
            return torch.optim.SGD(module.parameters(), lr=options.visual_learning_rate, momentum=options.visual_momentum)
        return torch.optim.Adam(module.parameters(), lr=options.visual_learning_rate)

    return build


def _visual_schedule(options: Any):
    """lr = max(lr0 * gamma^(epoch // step), min_lr), stepped per epoch (§4 step 2)."""
    floor = options.visual_min_learning_rate / options.visual_learning_rate

    def build(optimizer: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: max(options.visual_lr_gamma ** (epoch // options.visual_lr_step), floor)
        )

    return build


def visual_stage(context: StageContext) -> dict[str, Any]:
    """Step 2: pre-train both DenseNets and the three tag classifiers; write `visual.safetensors`."""
    config = context.config
    options = recipe_options(config)
    if not options.pretrain_visual:
        return {"skipped": "recipe_options.pretrain_visual is false: DenseNets start untrained (the baseline)"}
    state, splits, _, model = fresh_stage_model(context, load_backbone=True)
    mc = model.config
    train = tag_loader(context, splits["train"], options.visual_batch_size, config.data.augment, shuffle=True)
    task = TrainingTask(
        name="visual", model=VisualObjective(model.encoder.visual_extractor, mc.tag_loss, mc.focal_alpha,
                                             mc.focal_gamma),
        train_loader=train, optimizer=_visual_optimizer(options), scheduler=_visual_schedule(options),
        settings=LoopSettings.for_stage(config.training, options.visual_epochs, options.progress),
        on_epoch_start=lambda module, epoch: setattr(train.collate_fn, "epoch", epoch),
    )  # fmt: skip
    run = run_stage_task(context, task, "visual")
    path = context.artifact(VISUAL_FILE)
    if state.is_main_process:
        extractor = run.unwrapped.extractor
        validation = tag_loader(context, splits["validation"], options.visual_batch_size, False, False)
        auc = tag_auc(*visual_probabilities(extractor, validation, state.device), mc.tag_names)
        tensors = {f"encoder.visual_extractor.{k}": v for k, v in extractor.state_dict().items()}
        summary = {"file": str(path), "epochs": options.visual_epochs, "tag_loss": mc.tag_loss,
                   **_loss_span(run.history), "validation_tag_auc": auc["macro"], **_engine_facts(run)}  # fmt: skip
        save_tensors(path, tensors, summary)
        print(f"ASGK visual pre-training: validation tag AUC {auc['macro']:.4f} -> {path}")
    state.wait_for_everyone()
    return read_summary(path)


__all__ = [
    "VisualObjective",
    "glove_stage",
    "tag_auc",
    "textbook_stage",
    "visual_probabilities",
    "visual_stage",
]
