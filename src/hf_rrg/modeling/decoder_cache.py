"""`RRGDecoderCache`: what incremental decoding keeps between steps, reorderable by beam search."""

from __future__ import annotations

import torch


class RRGDecoderCache:
    """Per decoder layer the self-attention keys/values (growing) and the cross-attention keys/values (projected
    once from the encoder states), named per-sequence states (R2Gen's relational memory), and `shared` tensors
    that do not depend on the sequence (R2GenCMN's projected memory matrix), which beam search leaves alone.

    `generate()` creates one per call, passes it as `cache`, and calls `reorder_cache` after each beam step.
    """

    is_compileable = False
    is_linear = (False,)  # generate() slices the prompt by get_seq_length() for non-linear caches

    def __init__(self) -> None:
        self.self_attention: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.cross_attention: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.states: dict[str, torch.Tensor] = {}
        self.shared: dict[str, tuple[torch.Tensor, ...]] = {}
        self.seen_tokens = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def layer(self, index: int) -> tuple[tuple | None, tuple | None]:
        """The cached (self, cross) keys/values of decoder layer `index`, or Nones before the first step."""
        if index < len(self.self_attention):
            return self.self_attention[index], self.cross_attention[index]
        return None, None

    def store(self, index: int, self_kv: tuple, cross_kv: tuple) -> None:
        if index < len(self.self_attention):
            self.self_attention[index] = self_kv
        else:
            self.self_attention.append(self_kv)
            self.cross_attention.append(cross_kv)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        def select(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.index_select(0, beam_idx.to(tensor.device))

        self.self_attention = [(select(k), select(v)) for k, v in self.self_attention]
        self.cross_attention = [(select(k), select(v)) for k, v in self.cross_attention]
        self.states = {name: select(state) for name, state in self.states.items()}
