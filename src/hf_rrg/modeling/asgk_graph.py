"""ASGK's medical tag graph encoder (§3.2, Eq. 1-4).

The paper leaves the dimensions open; this is the simplest reading consistent with the equations:

- Node values (Eq. 1): V = sigmoid(W_v f_input + b) ∈ R^N, one probability per tag (W_v: N x d, d = size of
  f_input: 1024 for DenseNet-121 and for the textbook GRU).
- Edges (Eq. 2): "W_v v_i" lifts the scalar value of node i into a vector. Eq. 2 reuses the symbol W_v, but the
  N x d matrix of Eq. 1 cannot multiply a scalar; here each tag has its own learned vector u_i ∈ R^{d_model}
  (initialised N(0, 1)) and x_i = v_i · u_i. E = Norm(Attention(.)) is the scaled dot product
  x_i · x_j / sqrt(d_model) normalised by a softmax over j: every row of E sums to 1 (self-edges included).
- Prior knowledge (Eq. 3, "following KERP"): N prior nodes with learned initial features G_prior ∈ R^{N x d_model}
  receive the observed nodes' messages along the learned edges: G = LayerNorm(G_prior + E (X W_m)),
  W_m: d_model -> d_model.
- Multi-head self-attention over the N nodes (one pre-norm Transformer layer: attention + feed-forward, then a
  layer norm) gives the final graph, which the decoder attends to (Eq. 7).
- Eq. 4: BCE between "the final graph tag features" v_i and the tag labels (`asgk_losses.tag_bce`). Each final
  node is read by one shared linear head (d_model -> 1, then a sigmoid), as the official code's `TagHead` reads its
  final tag nodes, so the tag supervision reaches Eq. 2-3 and the self-attention, not only W_v of Eq. 1.

Returned: the final tag probabilities (`node_values`, what Eq. 4 trains and Fig. 3 shows) and their logits, Eq. 1's
V (`initial_node_values`, from which the edges are built) and the edge weights E (drawn by `hf-rrg asgk visualize`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .configuration_asgk import ASGKConfig
from .transformer_layers import EncoderLayer, StdLayerNorm


class MedicalTagGraphEncoder(nn.Module):
    """f_input (B, d) -> Eq. 1's V (B, N), edge weights E (B, N, N), graph nodes (B, N, d_model) and the final tag
    logits / probabilities (B, N) read from the nodes (Eq. 4)."""

    def __init__(self, config: ASGKConfig, input_dim: int) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.tag_projection = nn.Linear(input_dim, config.num_tags)  # W_v (Eq. 1)
        self.node_embeddings = nn.Parameter(torch.zeros(config.num_tags, config.d_model))  # u_i (Eq. 2)
        self.message_projection = nn.Linear(config.d_model, config.d_model)  # W_m (Eq. 3)
        self.prior_nodes = nn.Parameter(torch.zeros(config.num_tags, config.d_model))  # G_prior (Eq. 3)
        self.prior_norm = StdLayerNorm(config.d_model)
        self.self_attention = EncoderLayer(config.d_model, config.graph_num_heads, config.d_ff, config.dropout)
        self.norm = StdLayerNorm(config.d_model)
        self.tag_head = nn.Linear(config.d_model, 1)  # Eq. 4's v_i from each final tag node (shared over nodes)

    def reset_rrg_parameters(self) -> None:
        """Node vectors u_i ~ N(0, 1), prior node features ~ N(0, 0.02) (GPT's embedding init); the linear layers
        keep PyTorch's default."""
        nn.init.normal_(self.node_embeddings, std=1.0)
        nn.init.normal_(self.prior_nodes, std=0.02)

    def node_values(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tag logits, V = sigmoid(logits)) of Eq. 1."""
        if features.dim() != 2 or features.size(1) != self.input_dim:
            raise ValueError(
                f"the graph encoder reads (batch, {self.input_dim}) features, got {tuple(features.shape)}"
            )
        logits = self.tag_projection(features)
        return logits, torch.sigmoid(logits)

    def edges(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(node vectors X (B, N, d_model) = v_i · u_i, edge weights E (B, N, N), rows summing to 1) of Eq. 2."""
        nodes = values.unsqueeze(-1) * self.node_embeddings.unsqueeze(0)
        scores = nodes @ nodes.transpose(1, 2) / math.sqrt(nodes.size(-1))
        return nodes, torch.softmax(scores, dim=-1)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        _, values = self.node_values(features)
        nodes, edge_weights = self.edges(values)
        messages = edge_weights @ self.message_projection(nodes)  # Eq. 3: observed nodes -> prior nodes
        graph = self.prior_norm(self.prior_nodes.unsqueeze(0) + messages)
        graph = self.norm(self.self_attention(graph, None))
        tag_logits = self.tag_head(graph).squeeze(-1)  # Eq. 4: the final graph tag features
        return {
            "tag_logits": tag_logits,
            "node_values": torch.sigmoid(tag_logits),
            "initial_node_values": values,
            "edge_weights": edge_weights,
            "graph": graph,
        }
