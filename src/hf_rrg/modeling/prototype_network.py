"""XProNet's cross-modal prototype network (Wang et al., ECCV 2022, §3.2; `papers/004_e9a48aa18c2efadd.txt`).

- `PrototypeQuerying`: Eq. 9-13. Queries (projected visual tokens or word embeddings) and the prototypes of the
  sample's own classes are projected to a common size (Eq. 9); each query scores them (Eq. 10), keeps its top γ
  (Eq. 11) and responds with their weighted, transformed sum (Eq. 12-13).
- `CrossModalPrototypeNetwork`: the prototype matrix PM ∈ R^{N_l × N_p × D} (a learnable parameter; initialised by
  K-means in `hf_rrg.xpronet.prototypes`, Eq. 4-7), its projection W_pv (Eq. 8), the querying, the feature
  interaction FCN (Eq. 14) and the image-level label head hf-rrg adds for inference without report-derived labels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .configuration_xpronet import XProNetConfig


def _xavier_matrices(module: nn.Module) -> None:
    for parameter in module.parameters():
        if parameter.dim() > 1:
            nn.init.xavier_uniform_(parameter)


class PrototypeQuerying(nn.Module):
    """Top-γ attention of queries over the prototypes each sample is allowed to use (Eq. 9-13).

    Per head h (dimension d_h = d / heads): q = x W_v (Eq. 9), k = p W_p (Eq. 9), scores q·k (Eq. 10), the γ best
    allowed prototypes kept, weights from their scores (Eq. 11), values e = p W_e (Eq. 12), response Σ w e (Eq. 13);
    heads concatenated and projected back to the query size. With one head this is Eq. 9-13 exactly (the paper's
    W_e acts on the projected prototype p* = p W_p; here on p, as in the official code: a product of two linear maps
    is one linear map).

    Weighting (`weighting`):
        "softmax": softmax over the γ selected scores q·k / sqrt(d_h) (the official code; the default).
        "normalized": Eq. 11, w_u = D_u / Σ_{j ≤ γ} D_j with D = q·k / d (Eq. 10). Scores may be negative, so the
            sum can be near zero; it is kept at least 1e-6 in magnitude.
    Selected prototypes that the sample is not allowed to use (when it allows fewer than γ) get weight 0. A sample
    allowed no prototype at all (no positive label and no fallback slot) gets a zero response.
    """

    def __init__(
        self,
        query_dim: int,
        prototype_dim: int,
        attention_dim: int,
        num_heads: int,
        top_k: int,
        weighting: str = "softmax",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if attention_dim % num_heads:
            raise ValueError(f"attention_dim ({attention_dim}) must be divisible by num_heads ({num_heads}).")
        self.num_heads = num_heads
        self.head_dim = attention_dim // num_heads
        self.top_k = top_k
        self.weighting = weighting
        self.query_proj = nn.Linear(query_dim, attention_dim)  # W_v
        self.key_proj = nn.Linear(prototype_dim, attention_dim)  # W_p
        self.value_proj = nn.Linear(prototype_dim, attention_dim)  # W_e
        self.out_proj = nn.Linear(attention_dim, query_dim)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.num_heads, self.head_dim).transpose(-3, -2)

    def keys_values(self, prototypes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k = p W_p (Eq. 9) and e = p W_e (Eq. 12) of the projected prototypes p, (heads, K, d_h) each."""
        return self._heads(self.key_proj(prototypes)), self._heads(self.value_proj(prototypes))

    def forward(
        self,
        queries: torch.Tensor,
        prototypes: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
        allowed: torch.Tensor,
        return_selection: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args:
            queries: (batch, length, query_dim).
            prototypes: (num_prototypes, prototype_dim) — all classes' projected prototypes p (Eq. 8) — or their
                (k, e) from `keys_values` (they depend on the weights only: generation computes them once).
            allowed: (batch, num_prototypes) bool, True for the prototypes of the sample's positive labels.
            return_selection: also return the selected prototype indices and their weights,
                both (batch, heads, length, γ).

        Returns:
            responses (batch, length, query_dim) [, indices, weights].
        """
        batch, length, _ = queries.shape
        q = self._heads(self.query_proj(queries))  # (B, H, L, dh)
        k, v = prototypes if isinstance(prototypes, tuple) else self.keys_values(prototypes)  # (H, K, dh) each
        raw = torch.matmul(q, k.transpose(-2, -1).unsqueeze(0))  # (B, H, L, K): q·k
        allowed = allowed.bool()[:, None, None, :]
        lowest = torch.finfo(raw.dtype).min
        gamma = min(self.top_k, raw.size(-1))
        top_raw, index = raw.masked_fill(~allowed, lowest).topk(gamma, dim=-1)
        selected_allowed = allowed.expand(-1, self.num_heads, length, -1).gather(-1, index)
        if self.weighting == "softmax":
            weights = torch.softmax(top_raw / math.sqrt(self.head_dim), dim=-1)
        elif self.weighting == "normalized":
            scores = (top_raw / (self.num_heads * self.head_dim)).masked_fill(~selected_allowed, 0.0)  # Eq. 10: /d
            total = scores.sum(dim=-1, keepdim=True)
            total = torch.where(total.abs() < 1e-6, torch.full_like(total, 1e-6), total)
            weights = scores / total
        else:
            raise ValueError(f"unknown prototype weighting {self.weighting!r}; use 'softmax' or 'normalized'")
        weights = weights.masked_fill(~selected_allowed, 0.0)
        heads = torch.arange(self.num_heads, device=queries.device).view(1, -1, 1, 1)
        values = v[heads, index]  # (B, H, L, γ, dh)
        out = torch.matmul(self.dropout(weights).unsqueeze(-2), values).squeeze(-2)  # Eq. 13
        out = self.out_proj(out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim))
        out = out * allowed.flatten(1).any(dim=-1).to(out.dtype)[:, None, None]  # nothing to respond with: zero
        if return_selection:
            return out, index, weights
        return out


class CrossModalPrototypeNetwork(nn.Module):
    """PM, W_pv, the querying/responding module, the feature interaction FCN(s) and the label head.

    `interact(features, labels, modality)` returns (fused features l (Eq. 14), responses r (Eq. 13)) for visual
    tokens (`modality="visual"`) or word embeddings (`"text"`); both modalities share PM, W_pv and the querying.
    """

    def __init__(self, config: XProNetConfig, visual_feature_dim: int) -> None:
        super().__init__()
        self.num_observations = config.num_observations
        self.num_prototypes_per_class = config.num_prototypes_per_class
        self.no_positive_index = config.no_positive_index
        self.label_threshold = config.label_threshold
        self.prototypes = nn.Parameter(
            torch.empty(config.num_observations, config.num_prototypes_per_class, config.prototype_dim)
        )
        self.prototype_projection = nn.Linear(config.prototype_dim, config.prototype_projection_dim)  # W_pv, Eq. 8
        self.querying = PrototypeQuerying(
            config.d_model,
            config.prototype_projection_dim,
            config.prototype_attention_dim,
            config.prototype_num_heads,
            config.prototype_top_k,
            config.prototype_weighting,
            config.dropout,
        )
        self.visual_fusion = nn.Linear(2 * config.d_model, config.d_model)  # FCN, Eq. 14
        self.text_fusion = None if config.share_fusion_layer else nn.Linear(2 * config.d_model, config.d_model)
        self.label_head = nn.Linear(visual_feature_dim, config.num_observations)
        self.reset_prototypes()

    def reset_prototypes(self) -> None:
        """Random PM, N(0, 1/D) (the "w/o PI" ablation; `load_prototypes` puts the K-means initialisation in)."""
        nn.init.normal_(self.prototypes, 0.0, 1.0 / self.prototypes.size(-1))

    def reset_rrg_parameters(self) -> None:
        """As the official code: xavier on the querying's matrices and on the text FCN (a layer of its Transformer),
        PyTorch's default on W_pv, the visual FCN and the label head."""
        _xavier_matrices(self.querying)
        if self.text_fusion is not None:
            _xavier_matrices(self.text_fusion)
        self.reset_prototypes()

    @torch.no_grad()
    def load_prototypes(self, prototypes: torch.Tensor) -> None:
        """Copy an initial PM (N_l, N_p, D) into the parameter (§3.2 Eq. 7)."""
        if tuple(prototypes.shape) != tuple(self.prototypes.shape):
            raise ValueError(
                f"prototype matrix has shape {tuple(prototypes.shape)}, the model expects "
                f"{tuple(self.prototypes.shape)} (num_observations, num_prototypes_per_class, "
                "prototype_visual_dim + prototype_text_dim); make it with the model's config."
            )
        self.prototypes.copy_(prototypes.to(self.prototypes))

    def allowed_prototypes(self, labels: torch.Tensor) -> torch.Tensor:
        """(batch, N_l) labels -> (batch, N_l * N_p) bool: the prototypes of every positive class (pv, §3.2)."""
        return (labels > 0.5).repeat_interleave(self.num_prototypes_per_class, dim=1)

    def with_fallback(self, labels: torch.Tensor) -> torch.Tensor:
        """Binary labels where every row without a positive gets the `no_positive_slot` set (Eq. 3 policy)."""
        binary = (labels > 0.5).to(torch.float32)
        if self.no_positive_index is not None:
            empty = binary.sum(dim=1) == 0
            binary[empty, self.no_positive_index] = 1.0
        return binary

    def label_logits(self, pooled: torch.Tensor, view_mask: torch.Tensor) -> torch.Tensor:
        """Label-head logits (batch, N_l) from the mean pooled feature of a study's real views."""
        weights = view_mask.to(pooled.dtype).unsqueeze(-1)
        study = (pooled * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        return self.label_head(study)

    def predict_labels(self, logits: torch.Tensor) -> torch.Tensor:
        """Binary labels: sigmoid(logits) >= threshold, then the no-positive fallback."""
        return self.with_fallback((torch.sigmoid(logits.float()) >= self.label_threshold).float())

    def keys_values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The querying's keys and values of all prototypes (Eq. 8, 9, 12): weights only, reusable while they hold."""
        return self.querying.keys_values(self.prototype_projection(self.prototypes.flatten(0, 1)))

    def respond(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        return_selection: bool = False,
        keys_values: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Responses r (Eq. 8-13) of (batch, length, d_model) features to the prototypes of their labels
        (`keys_values`: those of `keys_values()`, computed once by the caller)."""
        prototypes = self.prototype_projection(self.prototypes.flatten(0, 1)) if keys_values is None else keys_values
        return self.querying(features, prototypes, self.allowed_prototypes(labels), return_selection)  # p: Eq. 8

    def interact(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        modality: str,
        keys_values: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(l, r): l = FCN(Concat(features, r)) (Eq. 14) and the responses r (Eq. 13)."""
        responses = self.respond(features, labels, keys_values=keys_values)
        fusion = self.text_fusion if (modality == "text" and self.text_fusion is not None) else self.visual_fusion
        return fusion(torch.cat([features, responses], dim=-1)), responses
