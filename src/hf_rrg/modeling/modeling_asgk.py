"""ASGK (Li, Wang, Chang, Liang. "Auxiliary Signal-Guided Knowledge Encoder-Decoder for Medical Report Generation",
2020; `papers/000_cc5ecbb6c54942da.txt`).

image(s) -> visual branch with internal auxiliary signals (global DenseNet, heat-map region, local DenseNet, fusion;
§3.3, `asgk_visual.py`) -> f_input -> medical tag graph encoder (Eq. 1-4, `asgk_graph.py`) -> N graph nodes ->
GPT-style decoder (Eq. 5-8): h_0 = W_e[tokens] + W_p[positions], N = 3 blocks of masked self-attention + attention
to the graph nodes + feed-forward, P = softmax(h_N W_e^T) (tied embeddings, 300-d, GloVe-initialised by the recipe).

Textbook mode (external auxiliary signals, §3.3): a sentence's GloVe embeddings -> single-layer GRU (1024 hidden) ->
its last hidden state replaces f_input; the decoder learns to generate the sentence, the graph to find its tags.

Loss (§4, all weights 1): token cross-entropy (Eq. 5) + graph tag BCE on the final graph's tag nodes (Eq. 4) + the
three visual classifiers' focal loss (Eq. 10-11; BCE with `tag_loss="bce"`), each term returned on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin
from transformers.modeling_outputs import Seq2SeqLMOutput

from .asgk_graph import MedicalTagGraphEncoder
from .asgk_losses import tag_bce, tag_classification_loss
from .asgk_visual import ASGKVisualExtractor, ASGKVisualOutput
from .configuration_asgk import ASGKConfig
from .decoder_cache import RRGDecoderCache
from .report_transformer import RRGEncoderOutput, RRGTransformerPreTrainedModel
from .transformer_layers import DecoderLayer, StdLayerNorm, causal_mask


@dataclass
class ASGKEncoderOutput(RRGEncoderOutput):
    """`last_hidden_state`: the graph nodes (B, N, d_model) the decoder attends to; `pooled_features`: f_input.
    Also the final tag probabilities v (`node_values`, B × N; Eq. 4 trains them) and their logits, Eq. 1's V
    (`initial_node_values`), the edge weights E (B, N, N) and, for images, the visual branch's classifier logits,
    heat maps, region masks and pixel boxes (per view)."""

    node_values: torch.Tensor | None = None
    tag_logits: torch.Tensor | None = None
    initial_node_values: torch.Tensor | None = None
    edge_weights: torch.Tensor | None = None
    global_logits: torch.Tensor | None = None
    local_logits: torch.Tensor | None = None
    fusion_logits: torch.Tensor | None = None
    heat_maps: torch.Tensor | None = None
    region_masks: torch.Tensor | None = None
    region_boxes: torch.Tensor | None = None


@dataclass
class ASGKOutput(Seq2SeqLMOutput):
    """`loss` = ce_loss + graph_loss_weight · graph_tag_loss + visual_tag_loss_weight · visual_tag_loss (§4: all
    weights 1). A component is None when its targets were not passed (tags need `tag_labels`)."""

    ce_loss: torch.Tensor | None = None
    graph_tag_loss: torch.Tensor | None = None
    visual_tag_loss: torch.Tensor | None = None
    node_values: torch.Tensor | None = None
    edge_weights: torch.Tensor | None = None


class ASGKEncoder(nn.Module):
    """Visual branch + graph encoder. `forward(pixel_values, view_mask)` or `forward(external_features=f)` (the
    textbook GRU's sentence encodings, §3.3)."""

    main_input_name = "pixel_values"
    output_class = ASGKEncoderOutput

    def __init__(self, config: ASGKConfig) -> None:
        super().__init__()
        self.visual_extractor = ASGKVisualExtractor(config)
        self.graph = MedicalTagGraphEncoder(config, self.visual_extractor.num_features)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        view_mask: torch.Tensor | None = None,
        return_dict: bool = True,
        external_features: torch.Tensor | None = None,
        **kwargs,
    ) -> ASGKEncoderOutput:
        visual: ASGKVisualOutput | None = None
        if external_features is not None:
            features = external_features
        elif pixel_values is not None:
            visual = self.visual_extractor(pixel_values, view_mask)
            features = visual.input_features
        else:
            raise ValueError("Pass `pixel_values` (images) or `external_features` (textbook sentence encodings).")
        graph = self.graph(features)
        nodes = graph["graph"]
        output = ASGKEncoderOutput(
            last_hidden_state=nodes,
            attention_mask=torch.ones(nodes.shape[:2], dtype=torch.bool, device=nodes.device),
            pooled_features=features,
            node_values=graph["node_values"],
            tag_logits=graph["tag_logits"],
            initial_node_values=graph["initial_node_values"],
            edge_weights=graph["edge_weights"],
        )
        if visual is not None:
            for name in ("global_logits", "local_logits", "fusion_logits", "heat_maps", "region_masks", "region_boxes"):
                setattr(output, name, getattr(visual, name))
        return output


