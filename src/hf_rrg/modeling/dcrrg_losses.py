"""DCRRG's losses: the calibrated semantic matching loss L_CSM (§3.2, Eq. 3-9) and the per-observation
cross-entropy of step 1 (§3.1). Plain functions over tensors, usable without the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_similarity(image_labels: torch.Tensor, text_labels: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 3: s_ij = l_img,i · l_txt,j / (‖l_img,i‖ ‖l_txt,j‖), the cosine of the observation label vectors, (N, N).
    A label vector of zeros (no positive observation) has cosine 0 with everything (the paper leaves it open)."""
    a = image_labels.float()
    b = text_labels.float()
    norms = a.norm(dim=1, keepdim=True).clamp_min(eps) * b.norm(dim=1, keepdim=True).clamp_min(eps).T
    return (a @ b.T) / norms


def calibration_weights(features: torch.Tensor) -> torch.Tensor:
    """w_ij = sim(x_i, x_j) / 2 + 0.5 with the cosine similarity (Eq. 4 for texts, Eq. 5 for images), (N, N)."""
    normed = F.normalize(features.float(), dim=-1)
    return (normed @ normed.T) / 2 + 0.5


def calibrated_soft_targets(
    image_labels: torch.Tensor,
    text_labels: torch.Tensor,
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    detach: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The calibrated soft targets of Eq. 4-5.

    Returns `(y_v2t, y_t2v)`, both (N, N): `y_v2t[i, j] = softmax_j(w_ij s_ij)` with `w_ij = sim(t_i, t_j)/2 + 0.5`
    (Eq. 4), and `y_t2v[j, i] = softmax_i(ŵ_ji s_ji)` with `ŵ_ji = sim(v_j, v_i)/2 + 0.5` (Eq. 5), where `s_ji` is
    the label cosine of text j and image i (= s_ij transposed). `image_features` / `text_features` are the raw
    encoder embeddings v (Eq. 1a) and t (Eq. 2a), which the paper's `sim` compares.

    `detach=True` (default) makes the targets constants, as MedCLIP's soft targets are: the paper does not say
    whether gradients flow through the calibration weights, and if they do the encoders can lower the loss by moving
    their own targets (e.g. by making every sim(t_i, t_j) equal). False lets the gradient through.
    """
    if detach:
        image_features, text_features = image_features.detach(), text_features.detach()
    s = label_similarity(image_labels, text_labels)  # s[i, j]: image i vs text j
    w = calibration_weights(text_features)  # w[i, j] = sim(t_i, t_j)/2 + 0.5
    w_hat = calibration_weights(image_features)  # ŵ[j, i] = sim(v_j, v_i)/2 + 0.5
    y_v2t = torch.softmax(w * s, dim=1)
    y_t2v = torch.softmax(w_hat * s.T, dim=1)  # row j (a text), columns i (images)
    return y_v2t, y_t2v


def calibrated_semantic_matching_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    image_labels: torch.Tensor,
    text_labels: torch.Tensor,
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    temperature: torch.Tensor | float = 0.07,
    detach_targets: bool = True,
) -> torch.Tensor:
    """L_CSM of DCRRG (§3.2, Eq. 3-9) over a batch of N image-text pairs.

    Args:
        image_embeds: v_p (N, P), the projected image embeddings (Eq. 1b); normalised here (ṽ of Eq. 6).
        text_embeds: t_p (N, P), the projected text embeddings (Eq. 2b); normalised here (t̃ of Eq. 6).
        image_labels / text_labels: (N, L) observation label vectors (1 positive, 0 otherwise) for Eq. 3.
        image_features / text_features: the raw embeddings v (N, D) and t (N, M) for the calibration (Eq. 4-5).
        temperature: τ of Eq. 7 (a float or a 0-d tensor, e.g. the model's learnable one).
        detach_targets: the soft targets are constants (default; see `calibrated_soft_targets`).

    Returns the scalar (L^{v→l} + L^{l→v}) / 2 (Eq. 9), where L^{v→l} = -1/N Σ_i Σ_j y^{v→t}_ij log ŷ_ij (Eq. 8)
    with ŷ_ij = softmax_j(ŝ_ij / τ) and ŝ_ij = ṽ_i · t̃_j (Eq. 6-7), and L^{l→v} is the same over the transposed
    logits with the targets y^{t→v} of Eq. 5.
    """
    n = image_embeds.size(0)
    if text_embeds.size(0) != n or image_labels.size(0) != n or text_labels.size(0) != n:
        raise ValueError(
            f"calibrated_semantic_matching_loss needs N paired rows everywhere; got image_embeds {n}, text_embeds "
            f"{text_embeds.size(0)}, image_labels {image_labels.size(0)}, text_labels {text_labels.size(0)}"
        )
    y_v2t, y_t2v = calibrated_soft_targets(image_labels, text_labels, image_features, text_features, detach_targets)
    logits = F.normalize(image_embeds.float(), dim=-1) @ F.normalize(text_embeds.float(), dim=-1).T  # Eq. 6
    logits = logits / temperature
    loss_v2t = -(y_v2t * F.log_softmax(logits, dim=1)).sum(dim=1).mean()  # Eq. 7-8
    loss_t2v = -(y_t2v * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (loss_v2t + loss_t2v) / 2  # Eq. 9


def observation_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Step 1's CE Loss (§3.1): `logits` (..., C) of the per-observation heads, `labels` (...) class indices with
    -100 where the instance is excluded (uncertain labels). Mean over kept instances; 0 when none is kept."""
    kept = labels != -100
    if not kept.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[kept].float(), labels[kept].long())


__all__ = [
    "calibrated_semantic_matching_loss",
    "calibrated_soft_targets",
    "calibration_weights",
    "label_similarity",
    "observation_cross_entropy",
]
