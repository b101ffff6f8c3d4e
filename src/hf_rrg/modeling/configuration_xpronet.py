"""Configuration of XProNet (Wang, Bhalerao, He. "Cross-modal Prototype Driven Network for Radiology Report
Generation", ECCV 2022; `papers/004_e9a48aa18c2efadd.txt`). Defaults are the paper's settings and, where the paper
is silent, the official IU X-Ray script's (which the paper's numbers come from).
"""

from __future__ import annotations

from .configuration_r2gen import RRGTransformerConfig

#: The 14 label slots of XProNet's pseudo labels in the official label files' order, which is CheXbert's output
#: order ("No Finding" is the LAST slot). `hf_rrg.labeling.OBSERVATIONS` lists the same 14 observations in
#: CheXpert's CSV column order ("No Finding" FIRST); `hf_rrg.xpronet.labels` maps between the two by name.
XPRONET_OBSERVATIONS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
    "No Finding",
)

PROTOTYPE_WEIGHTINGS = ("softmax", "normalized")
TEXT_RESPONSE_POOLINGS = ("tokens", "all_positions")


class XProNetConfig(RRGTransformerConfig):
    """XProNet: R2GenCMN's Transformer encoder-decoder whose cross-modal memory is replaced by a label-conditioned
    cross-modal prototype network (§3.2), trained with an improved multi-label contrastive loss (§3.4).

    Args:
        observation_names: the N_l label slots of the pseudo labels (§3.2 Eq. 3; N_l = 14), in slot order. Default
            `XPRONET_OBSERVATIONS` (CheXbert order, "No Finding" last, as the official label files).
        uncertain_as_positive: pseudo-label policy (Eq. 3): an observation the labeler marks uncertain (-1) counts
            as present (True, what the official label files did) or absent (False).
        no_positive_slot: name of the slot set for a sample with no positive label, so that every sample selects at
            least one class of prototypes ("No Finding", the last slot, as the official labels); `None` leaves
            such samples label-less (their queries then find no prototype and their responses are zero).
        num_prototypes_per_class: N_p, prototypes per class in PM ∈ R^{N_l × N_p × D} (§3.2; official IU: 20, made
            of 10 K-means centres on unflipped + 10 on flipped image features).
        prototype_visual_dim: C_1, size of the global image feature in a prototype (§3.2; ResNet-101: 2048). Must
            equal the visual backbone's feature size when prototypes are initialised from it.
        prototype_text_dim: C_2, size of the report feature in a prototype (§3.2; BERT/CheXbert: 768).
        prototype_projection_dim: C_P of W_pv ∈ R^{D × C_P} (Eq. 8); `None` means d_model (the official code).
        prototype_attention_dim: d, the common size of queries and prototypes (Eq. 9); `None` means d_model.
        prototype_num_heads: heads of the querying attention. The paper (Eq. 9-13) describes one head; the official
            code queries with R2GenCMN's multi-head memory attention (8 heads, each picking its own top γ), the
            default here. 1 gives Eq. 9-13 exactly (plus an output projection to d_model).
        prototype_top_k: γ, prototypes each query responds with (§3.2 Eq. 11; §4 Fig. 5: 15 is best on IU X-Ray).
        prototype_weighting: how the γ selected similarities become weights. "softmax" (default): a softmax over
            the top-γ scaled dot products, what the official code does and what the reported numbers come from;
            "normalized": the paper's Eq. 11, each similarity (Eq. 10) divided by the sum of the γ selected ones.
        share_fusion_layer: one FCN for the visual and the textual feature interaction (True: Eq. 14 writes the same
            FCN for both) or one each (False, the default: the official code has two fusion layers, one for the
            image patches and one for the words, and its published checkpoints need both).
        contrastive_margin: α, negative pairs count only above this cosine similarity (Eq. 17; official: 0.4).
        contrastive_theta: θ, the positive-pair target θ^(-h_d/h_t) (Eq. 17-18; §4 Fig. 6: 1.75 is best on
            MIMIC-CXR, the default). The official code hard-codes 1.5 for both datasets (the shipped IU X-Ray and
            MIMIC-CXR configs, which follow the official scripts, set 1.5).
        contrastive_improved: True uses θ^(-h_d/h_t) as the positive target (Eq. 17); False replaces it by 1
            (the "w/o IMLCS" ablation of Table 2, a standard multi-label contrastive loss).
        text_response_pooling: the σ of Eq. 17 for the textual responses r^t: "tokens" (default) averages the real
            tokens of each report, so a report's feature does not depend on how long the other reports of its batch
            are; "all_positions" averages every decoder position of the padded batch, padding included, as the
            official code does (`torch.mean(txt_responses, dim=1)`). The paper says "mean" only.
        visual_contrastive_weight: λ of L_icn^s (Eq. 20; official IU script: 1.0).
        text_contrastive_weight: δ of L_icn^t (Eq. 20; official IU script: 0.1).
        label_loss_weight: weight of the image-level label head's BCE. Not in the paper: hf-rrg adds the head so
            that inference needs only the image (the paper read labels made from the ground-truth report).
        label_threshold: a predicted probability >= this sets a label slot when `observation_labels` is not passed.
        use_prototype_network: False removes the prototype network and the label head ("w/o CMPNet" of Table 2:
            visual extractor + Transformer encoder-decoder only).
        **kwargs: `RRGTransformerConfig` fields (ResNet-101, 3 layers, d_model 512, d_ff 512, 8 heads, dropout 0.1,
            max_seq_length 60 for IU X-Ray / 100 for MIMIC-CXR, as R2GenCMN).
    """

    model_type = "xpronet"

    def __init__(
        self,
        observation_names: list[str] | tuple[str, ...] | None = None,
        uncertain_as_positive: bool = True,
        no_positive_slot: str | None = "No Finding",
        num_prototypes_per_class: int = 20,
        prototype_visual_dim: int = 2048,
        prototype_text_dim: int = 768,
        prototype_projection_dim: int | None = None,
        prototype_attention_dim: int | None = None,
        prototype_num_heads: int = 8,
        prototype_top_k: int = 15,
        prototype_weighting: str = "softmax",
        share_fusion_layer: bool = False,
        contrastive_margin: float = 0.4,
        contrastive_theta: float = 1.75,
        contrastive_improved: bool = True,
        text_response_pooling: str = "tokens",
        visual_contrastive_weight: float = 1.0,
        text_contrastive_weight: float = 0.1,
        label_loss_weight: float = 1.0,
        label_threshold: float = 0.5,
        use_prototype_network: bool = True,
        **kwargs,
    ) -> None:
        self.observation_names = list(observation_names if observation_names is not None else XPRONET_OBSERVATIONS)
        self.uncertain_as_positive = uncertain_as_positive
        self.no_positive_slot = no_positive_slot
        self.num_prototypes_per_class = num_prototypes_per_class
        self.prototype_visual_dim = prototype_visual_dim
        self.prototype_text_dim = prototype_text_dim
        self.prototype_num_heads = prototype_num_heads
        self.prototype_top_k = prototype_top_k
        self.prototype_weighting = prototype_weighting
        self.share_fusion_layer = share_fusion_layer
        self.contrastive_margin = contrastive_margin
        self.contrastive_theta = contrastive_theta
        self.contrastive_improved = contrastive_improved
        self.text_response_pooling = text_response_pooling
        self.visual_contrastive_weight = visual_contrastive_weight
        self.text_contrastive_weight = text_contrastive_weight
        self.label_loss_weight = label_loss_weight
        self.label_threshold = label_threshold
        self.use_prototype_network = use_prototype_network
        super().__init__(**kwargs)
        self.prototype_projection_dim = prototype_projection_dim or self.d_model
        self.prototype_attention_dim = prototype_attention_dim or self.d_model
        self._validate_xpronet()

    @property
    def num_observations(self) -> int:
        """N_l, the number of label slots."""
        return len(self.observation_names)

    @property
    def prototype_dim(self) -> int:
        """D = C_1 + C_2, the size of a prototype (§3.2 Eq. 5)."""
        return self.prototype_visual_dim + self.prototype_text_dim

    @property
    def no_positive_index(self) -> int | None:
        """Slot index of `no_positive_slot` (None when the fallback is off)."""
        return None if self.no_positive_slot is None else self.observation_names.index(self.no_positive_slot)

    def _validate_xpronet(self) -> None:
        names = self.observation_names
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"observation_names must be distinct and non-empty, got {names}")
        if self.no_positive_slot is not None and self.no_positive_slot not in names:
            raise ValueError(
                f"no_positive_slot {self.no_positive_slot!r} is not one of observation_names {names}; "
                "name one of them or pass None to disable the fallback."
            )
        if self.prototype_weighting not in PROTOTYPE_WEIGHTINGS:
            raise ValueError(
                f"prototype_weighting must be one of {PROTOTYPE_WEIGHTINGS}, got {self.prototype_weighting!r}"
            )
        if self.text_response_pooling not in TEXT_RESPONSE_POOLINGS:
            raise ValueError(
                f"text_response_pooling must be one of {TEXT_RESPONSE_POOLINGS}, got {self.text_response_pooling!r}"
            )
        if self.prototype_attention_dim % self.prototype_num_heads:
            raise ValueError(
                f"prototype_attention_dim ({self.prototype_attention_dim}) must be divisible by "
                f"prototype_num_heads ({self.prototype_num_heads})."
            )
        for name in ("num_prototypes_per_class", "prototype_top_k", "prototype_visual_dim", "prototype_text_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.contrastive_theta <= 0:
            raise ValueError(f"contrastive_theta must be > 0, got {self.contrastive_theta}")
