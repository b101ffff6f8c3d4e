"""BERTScore (Zhang et al., ICLR 2020) with the conventions of the `bert-score` package (0.3.13).

Per pair: each text is encoded with the model's special tokens (stripped first; byte-level BPE tokenizers get
a leading space; truncated at the tokenizer's ``model_max_length``); the token embeddings of hidden layer
`num_layers` are L2-normalised; every candidate token is matched to its most similar reference token and vice
versa, P = sum_i w_i max_j cos(x_i, y_j) / sum_i w_i over candidate tokens, R likewise over reference tokens,
F = 2PR / (P + R). Token weights are 1 with the start/end tokens at 0, or with `idf=True`
w(t) = log((M + 1) / (df(t) + 1)) over the M references (Eq. 3). A text that is empty scores P = R = F = 0. With
several references an item keeps the largest P, R and F separately. `rescale_with_baseline` maps each score x
to (x - b) / (1 - b) with the package's baseline b for the model and layer (Sec. 3, "Baseline Rescaling").

Defaults are the package's for English: ``roberta-large``, layer 17, no idf, no rescaling. Why not call the
package: with transformers 5 it fails on an empty candidate or reference (it calls the removed
``build_inputs_with_special_tokens``), and generated reports can be empty. The package is still used, when
installed, for its baseline files, and it is the test oracle (tests/test_metrics_learned.py).
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MetricFileMissingError
from .inputs import as_reference_lists
from .result import NLGScore
from .weights import default_device, model_folder

# Layer per model, from the bert-score package's table (the layer its authors found best on WMT16).
BERTSCORE_LAYERS: dict[str, int] = {
    "roberta-large": 17,
    "roberta-base": 10,
    "bert-base-uncased": 9,
    "distilbert-base-uncased": 5,
    "distilroberta-base": 5,
    "microsoft/deberta-xlarge-mnli": 40,
}
DEFAULT_BERTSCORE_MODEL = "roberta-large"  # the package's default for lang="en"
_BYTE_LEVEL_TOKENIZERS = ("Roberta", "GPT2", "Bart", "Longformer")


def _baseline(model: str, num_layers: int, lang: str, baseline_path: str | None) -> np.ndarray:
    """The (P, R, F) baseline of `model` at `num_layers` from `baseline_path` or the bert-score package's files."""
    if baseline_path is None:
        import importlib.util

        spec = importlib.util.find_spec("bert_score")
        if spec is None or not spec.submodule_search_locations:
            raise MetricFileMissingError(
                f"BERTScore rescaling needs the baseline of {model!r}: `pip install bert-score` (it ships the "
                "baseline files) or pass a baseline file with --bertscore-baseline PATH"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "rescale_baseline" / lang / f"{model}.tsv"
    else:
        path = Path(baseline_path)
    if not path.is_file():
        raise MetricFileMissingError(
            f"BERTScore has no baseline file {path} for model {model!r}; pass one with --bertscore-baseline PATH "
            "(columns LAYER,P,R,F) or turn rescaling off"
        )
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))[1:]
    if num_layers >= len(rows):
        raise ValueError(f"baseline file {path} has no row for layer {num_layers}")
    return np.array([float(value) for value in rows[num_layers][1:4]])