class GPTEmbedding(nn.Embedding):
    """An embedding matrix initialised as GPT's, N(0, 0.02) (the recipe overwrites W_e with GloVe vectors).
    The init lives here, on the module owning the weight, so that `post_init` applies it."""

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)


class ASGKDecoder(nn.Module):
    """GPT-style decoder (Eq. 6-7): learned word and position embeddings, N blocks of masked self-attention,
    attention to the graph nodes and feed-forward (with the shared incremental-decoding cache). By default the blocks
    are GPT's and the official code's: post-norm (`nn.LayerNorm`, eps 1e-6) with a tanh-GELU feed-forward and no
    final norm; `decoder_norm="pre"` gives pre-norm blocks and a final norm. The output layer (Eq. 8) is the word
    embedding matrix, applied by the model."""

    def __init__(self, config: ASGKConfig) -> None:
        super().__init__()
        d_model = config.d_model
        self.embed_tokens = GPTEmbedding(config.vocab_size, d_model)  # W_e
        self.embed_positions = GPTEmbedding(config.max_position_embeddings, d_model)  # W_p
        self.dropout = nn.Dropout(config.dropout)
        post = config.decoder_norm == "post"

        def make_norm() -> nn.Module:
            return nn.LayerNorm(d_model, eps=1e-6) if post else StdLayerNorm(d_model)

        self.layers = nn.ModuleList(
            DecoderLayer(d_model, config.num_heads, config.d_ff, config.dropout, make_norm, post_norm=post,
                         activation=config.decoder_activation)  # fmt: skip
            for _ in range(config.num_layers)
        )
        self.norm = nn.Identity() if post else StdLayerNorm(d_model)

    def embed(self, input_ids: torch.Tensor, past: int = 0) -> torch.Tensor:
        """h_0 = W_e[tokens] + W_p[positions] (Eq. 6)."""
        length = input_ids.size(1)
        if past + length > self.embed_positions.num_embeddings:
            raise ValueError(
                f"a sequence of {past + length} tokens exceeds max_position_embeddings "
                f"({self.embed_positions.num_embeddings}); generate or train with shorter sequences"
            )
        positions = torch.arange(past, past + length, device=input_ids.device)
        return self.dropout(self.embed_tokens(input_ids) + self.embed_positions(positions).unsqueeze(0))

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_states: torch.Tensor,
        encoder_mask: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        cache: RRGDecoderCache | None = None,
    ) -> torch.Tensor:
        past = cache.get_seq_length() if cache is not None else 0
        hidden = self.embed(input_ids, past)
        self_mask = causal_mask(input_ids.size(1), past, attention_mask, input_ids.device)
        encoder_mask = encoder_mask.unsqueeze(1) if encoder_mask is not None else None
        for index, layer in enumerate(self.layers):
            self_past, cross_past = cache.layer(index) if cache is not None else (None, None)
            hidden, self_kv, cross_kv = layer(hidden, encoder_states, encoder_mask, self_mask, None, self_past, cross_past)
            if cache is not None:
                cache.store(index, self_kv, cross_kv)
        if cache is not None:
            cache.seen_tokens += input_ids.size(1)
        return self.norm(hidden)


