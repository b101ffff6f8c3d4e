"""The encoder-decoder shared by the R2Gen family, and its `PreTrainedModel` + `GenerationMixin` base class.

Data flow (R2Gen §2, R2GenCMN §2): views -> timm CNN patch tokens -> Linear(C -> d_model) + ReLU + dropout ->
[cross-modal memory responses added, positions added (R2GenCMN)] -> Transformer encoder -> decoder over word
embeddings [+ memory responses (R2GenCMN)] with [relational memory conditioning every layer norm (R2Gen)] ->
Linear(d_model -> vocab). Subclasses choose the memories; everything else, including incremental decoding with
`RRGDecoderCache` and beam-search reordering, lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.utils import ModelOutput

from .configuration_r2gen import RRGTransformerConfig
from .decoder_cache import RRGDecoderCache
from .memory_modules import ConditionalLayerNorm, CrossModalMemory, RelationalMemory
from .transformer_layers import (
    DecoderLayer,
    SinusoidalPositions,
    StdLayerNorm,
    TokenEmbedding,
    TransformerEncoder,
    causal_mask,
)
from .visual_extractor import VisualExtractor


@dataclass
class RRGEncoderOutput(ModelOutput):
    """Encoder states (batch, tokens, d_model), their mask (False for missing views' tokens) and the pooled
    visual feature of every view (batch, views, C)."""

    last_hidden_state: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    pooled_features: torch.Tensor | None = None


def _xavier_matrices(module: nn.Module) -> None:
    """The official code's initialisation: xavier-uniform on every parameter with more than one dimension."""
    for parameter in module.parameters():
        if parameter.dim() > 1:
            nn.init.xavier_uniform_(parameter)


class ReportEncoder(nn.Module):
    """Visual extractor, patch projection, optional cross-modal memory and positions, Transformer encoder.

    Subclasses may replace the cross-modal step by overriding `interact` (XProNet's prototype network) and give
    their extra outputs a home with `output_class`.
    """

    main_input_name = "pixel_values"
    output_class: type[RRGEncoderOutput] = RRGEncoderOutput

    def __init__(self, config: RRGTransformerConfig, memory: CrossModalMemory | None, add_positions: bool) -> None:
        super().__init__()
        self.visual_extractor = VisualExtractor(config.visual_backbone)
        self.patch_projection = nn.Sequential(
            nn.Linear(self.visual_extractor.num_features, config.d_model),
            nn.ReLU(),
            nn.Dropout(config.visual_dropout),
        )
        self.memory = memory
        self.positions = SinusoidalPositions(config.d_model, config.dropout) if add_positions else None
        self.transformer = TransformerEncoder(
            config.num_layers, config.d_model, config.num_heads, config.d_ff, config.dropout
        )

    def reset_rrg_parameters(self) -> None:
        _xavier_matrices(self.transformer)
        if self.memory is not None:
            _xavier_matrices(self.memory.attention)
            self.memory.reset_matrix()

    def interact(
        self, hidden: torch.Tensor, pooled: torch.Tensor, token_mask: torch.Tensor, **kwargs
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The cross-modal step between the patch projection and the positions: R2GenCMN adds its memory's
        responses. Returns the new tokens and extra `output_class` fields (none here); `kwargs` are the encoder's."""
        if self.memory is not None:
            hidden = hidden + self.memory(hidden)[0]
        return hidden, {}

    def forward(
        self,
        pixel_values: torch.Tensor,
        view_mask: torch.Tensor | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> RRGEncoderOutput:
        tokens, token_mask, pooled = self.visual_extractor(pixel_values, view_mask)
        hidden = self.patch_projection(tokens)
        hidden, extra = self.interact(hidden, pooled, token_mask, **kwargs)
        if self.positions is not None:
            hidden = self.positions(hidden)
        hidden = self.transformer(hidden, token_mask.unsqueeze(1))
        return self.output_class(last_hidden_state=hidden, attention_mask=token_mask, pooled_features=pooled, **extra)


class ReportDecoder(nn.Module):
    """Word embeddings, optional relational memory (R2Gen), decoder layers (conditional layer norms when the
    relational memory is on), final layer norm. Cross-modal memory responses are added to the embeddings when a
    `CrossModalMemory` is passed to `forward` (it is owned by the encoder: both modalities share it); a
    `token_interaction` callable passed instead replaces the embeddings by its output (XProNet's Eq. 14). A list
    passed as `cross_attentions` receives each layer's cross-attention probabilities (batch, heads, tokens,
    encoder tokens), in layer order."""

    def __init__(self, config: RRGTransformerConfig, relational_memory: bool) -> None:
        super().__init__()
        d_model = config.d_model
        self.embed_tokens = TokenEmbedding(config.vocab_size, d_model, config.dropout)
        if relational_memory:
            self.relational_memory = RelationalMemory(config.rm_num_slots, d_model, config.rm_num_heads)
            condition_size = config.rm_num_slots * d_model

            def make_norm() -> nn.Module:
                return ConditionalLayerNorm(d_model, condition_size)
        else:
            self.relational_memory = None
            make_norm = lambda: StdLayerNorm(d_model)  # noqa: E731
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, config.num_heads, config.d_ff, config.dropout, make_norm)
            for _ in range(config.num_layers)
        )
        self.norm = StdLayerNorm(d_model)

    def reset_rrg_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, ConditionalLayerNorm):  # R2Gen: its MLP biases start at 0.1
                for layer in (*module.mlp_gamma, *module.mlp_beta):
                    if isinstance(layer, nn.Linear):
                        nn.init.constant_(layer.bias, 0.1)
        _xavier_matrices(self)

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_states: torch.Tensor,
        encoder_mask: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        cache: RRGDecoderCache | None = None,
        cross_modal_memory: CrossModalMemory | None = None,
        token_interaction: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cross_attentions: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        past = cache.get_seq_length() if cache is not None else 0
        hidden = self.embed_tokens(input_ids, offset=past)
        if token_interaction is not None:
            hidden = token_interaction(hidden)
        elif cross_modal_memory is not None:
            projected = cache.shared.get("cross_modal_memory") if cache is not None else None
            responses, projected = cross_modal_memory(hidden, projected)
            if cache is not None:
                cache.shared["cross_modal_memory"] = projected
            hidden = hidden + responses
        condition = None
        if self.relational_memory is not None:
            if cache is not None and past > 0:
                state = cache.states["relational_memory"]
            else:
                state = self.relational_memory.initial_state(input_ids.size(0), hidden)
            # R2Gen embeds the words a second time for the memory (a separate dropout draw in training)
            condition, state = self.relational_memory(self.embed_tokens(input_ids, offset=past), state)
            if cache is not None:
                cache.states["relational_memory"] = state
        self_mask = causal_mask(input_ids.size(1), past, attention_mask, input_ids.device)
        encoder_mask = encoder_mask.unsqueeze(1) if encoder_mask is not None else None
        for index, layer in enumerate(self.layers):
            self_past, cross_past = cache.layer(index) if cache is not None else (None, None)
            hidden, self_kv, cross_kv = layer(
                hidden, encoder_states, encoder_mask, self_mask, condition, self_past, cross_past, cross_attentions
            )
            if cache is not None:
                cache.store(index, self_kv, cross_kv)
        if cache is not None:
            cache.seen_tokens += input_ids.size(1)
        return self.norm(hidden)


