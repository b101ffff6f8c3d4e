"""`fit`: the one Accelerate training loop every hf-rrg method trains with.

Per epoch: train (gradient accumulation, clipping, mixed precision), step the per-epoch schedule, generate on
validation and score, keep the best weights by `training.val_metric` (never a test score), checkpoint atomically,
stop early after `patience` epochs without improvement. At the end: load the best weights, generate on test once,
write `predictions.jsonl`, `metrics.json`, `model/` and `training_curves.png` under the run folder.

Exact resume: the data order of epoch e is a permutation seeded by (seed, e), each example's augmentation is
seeded by (seed, e, index), and the checkpoint holds the model, optimizer, schedule and every RNG state, so a
resumed run repeats the uninterrupted run's losses.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from hf_rrg.data.collators import IndexedStudies, ReportGenerationCollator

from .checkpointing import latest_checkpoint, read_trainer_state, remove_stale_temporaries, save_checkpoint
from .config import TrainingConfig
from .curves import plot_training_curves
from .evaluation import generate_reports, score_reports
from .hooks import FitHooks
from .optim import build_optimizer, build_scheduler
from .run_summary import format_run_summary

logger = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"
BEST_DIR = "best"
MODEL_DIR = "model"
LOGS_DIR = "logs"


class EpochPermutationSampler(Sampler[int]):
    """Shuffles `size` indices with a permutation that depends only on (seed, epoch)."""

    def __init__(self, size: int, seed: int, shuffle: bool = True) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


@dataclass
class FitResult:
    """What a finished `fit` produced."""

    run_dir: Path
    best_epoch: int | None
    best_metric: float | None
    val_metric: str
    test_metrics: dict[str, float]
    epochs_trained: int
    history: list[dict[str, Any]] = field(default_factory=list)
    model_dir: Path | None = None


# ---------------------------------------------------------------------------------------------------- setup


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def make_accelerator(config: TrainingConfig, run_dir: Path) -> Any:
    """An `Accelerator` for the config: gradient accumulation, mixed precision, TensorBoard when installed."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    precision = config.training.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if precision != "no" and not torch.cuda.is_available() and precision == "fp16":
        logger.warning("fp16 needs a GPU; training in full precision on CPU")
        precision = "no"
    log_with = "tensorboard" if tensorboard_available() else None
    # Accelerate only starts a multi-process CPU group (gloo) when told it runs on CPU.
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cpu_only = not (torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()))
    return Accelerator(
        gradient_accumulation_steps=config.training.gradient_accumulation_steps,
        mixed_precision=precision,
        cpu=config.training.cpu or (distributed and cpu_only),
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / LOGS_DIR)),
    )


def distributed_state(config: TrainingConfig) -> Any:
    """Accelerate's `PartialState` for work before `fit` (a recipe's stages): the same process group `fit`'s
    `Accelerator` uses (a CPU-only multi-process run gets gloo), with `is_main_process` and `wait_for_everyone`."""
    from accelerate import PartialState

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cpu_only = not (torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()))
    return PartialState(cpu=config.training.cpu or (distributed and cpu_only))


def load_datasets(config: TrainingConfig, accelerator: Any) -> dict[str, Any]:
    """train/validation/test `datasets.Dataset`s of the configured builder (prepared once, main process first).
    `accelerator` is an `Accelerator` or a `PartialState` (anything with `main_process_first()`)."""
    from hf_rrg.data import load_builder

    data = config.data
    with accelerator.main_process_first():
        built = load_builder(data.builder, data.data_dir, **data.builder_kwargs)
    splits = {}
    for role, name in (("train", data.train_split), ("validation", data.validation_split), ("test", data.test_split)):
        if name not in built:
            raise ValueError(
                f"dataset {data.builder!r} has no split {name!r} (data.{role}_split); its splits are {list(built)}"
            )
        splits[role] = built[name]
    return splits


def _limit(dataset: Any, limit: int | None) -> Any:
    if limit is None or limit >= len(dataset):
        return dataset
    return dataset.select(range(limit)) if hasattr(dataset, "select") else dataset[:limit]