@dataclass
class BERTScorer:
    """A loaded BERTScore model; `score(predictions, references)` gives P, R and F per item and their means."""

    model: str = DEFAULT_BERTSCORE_MODEL
    num_layers: int | None = None
    idf: bool = False
    rescale_with_baseline: bool = False
    baseline_path: str | None = None
    lang: str = "en"
    batch_size: int = 64
    device: str | None = None

    def __post_init__(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if self.num_layers is None:
            if self.model not in BERTSCORE_LAYERS:
                raise ValueError(
                    f"BERTScore has no default layer for {self.model!r}; pass num_layers (--bertscore-layers N). "
                    f"Known: {BERTSCORE_LAYERS}"
                )
            self.num_layers = BERTSCORE_LAYERS[self.model]
        folder = model_folder(self.model, "BERTScore", "the model", "--bertscore-model")
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        encoder = AutoModel.from_pretrained(str(folder))
        self._truncate(encoder)
        self.device = default_device(self.device)
        self.encoder = encoder.to(self.device).eval()
        self.baseline = (
            _baseline(self.model, self.num_layers, self.lang, self.baseline_path) if self.rescale_with_baseline else None
        )
        self._torch = torch

    def _truncate(self, encoder) -> None:
        """Keep the first `num_layers` layers (as the package does), so the output is that layer's states."""
        for owner in (getattr(encoder, "encoder", None), getattr(encoder, "transformer", None)):
            layers = getattr(owner, "layer", None)
            if layers is not None:
                if not 0 <= self.num_layers <= len(layers):
                    raise ValueError(f"num_layers={self.num_layers}, but {self.model!r} has {len(layers)} layers")
                owner.layer = type(layers)(list(layers)[: self.num_layers])
                self._layer_index = None
                return
        self._layer_index = self.num_layers  # otherwise read hidden_states[num_layers]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` with special tokens, as the package encodes a sentence."""
        text = text.strip()
        if text and type(self.tokenizer).__name__.startswith(_BYTE_LEVEL_TOKENIZERS):
            text = " " + text
        limit = min(int(self.tokenizer.model_max_length), 10**6)
        return list(self.tokenizer(text, add_special_tokens=True, truncation=True, max_length=limit)["input_ids"])

    def _embed(self, sequences: list[list[int]]) -> list[np.ndarray]:
        """L2-normalised layer states per sequence (batched by length)."""
        torch = self._torch
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        out: list[np.ndarray | None] = [None] * len(sequences)
        pad = self.tokenizer.pad_token_id or 0
        for start in range(0, len(order), self.batch_size):
            batch = [sequences[i] for i in order[start : start + self.batch_size]]
            width = max(len(ids) for ids in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, sequence in enumerate(batch):
                ids[row, : len(sequence)] = torch.tensor(sequence)
                mask[row, : len(sequence)] = 1
            with torch.no_grad():
                output = self.encoder(ids.to(self.device), attention_mask=mask.to(self.device),
                                      output_hidden_states=self._layer_index is not None)
            states = output.last_hidden_state if self._layer_index is None else output.hidden_states[self._layer_index]
            states = torch.nn.functional.normalize(states.double(), dim=-1).cpu().numpy()
            for row, index in enumerate(order[start : start + self.batch_size]):
                out[index] = states[row, : len(sequences[index])]
        return out  # type: ignore[return-value]

    def _idf(self, references: list[list[int]]) -> tuple[dict[int, float], float] | None:
        """Token -> log((M + 1) / (df + 1)) over the M references, and the weight of a token no reference has."""
        if not self.idf:
            return None
        counts = Counter(token for ids in references for token in set(ids))
        size = len(references)
        return {token: math.log((size + 1) / (count + 1)) for token, count in counts.items()}, math.log(size + 1)

    def _token_weights(self, ids: list[int], idf: tuple[dict[int, float], float] | None) -> np.ndarray:
        if idf is None:
            special = {self.tokenizer.cls_token_id, self.tokenizer.sep_token_id}
            return np.array([0.0 if token in special else 1.0 for token in ids])
        table, unseen = idf
        return np.array([table.get(token, unseen) for token in ids])

    def score(self, predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]) -> NLGScore:
        """``bertscore_precision``, ``bertscore_recall``, ``bertscore_f1``: corpus means and per-item values."""
        predictions, reference_lists = as_reference_lists(predictions, references)
        if not predictions:
            raise ValueError("BERTScore needs at least one prediction")
        pairs = [(i, prediction, reference) for i, (prediction, refs) in enumerate(zip(predictions, reference_lists))
                 for reference in refs]
        texts = sorted({text for _, p, r in pairs for text in (p, r)})
        ids = {text: self.encode(text) for text in texts}
        embedded = dict(zip(texts, self._embed([ids[text] for text in texts])))
        idf = self._idf([ids[r] for _, _, r in pairs])
        best = np.full((len(predictions), 3), -np.inf)
        for item, prediction, reference in pairs:
            scores = self._pair(ids[prediction], embedded[prediction], ids[reference], embedded[reference], idf)
            best[item] = np.maximum(best[item], scores)
        if self.baseline is not None:
            best = (best - self.baseline) / (1 - self.baseline)
        names = ("bertscore_precision", "bertscore_recall", "bertscore_f1")
        return NLGScore(corpus={name: float(best[:, k].mean()) for k, name in enumerate(names)},
                        per_item={name: best[:, k].copy() for k, name in enumerate(names)})

    def _pair(self, hyp_ids, hyp, ref_ids, ref, idf) -> np.ndarray:
        if len(hyp_ids) <= 2 or len(ref_ids) <= 2:  # only the special tokens: an empty text scores 0
            return np.zeros(3)
        similarity = hyp @ ref.T
        hyp_w, ref_w = self._token_weights(hyp_ids, idf), self._token_weights(ref_ids, idf)
        precision = float(similarity.max(axis=1) @ hyp_w / hyp_w.sum())
        recall = float(similarity.max(axis=0) @ ref_w / ref_w.sum())
        f1 = 2 * precision * recall / (precision + recall) if precision + recall != 0 else 0.0
        return np.array([precision, recall, f1 if math.isfinite(f1) else 0.0])


def bertscore(
    predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], **options
) -> NLGScore:
    """BERTScore P/R/F of each prediction (keys ``bertscore_precision|recall|f1``); `options` go to `BERTScorer`."""
    return BERTScorer(**options).score(predictions, references)


__all__ = ["BERTSCORE_LAYERS", "BERTScorer", "DEFAULT_BERTSCORE_MODEL", "bertscore"]
