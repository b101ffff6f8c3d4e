"""DCRRG's training recipe: `pretrain` (steps 1+2) -> `describe` (step 3) -> `prompt` (step 4).

Every step is a task of the shared training engine (`hf_rrg.training.engine`: devices, DDP, mixed precision,
gradient accumulation, logs in `RUN_DIR/logs/step<N>_*.jsonl`, atomic checkpoints with the optimizer moments in
`RUN_DIR/<stage>/<step>/checkpoints/`, exact resume, also mid-epoch with `training.checkpoint_every_steps`); the
objectives are in `hf_rrg.dcrrg.objectives`. A stage writes its result under `RUN_DIR/<stage>/` and can be re-run
alone (`--stage describe`).

- `pretrain`: step 1 (§3.1) per-observation CE on image and text instances (uncertain excluded, `balancing` =
  per-observation re-sampling, `extra_data` = another builder's train split as extra uni-modal samples), then
  step 2 (§3.2) L_CSM on the paired samples (zero prompt: the study-level embedding). AdamW 1e-4, weight decay
  1e-6, batch 32 (Appendix A); only DCCLIP trains. -> `RUN_DIR/pretrain/model`.
- `describe`: step 3 (§3.3) the decoder learns each observation's description from the image and from the
  report text, L_RG (Eq. 14). AdamW 1e-4, batch 16. -> `RUN_DIR/describe/model`.
- `prompt`: step 4 (§3.4) full reports. `finetuning: prompt` (PT, the paper): PEFT P-Tuning v2 prefix + the
  re-initialised head, all else frozen, trained through the same engine -> `RUN_DIR/prompt/adapter` (a PEFT
  adapter); `finetuning: full` (FFT, Table 4 model 7): every parameter trained. Either way `RUN_DIR/model` is the
  complete Hub-ready export of a plain hf-rrg model (prefix merged; code files, card, `auto_map`, processor), with
  `predictions.jsonl` and `metrics.json` (test split, scored once at the end).

Table 4 ablations: `run_step1`, `run_step2`, `run_step3` switch the steps off (without step 3, step 4 must be FFT,
as the paper notes). Table 5: `balancing`, `extra_data`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import torch

from ..training.recipes import Recipe, Stage, StageContext
from .data import batches, description_instances, observation_instances
from .objectives import step1_loss, step2_loss, step3_loss, step4_loss, step_task
from .workspace import DCRRGRecipeOptions, Workspace, fresh_model, previous_model, recipe_options

STAGES = ("pretrain", "describe", "prompt")


def _train(work: Workspace, folder: str, task: Any) -> Any:
    """Run one step's task in `RUN_DIR/<folder>/checkpoints`; returns the engine's result."""
    from ..training.engine import run_stage_task

    return run_stage_task(work.context, task, folder)


def _history(step: str, run: Any) -> list[dict[str, Any]]:
    return [{"step": step, "epoch": record["epoch"], "loss": record.get("train/loss")} for record in run.history]


def _engine_facts(runs: list[Any]) -> dict[str, Any]:
    """How the step(s) ran: processes, whether every replica ended with the same weights, precision."""
    return {"num_processes": max((run.num_processes for run in runs), default=1),
            "replicas_in_sync": all(run.replicas_in_sync for run in runs),
            "mixed_precision": sorted({run.mixed_precision for run in runs})}  # fmt: skip


def _save_stage_model(work: Workspace, model: Any, folder: str) -> str:
    """Save a stage's model on the main process (others wait); returns its path."""
    from ..training.state_io import save_pretrained_atomic

    path = work.context.run_dir / folder
    if work.state.is_main_process:
        save_pretrained_atomic(path, model)
    work.state.wait_for_everyone()
    return str(path)


# --------------------------------------------------------------------------------------------- steps 1 + 2


def pretrain_stage(context: StageContext) -> dict[str, Any]:
    """Steps 1 and 2 -> `RUN_DIR/pretrain/model`."""
    work = Workspace(context)
    options, samples = work.options, work.samples("train")
    model = fresh_model(work)
    model.requires_grad_(False)
    model.dcclip.requires_grad_(True)  # steps 1-2 train DCCLIP only
    pairs = [i for i, s in enumerate(samples.samples) if s.images is not None and s.report is not None]

    def step1_batches(epoch: int) -> list[list]:
        items = observation_instances(samples, "image", options.balancing, work.seed, epoch)
        items += observation_instances(samples, "text", options.balancing, work.seed, epoch)
        return batches(items, options.pretrain_batch_size, shuffle=True, seed=work.seed, epoch=epoch)

    def step2_batches(epoch: int) -> list[list]:
        return [b for b in batches(pairs, options.pretrain_batch_size, True, work.seed, epoch) if len(b) > 1]

    plan = [(step, epochs, loss, make) for step, run, epochs, loss, make in (
        ("step1", options.run_step1, options.step1_epochs, step1_loss, step1_batches),
        ("step2", options.run_step2, options.step2_epochs, step2_loss, step2_batches),
    ) if run]  # fmt: skip
    history: list[dict[str, Any]] = []
    runs = []
    for step, epochs, loss, make in plan:
        run = _train(work, f"pretrain/{step}", step_task(work, step, model, loss, make, epochs, options.lr,
                                                        options.weight_decay))  # fmt: skip
        model = run.unwrapped.model
        history += _history(step, run)
        runs.append(run)
    model.requires_grad_(True)
    path = _save_stage_model(work, model, "pretrain/model")
    return {"model": path, "steps": [step for step, *_ in plan], "balancing": options.balancing,
            "extra_data": options.extra_data, "history": history, **_engine_facts(runs)}  # fmt: skip


