"""The official vocabulary of the R2Gen code family, rebuilt from the annotation file, and its rows in hf-rrg's layout.

The official tokenizer (R2Gen `modules/tokenizers.py`, copied by R2GenCMN, XProNet and ITHN) cleans every report of
the annotation file's `train` split with the dataset's cleaner, keeps the tokens seen at least `threshold` times
(IU X-Ray 3, MIMIC-CXR 10), adds `<unk>`, sorts the list as Python sorts strings (so `<unk>` lands among the words,
after the digits) and numbers it from 1. Id 0 is `<bos>`, `<eos>` and `<pad>` at once; the embedding and output
layers have `len(tokens) + 1` rows.

hf-rrg's `RRGTokenizer` has `<pad> <bos> <eos> <unk>` at 0..3, then the sorted words. The converter permutes rows:

- embeddings: official row 0 feeds `<bos>` (and `<eos>`/`<pad>`, which are only read after a report ended);
  `<unk>` and every word take their own official row;
- output layer: official row 0 is the `<eos>` logit; `<pad>` and `<bos>` get a zero weight row and the bias
  `NEVER_LOGIT`, so exp(logit - max) is exactly 0 in float32: the log-softmax over the other tokens is the
  official one, and `<pad>`/`<bos>` are never generated (the exported generation config also suppresses them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..modeling.report_cleaning import clean_report
from ..modeling.tokenization_rrg import SPECIAL_TOKENS, RRGTokenizer

OFFICIAL_UNK = "<unk>"
#: Bias of the `<pad>` / `<bos>` output rows of a converted model (zero weights): far below any real logit, yet
#: finite, so that weight decay and mixed precision never turn it into inf/NaN when the model is fine-tuned.
NEVER_LOGIT = -1.0e4


def official_tokens(reports: Iterable[str], cleaner: str, threshold: int) -> list[str]:
    """The official vocabulary in id order (the token of official id i is element i - 1): tokens of the cleaned
    reports seen at least `threshold` times, plus `<unk>`, sorted."""
    if threshold < 1:
        raise ValueError(f"threshold must be >= 1, got {threshold}")
    counts: Counter[str] = Counter()
    for report in reports:
        counts.update(clean_report(report, cleaner).split())
    if not counts:
        raise ValueError("the annotation's train split has no report text; pass the annotation file of the model")
    return sorted([token for token, count in counts.items() if count >= threshold] + [OFFICIAL_UNK])


def tokenizer_for(tokens: Sequence[str], cleaner: str, threshold: int) -> RRGTokenizer:
    """An `RRGTokenizer` with the official words (same order) after hf-rrg's four special tokens."""
    specials = list(SPECIAL_TOKENS.values())
    words = [token for token in tokens if token != OFFICIAL_UNK]
    vocab = {token: index for index, token in enumerate(specials + words)}
    return RRGTokenizer(vocab=vocab, cleaner=cleaner, min_count=threshold)


def check_vocabulary_size(official_rows: int, tokens: Sequence[str], source: str) -> None:
    """The checkpoint's output rows must be the rebuilt vocabulary + 1 (id 0); otherwise say what likely differs."""
    if official_rows != len(tokens) + 1:
        raise ValueError(
            f"The checkpoint's vocabulary has {official_rows - 1} tokens ({official_rows} output rows with id 0), but "
            f"rebuilding it from {source} gives {len(tokens)} tokens ({len(tokens) - 1} words + <unk>). The "
            "official code rebuilds its vocabulary from the annotation file at every run, so the file (or its "
            "'train' split) must be the one the model was trained with, and the threshold the one it used (IU X-Ray 3, "
            "MIMIC-CXR 10; set another with --set tokenizer.min_count=N); ITHN's IU X-Ray models were trained "
            "with ITHN's own annotation file."
        )


@dataclass(frozen=True)
class VocabularyMap:
    """Where every row of hf-rrg's vocabulary comes from in the official layout, and back.

    `official_of_ours[i]` is the official id of hf-rrg token i (-1 for `<pad>`/`<bos>`/`<eos>`, which share id 0);
    `ours_of_official[j]` is the hf-rrg id of official token j >= 1 (entry 0 unused).
    """

    official_of_ours: torch.Tensor
    ours_of_official: torch.Tensor
    pad_token_id: int
    bos_token_id: int
    eos_token_id: int

    @classmethod
    def build(cls, tokens: Sequence[str], tokenizer: Any) -> VocabularyMap:
        vocab = tokenizer.get_vocab()
        official_of_ours = torch.full((len(vocab),), -1, dtype=torch.long)
        ours_of_official = torch.full((len(tokens) + 1,), -1, dtype=torch.long)
        for official_id, token in enumerate(tokens, start=1):
            ours = tokenizer.unk_token_id if token == OFFICIAL_UNK else vocab.get(token)
            if ours is None:
                raise ValueError(f"official token {token!r} is not in the tokenizer's vocabulary")
            official_of_ours[ours] = official_id
            ours_of_official[official_id] = ours
        return cls(official_of_ours, ours_of_official, tokenizer.pad_token_id, tokenizer.bos_token_id,
                   tokenizer.eos_token_id)  # fmt: skip

    @property
    def num_official_rows(self) -> int:
        return int(self.ours_of_official.numel())

    def _rows(self, start_tokens: Sequence[int]) -> torch.Tensor:
        rows = self.official_of_ours.clone()
        rows[list(start_tokens)] = 0
        return rows

    def embedding_to_ours(self, official: torch.Tensor) -> torch.Tensor:
        """Word embeddings (official rows -> hf-rrg rows); `<bos>`, `<eos>`, `<pad>` all read official row 0."""
        return official[self._rows((self.pad_token_id, self.bos_token_id, self.eos_token_id))].clone()

    def logits_to_ours(self, official: torch.Tensor, never: float) -> torch.Tensor:
        """Output-layer weight (2-D) or bias (1-D) rows: official row 0 -> `<eos>`; `<pad>`/`<bos>` get `never`."""
        rows = self._rows((self.eos_token_id,))
        out = official[rows.clamp_min(0)].clone()
        out[rows < 0] = never
        return out

    def embedding_to_official(self, ours: torch.Tensor) -> torch.Tensor:
        rows = self.ours_of_official.clone()
        rows[0] = self.bos_token_id
        return ours[rows].clone()

    def logits_to_official(self, ours: torch.Tensor) -> torch.Tensor:
        rows = self.ours_of_official.clone()
        rows[0] = self.eos_token_id
        return ours[rows].clone()
