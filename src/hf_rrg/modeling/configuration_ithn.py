"""Configuration of ITHN (Voutharoja, Wang, Zhou. "Automatic Radiology Report Generation by Learning with
Increasingly Hard Negatives", ECAI 2023; `papers/001_7a44b13b1d94c933.txt`): a training framework wrapped around a
report generator (the *backbone*: R2GenCMN or XProNet here), whose config is nested as `backbone_config`.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_r2gen import R2GenCMNConfig, R2GenConfig, RRGTransformerConfig
from .configuration_rrg import RRGConfig
from .configuration_xpronet import XProNetConfig
from .ithn_losses import SYNTHESIS_STRATEGIES

#: Backbone model types ITHN can wrap, and their config classes (resolved here, not through AutoConfig, so that an
#: exported ITHN repo loads with `trust_remote_code=True` where hf-rrg is not installed).
BACKBONE_CONFIGS: dict[str, type[RRGTransformerConfig]] = {
    "r2gencmn": R2GenCMNConfig,
    "xpronet": XProNetConfig,
    "r2gen": R2GenConfig,
}

REPORT_POOLINGS = ("tokens", "all_positions")

#: Named sets of ITHN switches. "paper" is the default reading (Eq. 1-13, §4.2); "official" reproduces the training
#: objective of the official code (Bhanu068/ITHN `models/models.py`, `modules/trainer.py`, `modules/datasets.py`):
#: bias-free projections, a second learned temperature for S3, no cap on 1/τ, report features averaged over every
#: padded position, L = 0.7·L_CE + 0.1·L_CP + 0.2·L_CS, ũ not detached, one image per IU X-Ray sample. It keeps the
#: paper's projection (Eq. 6) and S3' (diagonal times −1), where the official code has bugs (docs/ithn.md).
ITHN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        projection_bias=True, separate_synthesis_temperature=False, max_logit_scale=100.0, report_pooling="tokens",
        backbone_loss_weight=1.0, clip_loss_weight=0.1, cs_loss_weight=0.2, cs_absolute=True,
        detach_synthesized=True, single_view=False,
    ),
    "official": dict(
        projection_bias=False, separate_synthesis_temperature=True, max_logit_scale=None,
        report_pooling="all_positions", backbone_loss_weight=0.7, clip_loss_weight=0.1, cs_loss_weight=0.2,
        cs_absolute=True, detach_synthesized=False, single_view=True,
    ),
}  # fmt: skip

# RRGConfig fields the wrapper and the backbone share (the tokenizer's vocabulary and ids, views per study).
_SHARED_FIELDS = ("vocab_size", "max_views", "pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id")


def backbone_config_from(value: dict[str, Any] | PreTrainedConfig | None) -> RRGTransformerConfig:
    """A backbone config from a config object, a dict with `model_type` (default "r2gencmn") or None."""
    if isinstance(value, PreTrainedConfig):
        if value.model_type not in BACKBONE_CONFIGS:
            raise ValueError(
                f"ITHN cannot wrap a {value.model_type!r} model; supported backbones: {sorted(BACKBONE_CONFIGS)}"
            )
        return value
    data = dict(value or {})
    model_type = data.pop("model_type", "r2gencmn")
    data.pop("transformers_version", None)
    if model_type not in BACKBONE_CONFIGS:
        raise ValueError(
            f"backbone_config.model_type {model_type!r} is not an ITHN backbone; use one of {sorted(BACKBONE_CONFIGS)}"
        )
    return BACKBONE_CONFIGS[model_type](**data)


class ITHNConfig(RRGConfig):
    """ITHN around a backbone report generator. Defaults are the paper's (§3.3-3.5, §4.2).

    Args:
        backbone_config: the wrapped model's config (an `R2GenCMNConfig` / `XProNetConfig` / `R2GenConfig`, or its
            dict with `model_type`; default R2GenCMN, the paper's baseline). The vocabulary, special-token ids and
            `max_views` given to ITHN are written into it.
        synthesis: how the harder negative ũ_i⁻ is made (§3.4): "projection" (Eq. 5-7, the paper's ITHN), "mochi"
            (Eq. 2, the MoCHi-inspired strategy) or "none" (ũ_i⁻ = the prior hard negative u_i⁻: Table 3's
            "w/o harder negative synthesis").
        hardness_alpha: α of λ = 1 − exp(−α·epoch) (§4.2; 0.01, Table 3 right).
        projection_clamp: keep the projection p_i on the segment [u_i⁻, u_i]; False is Eq. 6 (the whole line).
        use_clip_loss: add β·L_CP (Eq. 12); False is Table 3's "w/o L_CP" (then no synthesis is needed).
        use_cs_loss: add γ·L_CS (Eq. 1); False is Table 3's "w/o L_CS".
        backbone_loss_weight: weight of the backbone's objective (its L_CE, plus e.g. XProNet's own terms) in Eq. 13:
            1 (the paper, L_F = L_CE + β·L_CP + γ·L_CS); the official trainer uses 0.7.
        clip_loss_weight: β of Eq. 13 (0.1, §4.2).
        cs_loss_weight: γ of Eq. 13 (0.2, §4.2).
        cs_absolute: L_CS averages |cos(z_i, z_i⁻)| (the official code) instead of cos (Eq. 1 as printed).
        embed_dim: size of the shared image/report space (§4.2: a Linear of hidden size 512 + l2-normalisation).
        projection_bias: the two projections into that space have a bias (True: "a linear layer", §4.2); the official
            code's have none (False).
        image_feature_dim: size of the pooled visual feature z is projected from; None = the backbone's visual
            extractor (ResNet-101: 2048, §4.2).
        report_feature_dim: size of the decoder's hidden states; None = the backbone's d_model (512).
        initial_temperature: τ of the CLIP loss at the start (0.07, CLIP's value); learned unless
            `learnable_temperature` is False.
        max_logit_scale: cap on 1/τ (100, as CLIP does); None leaves it uncapped (the official code).
        separate_synthesis_temperature: S3' of Eq. 11 gets its own learned temperature τ₃ (same start), as the
            official code does (`temp_1` for S1 and S2, `temp_3` for S3); False: one τ (Eq. 8 has one).
        report_pooling: how the decoder's hidden states become u (§4.2 does not say): "tokens" averages the report's
            real tokens; "all_positions" averages every position of the padded batch (the anchors' and the
            neighbours' batches each padded to their own longest report), as the official code does.
        single_view: read only the first view of each study, in training and generation. The paper (§4.2: "we do not
            combine the frontal and lateral views ... pass them separately") and the official code (one image file
            per IU X-Ray sample) do not feed both views of a study together; False gives the backbone every view,
            as R2Gen-family backbones are published with.
        detach_synthesized: treat ũ_i⁻ as a constant when updating the network (the alternating min-max of Eq. 3:
            ũ is chosen for the current weights, then the weights are updated with ũ fixed).
        ce_on_negatives: also train the report cross-entropy on the neighbour pairs (I_i⁻, R_i⁻) of the batch. The
            paper's L_CE is the report generation loss of (I_i, R_i) (§3.3); the neighbours are training samples that
            get their own L_CE when they are anchors, so the default (False) counts each sample once per epoch.
        **kwargs: `RRGConfig` fields (vocab_size, max_views, special-token ids; None = the backbone's) and
            `PreTrainedConfig` fields.
    """

    model_type = "ithn"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=RRGTransformerConfig)}

    def __init__(
        self,
        backbone_config: dict[str, Any] | PreTrainedConfig | None = None,
        synthesis: str = "projection",
        hardness_alpha: float = 0.01,
        projection_clamp: bool = False,
        use_clip_loss: bool = True,
        use_cs_loss: bool = True,
        backbone_loss_weight: float = 1.0,
        clip_loss_weight: float = 0.1,
        cs_loss_weight: float = 0.2,
        cs_absolute: bool = True,
        embed_dim: int = 512,
        projection_bias: bool = True,
        image_feature_dim: int | None = None,
        report_feature_dim: int | None = None,
        initial_temperature: float = 0.07,
        learnable_temperature: bool = True,
        max_logit_scale: float | None = 100.0,
        separate_synthesis_temperature: bool = False,
        report_pooling: str = "tokens",
        single_view: bool = False,
        detach_synthesized: bool = True,
        ce_on_negatives: bool = False,
        **kwargs,
    ) -> None:
        backbone = backbone_config_from(backbone_config)
        shared = {name: kwargs.pop(name, None) for name in _SHARED_FIELDS}
        for name, value in shared.items():
            if value is None:
                shared[name] = getattr(backbone, name)
            else:
                setattr(backbone, name, value)
        self.backbone_config = backbone
        self.synthesis = synthesis
        self.hardness_alpha = hardness_alpha
        self.projection_clamp = projection_clamp
        self.use_clip_loss = use_clip_loss
        self.use_cs_loss = use_cs_loss
        self.backbone_loss_weight = backbone_loss_weight
        self.clip_loss_weight = clip_loss_weight
        self.cs_loss_weight = cs_loss_weight
        self.cs_absolute = cs_absolute
        self.embed_dim = embed_dim
        self.projection_bias = projection_bias
        self.image_feature_dim = image_feature_dim
        self.report_feature_dim = report_feature_dim
        self.initial_temperature = initial_temperature
        self.learnable_temperature = learnable_temperature
        self.max_logit_scale = max_logit_scale
        self.separate_synthesis_temperature = separate_synthesis_temperature
        self.report_pooling = report_pooling
        self.single_view = single_view
        self.detach_synthesized = detach_synthesized
        self.ce_on_negatives = ce_on_negatives
        super().__init__(**shared, **kwargs)
        self._validate_ithn()

    def _validate_ithn(self) -> None:
        if self.synthesis not in SYNTHESIS_STRATEGIES:
            raise ValueError(f"synthesis must be one of {SYNTHESIS_STRATEGIES}, got {self.synthesis!r}")
        if self.hardness_alpha < 0:
            raise ValueError(f"hardness_alpha must be >= 0, got {self.hardness_alpha}")
        if not self.initial_temperature > 0:
            raise ValueError(f"initial_temperature must be > 0, got {self.initial_temperature}")
        if self.report_pooling not in REPORT_POOLINGS:
            raise ValueError(f"report_pooling must be one of {REPORT_POOLINGS}, got {self.report_pooling!r}")
        if self.max_logit_scale is not None and not self.max_logit_scale > 0:
            raise ValueError(f"max_logit_scale must be > 0 or None (uncapped), got {self.max_logit_scale}")
        for name in ("backbone_loss_weight", "clip_loss_weight", "cs_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {self.embed_dim}")

    @classmethod
    def from_preset(cls, preset: str, **kwargs: Any) -> ITHNConfig:
        """An ITHN config with the switches of `ITHN_PRESETS[preset]` ("paper" or "official"); `kwargs` (the
        backbone, vocabulary, ...) are passed through and may override a switch."""
        if preset not in ITHN_PRESETS:
            raise ValueError(f"unknown ITHN preset {preset!r}; choose one of {sorted(ITHN_PRESETS)}")
        return cls(**{**ITHN_PRESETS[preset], **kwargs})

    # The backbone's settings that the training loop, the pipeline and model cards read from `model.config`.
    @property
    def max_seq_length(self) -> int:
        return self.backbone_config.max_seq_length

    @property
    def visual_backbone(self) -> str:
        return self.backbone_config.visual_backbone

    @property
    def visual_pretrained(self) -> bool:
        return self.backbone_config.visual_pretrained

    @property
    def d_model(self) -> int:
        return self.backbone_config.d_model

    @property
    def d_ff(self) -> int:
        return self.backbone_config.d_ff

    @property
    def num_layers(self) -> int:
        return self.backbone_config.num_layers

    @property
    def num_heads(self) -> int:
        return self.backbone_config.num_heads

    @property
    def backbone_type(self) -> str:
        """The wrapped model's `model_type` ("r2gencmn", "xpronet", ...)."""
        return self.backbone_config.model_type
