"""Configurations of the R2Gen family: `R2GenConfig` (Chen et al., EMNLP 2020, "Generating Radiology Reports via
Memory-driven Transformer") and `R2GenCMNConfig` (Chen et al., ACL 2021, "Cross-modal Memory Networks for
Radiology Report Generation"). Defaults are the published settings (the papers' §3.2 "Implementation Details" and
the official code's defaults).
"""

from __future__ import annotations

from .configuration_rrg import RRGConfig


class RRGTransformerConfig(RRGConfig):
    """Fields shared by the Transformer encoder-decoder report generators (R2Gen, R2GenCMN, XProNet).

    Args:
        visual_backbone: timm model name of the visual extractor; its last feature map gives the patch tokens
            (ResNet-101 at 224 px: 7x7x2048 -> 49 tokens per view; two IU X-Ray views -> 98 tokens). A pretrained
            tag picks the ImageNet weights only: the official code's torchvision weights are
            `resnet101.tv_in1k` (what the IU X-Ray / MIMIC-CXR configs name); plain `resnet101` is timm's default.
        visual_pretrained: load ImageNet weights into the backbone when a model is built *for training*
            (`model.load_pretrained_backbone()`, which hf-rrg's training calls); `from_pretrained` never does,
            the checkpoint holds the trained weights. R2Gen: True.
        visual_dropout: dropout after the patch projection Linear(2048 -> d_model) + ReLU (R2Gen `drop_prob_lm` 0.5).
        d_model, d_ff, num_layers, num_heads, dropout: Transformer size (R2Gen/R2GenCMN: 512, 512, 3, 8, 0.1).
        max_seq_length: longest report in tokens, `<bos>` included (IU X-Ray 60, MIMIC-CXR 100): training targets
            are cut to it. Generation writes up to `max_seq_length` tokens after `<bos>` by default
            (`generation_config.max_new_tokens`), as the official beam search does; its other defaults (beam
            size 3) live in `generation_config.json` too.
    """

    model_type = "rrg_transformer"

    def __init__(
        self,
        visual_backbone: str = "resnet101",
        visual_pretrained: bool = True,
        visual_dropout: float = 0.5,
        d_model: int = 512,
        d_ff: int = 512,
        num_layers: int = 3,
        num_heads: int = 8,
        dropout: float = 0.1,
        max_seq_length: int = 60,
        **kwargs,
    ) -> None:
        self.visual_backbone = visual_backbone
        self.visual_pretrained = visual_pretrained
        self.visual_dropout = visual_dropout
        self.d_model = d_model
        self.d_ff = d_ff
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.dropout = dropout
        self.max_seq_length = max_seq_length
        super().__init__(**kwargs)


class R2GenConfig(RRGTransformerConfig):
    """R2Gen: Transformer with a relational memory and memory-driven conditional layer norm (MCLN).

    Args:
        rm_num_slots: memory slots (R2Gen §3.2: 3).
        rm_num_heads: heads of the memory's attention (8).
        rm_d_model: size of a memory slot (512; must equal d_model, as in the paper).
        **kwargs: `RRGTransformerConfig` fields.
    """

    model_type = "r2gen"

    def __init__(self, rm_num_slots: int = 3, rm_num_heads: int = 8, rm_d_model: int = 512, **kwargs) -> None:
        self.rm_num_slots = rm_num_slots
        self.rm_num_heads = rm_num_heads
        self.rm_d_model = rm_d_model
        super().__init__(**kwargs)
        if self.rm_d_model != self.d_model:
            raise ValueError(
                f"rm_d_model ({rm_d_model}) must equal d_model ({self.d_model}): the memory is read by the decoder's "
                "layer norms and updated from word embeddings of size d_model (R2Gen §2.2)."
            )


class R2GenCMNConfig(RRGTransformerConfig):
    """R2GenCMN: Transformer whose visual tokens and word embeddings query a shared cross-modal memory.

    Args:
        cmm_size: number of memory vectors (R2GenCMN: 2048).
        cmm_dim: size of a memory vector (512; equals d_model since responses are added to the features).
        topk: memory vectors each query attends to (32).
        **kwargs: `RRGTransformerConfig` fields.
    """

    model_type = "r2gencmn"

    def __init__(self, cmm_size: int = 2048, cmm_dim: int = 512, topk: int = 32, **kwargs) -> None:
        self.cmm_size = cmm_size
        self.cmm_dim = cmm_dim
        self.topk = topk
        super().__init__(**kwargs)
        if self.cmm_dim != self.d_model:
            raise ValueError(
                f"cmm_dim ({cmm_dim}) must equal d_model ({self.d_model}): memory responses are added to the "
                "visual tokens and word embeddings (R2GenCMN §2.2)."
            )
