"""F1-CheXbert: the CheXbert labeler (Smit et al., EMNLP 2020) applied to generated and reference reports.

CheXbert is a BERT-base encoder whose [CLS] state feeds 14 linear heads: 13 observations with 4 classes
(0 blank, 1 positive, 2 negative, 3 uncertain) and "No Finding" with 2 (0 blank, 1 positive). Its weights are
``chexbert.pth`` in the Hub repo ``StanfordAIMI/RRG_scorers`` (where the `f1chexbert` package and RadEval
fetch them), with the ``bert-base-uncased`` WordPiece vocabulary. Reports are whitespace-normalised and
truncated to 512 tokens ([CLS] + 510 + [SEP]), as the `f1chexbert` package does.

F1-CheXbert as reported in the literature (e.g. Miura et al., NAACL 2021; the `f1chexbert` package's "rrg"
mode): an observation is present when labelled positive *or uncertain*; micro- and macro-averaged P/R/F1 over
the 14 observations and over the five of the CheXpert competition (Cardiomegaly, Edema, Consolidation,
Atelectasis, Pleural Effusion). Keys: ``f1chexbert_{micro|macro}_{precision|recall|f1}_{14|5}``.

Why not call the `f1chexbert` package (0.0.2): with transformers 5 and huggingface_hub 1.x it fails (it calls
the removed ``encode_plus`` and ``hf_hub_download(force_filename=...)``). This module loads the same
checkpoint into the same architecture (with ``torch.load(weights_only=True)``) and labels in batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .clinical import CHEXPERT_OBSERVATIONS
from .statistics import LabelStatistics
from .weights import default_device, model_file, model_folder

CHEXBERT_WEIGHTS = "StanfordAIMI/RRG_scorers"
CHEXBERT_FILE = "chexbert.pth"
CHEXBERT_TOKENIZER = "bert-base-uncased"
# CheXbert's head order (13 four-class heads, then "No Finding").
CHEXBERT_CONDITIONS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation",
    "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices", "No Finding",
)
TOP5: tuple[str, ...] = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")
# Head class -> CheXpert label value (1 positive, 0 negative, -1 uncertain, NaN blank).
_CLASS_VALUES = np.array([np.nan, 1.0, 0.0, -1.0])


def _build_model(state: dict, config_path: Path | None):
    import torch
    from transformers import BertConfig, BertModel

    class CheXbert(torch.nn.Module):
        def __init__(self, config: BertConfig) -> None:
            super().__init__()
            self.bert = BertModel(config)
            hidden = config.hidden_size
            self.linear_heads = torch.nn.ModuleList(
                [torch.nn.Linear(hidden, 4) for _ in range(13)] + [torch.nn.Linear(hidden, 2)]
            )

        def forward(self, input_ids, attention_mask):
            cls = self.bert(input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]
            return [head(cls) for head in self.linear_heads]

    # bert-base-uncased is BertConfig's default; a config.json beside the weights overrides it.
    config = BertConfig.from_json_file(str(config_path)) if config_path is not None else BertConfig()
    model = CheXbert(config)
    missing, _ = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if not key.endswith(("position_ids", "token_type_ids"))]
    if missing:
        raise ValueError(f"the CheXbert checkpoint lacks {len(missing)} weights (e.g. {missing[:3]}); is it chexbert.pth?")
    return model.eval()


@dataclass
class CheXbertLabeler:
    """The CheXbert labeler; `label_matrix(reports)` gives (N, 14) labels in `CHEXPERT_OBSERVATIONS` order."""

    weights: str = CHEXBERT_WEIGHTS
    tokenizer: str | None = None
    device: str | None = None
    batch_size: int = 32

    def __post_init__(self) -> None:
        import torch
        from transformers import AutoTokenizer

        path = model_file(self.weights, CHEXBERT_FILE, "F1-CheXbert", "the CheXbert weights", "--chexbert-weights")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - a damaged or foreign file
            raise ValueError(f"{path} is not a readable CheXbert checkpoint ({type(error).__name__}: {error})") from None
        state = checkpoint.get("model_state_dict", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f"{path} holds no CheXbert state dict ('model_state_dict')")
        state = {key.removeprefix("module."): value for key, value in state.items()}
        config = path.parent / "config.json"
        self.model = _build_model(state, config if config.is_file() else None)
        source = self.tokenizer or (str(path.parent) if (path.parent / "vocab.txt").is_file() else CHEXBERT_TOKENIZER)
        folder = model_folder(source, "F1-CheXbert", "the tokenizer", "--chexbert-tokenizer",
                              allow_patterns=["vocab.txt", "tokenizer*.json", "special_tokens_map.json", "config.json"])
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.device = default_device(self.device)
        self.model.to(self.device)
        self._torch = torch

    def head_classes(self, reports: Sequence[str]) -> np.ndarray:
        """(N, 14) arg-max class of each head (CheXbert's head order)."""
        torch = self._torch
        texts = [" ".join(report.split()) for report in reports]
        out = np.zeros((len(texts), 14), dtype=np.int64)
        for start in range(0, len(texts), self.batch_size):
            batch = self._tokenizer(texts[start : start + self.batch_size], truncation=True, max_length=512,
                                    padding=True, return_tensors="pt")
            with torch.no_grad():
                logits = self.model(batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device))
            out[start : start + len(batch["input_ids"])] = torch.stack([h.argmax(dim=1) for h in logits], 1).cpu().numpy()
        return out

    def label_matrix(self, reports: list[str]) -> np.ndarray:
        """(N, 14) labels 1 / 0 / -1 / NaN in `hf_rrg.metrics.CHEXPERT_OBSERVATIONS` order."""
        values = _CLASS_VALUES[self.head_classes(reports)]
        columns = [CHEXBERT_CONDITIONS.index(name) for name in CHEXPERT_OBSERVATIONS]
        return values[:, columns]


def chexbert_statistics(predicted: np.ndarray, reference: np.ndarray) -> LabelStatistics:
    """F1-CheXbert statistics from two label matrices in `CHEXPERT_OBSERVATIONS` order (uncertain = present)."""
    present = [np.isin(np.asarray(m, dtype=np.float64), (1.0, -1.0)) for m in (predicted, reference)]
    top5 = [CHEXPERT_OBSERVATIONS.index(name) for name in TOP5]
    return LabelStatistics(present[0], present[1], prefix="f1chexbert",
                           groups={"_14": list(range(len(CHEXPERT_OBSERVATIONS))), "_5": top5}, kinds=("micro", "macro"))


def f1chexbert(
    predictions: Sequence[str], references: Sequence[str], labeler: CheXbertLabeler | None = None, **options
) -> dict[str, float]:
    """F1-CheXbert scores of predictions against one reference each; `options` go to `CheXbertLabeler`."""
    labeler = labeler or CheXbertLabeler(**options)
    statistics = chexbert_statistics(labeler.label_matrix(list(predictions)), labeler.label_matrix(list(references)))
    return {name: float(value[0]) for name, value in statistics.corpus(np.ones((1, statistics.n_rows))).items()}


__all__ = ["CHEXBERT_CONDITIONS", "CHEXBERT_FILE", "CHEXBERT_WEIGHTS", "CheXbertLabeler", "chexbert_statistics",
           "f1chexbert"]
