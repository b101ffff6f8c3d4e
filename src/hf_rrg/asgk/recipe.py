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

import dataclasses
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..modeling.configuration_asgk import ASGKConfig
from ..training.config import ConfigError, TrainingConfig, parse_section
from ..training.hooks import FitHooks
from ..training.recipes import Recipe, Stage, StageContext, fit_summary
from .tags import TAG_SOURCES, TagFile, column_tags, labeler_tags, mesh_tags, read_tag_file

TAGS_FILE = "tags.json"
GLOVE_FILE = "glove.safetensors"
TEXTBOOK_FILE = "textbook.safetensors"
VISUAL_FILE = "visual.safetensors"
TAGS_FIELD = "tag_labels"
STAND_IN_NOTE = "stand-in: IU X-Ray INDICATION + IMPRESSION sections outside R2Gen's validation/test split"

#: Table 2 rows as config overrides (`--set` strings) on top of a full ASGK config.
TABLE2_ABLATIONS: dict[str, list[str]] = {
    "baseline": ["model.use_internal_signals=false", "recipe_options.pretrain_visual=false",
                 "recipe_options.use_external_signals=false"],
    "baseline+IA+CE": ["model.use_internal_signals=true", "recipe_options.pretrain_visual=true", "model.tag_loss=bce",
                       "recipe_options.use_external_signals=false"],
    "baseline+IA": ["model.use_internal_signals=true", "recipe_options.pretrain_visual=true", "model.tag_loss=focal",
                    "recipe_options.use_external_signals=false"],
    "baseline+EA": ["model.use_internal_signals=false", "recipe_options.pretrain_visual=false",
                    "recipe_options.use_external_signals=true"],
    "baseline+IA+EA": ["model.use_internal_signals=true", "recipe_options.pretrain_visual=true",
                       "model.tag_loss=focal", "recipe_options.use_external_signals=true"],
}  # fmt: skip


@dataclass
class ASGKRecipeOptions:
    """`recipe_options` of an ASGK config.

    Attributes:
        tag_source: `labeler` (14 observations x present/absent), `mesh` (IU X-Ray MeSH), `column` (a dataset
            column of tag lists, COV-CTR's `terminologies`) or `file`.
        tag_column / tag_min_frequency: the column of tag_source column, and the fewest train studies a tag needs.
        tag_file: the person's tag file (tag_source file).
        mesh_data_dir: folder with `NLMCXR_reports.tgz` for MeSH tags (default: `data.data_dir`).
        mesh_min_frequency: keep MeSH head terms carried by at least this many train studies.
        uncertain_as_present: labeler tags: an uncertain mention counts as "present".
        glove_file: read word vectors from this GloVe text file instead of training them.
        glove_epochs / glove_window / glove_x_max / glove_alpha / glove_learning_rate: GloVe training (x_max 100,
            α 0.75, window 10 are GloVe's defaults).
        use_external_signals: run the textbook pre-training (EA of Table 2).
        textbook_files: `.txt` files or folders of the textbook.
        textbook_iu_xray_dir: use the stand-in textbook (IU X-Ray INDICATION + IMPRESSION outside R2Gen's val/test)
            read from this folder (`NLMCXR_reports.tgz`, optional `annotation.json`).
        textbook_language: `en` or `zh` (sentence splitting).
        textbook_max_sentences: keep the first N sentences (smoke runs).
        textbook_epochs / textbook_learning_rate / textbook_batch_size: §4 step 1 (30, 5e-4; batch not given: 16).
        pretrain_visual: run the DenseNet pre-training (step 2; part of IA in Table 2).
        visual_epochs / visual_learning_rate / visual_lr_step / visual_lr_gamma / visual_min_learning_rate /
            visual_batch_size: §4 step 2 (50, 1e-2, every 10 epochs x 0.1 down to 1e-5, 32).
        visual_optimizer: `sgd` (momentum `visual_momentum`) or `adam`; the paper gives no optimizer for step 2.
        device: `auto` (GPU when there is one and training.cpu is off), `cpu`, `cuda`, ... for the textbook and
            visual stages (the train stage uses Accelerate).
        progress: show progress bars.
    """

    tag_source: str = "labeler"
    tag_file: str | None = None
    tag_column: str = "terminologies"
    tag_min_frequency: int = 1
    mesh_data_dir: str | None = None
    mesh_min_frequency: int = 25
    uncertain_as_present: bool = True
    glove_file: str | None = None
    glove_epochs: int = 50
    glove_window: int = 10
    glove_x_max: float = 100.0
    glove_alpha: float = 0.75
    glove_learning_rate: float = 0.05
    use_external_signals: bool = True
    textbook_files: list[str] = field(default_factory=list)
    textbook_iu_xray_dir: str | None = None
    textbook_language: str = "en"
    textbook_max_sentences: int | None = None
    textbook_epochs: int = 30
    textbook_learning_rate: float = 5e-4
    textbook_batch_size: int = 16
    pretrain_visual: bool = True
    visual_epochs: int = 50
    visual_learning_rate: float = 1e-2
    visual_lr_step: int = 10
    visual_lr_gamma: float = 0.1
    visual_min_learning_rate: float = 1e-5
    visual_batch_size: int = 32
    visual_optimizer: str = "sgd"
    visual_momentum: float = 0.9
    device: str = "auto"
    progress: bool = True


