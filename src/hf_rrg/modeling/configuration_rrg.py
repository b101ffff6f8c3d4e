"""`RRGConfig`: what every hf-rrg report generator shares with its processor.

The method configs (R2Gen, R2GenCMN, CoAtt, ASGK, XProNet, ITHN, DCRRG) extend it with their own fields.
It is also the key under which the shared processing classes (tokenizer, image processor, processor)
are registered with the transformers Auto classes.
"""

from __future__ import annotations

from transformers import PreTrainedConfig


class RRGConfig(PreTrainedConfig):
    """Vocabulary and special-token ids of a report generator, and the views it reads per study.

    Args:
        vocab_size: size of the word-level report vocabulary (special tokens included).
        max_views: most images (views) of one study the model reads; IU X-Ray studies have 2 (R2Gen).
        pad_token_id / bos_token_id / eos_token_id / unk_token_id: ids of the tokenizer's special tokens
            (`RRGTokenizer` puts them at 0..3).
    """

    model_type = "rrg"

    def __init__(
        self,
        vocab_size: int = 1000,
        max_views: int = 2,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        unk_token_id: int = 3,
        **kwargs,
    ) -> None:
        self.vocab_size = vocab_size
        self.max_views = max_views
        self.unk_token_id = unk_token_id
        kwargs.setdefault("is_encoder_decoder", True)
        super().__init__(
            pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs
        )
