"""The value every NLG metric function returns: corpus score(s) plus one score per item."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class NLGScore:
    """Corpus-level scores and per-item scores of one metric family.

    `corpus` maps a score name (e.g. ``"bleu_4"``) to its corpus value; `per_item` maps the same names to a
    float array with one entry per prediction. ``result["bleu_4"]`` is the corpus value.
    """

    corpus: dict[str, float]
    per_item: dict[str, np.ndarray] = field(repr=False)

    def __getitem__(self, name: str) -> float:
        try:
            return self.corpus[name]
        except KeyError:
            raise KeyError(f"no score named {name!r}; this result has {sorted(self.corpus)}") from None

    @property
    def score(self) -> float:
        """The corpus value when the result holds a single score (ROUGE-L, CIDEr, METEOR)."""
        if len(self.corpus) != 1:
            raise ValueError(f"this result holds several scores {sorted(self.corpus)}; index it by name")
        return next(iter(self.corpus.values()))
