"""ITHN's losses and harder-negative synthesis (Voutharoja, Wang, Zhou. "Automatic Radiology Report Generation by
Learning with Increasingly Hard Negatives", ECAI 2023; `papers/001_7a44b13b1d94c933.txt`, §3.3-3.5).

Plain functions on feature tensors, usable with any encoder-decoder:

- `image_similarity_loss` (Eq. 1): cosine similarity of an image feature and its hard negative's (L_CS).
- `hardness_schedule` (§4.2): λ = 1 − exp(−α·epoch).
- `project_onto_line` (Eq. 6): orthogonal projection of a point onto the line through two points.
- `synthesize_hard_negatives` (Eq. 2 "mochi", Eq. 5-7 "projection"): the harder negative ũ_i⁻.
- `ithn_similarity_matrix` (Eq. 9-11) and `ithn_clip_loss` (Eq. 8, 12): the modified CLIP loss L_CP.

Shapes: a batch of B feature vectors of size D, (B, D). Features need not be normalised (cosines are taken).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SYNTHESIS_STRATEGIES = ("projection", "mochi", "none")


def hardness_schedule(epoch: float, alpha: float = 0.01) -> float:
    """λ = 1 − exp(−α·epoch) (§4.2): 0 at epoch 0, rising towards 1; α = 0.01 is the paper's best (Table 3).

    `epoch` is the current epoch number (hf-rrg's recipe counts from 1, as the R2Gen-family trainers do).
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return 1.0 - math.exp(-alpha * float(epoch))


def image_similarity_loss(image: torch.Tensor, negative_image: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """L_CS (Eq. 1): the cosine similarity z_i·z_i⁻ / (‖z_i‖‖z_i⁻‖), averaged over the batch.

    Args:
        image, negative_image: (B, D) features of the images and of their hard negatives.
        absolute: take |cos| before averaging (the official code's choice: pushes the pair towards orthogonal
            rather than opposite features); False is Eq. 1 as printed (minimising it pushes towards cos = −1).
    """
    if image.shape != negative_image.shape:
        raise ValueError(f"image {tuple(image.shape)} and negative_image {tuple(negative_image.shape)} differ")
    cosine = F.cosine_similarity(image.float(), negative_image.float(), dim=-1)
    return (cosine.abs() if absolute else cosine).mean()


def project_onto_line(
    point: torch.Tensor, start: torch.Tensor, end: torch.Tensor, clamp: bool = False, eps: float = 1e-12
) -> torch.Tensor:
    """p = a + ((x − a)·(b − a) / ‖b − a‖²)(b − a): the projection of x = `point` onto the line through a = `start`
    and b = `end` (Eq. 6, with a = u_i⁻, b = u_i, x = z_i). Rows are independent; (..., D) tensors.

    `clamp=True` keeps p on the segment [a, b] (the coefficient is clipped to [0, 1]). Where a = b the line is
    undefined and p = a (no NaN: the squared length is floored at `eps`).
    """
    direction = end - start
    squared = (direction * direction).sum(-1, keepdim=True)
    coefficient = ((point - start) * direction).sum(-1, keepdim=True) / squared.clamp_min(eps)
    coefficient = torch.where(squared > eps, coefficient, torch.zeros_like(coefficient))
    if clamp:
        coefficient = coefficient.clamp(0.0, 1.0)
    return start + coefficient * direction


def synthesize_hard_negatives(
    anchor: torch.Tensor,
    negatives: torch.Tensor,
    hardness: float | torch.Tensor,
    strategy: str = "projection",
    image: torch.Tensor | None = None,
    clamp: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The harder negative ũ_i⁻ of each report feature u_i (§3.4).

    Args:
        anchor: (B, D) report features u_i.
        negatives: (B, D) prior hard negatives u_i⁻, or (B, K, D) features of the k nearest neighbours
            {u_r1⁻ … u_rk⁻}; with K > 1 one of them is drawn at random per row (`generator`), as Eq. 2 does.
        hardness: λ (see `hardness_schedule`), a float or a (B,) / (B, 1) tensor.
        strategy: "mochi" (Eq. 2): ũ = (1 − λ)·u_r⁻ + λ·u_i, a point of the segment [u_r⁻, u_i].
            "projection" (Eq. 5-7, the paper's method): p_i = projection of the image feature z_i onto the line
            through u_i⁻ and u_i (Eq. 6), ũ = (1 − λ)·u_i⁻ + λ·p_i (Eq. 7, with the prior u_i⁻ on the right-hand
            side, as the paper's implementation does). "none": ũ = u_i⁻ (no synthesis; Table 3's ablation).
        image: (B, D) image features z_i, required by "projection".
        clamp: with "projection", keep p_i on the segment [u_i⁻, u_i] (then ũ is on it too); Eq. 6 does not.
    """
    if strategy not in SYNTHESIS_STRATEGIES:
        raise ValueError(f"strategy must be one of {SYNTHESIS_STRATEGIES}, got {strategy!r}")
    if negatives.dim() == anchor.dim() + 1:
        choice = torch.randint(negatives.size(1), (negatives.size(0),), generator=generator, device="cpu")
        negatives = negatives[torch.arange(negatives.size(0)), choice.to(negatives.device)]
    if negatives.shape != anchor.shape:
        raise ValueError(f"negatives {tuple(negatives.shape)} must match anchor {tuple(anchor.shape)} (or add a K dim)")
    lam = torch.as_tensor(hardness, dtype=anchor.dtype, device=anchor.device)
    if lam.dim() == 1:
        lam = lam.unsqueeze(-1)
    if strategy == "none":
        return negatives
    if strategy == "mochi":
        return (1 - lam) * negatives + lam * anchor
    if image is None:
        raise ValueError("the projection strategy needs the image features (image=z_i, Eq. 5-7)")
    projected = project_onto_line(image, negatives, anchor, clamp=clamp)
    return (1 - lam) * negatives + lam * projected


def _cosine_matrix(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    return F.normalize(rows.float(), dim=-1) @ F.normalize(columns.float(), dim=-1).T


def _similarity_parts(
    image: torch.Tensor,
    report: torch.Tensor,
    negative_image: torch.Tensor,
    negative_report: torch.Tensor,
    synthesized: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(S1, S2, S3') of Eq. 9-10: S1[i, j] = cos(z_i, u_j), S2[i, j] = cos(z_i⁻, u_j⁻), S3[i, j] = cos(z_i, ũ_j⁻)
    with its diagonal multiplied by −1 (S3'); S3' is None without `synthesized`."""
    s1 = _cosine_matrix(image, report)
    s2 = _cosine_matrix(negative_image, negative_report)
    if synthesized is None:
        return s1, s2, None
    s3 = _cosine_matrix(image, synthesized)
    sign = 1.0 - 2.0 * torch.eye(s3.size(0), device=s3.device, dtype=s3.dtype)
    return s1, s2, s3 * sign


def ithn_similarity_matrix(
    image: torch.Tensor,
    report: torch.Tensor,
    negative_image: torch.Tensor,
    negative_report: torch.Tensor,
    synthesized: torch.Tensor | None,
) -> torch.Tensor:
    """S = (S1 + S2 + S3')/3 (Eq. 11): S1[i, j] = cos(z_i, u_j) (Eq. 9), S2[i, j] = cos(z_i⁻, u_j⁻),
    S3[i, j] = cos(z_i, ũ_j⁻) (Eq. 10) with its diagonal multiplied by −1 (S3'). With `synthesized=None`,
    S = (S1 + S2)/2 (a plain two-view CLIP similarity)."""
    s1, s2, s3 = _similarity_parts(image, report, negative_image, negative_report, synthesized)
    return (s1 + s2) / 2 if s3 is None else (s1 + s2 + s3) / 3


def ithn_clip_loss(
    image: torch.Tensor,
    report: torch.Tensor,
    negative_image: torch.Tensor,
    negative_report: torch.Tensor,
    synthesized: torch.Tensor | None,
    temperature: float | torch.Tensor = 0.07,
    synthesis_temperature: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """L_CP (Eq. 12): ½(L_con(S) + L_con(Sᵀ)) with S of Eq. 11 (`ithn_similarity_matrix`) and L_con the InfoNCE of
    Eq. 8 over logits S/τ with the diagonal as targets: −mean_i log(exp(S_ii/τ) / Σ_k exp(S_ik/τ)).

    Eq. 8 as printed puts the log outside the sum and leaves the positive out of the denominator; this is the
    standard CLIP loss it cites ([26]), which the paper's code trains with.

    `synthesis_temperature` τ₃ gives S3' its own temperature, as the official code does (two learned scales: one
    for S1 and S2, one for S3): logits = (S1/τ + S2/τ + S3'/τ₃)/3. None: one τ for all (the paper).
    """
    s1, s2, s3 = _similarity_parts(image, report, negative_image, negative_report, synthesized)
    tau = torch.as_tensor(temperature, dtype=s1.dtype, device=s1.device)
    if s3 is None:
        logits = (s1 + s2) / 2 / tau
    elif synthesis_temperature is None:
        logits = (s1 + s2 + s3) / 3 / tau  # S/τ (Eq. 11)
    else:
        tau3 = torch.as_tensor(synthesis_temperature, dtype=s1.dtype, device=s1.device)
        logits = (s1 / tau + s2 / tau + s3 / tau3) / 3
    targets = torch.arange(logits.size(0), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


__all__ = [
    "SYNTHESIS_STRATEGIES",
    "hardness_schedule",
    "image_similarity_loss",
    "ithn_clip_loss",
    "ithn_similarity_matrix",
    "project_onto_line",
    "synthesize_hard_negatives",
]
