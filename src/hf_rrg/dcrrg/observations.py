"""Per-sample observation labels and per-observation descriptions for DCRRG (§3.1, §3.3).

- labels (step 1): the 14 CheXpert observations of a report from `hf_rrg.labeling.CheXpertLabeler`; unmentioned
  -> negative (0), positive -> 1, negative -> 0, uncertain -> -100 (excluded from training, §3.1).
- label vectors (step 2, Eq. 3): 1 for positive observations, 0 otherwise.
- descriptions (step 3): the report sentence(s) the labeler ties to an observation (its mention spans), joined
  in report order. An observation without a mention has no description and gives no step-3 instance (the paper
  does not say what an unmentioned observation's target is; leaving it out is the simplest reading).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..labeling import OBSERVATIONS, POSITIVE, UNCERTAIN, CheXpertLabeler

IGNORE = -100


@dataclass
class ObservationRecord:
    """One report's step-1 labels (len L, values 0/1/-100), its Eq. 3 label vector and its descriptions."""

    labels: list[int]
    label_vector: list[float]
    descriptions: dict[int, str]


def record_from_values(values: dict[str, int | None], sentences: Sequence[str], mentions, names: Sequence[str]):
    """Build an `ObservationRecord` from a labeler result (`values`, cleaned `sentences`, `mentions`)."""
    labels, vector, descriptions = [], [], {}
    for index, name in enumerate(names):
        value = values.get(name)
        labels.append(IGNORE if value == UNCERTAIN else int(value == POSITIVE))
        vector.append(1.0 if value == POSITIVE else 0.0)
        found = sorted({m.sentence_index for m in mentions if m.observation == name})
        if found:
            descriptions[index] = " ".join(sentences[i] for i in found)
    return ObservationRecord(labels, vector, descriptions)


def label_reports(
    reports: Sequence[str], observation_names: Sequence[str] = OBSERVATIONS, progress: bool = True
) -> list[ObservationRecord]:
    """Label every report (see the module docstring). `observation_names` must be CheXpert observations."""
    unknown = [name for name in observation_names if name not in OBSERVATIONS]
    if unknown:
        raise ValueError(f"observation names {unknown} are not CheXpert observations; choose from {list(OBSERVATIONS)}")
    labeler = CheXpertLabeler()
    records = []
    for report in tqdm(reports, desc="labelling reports", disable=not progress):
        result = labeler.label(report)
        records.append(record_from_values(result.values, result.sentences, result.mentions, observation_names))
    return records


def label_tensor(records: Sequence[ObservationRecord]) -> torch.Tensor:
    """(N, L) long step-1 labels (-100 = uncertain, excluded)."""
    return torch.tensor([r.labels for r in records], dtype=torch.long)


def label_vectors(records: Sequence[ObservationRecord]) -> torch.Tensor:
    """(N, L) float Eq. 3 label vectors."""
    return torch.tensor([r.label_vector for r in records], dtype=torch.float)


__all__ = ["IGNORE", "ObservationRecord", "label_reports", "label_tensor", "label_vectors", "record_from_values"]
