"""Memories of the R2Gen family.

- `RelationalMemory` and `ConditionalLayerNorm`: R2Gen (Chen et al., EMNLP 2020, §2.2-2.3). A matrix of
  `num_slots` memory slots is updated at every decoding step from the previous token's embedding through
  multi-head attention, an MLP and input/forget gates; the memory then shifts the gain and bias of every layer
  norm in the decoder (memory-driven conditional layer norm).
- `CrossModalMemory`: R2GenCMN (Chen et al., ACL 2021, §2.2). A learned matrix shared by both modalities is
  queried with multi-head attention restricted to each query's top-k memory vectors; the responses are added to
  the visual tokens and to the word embeddings.
"""

from __future__ import annotations

import torch
from torch import nn

from .transformer_layers import MultiHeadAttention


class RelationalMemory(nn.Module):
    """R2Gen's relational memory: `step(token_embedding, memory) -> memory`, memory (batch, num_slots * d_model)."""

    def __init__(self, num_slots: int, d_model: int, num_heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.num_slots = num_slots
        self.d_model = d_model
        self.attn = MultiHeadAttention(num_heads, d_model, dropout)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, d_model), nn.ReLU())
        self.W = nn.Linear(d_model, 2 * d_model)  # input contribution to the gates
        self.U = nn.Linear(d_model, 2 * d_model)  # memory contribution to the gates

    def initial_state(self, batch_size: int, like: torch.Tensor) -> torch.Tensor:
        """Identity rows padded with zeros (or cut) to d_model: slot i starts as the i-th unit vector."""
        eye = torch.eye(self.num_slots, self.d_model, dtype=like.dtype, device=like.device)
        return eye.reshape(1, -1).expand(batch_size, -1).clone()

    def step(self, token: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        memory = memory.reshape(-1, self.num_slots, self.d_model)
        keys = torch.cat([memory, token.unsqueeze(1)], dim=1)
        candidate = memory + self.attn(memory, keys, keys)[0]
        candidate = candidate + self.mlp(candidate)
        input_gate, forget_gate = (self.W(token.unsqueeze(1)) + self.U(torch.tanh(memory))).chunk(2, dim=-1)
        memory = torch.sigmoid(input_gate) * torch.tanh(candidate) + torch.sigmoid(forget_gate) * memory
        return memory.reshape(-1, self.num_slots * self.d_model)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run over (batch, length, d_model) token embeddings; returns the memory after each token
        (batch, length, num_slots * d_model) and the last memory."""
        states = []
        for position in range(tokens.size(1)):
            memory = self.step(tokens[:, position], memory)
            states.append(memory)
        return torch.stack(states, dim=1), memory


class ConditionalLayerNorm(nn.Module):
    """R2Gen's memory-driven conditional layer norm: gamma and beta are shifted by MLPs of the memory,
    (gamma + f_gamma(M)) * (x - mean) / (std + eps) + (beta + f_beta(M)), with the unbiased std.

    The official code's second gamma layer is Linear(rm_d_model, rm_d_model), which only works when
    rm_d_model == d_model (the published setting); here both MLPs end in Linear(d_model, d_model).
    """

    def __init__(self, d_model: int, condition_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(d_model))
        self.beta = nn.Parameter(torch.zeros(d_model))
        self.mlp_gamma = nn.Sequential(nn.Linear(condition_size, d_model), nn.ReLU(), nn.Linear(d_model, d_model))
        self.mlp_beta = nn.Sequential(nn.Linear(condition_size, d_model), nn.ReLU(), nn.Linear(d_model, d_model))
        self.eps = eps

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        gamma = self.gamma + self.mlp_gamma(memory)
        beta = self.beta + self.mlp_beta(memory)
        return gamma * (x - mean) / (std + self.eps) + beta


def top_k_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, dropout: nn.Module, k: int
) -> torch.Tensor:
    """Attention of (batch, heads, length, d_k) queries over (batch or 1, heads, M, d_k) memory keys/values
    restricted to each query's `k` highest scores (softmax over those k only), as R2GenCMN's memory querying."""
    if key.size(0) == 1 and query.size(0) > 1:
        # one memory for the whole batch: fold the batch into the query rows instead of letting matmul
        # materialise a (batch, heads, d_k, M) copy of the memory at every call
        batch, heads, length, d_k = query.shape
        rows = query.transpose(0, 1).reshape(heads, batch * length, d_k)
        scores = torch.matmul(rows, key[0].transpose(-2, -1)).view(heads, batch, length, -1).transpose(0, 1)
        scores = scores / d_k**0.5
    else:
        scores = torch.matmul(query, key.transpose(-2, -1)) / query.size(-1) ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    top_scores, top_index = scores.topk(min(k, scores.size(-1)), dim=-1)
    weights = dropout(torch.softmax(top_scores, dim=-1))
    batch = torch.arange(query.size(0), device=query.device).view(-1, 1, 1, 1) if value.size(0) > 1 else 0
    heads = torch.arange(query.size(1), device=query.device).view(1, -1, 1, 1)
    selected = value[batch, heads, top_index]  # (batch, heads, length, k, d_k)
    return torch.matmul(weights.unsqueeze(-2), selected).squeeze(-2)


class TopKMultiHeadAttention(MultiHeadAttention):
    """`MultiHeadAttention` whose queries attend only to their `top_k` best-scoring keys."""

    def __init__(self, num_heads: int, d_model: int, top_k: int, dropout: float = 0.1) -> None:
        super().__init__(num_heads, d_model, dropout)
        self.top_k = top_k

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return top_k_attention(q, k, v, mask, self.dropout, self.top_k)


class CrossModalMemory(nn.Module):
    """R2GenCMN's shared memory matrix (memory_size x d_model, N(0, 1/d_model)) and its top-k querying.

    `forward(features)` returns the responses for (batch, length, d_model) visual tokens or word embeddings, and
    the projected memory keys/values (reusable while the weights do not change).
    """

    def __init__(self, memory_size: int, d_model: int, num_heads: int, top_k: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.matrix = nn.Parameter(torch.empty(memory_size, d_model))
        self.attention = TopKMultiHeadAttention(num_heads, d_model, top_k, dropout)
        self.reset_matrix()

    def reset_matrix(self) -> None:
        nn.init.normal_(self.matrix, 0.0, 1.0 / self.matrix.size(1))

    def forward(
        self, features: torch.Tensor, projected: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Responses to `features`, and the memory's key/value projections. They depend only on the weights, so
        incremental decoding passes them back as `projected` instead of re-projecting the matrix at every step."""
        memory = self.matrix.unsqueeze(0)
        return self.attention(features, memory, memory, past=projected, static_past=projected is not None)
