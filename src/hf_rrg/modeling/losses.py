"""Losses shared by hf-rrg models.

`xpronet_multilabel_contrastive_loss`: XProNet's improved multi-label contrastive loss (Wang et al., ECCV 2022,
§3.4 Eq. 17-18), also reused by ITHN (Voutharoja et al., ECAI 2023) on XProNet hosts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pooled_normalized(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """σ of Eq. 17: the mean over positions (only where `mask` is True) followed by L2 normalisation.

    `features` is (batch, positions, dim) or already pooled (batch, dim); `mask` is (batch, positions).
    """
    if features.dim() == 3:
        if mask is None:
            features = features.mean(dim=1)
        else:
            weights = mask.to(features.dtype).unsqueeze(-1)
            features = (features * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
    elif features.dim() != 2:
        raise ValueError(f"features must be (batch, positions, dim) or (batch, dim), got {tuple(features.shape)}")
    return F.normalize(features, p=2, dim=-1)


def xpronet_multilabel_contrastive_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    margin: float = 0.4,
    theta: float = 1.75,
    improved: bool = True,
) -> torch.Tensor:
    """XProNet's improved multi-label contrastive loss L_icn (§3.4 Eq. 17-18), on one modality's responses.

    With f_i = σ(features_i) (mean over positions, then L2 normalisation) and s_ij = f_i · f_j (cosine similarity):

        L = 1/B² · Σ_i [ Σ_{j: y_i·y_j ≠ 0} max(θ^(-h_d/h_t) - s_ij, 0)  +  Σ_{j: y_i·y_j = 0} max(s_ij - α, 0) ]

    with h_d = Σ|y_i - y_j| (labels that differ) and h_t = Σ(y_i + y_j) (all labels of the pair), Eq. 18. Samples
    sharing at least one label are positive pairs pulled up to the target θ^(-h_d/h_t) (<= 1: the more their
    labels differ the more dissimilarity is tolerated); the others are negative pairs pushed below the margin α.

    The positive term is clipped at 0, as the official code does (`my_con_loss`) and as §3.4 describes ("tolerate
    some dissimilarity"): a positive pair already more similar than its target costs nothing. Eq. 17 as printed
    leaves it linear, but then the target is a constant offset of the loss and θ (and the "w/o IMLCS" ablation)
    would not change a single gradient.

    The pair of a sample with itself is left out: by Eq. 17 it contributes θ^0 - 1 = 0 when the sample has a label,
    and a label-less sample would otherwise count as its own negative. The sum is still divided by B² (all pairs),
    as Eq. 17. A batch with no positive pair gives only the negative term, one with no negative pair only the
    positive term; a batch of one sample gives 0.

    Args:
        features: (batch, positions, dim) responses (XProNet: r^s visual, r^t textual) or pooled (batch, dim).
        labels: (batch, num_labels) binary multi-labels (floats or ints, 1 = present).
        mask: optional (batch, positions) bool, True at the positions to average (real tokens).
        margin: α (paper: 0.4).
        theta: θ (paper: 1.75, best on MIMIC-CXR in Fig. 6; the official code uses 1.5 on both datasets).
        improved: False replaces θ^(-h_d/h_t) by 1 (the "w/o IMLCS" ablation, Table 2).

    Returns:
        The scalar loss (in the features' dtype, float32 at least).
    """
    if labels.dim() != 2 or labels.size(0) != features.size(0):
        raise ValueError(
            f"labels must be (batch, num_labels) with batch {features.size(0)}, got shape {tuple(labels.shape)}"
        )
    pooled = pooled_normalized(features.float(), mask)
    similarity = pooled @ pooled.T
    y = labels.to(similarity.dtype)
    shared = y @ y.T
    batch = y.size(0)
    off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=y.device)
    positive = (shared > 0) & off_diagonal
    negative = (shared <= 0) & off_diagonal
    if improved:
        differing = (y.unsqueeze(1) - y.unsqueeze(0)).abs().sum(-1)  # h_d
        total = (y.unsqueeze(1) + y.unsqueeze(0)).sum(-1)  # h_t (> 0 wherever the pair is positive)
        target = torch.pow(torch.as_tensor(theta, dtype=y.dtype, device=y.device), -differing / total.clamp_min(1e-12))
    else:
        target = torch.ones_like(similarity)
    positive_term = torch.where(positive, (target - similarity).clamp_min(0.0), torch.zeros_like(similarity))
    negative_term = torch.where(negative, (similarity - margin).clamp_min(0.0), torch.zeros_like(similarity))
    return (positive_term + negative_term).sum() / batch**2
