"""`CheXpertLabeler`: the CheXpert labeler's pipeline (clean, split, mention, classify, aggregate)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .cleaning import clean_report, extract_impression, split_sentences
from .observations import (
    CARDIOMEGALY,
    NEGATIVE,
    NO_FINDING,
    OBSERVATIONS,
    POSITIVE,
    SUPPORT_DEVICES,
    UNCERTAIN,
)
from .phrases import PhraseSet, find_mentions
from .rules import classify

if TYPE_CHECKING:
    import numpy as np

#: Edema phrases that, when positive or uncertain, also make Cardiomegaly uncertain.
HEART_FAILURE_PHRASES = frozenset({"heart failure", "chf"})


@dataclass(frozen=True)
class Mention:
    """One mention: its observation, where it is (`sentences[sentence_index][start:end]`), its value."""

    observation: str
    sentence_index: int
    start: int
    end: int
    phrase: str
    value: int

    def to_dict(self) -> dict[str, object]:
        return {
            "observation": self.observation,
            "sentence_index": self.sentence_index,
            "start": self.start,
            "end": self.end,
            "phrase": self.phrase,
            "value": self.value,
        }


@dataclass
class ReportLabels:
    """The labels of one report.

    `values` maps each of the 14 observations (in `OBSERVATIONS` order) to 1, 0, -1 or None
    (unmentioned). `mentions` are the mentions of the 13 finding observations (plus a derived
    Cardiomegaly -1 mention for each positive/uncertain "heart failure"/"chf"), with spans into
    `sentences` (the cleaned sentences). `other_mentions` are the mentions of the `no_finding` phrase
    list (findings outside the 14 classes, e.g. "granuloma"), under observation ``"No Finding"``: they
    only decide No Finding.
    """

    values: dict[str, int | None]
    mentions: list[Mention] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    other_mentions: list[Mention] = field(default_factory=list)

    def vector(self) -> np.ndarray:
        """The 14 values as floats, NaN for unmentioned."""
        import numpy as np  # here, so that `hf-rrg label` starts without numpy

        return np.array([np.nan if v is None else float(v) for v in self.values.values()], dtype=np.float64)

    def mentions_in_sentence(self, index: int) -> list[Mention]:
        """The mentions found in sentence `index`."""
        return [m for m in self.mentions if m.sentence_index == index]

    def to_dict(self) -> dict[str, object]:
        return {
            "labels": dict(self.values),
            "sentences": list(self.sentences),
            "mentions": [m.to_dict() for m in self.mentions],
            "other_mentions": [m.to_dict() for m in self.other_mentions],
        }


def aggregate(mentions: Iterable[Mention], other_mentions: Iterable[Mention] = ()) -> dict[str, int | None]:
    """The report's 14 values from its mentions.

    Per observation: any positive -> 1, else any uncertain -> -1, else 0 (so {0,-1} -> -1, {0,1} -> 1,
    {-1,1} -> 1); no mention -> None. No Finding is 1 when no observation other than Support Devices
    (and no other-finding phrase) is positive or uncertain, else None; it is never 0.
    """
    per_observation: dict[str, set[int]] = {}
    for mention in mentions:
        per_observation.setdefault(mention.observation, set()).add(mention.value)
    values: dict[str, int | None] = {}
    for observation in OBSERVATIONS:
        found = per_observation.get(observation)
        if observation == NO_FINDING or not found:
            values[observation] = None
        elif POSITIVE in found:
            values[observation] = POSITIVE
        elif UNCERTAIN in found:
            values[observation] = UNCERTAIN
        else:
            values[observation] = NEGATIVE
    finding = any(
        v in (POSITIVE, UNCERTAIN) for obs, v in values.items() if obs not in (NO_FINDING, SUPPORT_DEVICES)
    ) or any(m.value in (POSITIVE, UNCERTAIN) for m in other_mentions)
    values[NO_FINDING] = None if finding else POSITIVE
    return values


class CheXpertLabeler:
    """Rule-based labeler of the 14 CheXpert observations, with mention spans.

    Follows the CheXpert labeler (Irvin et al., 2019; stanfordmlgroup/chexpert-labeler): its phrase
    lists and its classification order, with NegBio's dependency patterns replaced by surface rules
    (`hf_rrg.labeling.rules`). `impression_only=True` labels only the IMPRESSION section when a report
    has one.
    """

    def __init__(self, impression_only: bool = False, phrases_dir: str | Path | None = None) -> None:
        self.impression_only = impression_only
        self.phrases = PhraseSet.from_directory(Path(phrases_dir) if phrases_dir is not None else None)
        self._pairs = self.phrases.observation_phrases()

    def label(self, report: str) -> ReportLabels:
        """Label one report."""
        if not isinstance(report, str):
            raise ValueError(f"a report must be a string, got {type(report).__name__}: {report!r}")
        text = clean_report(extract_impression(report) if self.impression_only else report)
        candidates = [(obs, phrase) for obs, phrase in self._pairs if phrase in text]
        sentences = [text[a:b] for a, b in split_sentences(text)]
        mentions: list[Mention] = []
        others: list[Mention] = []
        if candidates:
            for index, sentence in enumerate(sentences):
                for observation, start, end, phrase in find_mentions(sentence, self.phrases, candidates):
                    value = classify(sentence, start, end, observation, phrase)
                    mention = Mention(observation, index, start, end, phrase, value)
                    if observation == NO_FINDING:
                        others.append(mention)
                        continue
                    mentions.append(mention)
                    if phrase in HEART_FAILURE_PHRASES and value in (POSITIVE, UNCERTAIN):
                        mentions.append(Mention(CARDIOMEGALY, index, start, end, phrase, UNCERTAIN))
        return ReportLabels(aggregate(mentions, others), mentions, sentences, others)

    def label_batch(self, reports: Sequence[str], progress: bool = False) -> list[ReportLabels]:
        """Label many reports (`progress=True` shows a progress bar)."""
        if progress:
            from tqdm.auto import tqdm

            return [self.label(r) for r in tqdm(reports, desc="labeling reports", unit="report")]
        return [self.label(r) for r in reports]

    def label_matrix(self, reports: Sequence[str], progress: bool = False) -> np.ndarray:
        """An (N, 14) float array in `OBSERVATIONS` order: 1, 0, -1, and NaN for unmentioned."""
        import numpy as np

        matrix = np.full((len(reports), len(OBSERVATIONS)), np.nan, dtype=np.float64)
        for row, labels in enumerate(self.label_batch(reports, progress=progress)):
            matrix[row] = labels.vector()
        return matrix