def prepare_splits(
    config: TrainingConfig, accelerator: Any, datasets: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The splits a run trains and evaluates on: `datasets` (or the configured builder's), cut to the
    `data.max_*_samples` limits. Recipe stages call this too, so they see exactly the examples `fit` sees."""
    splits = dict(datasets) if datasets is not None else load_datasets(config, accelerator)
    missing = [role for role in ("train", "validation", "test") if role not in splits]
    if missing:
        raise ValueError(f"datasets= lacks the split(s) {missing}; pass train, validation and test")
    splits["train"] = _limit(splits["train"], config.data.max_train_samples)
    splits["validation"] = _limit(splits["validation"], config.data.max_validation_samples)
    splits["test"] = _limit(splits["test"], config.data.max_test_samples)
    for role, dataset in splits.items():
        if len(dataset) == 0:
            raise ValueError(f"the {role} split is empty; check the dataset and the data.* settings")
    return splits


def prepare_tokenizer(config: TrainingConfig, run_dir: Path, train_reports: list[str], accelerator: Any) -> Any:
    """The run's tokenizer: built from the train reports at the start and saved in `RUN_DIR/tokenizer`; a
    resumed run (or any later process) reuses the saved one."""
    from hf_rrg.modeling.tokenization_rrg import RRGTokenizer

    folder = run_dir / TOKENIZER_DIR
    if accelerator.is_main_process and not (folder / "tokenizer.json").is_file():
        tokenizer = RRGTokenizer.from_reports(
            train_reports,
            cleaner=config.tokenizer.cleaner,
            min_count=config.tokenizer.min_count,
            max_words=config.tokenizer.max_words,
        )
        tmp = run_dir / f".tmp_{TOKENIZER_DIR}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tokenizer.save_pretrained(str(tmp))
        os.replace(tmp, folder)
    accelerator.wait_for_everyone()
    tokenizer = RRGTokenizer.from_pretrained(str(folder))
    if tokenizer.cleaner != config.tokenizer.cleaner:
        raise ValueError(
            f"{folder} was built with cleaner {tokenizer.cleaner!r} but the config asks for "
            f"{config.tokenizer.cleaner!r}; use a new --output-dir or the original config"
        )
    return tokenizer


def build_model(config: TrainingConfig, tokenizer: Any, image_processor: Any, load_backbone: bool) -> Any:
    """The method's model from `config.method` + `config.model`, sized to the tokenizer."""
    import hf_rrg  # noqa: F401  (registers the hf-rrg model types with the Auto classes)
    from transformers import AutoConfig, AutoModelForImageTextToText

    kwargs = dict(config.model)
    kwargs.update(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        unk_token_id=tokenizer.unk_token_id,
    )
    if getattr(image_processor, "max_views", None) is not None:
        kwargs.setdefault("max_views", image_processor.max_views)
    try:
        model_config = AutoConfig.for_model(config.method, **kwargs)
    except ValueError as error:
        raise ValueError(f"method {config.method!r} is not a registered hf-rrg model type: {error}") from None
    if hasattr(model_config, "sentence_end_token_id") and model_config.sentence_end_token_id is None:
        model_config.sentence_end_token_id = sentence_end_token_id(tokenizer)  # hierarchical decoders (CoAtt)
    model = AutoModelForImageTextToText.from_config(model_config)
    generation = model.generation_config
    for key, value in config.generation.as_kwargs().items():  # exported with the model: it decodes as evaluated
        setattr(generation, key, value)
    if generation.num_beams == 1:  # length_penalty only affects beam search; transformers refuses to save it unused
        generation.length_penalty = type(generation)().length_penalty
    if load_backbone and getattr(model_config, "visual_pretrained", False):
        model.load_pretrained_backbone()
    return model


def sentence_end_token_id(tokenizer: Any) -> int:
    """Id of the `.` token that ends a sentence; an error when the vocabulary has none."""
    token = tokenizer.convert_tokens_to_ids(".")
    if token is None or token == tokenizer.unk_token_id:
        raise ValueError(
            "the report vocabulary has no `.` token, but this model splits reports into sentences at it; use a "
            "cleaner that keeps `.` between sentences (r2gen_iu_xray, basic, alphabetic)"
        )
    return int(token)


class _JsonlLog:
    """Append-only JSON-lines log written by the main process."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def truncate_after(self, key: str, last: int) -> None:
        """Drop records whose `key` is beyond `last` (written after the checkpoint a resume starts from)."""
        if self.enabled and self.path.is_file():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if line.strip() and json.loads(line).get(key, -1) <= last]
            self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".tmp_{path.name}")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _save_best(model: Any, run_dir: Path) -> None:
    final, tmp = run_dir / BEST_DIR, run_dir / f".tmp_{BEST_DIR}"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def _load_best(model: Any, run_dir: Path) -> None:
    from safetensors.torch import load_file

    path = run_dir / BEST_DIR / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"best weights {path} are missing; the run folder is incomplete")
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    if unexpected or [name for name in missing if not name.endswith("num_batches_tracked")]:
        # tied / non-persistent buffers are fine; anything else means a different architecture
        real_missing = [name for name in missing if name in dict(model.named_parameters())]
        if unexpected or real_missing:
            raise ValueError(f"{path} does not match the model: missing {real_missing}, unexpected {unexpected}")


def _replicas_in_sync(accelerator: Any, model: Any) -> bool:
    """True when every process holds the same parameters (checked by gathering a checksum from each)."""
    total = torch.zeros(1, dtype=torch.float64, device=accelerator.device)
    for parameter in accelerator.unwrap_model(model).parameters():
        total += parameter.detach().double().sum() + (parameter.detach().double() ** 2).sum()
    sums = accelerator.gather(total)
    return bool(torch.allclose(sums, sums[0].expand_as(sums), rtol=0, atol=0))


# ---------------------------------------------------------------------------------------------------- fit


def fit(
    config: TrainingConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    datasets: Mapping[str, Any] | None = None,
    accelerator: Any = None,
    hooks: FitHooks | None = None,
) -> FitResult:
    """Train `config.method` as configured and write the run under `run_dir`.

    Args:
        config: the validated `TrainingConfig`.
        run_dir: run folder (created); must be new or empty unless `resume`.
        resume: continue from the newest complete checkpoint in `run_dir` (exactly: same order, same losses).
        datasets: {"train", "validation", "test"} datasets to use instead of building `config.data.builder`
            (rows with `images` and `report`; an `id` column is written to predictions when present).
        accelerator: an existing `Accelerator` (default: one made from the config).
        hooks: a recipe's additions (extra batch fields for the model, a model preparation step, metadata for
            `metrics.json`); see `hf_rrg.training.hooks.FitHooks`.
    """
    from accelerate.utils import set_seed

    from hf_rrg.modeling.image_processing_rrg import RRGImageProcessor
    from hf_rrg.modeling.processing_rrg import RRGProcessor

    run_dir = Path(run_dir)
    loop = config.training
    hooks = hooks or FitHooks()
    accelerator = accelerator or make_accelerator(config, run_dir)
    main = accelerator.is_main_process
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if main:
        if not resume and (run_dir / "checkpoints").exists():
            raise FileExistsError(
                f"{run_dir} already holds a training run; pass --resume to continue it or choose a new --output-dir"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(run_dir)
        config.save(run_dir / "config.yaml")
    if resume and checkpoint is None and main:
        logger.warning("no complete checkpoint in %s; starting from scratch", run_dir)
    accelerator.wait_for_everyone()
    set_seed(loop.seed)

    # ---- data, tokenizer, processor, model
    splits = prepare_splits(config, accelerator, datasets)
    train_reports = list(splits["train"]["report"])
    tokenizer = prepare_tokenizer(config, run_dir, train_reports, accelerator)
    image_processor = RRGImageProcessor(**config.image_processor)
    processor = RRGProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model = build_model(config, tokenizer, image_processor, load_backbone=checkpoint is None)
    if checkpoint is None and hooks.prepare_model is not None:
        hooks.prepare_model(model)
    max_length = getattr(model.config, "max_seq_length", None)  # None: the model bounds its own targets (CoAtt)

    train_set = IndexedStudies(splits["train"], extra_columns=hooks.columns)
    sampler = EpochPermutationSampler(len(train_set), loop.seed)
    train_collator = ReportGenerationCollator(
        image_processor, tokenizer, max_length=max_length, augment=config.data.augment, seed=loop.seed,
        extra_fields=hooks.train_fields,
    )
    eval_collator = ReportGenerationCollator(image_processor, None, extra_fields=hooks.eval_fields)
    train_loader = DataLoader(
        train_set, batch_size=loop.batch_size, sampler=sampler, collate_fn=train_collator,
        num_workers=loop.num_workers, drop_last=False,
    )

    def eval_loader(role: str) -> DataLoader:
        return DataLoader(
            IndexedStudies(splits[role], extra_columns=hooks.columns), batch_size=loop.eval_batch_size, shuffle=False,
            collate_fn=eval_collator, num_workers=loop.num_workers,
        )

    val_loader, test_loader = eval_loader("validation"), eval_loader("test")
    optimizer = build_optimizer(model, config.optimizer)
    scheduler = build_scheduler(optimizer, config.scheduler, loop.epochs)
    model, optimizer, train_loader, val_loader, test_loader = accelerator.prepare(
        model, optimizer, train_loader, val_loader, test_loader
    )
    accelerator.register_for_checkpointing(scheduler)
    generation_kwargs = config.generation.as_kwargs()

    # ---- state, logs, resume
    state: dict[str, Any] = {
        "epoch": -1, "global_step": 0, "best_metric": None, "best_epoch": None,
        "epochs_without_improvement": 0, "stopped_early": False, "history": [],
    }
    step_log = _JsonlLog(run_dir / LOGS_DIR / "train_steps.jsonl", main)
    epoch_log = _JsonlLog(run_dir / LOGS_DIR / "epochs.jsonl", main)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = read_trainer_state(checkpoint)
        step_log.truncate_after("epoch", state["epoch"])
        epoch_log.truncate_after("epoch", state["epoch"])
        if main:
            print(f"Resuming {run_dir} after epoch {state['epoch'] + 1} ({checkpoint.name})")
    elif main:
        for log in (step_log, epoch_log):
            if log.path.exists():
                log.path.unlink()
    if tensorboard_available():
        accelerator.init_trackers("tensorboard")
    elif main and state["epoch"] < 0:
        print("tensorboard is not installed: logging to logs/*.jsonl only (pip install tensorboard for TensorBoard)")

    # ---- epochs
    start_epoch = state["epoch"] + 1
    for epoch in range(start_epoch, loop.epochs):
        if state["stopped_early"]:
            break
        started = time.time()
        sampler.set_epoch(epoch)
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        train_collator.epoch = epoch
        if hooks.on_epoch_start is not None:
            hooks.on_epoch_start(accelerator.unwrap_model(model), epoch)
        model.train()
        sums: dict[str, float] = {}
        batches = 0
        progress = tqdm(
            train_loader, desc=f"epoch {epoch + 1}/{loop.epochs}", disable=not accelerator.is_local_main_process
        )
        for micro_step, batch in enumerate(progress):
            with accelerator.accumulate(model):
                # every batch field but the example index is a model input (hooks' extra fields included)
                outputs = model(**{key: value for key, value in batch.items() if key != "index"})
                loss = outputs.loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    if loop.clip_grad_value is not None:
                        accelerator.clip_grad_value_(model.parameters(), loop.clip_grad_value)
                    if loop.max_grad_norm is not None:
                        accelerator.clip_grad_norm_(model.parameters(), loop.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            components = {"loss": loss.detach()}
            for key, value in outputs.items():
                if key.endswith("_loss") and torch.is_tensor(value) and value.numel() == 1:
                    components[key] = value.detach()
            names = sorted(components)
            values = accelerator.gather(torch.stack([components[n].float().reshape(()) for n in names])[None])
            means = dict(zip(names, values.mean(0).tolist()))
            for key, value in means.items():
                sums[key] = sums.get(key, 0.0) + value
            batches += 1
            if accelerator.sync_gradients:
                state["global_step"] += 1
                if state["global_step"] % loop.log_every == 0:
                    lrs = {f"lr/{group.get('name', i)}": group["lr"] for i, group in enumerate(optimizer.param_groups)}
                    record = {"epoch": epoch, "step": state["global_step"], "micro_step": micro_step, **means, **lrs}
                    step_log.write(record)
                    accelerator.log({f"train/{k}": v for k, v in means.items()} | lrs, step=state["global_step"])
            progress.set_postfix(loss=f"{means['loss']:.4f}")
        scheduler.step()

        record: dict[str, Any] = {"epoch": epoch, "step": state["global_step"], "seconds": None}
        record.update({f"train/{key}": value / max(batches, 1) for key, value in sums.items()})
        record.update({f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(optimizer.param_groups)})
        if (epoch + 1) % loop.eval_every == 0 or epoch + 1 == loop.epochs:
            predictions = generate_reports(
                accelerator, model, val_loader, tokenizer, generation_kwargs, description="validation"
            )
            val_reports = list(splits["validation"]["report"])
            ordered = [predictions[i] for i in range(len(val_reports))]
            scores, _ = score_reports(
                ordered, val_reports, config.evaluation.val_metrics, config.evaluation.protocol, tokenizer, max_length
            )
            if loop.val_metric not in scores:
                raise ValueError(
                    f"training.val_metric {loop.val_metric!r} is not among the validation scores {sorted(scores)}; "
                    "choose one of them or add its family to evaluation.val_metrics"
                )
            record.update({f"val/{key}": value for key, value in scores.items()})
            value = scores[loop.val_metric]
            if state["best_metric"] is None or value > state["best_metric"]:
                state.update(best_metric=value, best_epoch=epoch, epochs_without_improvement=0)
                if main:
                    _save_best(accelerator.unwrap_model(model), run_dir)
            else:
                state["epochs_without_improvement"] += 1
            accelerator.log({f"val/{k}": v for k, v in scores.items()}, step=state["global_step"])
            if loop.patience is not None and state["epochs_without_improvement"] >= loop.patience:
                state["stopped_early"] = True
        record["seconds"] = round(time.time() - started, 3)
        state["history"].append(record)
        state["epoch"] = epoch
        epoch_log.write(record)
        if main:
            summary = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k.startswith(("train/", "val/")))
            tqdm.write(f"epoch {epoch + 1}/{loop.epochs}: {summary}")
        accelerator.wait_for_everyone()
        save_checkpoint(accelerator, run_dir, epoch, state, keep=loop.keep_checkpoints)
        if state["stopped_early"] and main:
            print(f"Early stopping: no {loop.val_metric} improvement for {loop.patience} epochs")

    # ---- final: best weights, test once, exports
    unwrapped = accelerator.unwrap_model(model)
    if state["best_epoch"] is not None:
        _load_best(unwrapped, run_dir)
    in_sync = _replicas_in_sync(accelerator, model)
    predictions = generate_reports(accelerator, model, test_loader, tokenizer, generation_kwargs, description="test")
    test_set = splits["test"]
    test_reports = list(test_set["report"])
    ordered = [predictions[i] for i in range(len(test_reports))]
    test_scores, skipped = score_reports(
        ordered, test_reports, config.evaluation.test_metrics, config.evaluation.protocol, tokenizer, max_length
    )
    model_dir = None
    if main:
        ids = list(test_set["id"]) if "id" in getattr(test_set, "column_names", []) else list(range(len(ordered)))
        with open(run_dir / "predictions.jsonl", "w", encoding="utf-8") as handle:
            for example_id, prediction, reference in zip(ids, ordered, test_reports):
                handle.write(json.dumps({"id": example_id, "prediction": prediction, "reference": reference}) + "\n")
        metrics = {
            "method": config.method,
            "val_metric": loop.val_metric,
            "best_epoch": None if state["best_epoch"] is None else state["best_epoch"] + 1,
            "best_val": state["best_metric"],
            "epochs_trained": state["epoch"] + 1,
            "stopped_early": state["stopped_early"],
            "test": test_scores,
            "skipped_metrics": skipped,
            "val_history": [
                {k: v for k, v in r.items() if k.startswith("val/") or k == "epoch"} for r in state["history"]
            ],
            "protocol": config.evaluation.protocol,
            "generation": {**generation_kwargs},
            "num_test": len(ordered),
            "num_processes": accelerator.num_processes,
            "replicas_in_sync": in_sync,
        }
        if hooks.metadata:
            metrics["recipe"] = hooks.metadata
        _write_json_atomic(run_dir / "metrics.json", metrics)
        model_dir = export_run_model(unwrapped, processor, run_dir)
        plot_training_curves(state["history"], run_dir / "training_curves.png")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if main:
        print(format_run_summary(run_dir))
    return FitResult(
        run_dir=run_dir, best_epoch=state["best_epoch"], best_metric=state["best_metric"], val_metric=loop.val_metric,
        test_metrics=test_scores, epochs_trained=state["epoch"] + 1, history=state["history"],
        model_dir=run_dir / MODEL_DIR,
    )


def export_run_model(model: Any, processor: Any, run_dir: Path) -> Path:
    """`RUN_DIR/model/`: the model and processor `save_pretrained`; then `hf_rrg.hub.export_model` turns it into
    a full Hub repo when that helper is available."""
    out = run_dir / MODEL_DIR
    tmp = run_dir / f".tmp_{MODEL_DIR}"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp))
    processor.save_pretrained(str(tmp))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    try:
        from hf_rrg.hub import export_model
    except ImportError:
        return out
    exported = run_dir / f".tmp_export_{MODEL_DIR}"
    if exported.exists():
        shutil.rmtree(exported)
    export_model(run_dir, exported)
    shutil.rmtree(out)
    os.replace(exported, out)
    return out


__all__ = [
    "EpochPermutationSampler",
    "FitResult",
    "build_model",
    "distributed_state",
    "export_run_model",
    "fit",
    "load_datasets",
    "make_accelerator",
    "prepare_splits",
]
