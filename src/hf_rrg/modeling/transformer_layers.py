"""Transformer building blocks of the R2Gen family (R2Gen, R2GenCMN, XProNet): pre-norm layers as in the
"annotated Transformer" the official code bases derive from, with an incremental-decoding cache. `DecoderLayer`
also has GPT's post-norm layout and a GELU feed-forward (ASGK's decoder).

Faithful details kept on purpose: `StdLayerNorm` divides by the *unbiased* standard deviation plus eps (not by
sqrt(var + eps) as `nn.LayerNorm`), token embeddings are scaled by sqrt(d_model), positions are sinusoidal.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


class StdLayerNorm(nn.Module):
    """gamma * (x - mean) / (std + eps) + beta, with the unbiased std (R2Gen's `LayerNorm`)."""

    def __init__(self, features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.gamma * (x - mean) / (std + self.eps) + self.beta


def attention_probabilities(query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d_k)) over (..., heads, len, d_k) tensors; `mask` is True where attention is allowed."""
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(query.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)


def masked_softmax_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, dropout: nn.Module
) -> torch.Tensor:
    """Scaled dot-product attention over (..., heads, len, d_k) tensors; `mask` is True where attention is allowed."""
    return torch.matmul(dropout(attention_probabilities(query, key, mask)), value)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate q/k/v/output projections and an optional key/value cache.

    `forward(query, key, value, mask, past)`: with `past=(k, v)` (already projected and split into heads) the new
    keys/values are appended (self-attention); with `static_past=True` `past` replaces them (cross-attention over
    encoder states, projected once). Returns the output and the (k, v) to cache. When a list is passed as
    `weights_out`, the attention probabilities (batch, heads, queries, keys) are appended to it (before dropout).
    """

    def __init__(self, num_heads: int, d_model: int, dropout: float = 0.1) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by the number of heads ({num_heads}).")
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d_model, d_model) for _ in range(4))
        self.dropout = nn.Dropout(dropout)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return masked_softmax_attention(q, k, v, mask, self.dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1, self.num_heads, self.d_k).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None = None,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
        static_past: bool = False,
        weights_out: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        q = self._split(self.q_proj(query))
        if past is not None and static_past:
            k, v = past
        else:
            k, v = self._split(self.k_proj(key)), self._split(self.v_proj(value))
            if past is not None:
                k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        if mask is not None:
            mask = mask.unsqueeze(1)  # broadcast over heads
        out = self.attend(q, k, v, mask)
        if weights_out is not None:
            weights_out.append(attention_probabilities(q, k, mask))
        out = out.transpose(1, 2).contiguous().view(query.size(0), -1, self.num_heads * self.d_k)
        return self.out_proj(out), (k, v)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "gelu": nn.functional.gelu,
    "gelu_tanh": lambda x: nn.functional.gelu(x, approximate="tanh"),  # GPT's approximation
}


class FeedForward(nn.Module):
    """w2(dropout(act(w1 x))), act = relu (the R2Gen family) or a GELU (`ACTIVATIONS`)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1, activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(self.activation(self.w_1(x))))


class SinusoidalPositions(nn.Module):
    """Adds sin/cos positions starting at `offset` (the number of tokens already decoded), then dropout.

    The table is computed on the fly (a few sin/cos per call) rather than kept as a buffer, so that a model
    materialised by `from_pretrained` never holds an uninitialised table.
    """

    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__()
        self.d_model = d_model
        self.dropout = nn.Dropout(dropout)

    def table(self, start: int, length: int, device: torch.device) -> torch.Tensor:
        position = torch.arange(start, start + length, dtype=torch.float, device=device).unsqueeze(1)
        div_term = torch.exp(
            torch.arange(0, self.d_model, 2, dtype=torch.float, device=device) * -(math.log(10000.0) / self.d_model)
        )
        table = torch.zeros(length, self.d_model, device=device)
        table[:, 0::2] = torch.sin(position * div_term)
        table[:, 1::2] = torch.cos(position * div_term)
        return table

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return self.dropout(x + self.table(offset, x.size(1), x.device).to(x.dtype))


class TokenEmbedding(nn.Module):
    """Word embeddings scaled by sqrt(d_model), then sinusoidal positions."""

    def __init__(self, vocab_size: int, d_model: int, dropout: float) -> None:
        super().__init__()
        self.lut = nn.Embedding(vocab_size, d_model)
        self.positions = SinusoidalPositions(d_model, dropout)
        self.scale = math.sqrt(d_model)

    def forward(self, input_ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return self.positions(self.lut(input_ids) * self.scale, offset)


class EncoderLayer(nn.Module):
    """Pre-norm self-attention and feed-forward sublayers, each with dropout on the residual branch."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(num_heads, d_model, dropout)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.norms = nn.ModuleList([StdLayerNorm(d_model), StdLayerNorm(d_model)])
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norms[0](x)
        x = x + self.dropout(self.self_attn(h, h, h, mask)[0])
        return x + self.dropout(self.feed_forward(self.norms[1](x)))


