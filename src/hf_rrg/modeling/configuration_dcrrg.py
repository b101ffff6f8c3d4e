"""Configuration of DCRRG (Zhou, Wang. "Divide and Conquer Radiology Report Generation via Observation Level
Fine-grained Pretraining and Prompt Tuning", EMNLP 2024; `papers/002_0e7b7a5f64ecceb1.txt`). Defaults are the
paper's settings (§3, Appendix A); where the paper is silent the simplest reading is taken and said so below.
"""

from __future__ import annotations

from typing import Any

from .configuration_r2gen import RRGTransformerConfig

#: The 14 CheXpert observations in CheXpert's column order (the order of `hf_rrg.labeling.OBSERVATIONS`; copied
#: here because the modeling folder may not import `hf_rrg.labeling`). The one-hot prompt e_prompt ∈ R^14 of
#: Eq. 1b/2b indexes this tuple.
DCRRG_OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

#: BERT settings of the text encoder E_txt (Appendix A: 8 heads, hidden 512). Depth and FFN size are not given;
#: 12 layers / 4x hidden follow BERT-base (ClinicalBERT's shape). `vocab_size: None` means the report vocabulary
#: of the model (a word-level `RRGTokenizer`) when no ClinicalBERT checkpoint is used.
DEFAULT_TEXT_ENCODER_CONFIG: dict[str, Any] = {
    "hidden_size": 512,
    "num_attention_heads": 8,
    "num_hidden_layers": 12,
    "intermediate_size": 2048,
    "max_position_embeddings": 512,
    "vocab_size": None,
}


class DCRRGConfig(RRGTransformerConfig):
    """DCRRG: DCCLIP encoders (image: timm CNN + f_v, text: BERT + f_t, both prompted by a one-hot observation,
    Eq. 1-2) with per-observation classification heads (§3.1), the calibrated semantic matching loss (§3.2,
    Eq. 3-9), and a 2-layer post-LN Transformer decoder (§3.3, Eq. 10-14) that writes one observation's
    description or, with a (PEFT P-Tuning v2) prefix, the full report (§3.4).

    Args:
        observation_names: the observations the one-hot prompt indexes (Eq. 1b; 14 CheXpert observations).
        visual_backbone: timm name of E_img (Appendix A: ResNet-50, ImageNet weights when `visual_pretrained`).
        projection_dim: P, the size of v_p and t_p (Eq. 1b/2b). The paper does not give it; 512.
        text_encoder_config: `transformers.BertConfig` keyword arguments of E_txt (Appendix A: 8 heads, hidden 512; see
            `DEFAULT_TEXT_ENCODER_CONFIG`). A ClinicalBERT checkpoint (hidden 768) replaces it with its own config.
        text_encoder_name_or_path: local folder or Hub id of a ClinicalBERT-style checkpoint whose weights
            `load_pretrained_text_encoder()` copies into E_txt (Appendix A); None trains E_txt from its config.
        text_pooling: how t is read from BERT's last hidden states: `cls` (first token) or `mean` (masked mean).
            The paper does not say; `cls`.
        num_observation_classes: classes of each per-observation head (§3.1: negative / positive, uncertain
            excluded -> 2).
        temperature_init: τ of Eq. 7, learnable, initialised at 0.07 (§3.2).
        learnable_temperature: train τ (True, the paper) or keep it fixed.
        detach_soft_targets: the calibrated soft targets of Eq. 4-5 are constants (True, as MedCLIP's soft targets
            are) or carry gradients into the encoders through the calibration weights sim(t_i, t_j), sim(v_i, v_j)
            (False). The paper does not say; constants keep the encoders from lowering L_CSM by moving their own
            targets. Read by `DCCLIPEncoder.matching_loss`.
        d_model, num_heads, d_ff, dropout: the decoder's size. The paper gives none of them; 512 (the BERT/CNN
            projection size), 8 heads, 2048 (the Transformer's FFN ratio), 0.1.
        num_layers: decoder layers (§3.3: two).
        use_positional_encoding: §3.3 "only token embedding is adopted during the decoding procedure": False (the
            paper) adds no positions to the token embeddings; True adds sinusoidal ones.
        prefix_length: number of prefix (virtual) tokens *merged into the model* (a step-4 PEFT prefix baked in
            with `hf_rrg.dcrrg.prefix.merge_prefix`); 0 = none. A PEFT adapter passed at run time replaces it.
        max_seq_length: longest generated text (a full report: IU X-Ray 60, MIMIC-CXR 100 tokens).
        description_max_length: longest observation description in tokens (step 3 targets are cut to this).
        **kwargs: `RRGTransformerConfig` / `RRGConfig` fields (vocab and special-token ids, max_views, visual_dropout
            (unused: f_I is the projected pooled feature), ...).
    """

    model_type = "dcrrg"

    def __init__(
        self,
        observation_names: list[str] | tuple[str, ...] | None = None,
        visual_backbone: str = "resnet50",
        projection_dim: int = 512,
        text_encoder_config: dict[str, Any] | None = None,
        text_encoder_name_or_path: str | None = None,
        text_pooling: str = "cls",
        num_observation_classes: int = 2,
        temperature_init: float = 0.07,
        learnable_temperature: bool = True,
        detach_soft_targets: bool = True,
        d_model: int = 512,
        num_heads: int = 8,
        d_ff: int = 2048,
        num_layers: int = 2,
        dropout: float = 0.1,
        use_positional_encoding: bool = False,
        prefix_length: int = 0,
        max_seq_length: int = 100,
        description_max_length: int = 40,
        **kwargs,
    ) -> None:
        self.observation_names = list(observation_names if observation_names is not None else DCRRG_OBSERVATIONS)
        self.projection_dim = projection_dim
        self.text_encoder_config = {**DEFAULT_TEXT_ENCODER_CONFIG, **(text_encoder_config or {})}
        self.text_encoder_name_or_path = text_encoder_name_or_path
        self.text_pooling = text_pooling
        self.num_observation_classes = num_observation_classes
        self.temperature_init = temperature_init
        self.learnable_temperature = learnable_temperature
        self.detach_soft_targets = detach_soft_targets
        self.use_positional_encoding = use_positional_encoding
        self.prefix_length = prefix_length
        self.description_max_length = description_max_length
        super().__init__(
            visual_backbone=visual_backbone, d_model=d_model, num_heads=num_heads, d_ff=d_ff, num_layers=num_layers,
            dropout=dropout, max_seq_length=max_seq_length, **kwargs,
        )  # fmt: skip
        self._validate_dcrrg()

    @property
    def num_observations(self) -> int:
        """L, the size of the one-hot prompt (14)."""
        return len(self.observation_names)

    @property
    def text_vocab_size(self) -> int:
        """Vocabulary of E_txt: `text_encoder_config["vocab_size"]`, else the report vocabulary."""
        return int(self.text_encoder_config.get("vocab_size") or self.vocab_size)

    def _validate_dcrrg(self) -> None:
        names = self.observation_names
        if not names or len(set(names)) != len(names):
            raise ValueError(f"observation_names must be distinct and non-empty, got {names}")
        if self.text_pooling not in ("cls", "mean"):
            raise ValueError(f"text_pooling must be 'cls' or 'mean', got {self.text_pooling!r}")
        if self.temperature_init <= 0:
            raise ValueError(f"temperature_init must be > 0, got {self.temperature_init}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if self.prefix_length < 0:
            raise ValueError(f"prefix_length must be >= 0, got {self.prefix_length}")
        if self.num_observation_classes < 2:
            raise ValueError(f"num_observation_classes must be >= 2, got {self.num_observation_classes}")