def recipe_options(config: TrainingConfig) -> ASGKRecipeOptions:
    """The validated `recipe_options` (unknown keys are errors naming the valid ones)."""
    options = parse_section(ASGKRecipeOptions, config.recipe_options, "recipe_options")
    if options.tag_source not in TAG_SOURCES:
        raise ConfigError(f"recipe_options.tag_source must be one of {TAG_SOURCES}, got {options.tag_source!r}")
    if options.tag_source == "file" and not options.tag_file:
        raise ConfigError("recipe_options.tag_source is file: set recipe_options.tag_file to the tag JSON file")
    if options.visual_optimizer not in ("sgd", "adam"):
        raise ConfigError(f"recipe_options.visual_optimizer must be sgd or adam, got {options.visual_optimizer!r}")
    if options.use_external_signals and not (options.textbook_files or options.textbook_iu_xray_dir):
        raise ConfigError(
            "recipe_options.use_external_signals is true but no textbook is given: set textbook_files (text files "
            "or folders) or textbook_iu_xray_dir (the IU X-Ray stand-in), or use_external_signals: false"
        )
    return options


def model_config(config: TrainingConfig, tag_names: list[str] | None = None) -> ASGKConfig:
    """The ASGK config the run's model will have (with the tag file's names)."""
    if config.method != "asgk":
        raise ConfigError(f"the asgk recipe trains method 'asgk', the config says {config.method!r}")
    kwargs = dict(config.model)
    if tag_names is not None:
        kwargs["tag_names"] = tag_names
    try:
        return ASGKConfig(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model section of the config is not a valid ASGKConfig: {error}") from None


def with_tags(config: TrainingConfig, tag_names: list[str]) -> TrainingConfig:
    """A copy of `config` whose model section names the tags."""
    return dataclasses.replace(config, model={**config.model, "tag_names": list(tag_names)})


def ablation_name(config: TrainingConfig) -> str:
    """The Table 2 row a config is: baseline, +IA, +IA+CE, +EA, +IA+EA (with "(no DenseNet pre-training)" when IA
    runs without step 2)."""
    options, model = recipe_options(config), model_config(config)
    name = "baseline"
    if model.use_internal_signals:
        name += "+IA" + ("+CE" if model.tag_loss == "bce" else "")
        if not options.pretrain_visual:
            name += " (no DenseNet pre-training)"
    if options.use_external_signals:
        name = name.replace("baseline", "baseline+EA", 1) if "+IA" not in name else name.replace("+IA", "+IA+EA", 1)
    return name.replace("+IA+EA+CE", "+IA+CE+EA")


# ------------------------------------------------------------------------------------------------ helpers


def _state(config: TrainingConfig) -> Any:
    from ..training.loop import distributed_state

    return distributed_state(config)


def _splits(context: StageContext, state: Any) -> dict[str, Any]:
    from ..training.loop import prepare_splits

    return prepare_splits(context.config, state, context.datasets)


def _device(config: TrainingConfig, options: ASGKRecipeOptions) -> torch.device:
    if options.device != "auto":
        return torch.device(options.device)
    return torch.device("cuda" if torch.cuda.is_available() and not config.training.cpu else "cpu")


def _tag_file(context: StageContext) -> TagFile:
    path = context.artifact(TAGS_FILE)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run the tags stage first (`hf-rrg train CONFIG --output-dir {context.run_dir} "
            "--stage tags`)"
        )
    return read_tag_file(path)


def _tokenizer(context: StageContext, state: Any, splits: dict[str, Any]) -> Any:
    from ..training.loop import prepare_tokenizer

    context.run_dir.mkdir(parents=True, exist_ok=True)
    return prepare_tokenizer(context.config, context.run_dir, list(splits["train"]["report"]), state)