class RRGTransformerPreTrainedModel(PreTrainedModel):
    """Base of the R2Gen-family models (each also inherits `GenerationMixin` directly): `forward` computes the token cross-entropy (padding ignored) and logits,
    `generate()` decodes greedily or with beam search, with the cache (`use_cache=True`, default) or by
    recomputing the whole prefix at every step (`use_cache=False`); both give the same reports."""

    config_class = RRGTransformerConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _supports_cache_class = False

    def __init__(self, config: RRGTransformerConfig) -> None:
        super().__init__(config)
        self.encoder: ReportEncoder
        self.decoder: ReportDecoder

    def _finish_init(self) -> None:
        """Subclasses call this at the end of `__init__` once `encoder` and `decoder` exist."""
        self.lm_head = nn.Linear(self.config.d_model, self.config.vocab_size)
        self.post_init()
        generation = self.generation_config
        generation.num_beams = 3  # R2Gen / R2GenCMN beam size
        # The official beam search writes up to max_seq_length words after <bos>; transformers' `max_length` would
        # count the decoder start token too (one word fewer), so the default is set in new tokens.
        generation.max_new_tokens = self.config.max_seq_length
        generation.decoder_start_token_id = self.config.bos_token_id
        generation.bos_token_id = self.config.bos_token_id
        generation.eos_token_id = self.config.eos_token_id
        generation.pad_token_id = self.config.pad_token_id
        generation.length_penalty = 0.0  # R2Gen's beam search ranks beams by summed log-probability

    def _init_weights(self, module: nn.Module) -> None:
        """Each block initialises itself as the official code does (xavier on matrices, CMN memory N(0, 1/d)),
        every other layer with PyTorch's default."""
        reset = getattr(module, "reset_rrg_parameters", None) or getattr(module, "reset_parameters", None)
        if reset is not None:
            reset()

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False) -> None:
        """transformers 5 marks a module of custom (and remote) code as initialised without calling `_init_weights`
        when it holds no parameter of its own, so a container's `reset_rrg_parameters` (the official xavier
        initialisation of a whole encoder or decoder) would never run. Such containers go through `_init_weights`
        regardless; they initialise with `torch.nn.init` functions, which `initialize_weights` guards so that
        weights already loaded by `from_pretrained` are left untouched."""
        if hasattr(module, "reset_rrg_parameters"):
            is_custom_code = False
        super()._initialize_weights(module, is_custom_code)

    def load_pretrained_backbone(self) -> None:
        """ImageNet weights for the visual extractor (what `config.visual_pretrained` asks for in training)."""
        self.encoder.visual_extractor.load_pretrained_backbone()

    def get_encoder(self, modality: str | None = None) -> ReportEncoder:
        return self.encoder

    def _decoder_kwargs(self) -> dict:
        """Extra arguments for `ReportDecoder.forward` (R2GenCMN passes its shared memory)."""
        return {}

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        view_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        encoder_outputs: RRGEncoderOutput | tuple | None = None,
        cache: RRGDecoderCache | None = None,
        past_key_values: RRGDecoderCache | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        """Args:
        pixel_values: (batch, views, 3, H, W) from `RRGImageProcessor` (or (batch, 3, H, W) for one view).
        view_mask: (batch, views) bool, False for padded views.
        decoder_input_ids: (batch, length) starting with `<bos>`; built from `labels` when omitted.
        labels: (batch, length) next-token targets, -100 where ignored (padding).
        cache / past_key_values: an `RRGDecoderCache` for incremental decoding (PEFT passes `past_key_values`).
        output_attentions: return `cross_attentions`, one (batch, heads, tokens, encoder tokens) tensor per decoder
            layer; the encoder tokens are the views' patches, view after view (`VisualExtractor`).
        """
        encoder_outputs = self._encoder_outputs(pixel_values, view_mask, encoder_outputs)
        decoder_input_ids = self._decoder_input_ids(decoder_input_ids, labels)
        cross_attentions: list[torch.Tensor] | None = [] if output_attentions else None
        logits, cache = self._decode(
            decoder_input_ids,
            encoder_outputs,
            decoder_attention_mask,
            cache if cache is not None else past_key_values,
            use_cache,
            **self._decoder_kwargs(),
            **attention_recorder(cross_attentions),
        )
        loss = self.token_loss(logits, labels) if labels is not None else None
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=cache,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            cross_attentions=None if cross_attentions is None else tuple(cross_attentions),
        )

    # The steps of `forward`, for subclasses whose forward adds inputs or loss terms (XProNet).
    def _encoder_outputs(
        self,
        pixel_values: torch.Tensor | None,
        view_mask: torch.Tensor | None,
        encoder_outputs: RRGEncoderOutput | tuple | None,
        **encoder_kwargs,
    ) -> RRGEncoderOutput:
        """Run the encoder unless its outputs are given (a tuple is turned into the encoder's output class)."""
        if encoder_outputs is None:
            if pixel_values is None:
                raise ValueError("Pass `pixel_values` (or precomputed `encoder_outputs`).")
            return self.encoder(pixel_values, view_mask, **encoder_kwargs)
        if isinstance(encoder_outputs, tuple):
            return self.encoder.output_class(*encoder_outputs)
        return encoder_outputs

    def _decoder_input_ids(self, decoder_input_ids: torch.Tensor | None, labels: torch.Tensor | None) -> torch.Tensor:
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("Pass `decoder_input_ids` or `labels`.")
            decoder_input_ids = self.shift_labels_right(labels)
        return decoder_input_ids

    def _decode(
        self,
        decoder_input_ids: torch.Tensor,
        encoder_outputs: RRGEncoderOutput,
        decoder_attention_mask: torch.Tensor | None,
        cache: RRGDecoderCache | None,
        use_cache: bool | None,
        **decoder_kwargs,
    ) -> tuple[torch.Tensor, RRGDecoderCache | None]:
        """Decoder + LM head: (logits, the cache when `use_cache`, else None)."""
        use_cache = use_cache if use_cache is not None else cache is not None
        if use_cache and cache is None:
            cache = RRGDecoderCache()
        hidden = self.decoder(
            decoder_input_ids,
            encoder_outputs.last_hidden_state,
            encoder_outputs.attention_mask,
            decoder_attention_mask,
            cache if use_cache else None,
            **decoder_kwargs,
        )
        return self.lm_head(hidden), (cache if use_cache else None)

    @staticmethod
    def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Token cross-entropy (Eq. 19 of XProNet; R2Gen's loss), -100 ignored."""
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)

    def shift_labels_right(self, labels: torch.Tensor) -> torch.Tensor:
        """`<bos>` followed by the labels without their last position (-100 replaced by `<pad>`)."""
        shifted = labels.new_full(labels.shape, self.config.pad_token_id)
        shifted[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == -100, self.config.pad_token_id)
        shifted[:, 0] = self.config.bos_token_id
        return shifted

    def _prepare_decoder_input_ids_for_generation(self, *args, **kwargs) -> tuple[torch.Tensor, dict]:
        """A report prompt given to `generate` (e.g. the `input_ids` a processor made from `text`, which the
        `image-text-to-text` pipeline passes) is `<bos> words <eos>`: its closing `<eos>` and padding are dropped
        so that generation continues the prompt instead of stopping at once."""
        decoder_input_ids, model_kwargs = super()._prepare_decoder_input_ids_for_generation(*args, **kwargs)
        return open_report_prompt(decoder_input_ids, self.config), model_kwargs

    def _prepare_cache_for_generation(self, generation_config, model_kwargs: dict, *args, **kwargs) -> None:
        if generation_config.use_cache is not False and model_kwargs.get("cache") is None:
            model_kwargs["cache"] = RRGDecoderCache()


def attention_recorder(cross_attentions: list[torch.Tensor] | None) -> dict[str, list[torch.Tensor]]:
    """The decoder keyword that collects cross-attention probabilities into `cross_attentions` (none when None)."""
    return {} if cross_attentions is None else {"cross_attentions": cross_attentions}


def open_report_prompt(prompt: torch.Tensor, config) -> torch.Tensor:
    """`prompt` (batch, length) without the trailing `<eos>` / `<pad>` tokens a tokenised report ends with; every
    row must keep the same length (prompts of different lengths would need left padding: pass them one by one)."""
    ends = {config.eos_token_id, config.pad_token_id} - {None}
    lengths = []
    for row in prompt.tolist():
        length = len(row)
        while length > 1 and row[length - 1] in ends:
            length -= 1
        lengths.append(length)
    if len(set(lengths)) > 1:
        raise ValueError(
            f"The report prompts of this batch have different lengths {lengths} after their <eos>/<pad>; generate "
            "one study at a time, or give every study the same prompt."
        )
    return prompt[:, : lengths[0]] if lengths else prompt