# --------------------------------------------------------------------------------------------- step 3


def describe_stage(context: StageContext) -> dict[str, Any]:
    """Step 3 -> `RUN_DIR/describe/model`."""
    work = Workspace(context)
    options = work.options
    if not options.run_step3:
        return {"skipped": "recipe_options.run_step3 is false (Table 4 ablation)"}
    model = previous_model(work, ("pretrain",))
    instances = description_instances(work.samples("train"), options.use_text_view)
    if not instances:
        raise ValueError("no report of the train split describes any observation: step 3 has nothing to learn")

    def make(epoch: int) -> list[list]:
        return batches(instances, options.decoder_batch_size, shuffle=True, seed=work.seed, epoch=epoch)

    task = step_task(work, "step3", model, step3_loss, make, options.step3_epochs, options.decoder_lr,
                     options.decoder_weight_decay)  # fmt: skip
    run = _train(work, "describe/step3", task)
    path = _save_stage_model(work, run.unwrapped.model, "describe/model")
    return {"model": path, "instances": len(instances), "history": _history("step3", run), **_engine_facts([run])}


# --------------------------------------------------------------------------------------------- step 4


def _prompt_model(work: Workspace) -> Any:
    """Step 4's model: the step-3 model wrapped with a fresh P-Tuning v2 adapter (PT), or the latest model (FFT)."""
    from .prefix import add_prefix_adapter

    options = work.options
    if options.finetuning == "prompt":
        base = previous_model(work, ("describe",))
        return add_prefix_adapter(base, options.num_virtual_tokens, options.prefix_hidden_size, seed=work.seed)
    return previous_model(work, ("describe", "pretrain"))


def prompt_stage(context: StageContext) -> dict[str, Any]:
    """Step 4 -> `RUN_DIR/prompt/adapter` (PT), `RUN_DIR/model` (Hub-ready), `predictions.jsonl`, `metrics.json`."""
    from .prefix import count_trainable, merge_prefix

    work = Workspace(context)
    options, config = work.options, context.config
    rows = [i for i, s in enumerate(work.samples("train").samples) if s.images is not None and s.report]
    model = _prompt_model(work)
    trainable = count_trainable(model)
    prompt = options.finetuning == "prompt"

    def make(epoch: int) -> list[list]:
        return batches(rows, options.decoder_batch_size, shuffle=True, seed=work.seed, epoch=epoch)

    def loss(workspace: Workspace, module: Any, items: list) -> torch.Tensor:
        return step4_loss(workspace, module, items, frozen_encoder=prompt)

    task = step_task(work, "step4", model, loss, make, options.step4_epochs, options.decoder_lr,
                     options.decoder_weight_decay)  # fmt: skip
    run = _train(work, "prompt/step4", task)
    model = run.unwrapped.model
    if prompt:
        _save_stage_model(work, model, "prompt/adapter")
        model = merge_prefix(model)
    for key, value in config.generation.as_kwargs().items():
        setattr(model.generation_config, key, value)
    return {**finish(work, model.eval()), "finetuning": options.finetuning, "trainable_parameters": trainable,
            "history": _history("step4", run), **_engine_facts([run])}  # fmt: skip


def finish(work: Workspace, model: Any) -> dict[str, Any]:
    """On the main process: generate on test once, write `predictions.jsonl` and `metrics.json`, then export
    `RUN_DIR/model` as a complete Hub repo (code, card with the test scores, `auto_map`, processor)."""
    from ..modeling.processing_rrg import RRGProcessor
    from ..training.evaluation import score_reports
    from ..training.loop import export_run_model
    from ..training.state_io import write_json_atomic

    run_dir, config = work.context.run_dir, work.context.config
    scores: dict[str, Any] = {}
    if work.state.is_main_process:
        test = work.splits["test"]
        predictions = generate_test_reports(work, model, test)
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
        write_json_atomic(run_dir / "metrics.json", metrics)
        processor = RRGProcessor(image_processor=work.processor, tokenizer=work.tokenizer)
        export_run_model(model, processor, run_dir)
        print(f"DCRRG model: {run_dir / 'model'}; test metrics: {run_dir / 'metrics.json'}")
    work.state.wait_for_everyone()
    if not work.state.is_main_process:
        scores = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["test"]
    return {"model_dir": str(run_dir / "model"), "test": scores}


@torch.no_grad()
def generate_test_reports(work: Workspace, model: Any, test: Any) -> list[str]:
    config = work.context.config
    predictions: list[str] = []
    for chunk in work.progress(batches(list(range(len(test))), config.training.eval_batch_size), "test"):
        inputs = work.pixels([list(test[i]["images"]) for i in chunk])
        generated = model.generate(**inputs, **config.generation.as_kwargs())
        predictions += work.tokenizer.batch_decode(generated, skip_special_tokens=True)
    return predictions


def dcrrg_recipe() -> Recipe:
    """`pretrain` -> `describe` -> `prompt`."""
    return Recipe("dcrrg", (Stage("pretrain", pretrain_stage), Stage("describe", describe_stage),
                            Stage("prompt", prompt_stage)))  # fmt: skip


__all__ = [
    "STAGES",
    "DCRRGRecipeOptions",
    "Workspace",
    "dcrrg_recipe",
    "describe_stage",
    "finish",
    "pretrain_stage",
    "prompt_stage",
    "recipe_options",
    "step1_loss",
    "step2_loss",
    "step3_loss",
    "step4_loss",
]
