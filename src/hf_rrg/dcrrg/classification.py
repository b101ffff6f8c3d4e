"""DCCLIP image classification: the paper's Table 3 (§4.4.3) on any labelled dataset.

The paper follows ConVIRT's protocol: a **linear probe** trains one linear layer on the frozen image encoder's
feature v (E_img's pooled CNN feature, Eq. 1a); **fine-tuning** trains E_img and the linear layer together. Each
setting uses 1%, 10% or 100% of the training data, and the AUROC of the test split is averaged over five runs.
Here the labels are the ones DCRRG's step 1 learns from (`label_reports`: hf-rrg's CheXpert labeler on each report;
positive 1, negative and unmentioned 0, uncertain left out of the loss and of AUROC), so any builder with reports
works. One output per observation (multi-label), binary cross-entropy over the labelled (study, observation) pairs.
Each run draws its share of the train split with its own seed (seed + run), trains through hf-rrg's one training
engine (`hf_rrg.training.engine`: checkpoints, logs and resume in `OUT/run<k>/`), keeps the epoch with the best
mean validation AUROC (the last epoch when the validation split has no observation with both classes), and scores
the test split once. AUROC: `hf_rrg.metrics.clinical.auroc` through `observation_auroc`. The data side (labelled
splits, loaders, shared features) lives in `classification_data`.

Where the paper is silent, hf-rrg's defaults (all options of `ClassificationSettings`): AdamW, learning rate 1e-3
(linear probe) / 1e-4 (fine-tuning), weight decay 1e-6, 10 epochs, batch 32, the model's evaluation transform (no
augmentation), BatchNorm statistics frozen in the linear probe (features are computed once, in eval mode).
`init`: `model` (the DCCLIP encoder), `random` and `imagenet` (the table's "Random" and "ImageNet" rows: the same
backbone freshly initialised, or with timm's ImageNet weights).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..modeling.dcclip import study_image_features
from ..modeling.visual_extractor import VisualExtractor
from .classification_data import (
    ClassificationData,
    LabelledSplit,
    feature_loader,
    labelled_split,
    study_features,
    study_loader,
    train_rows,
)
from .classification_table import ClassificationTable, RunResult, finite_or_none
from .observations import IGNORE
from .retrieval import observation_auroc

MODES = ("linear-probe", "fine-tune")
INITS = ("model", "random", "imagenet")
DEFAULT_LR = {"linear-probe": 1e-3, "fine-tune": 1e-4}
SELECTION_SCORE = "mean_auroc"
CLASSIFIER = "classifier"


@dataclass
class ClassificationSettings:
    """How Table 3 is run (paper, §4.4.3: train fractions 1% / 10% / 100%, five runs; the rest is not stated).

    Attributes:
        mode: `linear-probe` (E_img frozen) or `fine-tune` (E_img trained).
        train_fraction: share of the train split each run draws (Table 3: 0.01, 0.1, 1.0).
        runs: runs averaged (the paper: 5).
        epochs / batch_size / lr / weight_decay: AdamW training (lr None: 1e-3 linear probe, 1e-4 fine-tuning).
        init: `model`, `random` or `imagenet` (the table's baseline rows).
        seed: run k uses seed + k for its draw, its head and its data order.
        progress: progress bars.
    """

    mode: str
    train_fraction: float = 1.0
    runs: int = 5
    epochs: int = 10
    batch_size: int = 32
    lr: float | None = None
    weight_decay: float = 1e-6
    init: str = "model"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must lie in (0, 1] (Table 3: 0.01, 0.1, 1), got {self.train_fraction}")
        for name in ("runs", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def learning_rate(self) -> float:
        return DEFAULT_LR[self.mode] if self.lr is None else self.lr


# --------------------------------------------------------------------------------------------- the modules


class ImageEncoder(nn.Module):
    """E_img: `forward(pixel_values, view_mask)` -> v (B, D), the study's pooled CNN feature (Eq. 1a)."""

    def __init__(self, visual_extractor: VisualExtractor) -> None:
        super().__init__()
        self.visual_extractor = visual_extractor

    @property
    def num_features(self) -> int:
        return self.visual_extractor.num_features

    def forward(self, pixel_values: torch.Tensor, view_mask: torch.Tensor | None = None) -> torch.Tensor:
        return study_image_features(self.visual_extractor, pixel_values, view_mask)


def masked_binary_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the (study, observation) pairs whose label is 0 or 1 (`IGNORE` = uncertain, left out)."""
    kept = labels != IGNORE
    if not kept.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[kept], labels[kept].to(logits.dtype))


class ObservationClassifier(nn.Module):
    """A linear layer over v, one output per observation; with an `encoder` it reads pixels (fine-tuning),
    without one precomputed features (the linear probe). `forward(labels, ...)` -> the masked BCE loss."""

    def __init__(self, num_features: int, num_observations: int, encoder: ImageEncoder | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(num_features, num_observations)

    def logits(self, features: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None,
               view_mask: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        if self.encoder is not None:
            features = self.encoder(pixel_values, view_mask)
        return self.head(features)

    def forward(self, labels: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        return masked_binary_cross_entropy(self.logits(**inputs), labels)


# --------------------------------------------------------------------------------------------- prediction


@torch.no_grad()
def predict(classifier: ObservationClassifier, loader: DataLoader, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigmoid probabilities (N, L), labels (N, L)) of every batch of `loader`, the classifier in eval mode."""
    classifier.eval()
    probabilities, labels = [], []
    for batch in loader:
        inputs = {key: value.to(device) for key, value in batch.items() if key != "labels"}
        probabilities.append(torch.sigmoid(classifier.logits(**inputs)).float().cpu())
        labels.append(batch["labels"])
    return torch.cat(probabilities), torch.cat(labels)


# --------------------------------------------------------------------------------------------- one run


def image_encoder(model: Any, init: str, seed: int) -> ImageEncoder:
    """E_img of `model` (`init="model"`, a copy), or the same backbone freshly initialised (`random`, seeded) or
    with timm's ImageNet weights (`imagenet`)."""
    if init == "model":
        return ImageEncoder(copy.deepcopy(model.dcclip.visual_extractor))
    torch.manual_seed(seed)
    extractor = VisualExtractor(model.config.visual_backbone)
    if init == "imagenet":
        extractor.load_pretrained_backbone()
    return ImageEncoder(extractor)


class ClassificationRun:
    """Run `index` of a table: draws its train rows, builds the classifier, trains it through the engine in
    `folder`, keeps the best epoch's weights in `folder/classifier.*` and scores the test split."""

    def __init__(self, index: int, model: Any, data: ClassificationData, settings: ClassificationSettings,
                 folder: Path, accelerator: Any) -> None:  # fmt: skip
        self.index, self.model, self.data, self.settings = index, model, data, settings
        self.folder, self.accelerator = folder, accelerator
        self.seed = settings.seed + index
        self.rows = train_rows(len(data.train.labels), settings.train_fraction, self.seed)

    def run(self, resume: bool) -> RunResult:
        from ..training.engine import Engine
        from ..training.resume import ResumePolicy
        from ..training.runtime import seed_everything

        seed_everything(self.seed)
        settings, device = self.settings, self.accelerator.device
        self.encoder = image_encoder(self.model, settings.init, self.seed).to(device)
        self.classifier = self.build_classifier().to(device)
        loaders = self.loaders()
        task = self.task(loaders)
        engine = Engine(self.accelerator, self.folder, self.folder / "checkpoints", ResumePolicy(resume=resume),
                        replace_previous=True)  # fmt: skip
        trained = engine.run(task)
        if self.accelerator.is_main_process and (task.selection is None or not self.saved()):
            self.save(trained.unwrapped)  # no selection (or nothing improved): the last epoch
        self.accelerator.wait_for_everyone()
        self.load_saved()
        probabilities, labels = predict(self.classifier, loaders["test"], device)
        if self.accelerator.is_main_process:
            self.write_predictions(probabilities, labels)
        auroc = observation_auroc(probabilities, labels, self.data.observations)
        kept = trained.state["best_epoch"] if task.selection else settings.epochs - 1
        return RunResult(seed=self.seed, train_samples=len(self.rows), best_epoch=None if kept is None else kept + 1,
                         auroc={name: finite_or_none(auroc[name]) for name in self.data.observations})  # fmt: skip

    def build_classifier(self) -> ObservationClassifier:
        torch.manual_seed(self.seed)
        fine_tune = self.settings.mode == "fine-tune"
        return ObservationClassifier(self.encoder.num_features, len(self.data.observations),
                                     self.encoder if fine_tune else None)  # fmt: skip

    def loaders(self) -> dict[str, DataLoader | None]:
        """Training (order from (seed, epoch)), validation and test loaders; the linear probe's read features."""
        from ..training.run_setup import EpochPermutationSampler

        data, size, device = self.data, self.settings.batch_size, self.accelerator.device
        train = data.train.select(self.rows)
        sampler = EpochPermutationSampler(len(train.labels), self.seed)
        splits = {"validation": data.validation, "test": data.test}
        if self.settings.mode == "fine-tune":
            loaders = {role: None if split is None else study_loader(split, data.processor, size)
                       for role, split in splits.items()}  # fmt: skip
            return {"train": study_loader(train, data.processor, size, sampler), **loaders}
        progress = self.settings.progress and self.accelerator.is_local_main_process

        def features(split: LabelledSplit, role: str) -> torch.Tensor:
            shared = role != "train" and self.settings.init == "model"  # the same encoder in every run
            if shared and role in data.shared_features:
                return data.shared_features[role]
            values = study_features(self.encoder, split, data.processor, size, device, progress, f"{role} features")
            if shared:
                data.shared_features[role] = values
            return values

        loaders = {role: None if split is None else feature_loader(features(split, role), split.labels, size)
                   for role, split in splits.items()}  # fmt: skip
        return {"train": feature_loader(features(train, "train"), train.labels, size, sampler), **loaders}

    def task(self, loaders: dict[str, DataLoader | None]) -> Any:
        from ..training.engine import LoopSettings, TrainingTask

        settings, names, device = self.settings, self.data.observations, self.accelerator.device
        selection = SELECTION_SCORE if self.data.has_selection() else None

        def evaluate(module: nn.Module, epoch: int) -> dict[str, float]:
            scores = observation_auroc(*predict(unwrap(module), loaders["validation"], device), names)
            return {SELECTION_SCORE: scores["Average AUROC"]}

        return TrainingTask(
            name="classify", model=self.classifier, train_loader=loaders["train"],
            optimizer=lambda module: torch.optim.AdamW([p for p in module.parameters() if p.requires_grad],
                                                       lr=settings.learning_rate, weight_decay=settings.weight_decay),
            settings=LoopSettings(epochs=settings.epochs, seed=self.seed, progress=settings.progress),
            evaluate=evaluate if selection else None, selection=selection, on_best=self.save,
        )  # fmt: skip

    # -------------------------------------------------------------------------------- the kept weights

    def saved(self) -> bool:
        return (self.folder / f"{CLASSIFIER}.safetensors").is_file()

    def save(self, classifier: nn.Module) -> None:
        """`folder/classifier.{json,safetensors}`: the head and the image encoder the predictions use (the
        unchanged one for the linear probe)."""
        from ..training.state_io import save_tensors_json

        save_tensors_json(self.folder, CLASSIFIER, {
            "mode": self.settings.mode, "observations": self.data.observations,
            "head": {k: v.detach().cpu().clone() for k, v in classifier.head.state_dict().items()},
            "image_encoder": {k: v.detach().cpu().clone() for k, v in self.encoder.state_dict().items()},
        })  # fmt: skip

    def load_saved(self) -> None:
        state = read_classifier(self.folder)
        self.classifier.head.load_state_dict(state["head"])
        self.encoder.load_state_dict(state["image_encoder"])

    def write_predictions(self, probabilities: torch.Tensor, labels: torch.Tensor) -> None:
        """`folder/predictions.jsonl`: each test study's id, probability and label (null: uncertain) per
        observation."""
        names = self.data.observations
        rows = zip(self.data.test.ids, probabilities.tolist(), labels.tolist())
        lines = [json.dumps({"id": sample_id, "probabilities": dict(zip(names, row)),
                             "labels": {n: (None if y == IGNORE else y) for n, y in zip(names, label)}}) + "\n"
                 for sample_id, row, label in rows]  # fmt: skip
        (self.folder / "predictions.jsonl").write_text("".join(lines), encoding="utf-8")


def unwrap(module: nn.Module) -> nn.Module:
    """The classifier inside a DDP wrapper."""
    return getattr(module, "module", module)


def read_classifier(folder: Path) -> dict[str, Any]:
    """What a run saved: `{"mode", "observations", "head": state, "image_encoder": state}`."""
    from ..training.state_io import load_tensors_json

    return load_tensors_json(Path(folder), CLASSIFIER)


# --------------------------------------------------------------------------------------------- the table


def classify(model: Any, data: ClassificationData, settings: ClassificationSettings, out: Path,
             names: dict[str, str], resume: bool = False) -> ClassificationTable:  # fmt: skip
    """Run `settings.runs` runs into `out/run<k>/` and write `out/table3.{json,md}`. `names`: {"model", "dataset"}
    as shown in the table."""
    from ..training.runtime import plain_accelerator

    accelerator = plain_accelerator()
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        check_resumable(out / "settings.json", asdict(settings), resume)
    accelerator.wait_for_everyone()
    model.eval()
    results = []
    for index in range(settings.runs):
        folder = out / f"run{index + 1}"
        results.append(ClassificationRun(index, model, data, settings, folder, accelerator).run(resume))
    table = ClassificationTable(
        mode=settings.mode, model=names["model"], dataset=names["dataset"], train_fraction=settings.train_fraction,
        observations=list(data.observations), test_samples=len(data.test.labels),
        selection="best mean validation AUROC" if data.has_selection() else "the last (no validation AUROC)",
        runs=results, settings={**asdict(settings), "learning_rate": settings.learning_rate},
    )  # fmt: skip
    if accelerator.is_main_process:
        table.write(out)
    accelerator.wait_for_everyone()
    return table


def check_resumable(path: Path, settings: dict[str, Any], resume: bool) -> None:
    """Record the settings; `resume` continues only runs made with the same ones (progress bars aside)."""
    from ..training.state_io import write_json_atomic

    if resume and path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(key for key in settings if key != "progress" and before.get(key) != settings[key])
        if changed:
            raise ValueError(f"{path.parent} was made with other settings ({', '.join(changed)} differ): drop "
                             "--resume to start again there, or choose another --out")  # fmt: skip
    write_json_atomic(path, settings)


__all__ = [
    "ClassificationData",
    "ClassificationRun",
    "ClassificationSettings",
    "ImageEncoder",
    "ObservationClassifier",
    "classify",
    "labelled_split",
    "masked_binary_cross_entropy",
    "read_classifier",
    "train_rows",
]