def _build(context: StageContext, tokenizer: Any, load_backbone: bool) -> Any:
    from ..modeling.image_processing_rrg import RRGImageProcessor
    from ..training.loop import build_model

    config = with_tags(context.config, _tag_file(context).tag_names)
    return build_model(config, tokenizer, RRGImageProcessor(**config.image_processor), load_backbone=load_backbone)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".tmp_{path.name}")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={"hf_rrg": json.dumps(metadata)})  # fmt: skip
    os.replace(tmp, path)


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _load_into(model: Any, tensors: dict[str, torch.Tensor], source: Path) -> None:
    state = model.state_dict()
    wrong = [k for k, v in tensors.items() if k not in state or tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise ValueError(
            f"{source} does not fit this model ({len(wrong)} tensors, e.g. {wrong[:3]}): it was made with other "
            "model settings; re-run its stage"
        )
    model.load_state_dict(tensors, strict=False)


def textbook_sentences(options: ASGKRecipeOptions) -> tuple[list[str], str]:
    """(sentences, a description of the textbook)."""
    from .textbook import iu_xray_textbook, read_textbook

    sentences: list[str] = []
    parts = []
    if options.textbook_files:
        sentences += read_textbook(options.textbook_files, options.textbook_language)
        parts.append(f"text files {options.textbook_files}")
    if options.textbook_iu_xray_dir:
        sentences += iu_xray_textbook(options.textbook_iu_xray_dir)
        parts.append(STAND_IN_NOTE)
    if options.textbook_max_sentences is not None:
        sentences = sentences[: options.textbook_max_sentences]
    return sentences, "; ".join(parts)


# ------------------------------------------------------------------------------------------------ stages


def tags_stage(context: StageContext) -> dict[str, Any]:
    """Write `RUN_DIR/tags.json` for every split."""
    config = context.config
    options = recipe_options(config)
    model_config(config)  # the model section is valid before anything runs
    state = _state(config)
    splits = _splits(context, state)
    path = context.artifact(TAGS_FILE)
    if state.is_main_process:
        if options.tag_source == "labeler":
            tag_file = labeler_tags(splits, options.uncertain_as_present, progress=options.progress)
        elif options.tag_source == "mesh":
            data_dir = options.mesh_data_dir or config.data.data_dir
            if not data_dir:
                raise ConfigError("tag_source mesh needs recipe_options.mesh_data_dir (or data.data_dir)")
            tag_file = mesh_tags(splits, data_dir, options.mesh_min_frequency)
        elif options.tag_source == "column":
            tag_file = column_tags(splits, options.tag_column, options.tag_min_frequency)
        else:
            tag_file = read_tag_file(options.tag_file)
            for role, data in splits.items():
                missing = [str(i) for i in data["id"] if str(i) not in tag_file.labels]
                if missing:
                    raise ValueError(
                        f"tag file {options.tag_file} lacks {len(missing)} of the {len(data)} {role} study ids "
                        f"(e.g. {missing[:3]}); add them or drop them from the data"
                    )
        tag_file.write(path)
        print(f"ASGK tags: {len(tag_file.tag_names)} tags ({tag_file.source}) for {len(tag_file.labels)} studies -> {path}")
    state.wait_for_everyone()
    tag_file = read_tag_file(path)
    return {"file": str(path), "source": tag_file.source, "num_tags": len(tag_file.tag_names),
            "studies": len(tag_file.labels)}  # fmt: skip


def glove_stage(context: StageContext) -> dict[str, Any]:
    """Write the run's tokenizer and `RUN_DIR/glove.safetensors` (vocab_size x d_model)."""
    from .glove import read_glove_text, train_glove

    config = context.config
    options = recipe_options(config)
    model = model_config(config)
    state = _state(config)
    splits = _splits(context, state)
    tokenizer = _tokenizer(context, state, splits)
    path = context.artifact(GLOVE_FILE)
    summary: dict[str, Any] = {"file": str(path), "vocab_size": len(tokenizer), "dim": model.d_model}
    if state.is_main_process:
        if options.glove_file:
            vectors, found = read_glove_text(options.glove_file, tokenizer.get_vocab(), model.d_model,
                                             seed=config.training.seed)  # fmt: skip
            summary.update(source=str(options.glove_file), words_found=found)
        else:
            corpus = list(splits["train"]["report"])
            textbook = []
            if options.use_external_signals:
                textbook, _ = textbook_sentences(options)
            ids = tokenizer(corpus + textbook, add_special_tokens=False)["input_ids"]
            specials = [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id]
            vectors, history = train_glove(
                ids, len(tokenizer), dim=model.d_model, window=options.glove_window, epochs=options.glove_epochs,
                x_max=options.glove_x_max, alpha=options.glove_alpha, learning_rate=options.glove_learning_rate,
                ignore=specials, seed=config.training.seed, progress=options.progress,
            )  # fmt: skip
            summary.update(source="trained", reports=len(corpus), textbook_sentences=len(textbook),
                           first_loss=history[0] if history else None, last_loss=history[-1] if history else None)
        _save_tensors(path, {"vectors": vectors}, summary)
        print(f"ASGK word vectors {tuple(vectors.shape)} written to {path}")
    state.wait_for_everyone()
    return summary


def _adam_loop(model, loader, parameters, lr, epochs, device, description, progress) -> list[float]:
    optimizer = torch.optim.Adam(parameters, lr=lr)
    history = []
    for epoch in range(epochs):
        model.train()
        total, batches = 0.0, 0
        for batch in tqdm(loader, desc=f"{description} {epoch + 1}/{epochs}", disable=not progress, leave=False):
            batch = {k: v.to(device) for k, v in batch.items() if k != "index"}
            loss = model(**batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, batches = total + float(loss.detach()), batches + 1
        history.append(total / max(batches, 1))
    return history


def textbook_stage(context: StageContext) -> dict[str, Any]:
    """Step 1: pre-train the graph encoder, decoder and GRU on textbook sentences; write `textbook.safetensors`."""
    from torch.utils.data import DataLoader

    from .textbook import TextbookCollator, TextbookSentences

    config = context.config
    options = recipe_options(config)
    if not options.use_external_signals:
        return {"skipped": "recipe_options.use_external_signals is false: no textbook pre-training (no EA)"}
    state = _state(config)
    splits = _splits(context, state)
    tokenizer = _tokenizer(context, state, splits)
    tag_file = _tag_file(context)
    path = context.artifact(TEXTBOOK_FILE)
    summary: dict[str, Any] = {"file": str(path)}
    if state.is_main_process:
        torch.manual_seed(config.training.seed)
        model = _build(context, tokenizer, load_backbone=False)
        if model.sentence_encoder is None:
            raise ConfigError("textbook pre-training needs model.use_sentence_encoder: true")
        model.load_word_embeddings(_load_tensors(_glove_path(context))["vectors"])
        sentences, description = textbook_sentences(options)
        data = TextbookSentences(sentences, tag_file.tag_names, tag_file.source, progress=options.progress)
        generator = torch.Generator().manual_seed(config.training.seed)
        loader = DataLoader(data, batch_size=options.textbook_batch_size, shuffle=True, generator=generator,
                            collate_fn=TextbookCollator(tokenizer, model.config.textbook_max_length))  # fmt: skip
        device = _device(config, options)
        model.to(device)
        trained = [p for name, p in model.named_parameters() if not name.startswith("encoder.visual_extractor.")]
        history = _adam_loop(model, loader, trained, options.textbook_learning_rate, options.textbook_epochs,
                             device, "textbook", options.progress)  # fmt: skip
        tensors = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.visual_extractor.")}
        summary.update(textbook=description, sentences=len(data), epochs=options.textbook_epochs,
                       first_loss=history[0], last_loss=history[-1])  # fmt: skip
        _save_tensors(path, tensors, summary)
        print(f"ASGK textbook pre-training on {len(data)} sentences -> {path}")
    state.wait_for_everyone()
    if not summary.get("sentences"):
        summary = json.loads(_read_metadata(path))
    return summary


def _glove_path(context: StageContext) -> Path:
    path = context.artifact(GLOVE_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the glove stage first (--stage glove)")
    return path


def _read_metadata(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return (handle.metadata() or {}).get("hf_rrg", "{}")


def tag_auc(probabilities: torch.Tensor, targets: torch.Tensor, tag_names: list[str]) -> dict[str, Any]:
    """Macro AUC over the tags with both classes present (`hf_rrg.metrics.clinical.auroc`), and per tag."""
    from ..metrics.clinical import auroc

    per_tag = {name: auroc(probabilities[:, k].numpy(), targets[:, k].numpy()) for k, name in enumerate(tag_names)}
    valid = [v for v in per_tag.values() if not math.isnan(v)]
    return {"macro": sum(valid) / len(valid) if valid else float("nan"), "tags_scored": len(valid), "per_tag": per_tag}


def _tag_loader(context: StageContext, dataset: Any, batch_size: int, augment: bool, shuffle: bool) -> Any:
    from torch.utils.data import DataLoader

    from ..data.collators import IndexedStudies, ReportGenerationCollator
    from ..modeling.image_processing_rrg import RRGImageProcessor

    config = context.config
    collator = ReportGenerationCollator(RRGImageProcessor(**config.image_processor), None, augment=augment,
                                        seed=config.training.seed, extra_fields=TagLookup(_tag_file(context)))  # fmt: skip
    generator = torch.Generator().manual_seed(config.training.seed)
    return DataLoader(IndexedStudies(dataset, extra_columns=("id",)), batch_size=batch_size, shuffle=shuffle,
                      generator=generator, collate_fn=collator)  # fmt: skip


@torch.no_grad()
def _visual_probabilities(extractor: Any, loader: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(fusion (or global) classifier probabilities, targets) over a loader."""
    extractor.eval()
    probabilities, targets = [], []
    for batch in loader:
        out = extractor(batch["pixel_values"].to(device), batch["view_mask"].to(device))
        logits = out.fusion_logits if out.fusion_logits is not None else out.global_logits
        probabilities.append(torch.sigmoid(logits).cpu())
        targets.append(batch[TAGS_FIELD])
    return torch.cat(probabilities), torch.cat(targets)


def visual_stage(context: StageContext) -> dict[str, Any]:
    """Step 2: pre-train both DenseNets and the three tag classifiers; write `visual.safetensors`."""
    from ..modeling.asgk_losses import tag_classification_loss

    config = context.config
    options = recipe_options(config)
    if not options.pretrain_visual:
        return {"skipped": "recipe_options.pretrain_visual is false: DenseNets start untrained (the baseline)"}
    state = _state(config)
    splits = _splits(context, state)
    tokenizer = _tokenizer(context, state, splits)
    path = context.artifact(VISUAL_FILE)
    summary: dict[str, Any] = {"file": str(path)}
    if state.is_main_process:
        torch.manual_seed(config.training.seed)
        model = _build(context, tokenizer, load_backbone=True)
        extractor, mc = model.encoder.visual_extractor, model.config
        device = _device(config, options)
        extractor.to(device)
        train = _tag_loader(context, splits["train"], options.visual_batch_size, config.data.augment, True)
        params = list(extractor.parameters())
        if options.visual_optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=options.visual_learning_rate, momentum=options.visual_momentum)
        else:
            optimizer = torch.optim.Adam(params, lr=options.visual_learning_rate)
        history = []
        for epoch in range(options.visual_epochs):
            lr = max(options.visual_learning_rate * options.visual_lr_gamma ** (epoch // options.visual_lr_step),
                     options.visual_min_learning_rate)  # fmt: skip
            for group in optimizer.param_groups:
                group["lr"] = lr
            extractor.train()
            total, batches = 0.0, 0
            for batch in tqdm(train, desc=f"visual {epoch + 1}/{options.visual_epochs}", disable=not options.progress,
                              leave=False):  # fmt: skip
                out = extractor(batch["pixel_values"].to(device), batch["view_mask"].to(device))
                targets = batch[TAGS_FIELD].to(device)
                loss = sum(tag_classification_loss(logits, targets, mc.tag_loss, mc.focal_alpha, mc.focal_gamma)
                           for logits in extractor.branch_logits(out))  # fmt: skip
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total, batches = total + float(loss.detach()), batches + 1
            history.append(total / max(batches, 1))
        validation = _tag_loader(context, splits["validation"], options.visual_batch_size, False, False)
        probabilities, targets = _visual_probabilities(extractor, validation, device)
        auc = tag_auc(probabilities, targets, mc.tag_names)
        tensors = {f"encoder.visual_extractor.{k}": v for k, v in extractor.state_dict().items()}
        summary.update(epochs=options.visual_epochs, tag_loss=mc.tag_loss, first_loss=history[0],
                       last_loss=history[-1], validation_tag_auc=auc["macro"])  # fmt: skip
        _save_tensors(path, tensors, summary)
        print(f"ASGK visual pre-training: validation tag AUC {auc['macro']:.4f} -> {path}")
    state.wait_for_everyone()
    if len(summary) == 1:
        summary = json.loads(_read_metadata(path))
    return summary


class TagLookup:
    """Batch hook: the items' `id`s -> `{"tag_labels": (B, N)}` from a tag file (picklable for workers)."""

    def __init__(self, tag_file: TagFile, id_column: str = "id") -> None:
        self.tag_file = tag_file
        self.id_column = id_column

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        return {TAGS_FIELD: self.tag_file.tensor(item[self.id_column] for item in items)}


def fit_hooks(context: StageContext) -> FitHooks:
    """Tag targets for training batches, the pre-trained weights for the fresh model, the run's choices."""
    options = recipe_options(context.config)
    tag_file = _tag_file(context)
    sources = [_glove_path(context)]
    for wanted, name, stage in ((options.use_external_signals, TEXTBOOK_FILE, "textbook"),
                                (options.pretrain_visual, VISUAL_FILE, "visual")):  # fmt: skip
        if wanted:
            path = context.artifact(name)
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: run the {stage} stage first (--stage {stage})")
            sources.append(path)

    def prepare_model(model: Any) -> None:
        model.load_word_embeddings(_load_tensors(sources[0])["vectors"])
        for path in sources[1:]:
            _load_into(model, _load_tensors(path), path)

    textbook = None
    if options.use_external_signals:
        textbook = STAND_IN_NOTE if options.textbook_iu_xray_dir and not options.textbook_files else "given text"
    metadata = {
        "recipe": "asgk",
        "ablation": ablation_name(context.config),
        "tag_source": f"{tag_file.source} ({len(tag_file.tag_names)} tags)",
        "textbook": textbook or "none (no external signals)",
        "densenet_pretraining": bool(options.pretrain_visual),
        "word_vectors": options.glove_file or "GloVe trained on the train reports + textbook",
    }
    return FitHooks(columns=("id",), train_fields=TagLookup(tag_file), prepare_model=prepare_model, metadata=metadata)


def _reexport(run_dir: Path) -> None:
    """Rebuild `RUN_DIR/model` from the updated metrics (the card shows the tag AUC)."""
    try:
        from ..hub import export_model
    except ImportError:
        return
    tmp = run_dir / ".tmp_export_model"
    if tmp.exists():
        shutil.rmtree(tmp)
    export_model(run_dir, tmp)
    shutil.rmtree(run_dir / "model")
    os.replace(tmp, run_dir / "model")


def test_tag_auc(context: StageContext, model_dir: Path) -> dict[str, Any]:
    """Tag AUC of the trained model's node values (tag probabilities) on the test split."""
    from transformers import AutoModelForImageTextToText

    import hf_rrg  # noqa: F401

    options = recipe_options(context.config)
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir)).eval()
    device = _device(context.config, options)
    model.to(device)
    splits = _splits(context, _state(context.config))
    loader = _tag_loader(context, splits["test"], context.config.training.eval_batch_size, False, False)
    probabilities, targets = [], []
    with torch.no_grad():
        for batch in loader:
            out = model.predict_tags(batch["pixel_values"].to(device), batch["view_mask"].to(device))
            probabilities.append(out.node_values.float().cpu())
            targets.append(batch[TAGS_FIELD])
    return tag_auc(torch.cat(probabilities), torch.cat(targets), model.config.tag_names)


def train_stage(context: StageContext) -> dict[str, Any]:
    """Step 3: the shared loop with ASGK's hooks, then the test tag AUC next to the NLG metrics."""
    from ..training.loop import fit

    hooks = fit_hooks(context)
    config = with_tags(context.config, _tag_file(context).tag_names)
    result = fit(config, context.run_dir, resume=context.resume, datasets=context.datasets, hooks=hooks)
    summary = {**fit_summary(result), "recipe": hooks.metadata}
    state = _state(context.config)
    if state.is_main_process:
        auc = test_tag_auc(context, context.run_dir / "model")
        metrics_path = context.run_dir / "metrics.json"
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        metrics["test"]["tag_auc"] = auc["macro"]
        metrics["tag_auc"] = auc
        tmp = metrics_path.with_name(".tmp_metrics.json")
        tmp.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        os.replace(tmp, metrics_path)
        _reexport(context.run_dir)
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
    "TABLE2_ABLATIONS",
    "TAGS_FIELD",
    "TAGS_FILE",
    "TEXTBOOK_FILE",
    "VISUAL_FILE",
    "ASGKRecipeOptions",
    "TagLookup",
    "ablation_name",
    "asgk_recipe",
    "fit_hooks",
    "glove_stage",
    "model_config",
    "recipe_options",
    "tag_auc",
    "tags_stage",
    "test_tag_auc",
    "textbook_stage",
    "train_stage",
    "visual_stage",
    "with_tags",
]
