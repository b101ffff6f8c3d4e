"""DCCLIP evaluation beyond report generation (§4.4.2-4.4.3).

- `five_by_n_set`: a CheXpert-5x200-style set from any labelled samples: for each of five observations, up to
  `per_class` samples positive for exactly that one of the five (Atelectasis, Cardiomegaly, Edema, Pleural
  Effusion, Consolidation by default: the CheXpert competition tasks).
- `precision_at_k`: image->text retrieval Precision@K: for every query image, the fraction of its top-K retrieved
  texts whose class equals the query's class (Table 2 reports K = 1, 2, 5, 10).
- `observation_auroc`: per-observation AUROC (Tables 3 and 6), uncertain excluded, with the one AUROC of hf-rrg
  (`hf_rrg.metrics.clinical.auroc`: rank-based Mann-Whitney U, O(n log n), ties at their average rank).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..metrics.clinical import auroc

FIVE_OBSERVATIONS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


def five_by_n_set(
    labels: torch.Tensor, observation_names: Sequence[str], classes: Sequence[str] = FIVE_OBSERVATIONS,
    per_class: int = 200,
) -> tuple[list[int], list[int]]:
    """(sample indices, class index in `classes`) of the samples positive for exactly one of `classes`, at most
    `per_class` per class, in sample order. `labels` (N, L) with 1 = positive."""
    columns = [list(observation_names).index(name) for name in classes]
    chosen, targets, counts = [], [], [0] * len(classes)
    positives = (labels[:, columns] == 1)
    for row in range(labels.size(0)):
        hits = positives[row].nonzero().flatten().tolist()
        if len(hits) == 1 and counts[hits[0]] < per_class:
            chosen.append(row)
            targets.append(hits[0])
            counts[hits[0]] += 1
    return chosen, targets


def precision_at_k(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, image_classes: Sequence[int], text_classes: Sequence[int],
    ks: Sequence[int] = (1, 2, 5, 10),
) -> dict[str, float]:
    """Image->text Precision@K over cosine similarity; `{"P@1": ..., ...}`."""
    sims = torch.nn.functional.normalize(image_embeds.float(), dim=-1) @ torch.nn.functional.normalize(
        text_embeds.float(), dim=-1).T  # fmt: skip
    text_classes_t = torch.tensor(list(text_classes))
    query = torch.tensor(list(image_classes))
    result = {}
    for k in ks:
        k_eff = min(k, sims.size(1))
        top = sims.topk(k_eff, dim=1).indices
        result[f"P@{k}"] = float((text_classes_t[top] == query[:, None]).float().mean())
    return result


def observation_auroc(
    probabilities: torch.Tensor, labels: torch.Tensor, observation_names: Sequence[str]
) -> dict[str, float]:
    """Per-observation AUROC (Tables 3 and 6) of `probabilities` (N, L) against step-1 labels (N, L; -100
    excluded), and their mean over the observations where it is defined (`"Average AUROC"`); NaN where an
    observation has no positive or no negative sample."""
    result = {}
    for k, name in enumerate(observation_names):
        kept = labels[:, k] != -100
        result[name] = auroc(probabilities[kept, k].double().cpu().numpy(), labels[kept, k].cpu().numpy())
    defined = [v for v in result.values() if not np.isnan(v)]
    result["Average AUROC"] = float(np.mean(defined)) if defined else float("nan")
    return result


__all__ = ["FIVE_OBSERVATIONS", "five_by_n_set", "observation_auroc", "precision_at_k"]
