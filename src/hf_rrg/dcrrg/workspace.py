"""DCRRG's `recipe_options` and the workspace every stage shares: splits, labelled samples, the report and text
tokenizers, pixels and text on the engine's device, and the step models read from / written to the run folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..modeling.configuration_dcrrg import DCRRGConfig
from ..modeling.modeling_dcrrg import DCRRGForConditionalGeneration
from ..training.config import ConfigError, TrainingConfig, parse_section
from ..training.recipes import StageContext
from .data import DCRRGSamples

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
        checkpoint_every: obsolete; every stage checkpoints through the training engine after each epoch (and
            every `training.checkpoint_every_steps` optimizer steps). Kept so that older configs load.
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


class Workspace:
    """What every stage needs: splits, samples with labels, tokenizer, image processor, text tokenizer."""

    def __init__(self, context: StageContext) -> None:
        from ..modeling.image_processing_rrg import RRGImageProcessor
        from ..training.run_setup import prepare_splits, prepare_tokenizer
        from ..training.runtime import distributed_state

        self.context, self.config = context, context.config
        self.options = recipe_options(self.config)
        self.seed = self.config.training.seed if self.options.seed is None else self.options.seed
        state = distributed_state(self.config)
        self.splits = prepare_splits(self.config, state, context.datasets)
        self.tokenizer = prepare_tokenizer(self.config, context.run_dir, list(self.splits["train"]["report"]), state)
        self.processor = RRGImageProcessor(**self.config.image_processor)
        self.state = state
        self.device = state.device  # the engine's device (Accelerate's choice for this process)
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
        """The eval transform of `studies` on the engine's device. Views may be anything `load_image` reads (PIL
        images, paths, the undecoded `{"bytes", "path"}` cells of `report_folder`): the processor decodes them."""
        inputs = self.processor([list(study) for study in studies])
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


def load_model(folder: Path, device: torch.device) -> DCRRGForConditionalGeneration:
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} holds no model: run the stage that writes it first (`--stage ...`)")
    return DCRRGForConditionalGeneration.from_pretrained(str(folder)).to(device)


def previous_model(work: Workspace, stages: tuple[str, ...]) -> DCRRGForConditionalGeneration:
    """The newest model written by one of `stages` (in order of preference), else a fresh one."""
    for stage in stages:
        folder = work.context.run_dir / stage / "model"
        if (folder / "config.json").is_file():
            return load_model(folder, work.device)
    return fresh_model(work)


def fresh_model(work: Workspace) -> DCRRGForConditionalGeneration:
    torch.manual_seed(work.seed)
    config = work.model_config()
    model = DCRRGForConditionalGeneration(config)
    if config.visual_pretrained:
        model.load_pretrained_backbone()
    if config.text_encoder_name_or_path:
        model.load_pretrained_text_encoder()
    return model.to(work.device)


__all__ = [
    "DCRRGRecipeOptions",
    "Workspace",
    "fresh_model",
    "load_model",
    "previous_model",
    "recipe_options",
]