class SentenceEncoder(nn.Module):
    """Single-layer GRU over a sentence's word embeddings; its last hidden state (at the last real token) is the
    external auxiliary signal (§3.3: 1024 hidden units)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, num_layers=1, batch_first=True)

    def forward(self, embeddings: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is None:
            lengths = torch.full((embeddings.size(0),), embeddings.size(1), dtype=torch.long)
        else:
            lengths = attention_mask.long().sum(dim=1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(embeddings, lengths, batch_first=True, enforce_sorted=False)
        _, hidden = self.gru(packed)
        return hidden[-1]


class ASGKForConditionalGeneration(RRGTransformerPreTrainedModel, GenerationMixin):
    """ASGK for report generation.

    `forward(pixel_values, view_mask, decoder_input_ids=None, decoder_attention_mask=None, labels=None,
    tag_labels=None)` -> `ASGKOutput`; textbook pre-training: `forward(textbook_input_ids=..,
    textbook_attention_mask=.., labels=.., tag_labels=..)` (the sentence is both the GRU's input and the decoder's
    target). `generate(pixel_values=..., view_mask=...)` decodes with the cache, greedily or with beam search.
    `tag_labels`: (B, N) binary targets in `config.tag_names` order.
    """

    config_class = ASGKConfig

    def __init__(self, config: ASGKConfig) -> None:
        super().__init__(config)
        self.encoder = ASGKEncoder(config)
        self.decoder = ASGKDecoder(config)
        feature_size = self.encoder.visual_extractor.num_features
        hidden = config.sentence_encoder_hidden_size or feature_size
        if config.use_sentence_encoder:
            if hidden != feature_size:
                raise ValueError(
                    f"sentence_encoder_hidden_size ({hidden}) must equal the visual feature size ({feature_size}) of "
                    f"backbone {config.visual_backbone!r}: the textbook sentence encoding replaces the visual "
                    "feature at the graph's input (§3.3). Set it to that size or to null."
                )
            self.sentence_encoder = SentenceEncoder(config.d_model, hidden)
        else:
            self.sentence_encoder = None
        self.post_init()
        generation = self.generation_config
        generation.num_beams = 3
        generation.max_new_tokens = config.max_seq_length  # words after <bos>, as the R2Gen family
        generation.decoder_start_token_id = config.bos_token_id
        generation.bos_token_id = config.bos_token_id
        generation.eos_token_id = config.eos_token_id
        generation.pad_token_id = config.pad_token_id

    # ------------------------------------------------------------------------------------------- pieces

    @property
    def visual_extractor(self) -> ASGKVisualExtractor:
        return self.encoder.visual_extractor

    def load_pretrained_backbone(self) -> None:
        self.encoder.visual_extractor.load_pretrained_backbone()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def load_word_embeddings(self, vectors: torch.Tensor) -> None:
        """Copy a (vocab_size, d_model) matrix (GloVe vectors, `hf_rrg.asgk.glove`) into W_e (tied to the output)."""
        weight = self.decoder.embed_tokens.weight
        if tuple(vectors.shape) != tuple(weight.shape):
            raise ValueError(
                f"word vectors have shape {tuple(vectors.shape)}, the model's embedding matrix is {tuple(weight.shape)}"
                " (vocab_size, d_model); build them with the run's tokenizer and d_model"
            )
        with torch.no_grad():
            weight.copy_(vectors.to(weight.dtype))

    def encode_sentences(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Textbook sentences (B, L) -> external auxiliary signals (B, hidden) (§3.3)."""
        if self.sentence_encoder is None:
            raise ValueError("This ASGK has no sentence encoder (config.use_sentence_encoder is False).")
        return self.sentence_encoder(self.decoder.embed_tokens(input_ids), attention_mask)

    def _encoder_outputs(self, pixel_values, view_mask, encoder_outputs, **encoder_kwargs) -> ASGKEncoderOutput:
        if encoder_outputs is None:
            if pixel_values is None and encoder_kwargs.get("external_features") is None:
                raise ValueError("Pass `pixel_values` (or `textbook_input_ids`, or precomputed `encoder_outputs`).")
            return self.encoder(pixel_values, view_mask, **encoder_kwargs)
        if isinstance(encoder_outputs, tuple):
            return ASGKEncoderOutput(*encoder_outputs)
        return encoder_outputs

    def _decode(self, decoder_input_ids, encoder_outputs, decoder_attention_mask, cache, use_cache, **kwargs):
        """Decoder + tied output layer (Eq. 8): logits = h_N W_e^T."""
        use_cache = use_cache if use_cache is not None else cache is not None
        if use_cache and cache is None:
            cache = RRGDecoderCache()
        hidden = self.decoder(
            decoder_input_ids,
            encoder_outputs.last_hidden_state,
            encoder_outputs.attention_mask,
            decoder_attention_mask,
            cache if use_cache else None,
        )
        return F.linear(hidden, self.decoder.embed_tokens.weight), (cache if use_cache else None)

    def tag_losses(
        self, encoder_outputs: ASGKEncoderOutput, tag_labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(graph BCE on the final graph tag probabilities (Eq. 4), summed visual classifier losses (Eq. 10-11) or
        None for textbook inputs)."""
        if tag_labels.shape != encoder_outputs.node_values.shape:
            raise ValueError(
                f"tag_labels has shape {tuple(tag_labels.shape)}, expected {tuple(encoder_outputs.node_values.shape)} "
                f"(batch, {self.config.num_tags} tags in config.tag_names order)"
            )
        graph_loss = tag_bce(encoder_outputs.node_values, tag_labels)
        branches = [
            x for x in (encoder_outputs.global_logits, encoder_outputs.local_logits, encoder_outputs.fusion_logits)
            if x is not None
        ]  # fmt: skip
        if not branches:
            return graph_loss, None
        config = self.config
        visual = sum(
            tag_classification_loss(logits, tag_labels, config.tag_loss, config.focal_alpha, config.focal_gamma)
            for logits in branches
        )
        return graph_loss, visual

    # ------------------------------------------------------------------------------------------- forward

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        view_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        tag_labels: torch.Tensor | None = None,
        textbook_input_ids: torch.Tensor | None = None,
        textbook_attention_mask: torch.Tensor | None = None,
        encoder_outputs: ASGKEncoderOutput | tuple | None = None,
        cache: RRGDecoderCache | None = None,
        past_key_values: RRGDecoderCache | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ASGKOutput:
        """Args:
        pixel_values: (batch, views, 3, H, W) from `RRGImageProcessor` (or (batch, 3, H, W)).
        view_mask: (batch, views) bool, False for padded views (a study's views are averaged).
        decoder_input_ids / decoder_attention_mask: (batch, length) starting with `<bos>`; built from `labels`.
        labels: (batch, length) next-token targets, -100 ignored.
        tag_labels: (batch, N) binary tag targets: adds the graph (Eq. 4) and visual (Eq. 10-11) tag losses.
        textbook_input_ids / textbook_attention_mask: (batch, length) textbook sentences (without special tokens
            or with, as the recipe makes them); they replace the images (§3.3 external signals).
        cache / past_key_values: an `RRGDecoderCache` for incremental decoding.
        """
        encoder_kwargs = {}
        if textbook_input_ids is not None and encoder_outputs is None:
            encoder_kwargs["external_features"] = self.encode_sentences(textbook_input_ids, textbook_attention_mask)
        encoder_outputs = self._encoder_outputs(pixel_values, view_mask, encoder_outputs, **encoder_kwargs)
        decoder_input_ids = self._decoder_input_ids(decoder_input_ids, labels)
        logits, cache = self._decode(
            decoder_input_ids,
            encoder_outputs,
            decoder_attention_mask,
            cache if cache is not None else past_key_values,
            use_cache,
        )
        output = ASGKOutput(
            logits=logits,
            cache=cache,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            node_values=encoder_outputs.node_values,
            edge_weights=encoder_outputs.edge_weights,
        )
        if labels is None:
            return output
        output.ce_loss = self.token_loss(logits, labels)
        output.loss = output.ce_loss
        if tag_labels is not None:
            output.graph_tag_loss, output.visual_tag_loss = self.tag_losses(encoder_outputs, tag_labels)
            output.loss = output.loss + self.config.graph_loss_weight * output.graph_tag_loss
            if output.visual_tag_loss is not None:
                output.loss = output.loss + self.config.visual_tag_loss_weight * output.visual_tag_loss
        return output

    @torch.no_grad()
    def predict_tags(self, pixel_values: torch.Tensor, view_mask: torch.Tensor | None = None) -> ASGKEncoderOutput:
        """The encoder's outputs for images: node values (tag probabilities), edges, heat maps and region boxes."""
        return self.encoder(pixel_values, view_mask)
