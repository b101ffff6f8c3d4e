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
        clip_loss_weight: β of Eq. 13 (0.1, §4.2).
        cs_loss_weight: γ of Eq. 13 (0.2, §4.2).
        cs_absolute: L_CS averages |cos(z_i, z_i⁻)| (the official code) instead of cos (Eq. 1 as printed).
        embed_dim: size of the shared image/report space (§4.2: a Linear of hidden size 512 + l2-normalisation).
        image_feature_dim: size of the pooled visual feature z is projected from; None = the backbone's visual
            extractor (ResNet-101: 2048, §4.2).
        report_feature_dim: size of the decoder's hidden states; None = the backbone's d_model (512).
        initial_temperature: τ of the CLIP loss at the start (0.07, CLIP's value); learned unless
            `learnable_temperature` is False. 1/τ is capped at 100 as CLIP does.
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
        clip_loss_weight: float = 0.1,
        cs_loss_weight: float = 0.2,
        cs_absolute: bool = True,
        embed_dim: int = 512,
        image_feature_dim: int | None = None,
        report_feature_dim: int | None = None,
        initial_temperature: float = 0.07,
        learnable_temperature: bool = True,
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
        self.clip_loss_weight = clip_loss_weight
        self.cs_loss_weight = cs_loss_weight
        self.cs_absolute = cs_absolute
        self.embed_dim = embed_dim
        self.image_feature_dim = image_feature_dim
        self.report_feature_dim = report_feature_dim
        self.initial_temperature = initial_temperature
        self.learnable_temperature = learnable_temperature
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
        for name in ("clip_loss_weight", "cs_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {self.embed_dim}")

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
