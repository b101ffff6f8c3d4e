"""DCRRG's training recipe: `pretrain` (steps 1+2) -> `describe` (step 3) -> `prompt` (step 4).

Each stage has its own small loop (the shared `fit` trains one report generator from images; these stages train
instance-level classifiers, a contrastive pair, and a PEFT adapter), writes its result under `RUN_DIR/<stage>/`,
checkpoints after every epoch (`RUN_DIR/<stage>/checkpoint/`: weights as safetensors + `state.json`, replaced
atomically; the optimizer restarts its moments on resume) and can be re-run alone (`--stage describe`).

- `pretrain`: step 1 (§3.1) per-observation CE on image and text instances (uncertain excluded, `balancing` =
  per-observation re-sampling, `extra_data` = another builder's train split as extra uni-modal samples), then
  step 2 (§3.2) L_CSM on the paired samples (zero prompt: the study-level embedding). AdamW 1e-4, weight decay
  1e-6, batch 32 (Appendix A). -> `RUN_DIR/pretrain/model`.
- `describe`: step 3 (§3.3) the decoder learns each observation's description from the image and from the
  report text, L_RG (Eq. 14). AdamW 1e-4, batch 16. -> `RUN_DIR/describe/model`.
- `prompt`: step 4 (§3.4) full reports. `finetuning: prompt` (PT, the paper): PEFT P-Tuning v2 prefix + the
  re-initialised head, all else frozen -> `RUN_DIR/prompt/adapter` (a PEFT adapter); `finetuning: full` (FFT,
  Table 4 model 7): every parameter trained. Either way `RUN_DIR/model` is a plain hf-rrg model (prefix merged)
  with its processor, `predictions.jsonl` and `metrics.json` (test split, scored once at the end).

Table 4 ablations: `run_step1`, `run_step2`, `run_step3` switch the steps off (without step 3, step 4 must be FFT,
as the paper notes). Table 5: `balancing`, `extra_data`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..modeling.configuration_dcrrg import DCRRGConfig
from ..modeling.dcrrg_losses import calibrated_semantic_matching_loss, observation_cross_entropy
from ..modeling.modeling_dcrrg import DCRRGEncoderOutput, DCRRGForConditionalGeneration
from ..training.config import ConfigError, TrainingConfig, parse_section
from ..training.recipes import Recipe, Stage, StageContext
from .data import DCRRGSamples, Instance, batches, description_instances, observation_instances
from .observations import label_vectors

STAGES = ("pretrain", "describe", "prompt")
CHECKPOINT = "checkpoint"
STATE_FILE = "state.json"


@dataclass
class DCRRGRecipeOptions:
    """`recipe_options` of a DCRRG config (defaults: the paper, Appendix A; epochs are not given there).

    Attributes:
        run_step1 / run_step2 / run_step3: run observation pre-training, CSM fine-tuning, description training
            (Table 4's ablations).
        finetuning: step 4 as `prompt` (P-Tuning v2 via PEFT) or `full` (full-parameter fine-tuning).
        balancing: per-observation re-sampling in step 1 (Table 5).
        extra_data: a `load_builder` name whose train split joins step 1 as extra samples (Table 5's CheXpert).
        extra_data_dir: its data folder.
        step1_epochs / step2_epochs / step3_epochs / step4_epochs: epochs of each step.
        pretrain_batch_size: steps 1-2 (32); decoder_batch_size: steps 3-4 (16).
        lr / weight_decay: AdamW of steps 1-2 (1e-4, 1e-6); decoder_lr / decoder_weight_decay: steps 3-4 (1e-4).
        num_virtual_tokens / prefix_hidden_size: the P-Tuning v2 prefix (paper silent: 20 tokens, MLP d_model).
        text_max_length: report tokens read by E_txt.
        checkpoint_every: write the stage checkpoint every N epochs (and after the last one).
        use_text_view: step 3 also learns from the text representation (§3.3).
        seed: instance sampling and initialisation; null: `training.seed`.
        progress: progress bars.
    """

    run_step1: bool = True
    run_step2: bool = True
    run_step3: bool = True
    finetuning: str = "prompt"
    balancing: bool = True
    extra_data: str | None = None
    extra_data_dir: str | None = None
    step1_epochs: int = 10
    step2_epochs: int = 10
    step3_epochs: int = 10
    step4_epochs: int = 30
    pretrain_batch_size: int = 32
    decoder_batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 1e-6
    decoder_lr: float = 1e-4
    decoder_weight_decay: float = 0.0
    num_virtual_tokens: int = 20
    prefix_hidden_size: int | None = None
    text_max_length: int = 128
    use_text_view: bool = True
    checkpoint_every: int = 1
    seed: int | None = None
    progress: bool = True


def recipe_options(config: TrainingConfig) -> DCRRGRecipeOptions:
    """The validated `recipe_options` (unknown keys name the valid ones)."""
    options = parse_section(DCRRGRecipeOptions, config.recipe_options, "recipe_options")
    if options.finetuning not in ("prompt", "full"):
        raise ConfigError(f"recipe_options.finetuning must be prompt or full, got {options.finetuning!r}")
    if options.finetuning == "prompt" and not options.run_step3:
        raise ConfigError(
            "recipe_options.finetuning=prompt needs step 3 (the paper bundles PT with step 3, Table 4); set "
            "run_step3: true or finetuning: full"
        )
    if config.method != "dcrrg":
        raise ConfigError(f"the dcrrg recipe trains method 'dcrrg', the config says {config.method!r}")
    return options


# --------------------------------------------------------------------------------------------- shared pieces


class Workspace:
    """What every stage needs: splits, samples with labels, tokenizer, image processor, text tokenizer."""

    def __init__(self, context: StageContext) -> None:
        from ..modeling.image_processing_rrg import RRGImageProcessor
        from ..training.loop import distributed_state, prepare_splits, prepare_tokenizer

        self.context, self.config = context, context.config
        self.options = recipe_options(self.config)
        self.seed = self.config.training.seed if self.options.seed is None else self.options.seed
        state = distributed_state(self.config)
        self.splits = prepare_splits(self.config, state, context.datasets)
        self.tokenizer = prepare_tokenizer(self.config, context.run_dir, list(self.splits["train"]["report"]), state)
        self.processor = RRGImageProcessor(**self.config.image_processor)
        self.device = torch.device("cuda" if torch.cuda.is_available() and not self.config.training.cpu else "cpu")
        self._samples: dict[str, DCRRGSamples] = {}
        self._text_tokenizer = None
        self._pixels: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.memories: dict[tuple[str, int], torch.Tensor] = {}  # f_I of a frozen encoder (step 4, PT)

    def model_config(self) -> DCRRGConfig:
        tok = self.tokenizer
        try:
            return DCRRGConfig(**{
                "max_views": self.processor.max_views, **self.config.model, "vocab_size": len(tok),
                "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                "unk_token_id": tok.unk_token_id,
            })  # fmt: skip
        except (TypeError, ValueError) as error:
            raise ConfigError(f"model section of the config is not a valid DCRRGConfig: {error}") from None

    def samples(self, role: str) -> DCRRGSamples:
        if role not in self._samples:
            names = self.model_config().observation_names
            progress = self.options.progress
            samples = DCRRGSamples.from_dataset(self.splits[role], names, progress=progress)
            if role == "train" and self.options.extra_data:
                from ..data import load_builder

                extra = load_builder(self.options.extra_data, self.options.extra_data_dir)["train"]
                samples = samples.extend(DCRRGSamples.from_dataset(extra, names, progress=progress))
            self._samples[role] = samples
        return self._samples[role]

    @property
    def text_tokenizer(self) -> Any:
        """E_txt's tokenizer: the checkpoint's (ClinicalBERT) or, without one, the report tokenizer."""
        if self._text_tokenizer is None:
            path = self.config.model.get("text_encoder_name_or_path")
            if path:
                from transformers import AutoTokenizer

                self._text_tokenizer = AutoTokenizer.from_pretrained(path)
            else:
                self._text_tokenizer = self.tokenizer
        return self._text_tokenizer

    def pixels(self, studies: list[list[Any]]) -> dict[str, torch.Tensor]:
        inputs = self.processor([[image.convert("RGB") for image in study] for study in studies])
        return {key: value.to(self.device) for key, value in inputs.items()}

    def sample_pixels(self, role: str, rows: list[int]) -> dict[str, torch.Tensor]:
        """`pixels` of samples `rows` of split `role`, each study processed once (the evaluation transform is
        deterministic) and kept for later batches."""
        missing = [r for r in rows if (role, r) not in self._pixels]
        if missing:
            samples = self.samples(role).samples
            inputs = self.pixels([samples[r].images for r in missing])
            for i, r in enumerate(missing):
                self._pixels[(role, r)] = (inputs["pixel_values"][i], inputs["view_mask"][i])
        pairs = [self._pixels[(role, r)] for r in rows]
        return {"pixel_values": torch.stack([p for p, _ in pairs]), "view_mask": torch.stack([m for _, m in pairs])}

    def text(self, reports: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.text_tokenizer(reports, max_length=self.options.text_max_length, truncation=True,
                                      padding=True, return_tensors="pt")  # fmt: skip
        return {"text_input_ids": encoded["input_ids"].to(self.device),
                "text_attention_mask": encoded["attention_mask"].to(self.device)}  # fmt: skip

    def targets(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(decoder inputs, next-token labels with -100 on padding) of `texts`."""
        encoded = self.tokenizer(texts, max_length=max_length, truncation=True, padding=True, return_tensors="pt")
        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        return ids[:, :-1].to(self.device), labels.to(self.device)

    def progress(self, items, description: str):
        return tqdm(items, desc=description, disable=not self.options.progress)


def _save_model_atomic(model: Any, folder: Path, state: dict[str, Any] | None = None) -> None:
    tmp = folder.with_name(f".tmp_{folder.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp))
    if state is not None:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def _resume_state(stage_dir: Path, resume: bool) -> dict[str, Any] | None:
    state_file = stage_dir / CHECKPOINT / STATE_FILE
    if resume and state_file.is_file():
        return json.loads(state_file.read_text(encoding="utf-8"))
    return None


def _load_model(folder: Path, device: torch.device) -> DCRRGForConditionalGeneration:
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} holds no model: run the stage that writes it first (`--stage ...`)")
    return DCRRGForConditionalGeneration.from_pretrained(str(folder)).to(device)


def _previous_model(work: Workspace, stages: tuple[str, ...]) -> DCRRGForConditionalGeneration:
    """The newest model written by one of `stages` (in order of preference), else a fresh one."""
    for stage in stages:
        folder = work.context.run_dir / stage / "model"
        if (folder / "config.json").is_file():
            return _load_model(folder, work.device)
    return _fresh_model(work)


def _fresh_model(work: Workspace) -> DCRRGForConditionalGeneration:
    torch.manual_seed(work.seed)
    config = work.model_config()
    model = DCRRGForConditionalGeneration(config)
    if config.visual_pretrained:
        model.load_pretrained_backbone()
    if config.text_encoder_name_or_path:
        model.load_pretrained_text_encoder()
    return model.to(work.device)


def _optimizer(parameters, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in parameters if p.requires_grad], lr=lr, weight_decay=weight_decay)


# --------------------------------------------------------------------------------------------- steps 1 + 2


def step1_loss(work: Workspace, model: DCRRGForConditionalGeneration, batch: list[Instance]) -> torch.Tensor:
    """Per-observation CE (§3.1) of a batch of image and text instances (each sample encoded once)."""
    samples, dcclip, losses = work.samples("train").samples, model.dcclip, []
    for modality in ("image", "text"):
        chosen = [inst for inst in batch if inst.modality == modality]
        if not chosen:
            continue
        rows = sorted({inst.sample for inst in chosen})
        where = {row: i for i, row in enumerate(rows)}
        if modality == "image":
            features = dcclip.encode_image(**work.sample_pixels("train", rows))
            project, heads = dcclip.project_image, dcclip.image_heads
        else:
            text = work.text([samples[r].report for r in rows])
            features = dcclip.encode_text(text["text_input_ids"], text["text_attention_mask"])
            project, heads = dcclip.project_text, dcclip.text_heads
        index = torch.tensor([where[inst.sample] for inst in chosen], device=work.device)
        prompts = torch.tensor([[inst.observation] for inst in chosen], device=work.device)
        logits = heads(project(features[index], prompts), prompts)[:, 0]
        labels = torch.tensor([inst.target for inst in chosen], device=work.device)
        losses.append(observation_cross_entropy(logits, labels) * len(chosen))
    return sum(losses) / len(batch)


def step2_loss(work: Workspace, model: DCRRGForConditionalGeneration, rows: list[int]) -> torch.Tensor:
    """L_CSM (Eq. 3-9) of paired samples `rows`, study-level (zero-prompt) embeddings."""
    samples, dcclip = work.samples("train").samples, model.dcclip
    v = dcclip.encode_image(**work.sample_pixels("train", rows))
    text = work.text([samples[r].report for r in rows])
    t = dcclip.encode_text(text["text_input_ids"], text["text_attention_mask"])
    zero = torch.full((len(rows), 1), model.config.num_observations, device=work.device)
    labels = label_vectors([samples[r].record for r in rows]).to(work.device)
    return calibrated_semantic_matching_loss(
        dcclip.project_image(v, zero)[:, 0], dcclip.project_text(t, zero)[:, 0], labels, labels, v, t,
        dcclip.temperature,
    )  # fmt: skip


def _run_epochs(work: Workspace, stage: str, model: Any, plan: list[tuple[str, int]], step_fn, optimizer_fn,
                save_fn=None) -> dict[str, Any]:  # fmt: skip
    """Run the (step name, epochs) `plan` with one optimizer per step, checkpointing after every epoch."""
    stage_dir = work.context.run_dir / stage
    stage_dir.mkdir(parents=True, exist_ok=True)
    state = _resume_state(stage_dir, work.context.resume) or {"done": [], "history": []}
    save_fn = save_fn or (lambda m, folder, s: _save_model_atomic(m, folder, s))
    for step, epochs in plan:
        optimizer = optimizer_fn(step, model)
        for epoch in range(epochs):
            key = f"{step}:{epoch}"
            if key in state["done"]:
                continue
            model.train()
            total, count = 0.0, 0
            for batch in work.progress(step_fn(step, epoch, "items"), f"{stage} {step} epoch {epoch + 1}/{epochs}"):
                loss = step_fn(step, epoch, batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total, count = total + loss.item(), count + 1
            state["done"].append(key)
            state["history"].append({"step": step, "epoch": epoch, "loss": total / max(count, 1)})
            if (epoch + 1) % work.options.checkpoint_every == 0 or epoch + 1 == epochs:
                save_fn(model, stage_dir / CHECKPOINT, state)
    return state


def pretrain_stage(context: StageContext) -> dict[str, Any]:
    """Steps 1 and 2 -> `RUN_DIR/pretrain/model`."""
    work = Workspace(context)
    options, samples = work.options, work.samples("train")
    checkpoint = context.run_dir / "pretrain" / CHECKPOINT
    resumed = _resume_state(context.run_dir / "pretrain", context.resume)
    model = _load_model(checkpoint, work.device) if resumed else _fresh_model(work)
    pairs = [i for i, s in enumerate(samples.samples) if s.images is not None and s.report is not None]
    plan = ([("step1", options.step1_epochs)] if options.run_step1 else []) + (
        [("step2", options.step2_epochs)] if options.run_step2 else [])  # fmt: skip

    def step_fn(step: str, epoch: int, batch: Any) -> Any:
        if isinstance(batch, str):  # the epoch's batches
            if step == "step1":
                items = observation_instances(samples, "image", options.balancing, work.seed, epoch)
                items += observation_instances(samples, "text", options.balancing, work.seed, epoch)
                return batches(items, options.pretrain_batch_size, shuffle=True, seed=work.seed, epoch=epoch)
            return [b for b in batches(pairs, options.pretrain_batch_size, True, work.seed, epoch) if len(b) > 1]
        return step1_loss(work, model, batch) if step == "step1" else step2_loss(work, model, batch)

    state = _run_epochs(work, "pretrain", model, plan, step_fn,
                        lambda step, m: _optimizer(m.dcclip.parameters(), options.lr, options.weight_decay))
    _save_model_atomic(model, context.run_dir / "pretrain" / "model")
    return {"model": str(context.run_dir / "pretrain" / "model"), "steps": [s for s, _ in plan],
            "balancing": options.balancing, "extra_data": options.extra_data, "history": state["history"]}  # fmt: skip


# --------------------------------------------------------------------------------------------- step 3


def step3_loss(work: Workspace, model: DCRRGForConditionalGeneration, batch: list[Instance], role: str = "train"):
    """L_RG (Eq. 14) of a batch of (sample, observation, description) instances, image and text views; each
    study / report of the batch is encoded once and projected under every prompt it is asked for."""
    samples, losses, length = work.samples(role).samples, [], model.config.description_max_length
    dcclip = model.dcclip
    for modality in ("image", "text"):
        chosen = [inst for inst in batch if inst.modality == modality]
        if not chosen:
            continue
        rows = sorted({inst.sample for inst in chosen})
        where = {row: i for i, row in enumerate(rows)}
        if modality == "image":
            features = dcclip.encode_image(**work.sample_pixels(role, rows))
        else:
            text = work.text([samples[r].report for r in rows])
            features = dcclip.encode_text(text["text_input_ids"], text["text_attention_mask"])
        index = torch.tensor([where[i.sample] for i in chosen], device=work.device)
        prompts = torch.tensor([[i.observation] for i in chosen], device=work.device)
        encoded = model.encoder.from_features(features[index], prompts, modality)
        decoder_ids, labels = work.targets([i.target for i in chosen], length)
        out = model(encoder_outputs=encoded, decoder_input_ids=decoder_ids, labels=labels)
        losses.append(out.loss * len(chosen))
    return sum(losses) / len(batch)


def describe_stage(context: StageContext) -> dict[str, Any]:
    """Step 3 -> `RUN_DIR/describe/model`."""
    work = Workspace(context)
    options = work.options
    if not options.run_step3:
        return {"skipped": "recipe_options.run_step3 is false (Table 4 ablation)"}
    stage_dir = context.run_dir / "describe"
    resumed = _resume_state(stage_dir, context.resume)
    model = _load_model(stage_dir / CHECKPOINT, work.device) if resumed else _previous_model(work, ("pretrain",))
    instances = description_instances(work.samples("train"), options.use_text_view)
    if not instances:
        raise ValueError("no report of the train split describes any observation: step 3 has nothing to learn")

    def step_fn(step: str, epoch: int, batch: Any) -> Any:
        if isinstance(batch, str):
            return batches(instances, options.decoder_batch_size, shuffle=True, seed=work.seed, epoch=epoch)
        return step3_loss(work, model, batch)

    state = _run_epochs(work, "describe", model, [("step3", options.step3_epochs)], step_fn,
                        lambda step, m: _optimizer(m.parameters(), options.decoder_lr, options.decoder_weight_decay))
    _save_model_atomic(model, stage_dir / "model")
    return {"model": str(stage_dir / "model"), "instances": len(instances), "history": state["history"]}


# --------------------------------------------------------------------------------------------- step 4


def step4_loss(work: Workspace, model: Any, rows: list[int], role: str = "train", frozen_encoder: bool = False):
    """L_RG of full reports (the step-3 objective, §3.4) through `model` (a PEFT model or a plain one). With
    `frozen_encoder` (PT: the image encoder is frozen, §3.4) f_I is computed once per study in eval mode and reused."""
    samples = work.samples(role).samples
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder_ids, labels = work.targets([samples[r].report for r in rows], base.config.max_seq_length)
    if not frozen_encoder:
        return model(**work.sample_pixels(role, rows), input_ids=decoder_ids, labels=labels).loss
    missing = [r for r in rows if (role, r) not in work.memories]
    if missing:
        base.encoder.eval()
        with torch.no_grad():
            memory = base.encoder(**work.sample_pixels(role, missing)).last_hidden_state
        work.memories.update({(role, r): memory[i] for i, r in enumerate(missing)})
    encoder_outputs = DCRRGEncoderOutput(last_hidden_state=torch.stack([work.memories[(role, r)] for r in rows]))
    return model(encoder_outputs=encoder_outputs, input_ids=decoder_ids, labels=labels).loss


def prompt_stage(context: StageContext) -> dict[str, Any]:
    """Step 4 -> `RUN_DIR/prompt/adapter` (PT), `RUN_DIR/model`, `predictions.jsonl`, `metrics.json`."""
    from .prefix import add_prefix_adapter, count_trainable, merge_prefix

    work = Workspace(context)
    options, config = work.options, context.config
    stage_dir = context.run_dir / "prompt"
    resumed = _resume_state(stage_dir, context.resume)
    rows = [i for i, s in enumerate(work.samples("train").samples) if s.images is not None and s.report]
    if options.finetuning == "prompt":
        from peft import PeftModel

        base = _previous_model(work, ("describe",))
        if resumed:
            model = PeftModel.from_pretrained(base, str(stage_dir / CHECKPOINT), is_trainable=True)
        else:
            model = add_prefix_adapter(base, options.num_virtual_tokens, options.prefix_hidden_size, seed=work.seed)
    else:
        model = (_load_model(stage_dir / CHECKPOINT, work.device) if resumed
                 else _previous_model(work, ("describe", "pretrain")))  # fmt: skip
    trainable = count_trainable(model)

    def step_fn(step: str, epoch: int, batch: Any) -> Any:
        if isinstance(batch, str):
            return batches(rows, options.decoder_batch_size, shuffle=True, seed=work.seed, epoch=epoch)
        return step4_loss(work, model, batch, frozen_encoder=options.finetuning == "prompt")

    state = _run_epochs(work, "prompt", model, [("step4", options.step4_epochs)], step_fn,
                        lambda step, m: _optimizer(m.parameters(), options.decoder_lr, options.decoder_weight_decay))
    if options.finetuning == "prompt":
        _save_model_atomic(model, stage_dir / "adapter")
        final = merge_prefix(model)
    else:
        final = model
    for key, value in config.generation.as_kwargs().items():
        setattr(final.generation_config, key, value)
    return {**_finish(work, final.eval()), "finetuning": options.finetuning, "trainable_parameters": trainable,
            "history": state["history"]}  # fmt: skip


def _finish(work: Workspace, model: DCRRGForConditionalGeneration) -> dict[str, Any]:
    """Save `RUN_DIR/model` (+ processor), generate on test once, write predictions and metrics."""
    from ..modeling.processing_rrg import RRGProcessor
    from ..training.evaluation import score_reports

    run_dir, config = work.context.run_dir, work.context.config
    processor = RRGProcessor(image_processor=work.processor, tokenizer=work.tokenizer)
    _save_model_atomic(model, run_dir / "model")
    processor.save_pretrained(str(run_dir / "model"))
    test = work.splits["test"]
    predictions: list[str] = []
    with torch.no_grad():
        for chunk in work.progress(batches(list(range(len(test))), config.training.eval_batch_size), "test"):
            inputs = work.pixels([[im for im in test[i]["images"]] for i in chunk])
            generated = model.generate(**inputs, **config.generation.as_kwargs())
            predictions += work.tokenizer.batch_decode(generated, skip_special_tokens=True)
    references = list(test["report"])
    scores, skipped = score_reports(predictions, references, config.evaluation.test_metrics,
                                    config.evaluation.protocol, work.tokenizer, model.config.max_seq_length)  # fmt: skip
    ids = list(test["id"]) if "id" in test.column_names else list(range(len(references)))
    with open(run_dir / "predictions.jsonl", "w", encoding="utf-8") as handle:
        for sample_id, prediction, reference in zip(ids, predictions, references):
            handle.write(json.dumps({"id": sample_id, "prediction": prediction, "reference": reference}) + "\n")
    metrics = {"method": "dcrrg", "test": scores, "skipped_metrics": skipped, "num_test": len(predictions),
               "protocol": config.evaluation.protocol, "generation": config.generation.as_kwargs(),
               "recipe": {"recipe": "dcrrg", **asdict(work.options)}}  # fmt: skip
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    config.save(run_dir / "config.yaml")
    print(f"DCRRG model: {run_dir / 'model'}; test metrics: {run_dir / 'metrics.json'}")
    return {"model_dir": str(run_dir / "model"), "test": scores}


def dcrrg_recipe() -> Recipe:
    """`pretrain` -> `describe` -> `prompt`."""
    return Recipe("dcrrg", (Stage("pretrain", pretrain_stage), Stage("describe", describe_stage),
                            Stage("prompt", prompt_stage)))  # fmt: skip


__all__ = [
    "DCRRGRecipeOptions",
    "Workspace",
    "dcrrg_recipe",
    "describe_stage",
    "pretrain_stage",
    "prompt_stage",
    "recipe_options",
    "step1_loss",
    "step2_loss",
    "step3_loss",
    "step4_loss",
]
