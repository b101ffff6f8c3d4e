"""R2Gen (Chen, Song, Chang, Wan. "Generating Radiology Reports via Memory-driven Transformer", EMNLP 2020).

A Transformer encoder-decoder over the CNN patch tokens of a study's views. Its decoder carries a relational
memory (§2.2) updated from each generated word, and every decoder layer norm is a memory-driven conditional
layer norm (MCLN, §2.3) whose gain and bias are shifted by the current memory.
"""

from __future__ import annotations

from transformers import GenerationMixin

from .configuration_r2gen import R2GenConfig
from .report_transformer import ReportDecoder, ReportEncoder, RRGTransformerPreTrainedModel


class R2GenForConditionalGeneration(RRGTransformerPreTrainedModel, GenerationMixin):
    """R2Gen: visual tokens (no positional encoding, as the official code) -> Transformer encoder; decoder with
    relational memory and MCLN; loss = token cross-entropy."""

    config_class = R2GenConfig

    def __init__(self, config: R2GenConfig) -> None:
        super().__init__(config)
        self.encoder = ReportEncoder(config, memory=None, add_positions=False)
        self.decoder = ReportDecoder(config, relational_memory=True)
        self._finish_init()