class TransformerEncoder(nn.Module):
    """A stack of `EncoderLayer`s and a final `StdLayerNorm`."""

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d_model, num_heads, d_ff, dropout) for _ in range(num_layers))
        self.norm = StdLayerNorm(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention and feed-forward sublayers, pre-norm (x + f(norm(x)), the R2Gen
    family) or post-norm (norm(x + f(x)), GPT's original blocks, `post_norm=True`).

    `make_norm()` builds each sublayer's norm; a norm that takes a condition (R2Gen's memory-driven conditional
    layer norm) receives `condition` as a second argument. `cross_weights_out` (a list) receives the
    cross-attention probabilities (batch, heads, queries, encoder tokens) when given.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float,
        make_norm: Callable[[], nn.Module],
        post_norm: bool = False,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(num_heads, d_model, dropout)
        self.cross_attn = MultiHeadAttention(num_heads, d_model, dropout)
        self.feed_forward = FeedForward(d_model, d_ff, dropout, activation)
        self.norms = nn.ModuleList([make_norm() for _ in range(3)])
        self.dropout = nn.Dropout(dropout)
        self.post_norm = post_norm

    def _norm(self, index: int, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return self.norms[index](x) if condition is None else self.norms[index](x, condition)

    def forward(
        self,
        x: torch.Tensor,
        encoder_states: torch.Tensor,
        encoder_mask: torch.Tensor | None,
        self_mask: torch.Tensor | None,
        condition: torch.Tensor | None = None,
        self_past: tuple[torch.Tensor, torch.Tensor] | None = None,
        cross_past: tuple[torch.Tensor, torch.Tensor] | None = None,
        cross_weights_out: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        if self.post_norm:
            out, self_kv = self.self_attn(x, x, x, self_mask, past=self_past)
            x = self._norm(0, x + self.dropout(out), condition)
            out, cross_kv = self.cross_attn(x, encoder_states, encoder_states, encoder_mask, cross_past, static_past=True)
            x = self._norm(1, x + self.dropout(out), condition)
            return self._norm(2, x + self.dropout(self.feed_forward(x)), condition), self_kv, cross_kv
        h = self._norm(0, x, condition)
        out, self_kv = self.self_attn(h, h, h, self_mask, past=self_past)
        x = x + self.dropout(out)
        h = self._norm(1, x, condition)
        out, cross_kv = self.cross_attn(
            h, encoder_states, encoder_states, encoder_mask, cross_past, static_past=True, weights_out=cross_weights_out
        )
        x = x + self.dropout(out)
        x = x + self.dropout(self.feed_forward(self._norm(2, x, condition)))
        return x, self_kv, cross_kv


def causal_mask(
    query_length: int, past_length: int, key_padding: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    """(batch or 1, query_length, past_length + query_length) bool mask: a query sees itself and earlier keys,
    and no key whose `key_padding` entry is False."""
    total = past_length + query_length
    query_positions = torch.arange(past_length, total, device=device).unsqueeze(1)
    mask = (torch.arange(total, device=device).unsqueeze(0) <= query_positions).unsqueeze(0)
    if key_padding is not None:
        mask = mask & key_padding[:, None, -total:].bool()
    return mask
