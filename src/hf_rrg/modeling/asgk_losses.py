"""ASGK's tag losses: the focal loss of the visual tag classifiers (Eq. 10-11) and the graph's BCE (Eq. 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Focal loss of multi-label tag classification (ASGK §3.3 Eq. 10-11, after Lin et al. 2017).

    With p_i = sigmoid(logit_i) and p*_i = p_i where y_i = 1, else 1 - p_i (Eq. 10):

        L = - Σ_i α (1 - p*_i)^γ log p*_i        (Eq. 11)

    α is the same for positive and negative labels, as Eq. 11 writes it (Lin et al.'s α_t = α / 1 - α is not
    used). At γ = 0 the loss is α times the binary cross-entropy; α = 0.5 gives BCE / 2. log p*_i is computed from
    the logits (log-sigmoid), so it never overflows.

    Args:
        logits: (..., N) tag logits.
        targets: (..., N) labels in {0, 1} (floats or ints).
        alpha, gamma: α and γ (paper: 0.25 and 2).
        reduction: "mean" (over every tag of every sample, the default), "sum" (Eq. 11 summed over tags and samples)
            or "none" (per element).
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have the same shape")
    logits = logits.float()
    y = targets.to(logits.dtype)
    log_p_star = y * F.logsigmoid(logits) + (1.0 - y) * F.logsigmoid(-logits)  # log p*_i (Eq. 10)
    p_star = log_p_star.exp()
    loss = -alpha * (1.0 - p_star).pow(gamma) * log_p_star
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be mean, sum or none; got {reduction!r}")


def tag_bce(probabilities: torch.Tensor, targets: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Eq. 4 on the graph's node values (probabilities, not logits), averaged over tags and samples."""
    p = probabilities.float().clamp(eps, 1.0 - eps)
    return F.binary_cross_entropy(p, targets.to(p.dtype))


def tag_classification_loss(
    logits: torch.Tensor, targets: torch.Tensor, kind: str, alpha: float, gamma: float
) -> torch.Tensor:
    """The visual classifiers' loss: `focal_loss` (kind "focal") or binary cross-entropy (kind "bce", the "+CE"
    ablation of Table 2), averaged over tags and samples."""
    if kind == "focal":
        return focal_loss(logits, targets, alpha=alpha, gamma=gamma)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float())
    raise ValueError(f"tag loss must be focal or bce, got {kind!r}")
