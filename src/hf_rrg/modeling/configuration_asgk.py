"""Configuration of ASGK (Li, Wang, Chang, Liang. "Auxiliary Signal-Guided Knowledge Encoder-Decoder for Medical
Report Generation", 2020; `papers/000_cc5ecbb6c54942da.txt`). Defaults are the paper's settings (§3.2-3.3, §4
"Training Details"); where the paper is silent or the official code differs, the docstring says which was chosen.
"""

from __future__ import annotations

from .configuration_rrg import RRGConfig

#: The 14 CheXpert observations (the labeler's order), the default tag source: each observation gives two tags,
#: "<observation>: present" (an abnormal terminology, or "No Finding" itself) and "<observation>: absent" (a normal
#: terminology), 28 tags in all. `hf_rrg.asgk.tags` makes the targets with hf-rrg's labeler.
ASGK_LABELER_OBSERVATIONS: tuple[str, ...] = (
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
PRESENT_SUFFIX = ": present"
ABSENT_SUFFIX = ": absent"
ASGK_LABELER_TAGS: tuple[str, ...] = tuple(
    f"{name}{suffix}" for name in ASGK_LABELER_OBSERVATIONS for suffix in (PRESENT_SUFFIX, ABSENT_SUFFIX)
)

HEATMAP_MODES = ("max_abs", "official")
FUSION_MODES = ("sum", "product")
TAG_LOSSES = ("focal", "bce")
DECODER_NORMS = ("post", "pre")
DECODER_ACTIVATIONS = ("gelu_tanh", "gelu", "relu")
#: The official code thresholds its 0-255 heat map at 178 (178 / 255 ≈ 0.698); the paper says τ = 0.7.
OFFICIAL_HEATMAP_THRESHOLD = 178.0 / 255.0


class ASGKConfig(RRGConfig):
    """ASGK: a visual branch with internal auxiliary signals (global DenseNet-121, heat-map region, local
    DenseNet-121, fusion; §3.3), a medical tag graph encoder (Eq. 1-4) and a GPT-style decoder (Eq. 5-8), with a
    GRU sentence encoder for textbook pre-training (external auxiliary signals, §3.3).

    Args:
        tag_names: the N medical tags (graph nodes and classifier outputs), normal and abnormal terminologies.
            Default `ASGK_LABELER_TAGS` (14 labeler observations x present/absent = 28). The recipe sets them from
            its tag source (IU X-Ray MeSH, labeler, or a tag file; `hf_rrg.asgk.tags`).
        visual_backbone: timm model of both DenseNets (§3.3 / §4: DenseNet-121, 7x7x1024 at 224 px).
            `test_resnet` makes a tiny model for tests.
        visual_pretrained: load ImageNet weights when built for training. Paper §4: "DenseNet-121 with no
            pretraining" -> False.
        region_size: side of the region crop fed to the local DenseNet (§4: 224).
        heatmap_mode: "max_abs" (default): H = max_k |f_c^k| (Eq. 9) on the feature grid, min-max normalised;
            "official": the official code's procedure: the channel sum of the last block before its final ReLU,
            as a uint8 map upsampled to the input image, thresholded per pixel (`asgk_visual`).
        heatmap_threshold: τ; None means 0.7 for "max_abs" (§3.3, Fig. 3) and 178/255 for "official" (the
            official code's threshold on its 0-255 map).
        heatmap_connectivity: 4 or 8-connected components of the thresholded map (the largest one is the
            auxiliary region). The paper's "max connection select" does not say; 8 (OpenCV's default) here.
        use_internal_signals: True: the region crop, the local DenseNet and the fusion f_f feed the graph ("+IA",
            Table 2); False: f_g alone (the baseline).
        fusion: element-wise combination of f_g and f_l into f_f (§3.3): "sum" (official code, default) or
            "product".
        tag_loss: loss of the three visual tag classifiers (global, local, fusion): "focal" (Eq. 10-11, default) or
            "bce" (the "+IA+CE" ablation of Table 2).
        focal_alpha / focal_gamma: α and γ of Eq. 11 (§3.3: 0.25 and 2).
        graph_loss_weight: weight of the graph's BCE tag loss (Eq. 4) in the total; §4: all loss weights 1.
        visual_tag_loss_weight: weight of the visual classifiers' tag loss (sum of the three branches); §4: 1.
        d_model: word embedding size = decoder width (§4: 300, GloVe vectors); the output layer is tied to it (Eq. 8).
        num_layers: decoder blocks N (§3.2 / §4: 3).
        num_heads: attention heads. The paper does not say; 6 here (300 / 6 = 50 per head).
        d_ff: position-wise feed-forward size; not in the paper, 4 x d_model as GPT.
        dropout: dropout of the decoder and graph attention (GPT: 0.1).
        decoder_norm: where each decoder block normalises: "post" (default: norm(x + sublayer(x)), GPT's blocks,
            which §3.2 builds on, and the official code's `DecoderBlock`; no final norm) or "pre"
            (x + sublayer(norm(x)) and a final norm, the R2Gen family's layout).
        decoder_activation: the feed-forward activation: "gelu_tanh" (default: GPT's and the official code's tanh
            approximation of GELU), "gelu" (exact) or "relu".
        graph_num_heads: heads of the graph's multi-head self-attention over the nodes (§3.2; not given: 6).
        max_seq_length: longest report in tokens, <bos> included (IU X-Ray 60, MIMIC-CXR 100, COV-CTR 150).
        max_position_embeddings: rows of the learned position matrix W_p (Eq. 6); must cover `max_seq_length` and
            `textbook_max_length`.
        textbook_max_length: longest textbook sentence in tokens (§4: 300).
        sentence_encoder_hidden_size: hidden units of the single-layer GRU that encodes a textbook sentence into the
            external signal (§3.3: 1024). It replaces the visual feature at the graph's input, so it must equal the
            backbone's feature size (1024 for DenseNet-121); None means "the backbone's feature size".
        use_sentence_encoder: keep the GRU (needed for textbook pre-training; False drops its weights from a model
            that will only read images).
        tag_threshold: node value above which a tag counts as detected (Fig. 3 shows nodes > 0.5).
        **kwargs: `RRGConfig` fields (vocab_size, max_views, special token ids).
    """

    model_type = "asgk"

    def __init__(
        self,
        tag_names: list[str] | tuple[str, ...] | None = None,
        visual_backbone: str = "densenet121",
        visual_pretrained: bool = False,
        region_size: int = 224,
        heatmap_mode: str = "max_abs",
        heatmap_threshold: float | None = None,
        heatmap_connectivity: int = 8,
        use_internal_signals: bool = True,
        fusion: str = "sum",
        tag_loss: str = "focal",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        graph_loss_weight: float = 1.0,
        visual_tag_loss_weight: float = 1.0,
        d_model: int = 300,
        num_layers: int = 3,
        num_heads: int = 6,
        d_ff: int = 1200,
        dropout: float = 0.1,
        decoder_norm: str = "post",
        decoder_activation: str = "gelu_tanh",
        graph_num_heads: int = 6,
        max_seq_length: int = 60,
        max_position_embeddings: int = 512,
        textbook_max_length: int = 300,
        sentence_encoder_hidden_size: int | None = None,
        use_sentence_encoder: bool = True,
        tag_threshold: float = 0.5,
        **kwargs,
    ) -> None:
        self.tag_names = list(tag_names if tag_names is not None else ASGK_LABELER_TAGS)
        self.visual_backbone = visual_backbone
        self.visual_pretrained = visual_pretrained
        self.region_size = region_size
        self.heatmap_mode = heatmap_mode
        self.heatmap_threshold = heatmap_threshold
        self.heatmap_connectivity = heatmap_connectivity
        self.use_internal_signals = use_internal_signals
        self.fusion = fusion
        self.tag_loss = tag_loss
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.graph_loss_weight = graph_loss_weight
        self.visual_tag_loss_weight = visual_tag_loss_weight
        self.d_model = d_model
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.d_ff = d_ff
        self.dropout = dropout
        self.decoder_norm = decoder_norm
        self.decoder_activation = decoder_activation
        self.graph_num_heads = graph_num_heads
        self.max_seq_length = max_seq_length
        self.max_position_embeddings = max_position_embeddings
        self.textbook_max_length = textbook_max_length
        self.sentence_encoder_hidden_size = sentence_encoder_hidden_size
        self.use_sentence_encoder = use_sentence_encoder
        self.tag_threshold = tag_threshold
        super().__init__(**kwargs)
        self._validate_asgk()

    @property
    def num_tags(self) -> int:
        """N, the number of medical tags (graph nodes)."""
        return len(self.tag_names)

    @property
    def effective_heatmap_threshold(self) -> float:
        """τ in use: `heatmap_threshold`, else 0.7 (paper) or 178/255 (official code) by `heatmap_mode`."""
        if self.heatmap_threshold is not None:
            return float(self.heatmap_threshold)
        return 0.7 if self.heatmap_mode == "max_abs" else OFFICIAL_HEATMAP_THRESHOLD

    def _validate_asgk(self) -> None:
        names = self.tag_names
        if not names or len(set(names)) != len(names):
            raise ValueError(f"tag_names must be distinct and non-empty, got {len(names)} names ({names[:5]} ...)")
        for name, value, allowed in (
            ("heatmap_mode", self.heatmap_mode, HEATMAP_MODES),
            ("fusion", self.fusion, FUSION_MODES),
            ("tag_loss", self.tag_loss, TAG_LOSSES),
            ("decoder_norm", self.decoder_norm, DECODER_NORMS),
            ("decoder_activation", self.decoder_activation, DECODER_ACTIVATIONS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.heatmap_connectivity not in (4, 8):
            raise ValueError(f"heatmap_connectivity must be 4 or 8, got {self.heatmap_connectivity}")
        if self.heatmap_threshold is not None and not 0.0 <= self.heatmap_threshold <= 1.0:
            raise ValueError(f"heatmap_threshold is τ on a [0, 1] heat map; got {self.heatmap_threshold}")
        for name in ("d_model", "num_layers", "num_heads", "d_ff", "graph_num_heads", "region_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for heads_name in ("num_heads", "graph_num_heads"):
            if self.d_model % getattr(self, heads_name):
                raise ValueError(f"d_model ({self.d_model}) must be divisible by {heads_name} ({getattr(self, heads_name)})")
        longest = max(self.max_seq_length, self.textbook_max_length if self.use_sentence_encoder else 0)
        if self.max_position_embeddings < longest:
            raise ValueError(
                f"max_position_embeddings ({self.max_position_embeddings}) must cover max_seq_length "
                f"({self.max_seq_length}) and textbook_max_length ({self.textbook_max_length}); raise it."
            )
        if self.focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0 (Eq. 11), got {self.focal_gamma}")
