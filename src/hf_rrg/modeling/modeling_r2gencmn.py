"""R2GenCMN (Chen, Shen, Song, Wan. "Cross-modal Memory Networks for Radiology Report Generation", ACL 2021).

A Transformer encoder-decoder in which a memory matrix shared by both modalities (§2.2) is queried by the
projected visual tokens and by the word embeddings; each query attends to its top-k memory vectors and the
response is added to the query before the encoder (visual) or the decoder (text).
"""

from __future__ import annotations

from transformers import GenerationMixin

from .configuration_r2gen import R2GenCMNConfig
from .memory_modules import CrossModalMemory
from .report_transformer import ReportDecoder, ReportEncoder, RRGTransformerPreTrainedModel


class R2GenCMNForConditionalGeneration(RRGTransformerPreTrainedModel, GenerationMixin):
    """R2GenCMN: visual tokens + memory responses + positions -> Transformer encoder; word embeddings + memory
    responses -> Transformer decoder; loss = token cross-entropy."""

    config_class = R2GenCMNConfig

    def __init__(self, config: R2GenCMNConfig) -> None:
        super().__init__(config)
        memory = CrossModalMemory(config.cmm_size, config.cmm_dim, config.num_heads, config.topk)
        self.encoder = ReportEncoder(config, memory=memory, add_positions=True)
        self.decoder = ReportDecoder(config, relational_memory=False)
        self._finish_init()

    def _decoder_kwargs(self) -> dict:
        return {"cross_modal_memory": self.encoder.memory}
