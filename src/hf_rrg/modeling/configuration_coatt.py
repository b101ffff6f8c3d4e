"""`CoAttConfig`: Jing, Xie, Xing, "On the Automatic Generation of Medical Imaging Reports" (ACL 2018).

Equation and section numbers refer to the paper (`shared/papers/003_b11a4f03fbd6eb17.txt`). Defaults are the
paper's settings (§4.2 "Implementation details"); where the paper is silent the default is marked as ours.
"""

from __future__ import annotations

from .configuration_rrg import RRGConfig

COATT_ATTENTION_MODES = ("co", "visual", "semantic", "none")


class CoAttConfig(RRGConfig):
    """CoAtt: VGG-19 regions + multi-label tag classifier (MLC) + co-attention + hierarchical (sentence/word) LSTM.

    Args:
        visual_backbone: timm CNN giving the regions {v_n} (§3.2: VGG-19's last convolutional layer; 14x14x512 at
            224 px -> N = 196 regions of D = 512 per view). For VGG backbones the final max-pool is moved out of the
            region path (so the regions are the 14x14 map) and used only in front of VGG's fc6/fc7, which are the
            MLC (§3.2, "the last two fully connected layers of VGG-19 as MLC").
        visual_pretrained: load ImageNet weights when a model is built for training (`model.load_pretrained_backbone()`).
        image_size: input side in pixels the paper uses (224); documentation for the image processor, not enforced.
        num_tags: L, the size of the tag vocabulary (Eq. 1; IU X-Ray MTI tags: 572, §4.1).
        num_semantic_tags: M, the top predicted tags whose embeddings are the semantic features {a_m} (§4.2: 10).
        mlc_hidden_size: width of the MLC's two fully connected layers (VGG-19 fc6/fc7: 4096). For a non-VGG
            backbone they are new Linear layers over the average-pooled regions.
        hidden_size: H, hidden state of the sentence and word LSTMs, the attention layers and the joint context
            ctx (§4.2: "all hidden states and embeddings" 512).
        embedding_size: size of the word embeddings, the tag embeddings (separate matrices, §4.2) and the topic
            vector t (the word LSTM's first input, §3.5): 512.
        stop_threshold: p(STOP) above which the sentence LSTM stops (Eq. 6, "e.g. 0.5").
        max_sentences: most sentences generated, and kept per training report (ours: 8; IU X-Ray reports have
            5.7 on average, §4.1).
        max_words_per_sentence: most tokens per sentence, its closing `.` included (ours: 20; 6.5 on average).
        lambda_tag, lambda_sent, lambda_word: weights of the tag, stop and word losses (Eq. 8; values not given in
            the paper, ours: 1.0).
        lambda_reg: λ_re of the attention regularisation (Eq. 9; not given in the paper, ours: 1.0).
        attention: which context feeds the sentence LSTM (Table 1 ablations): "co" (Eq. 2-4, the full model),
            "visual" (Ours-Visual-only), "semantic" (Ours-Semantic-only) or "none" (Ours-no-Attention: the
            MLC's 4096-d fc feature).
        sentence_end_token_id: id of the `.` token that ends a sentence (`tokenizer.convert_tokens_to_ids(".")`);
            reports (token ids) are split into sentences at it. Required for training and generation.
        **kwargs: `RRGConfig` fields (vocab_size, max_views, special-token ids).
    """

    model_type = "coatt"

    def __init__(
        self,
        visual_backbone: str = "vgg19",
        visual_pretrained: bool = True,
        image_size: int = 224,
        num_tags: int = 572,
        num_semantic_tags: int = 10,
        mlc_hidden_size: int = 4096,
        hidden_size: int = 512,
        embedding_size: int = 512,
        stop_threshold: float = 0.5,
        max_sentences: int = 8,
        max_words_per_sentence: int = 20,
        lambda_tag: float = 1.0,
        lambda_sent: float = 1.0,
        lambda_word: float = 1.0,
        lambda_reg: float = 1.0,
        attention: str = "co",
        sentence_end_token_id: int | None = None,
        **kwargs,
    ) -> None:
        if attention not in COATT_ATTENTION_MODES:
            raise ValueError(f"attention={attention!r} is not one of {COATT_ATTENTION_MODES} (CoAtt Table 1 ablations).")
        if not 0.0 < stop_threshold < 1.0:
            raise ValueError(f"stop_threshold must be a probability in (0, 1), got {stop_threshold}.")
        for name, value in (
            ("num_tags", num_tags),
            ("num_semantic_tags", num_semantic_tags),
            ("max_sentences", max_sentences),
            ("max_words_per_sentence", max_words_per_sentence),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}.")
        self.visual_backbone = visual_backbone
        self.visual_pretrained = visual_pretrained
        self.image_size = image_size
        self.num_tags = num_tags
        self.num_semantic_tags = num_semantic_tags
        self.mlc_hidden_size = mlc_hidden_size
        self.hidden_size = hidden_size
        self.embedding_size = embedding_size
        self.stop_threshold = stop_threshold
        self.max_sentences = max_sentences
        self.max_words_per_sentence = max_words_per_sentence
        self.lambda_tag = lambda_tag
        self.lambda_sent = lambda_sent
        self.lambda_word = lambda_word
        self.lambda_reg = lambda_reg
        self.attention = attention
        self.sentence_end_token_id = sentence_end_token_id
        super().__init__(**kwargs)
