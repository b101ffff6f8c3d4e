"""DCRRG (Zhou, Wang, EMNLP 2024; `papers/002_0e7b7a5f64ecceb1.txt`): DCCLIP encoders + a 2-layer post-LN
Transformer decoder that writes one observation's description (step 3, §3.3) or, with a prefix (P-Tuning v2
through PEFT, step 4, §3.4), the full report.

The decoder's memory f_I (§3.3): the prompted projections of the image (or, in step 3, of the report text as an
augmented view), one memory token per requested observation prompt (`observation_ids`, see below), each mapped
P -> d_model. The paper does not spell f_I out; reading it as the prompted embeddings is the simplest reading.
- description mode: `observation_ids` (B, 1) = the observation k -> f_I = [f_v(concat(v, e_k))] -> its description;
- full-report mode: `observation_ids` omitted (or (B, L) = 0..L-1) -> f_I = the image under all L observation prompts
  (the "divide" of divide-and-conquer), and the decoder, steered by the step-4 prefix, writes the whole report.
`generate(pixel_values=...)` therefore produces a full report, as every hf-rrg model does.

The prefix: PEFT's `PrefixTuningConfig` passes the prefix as `past_key_values` (a `DynamicCache` or legacy
tuples of per-layer (key, value), each (B, heads, T_p, head_dim)), while `generate()` passes its own `cache`. A
stock model keeps the generation cache and silently drops the prefix. Here the prefix is always honoured: the
teacher-forced forward prepends it to every self-attention's keys/values, and in generation it is written into
the fresh `RRGDecoderCache` at the first step, so every later step (and beam reordering) sees it. A prefix merged
into the model (`config.prefix_length > 0`, `prefix_key_values`) is used when none is passed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.utils import ModelOutput

from .configuration_dcrrg import DCRRGConfig
from .dcclip import DCCLIPEncoder
from .dcrrg_losses import observation_cross_entropy
from .decoder_cache import RRGDecoderCache
from .report_transformer import RRGTransformerPreTrainedModel
from .transformer_layers import FeedForward, MultiHeadAttention, SinusoidalPositions, causal_mask

PrefixKV = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class DCRRGEncoderOutput(ModelOutput):
    """f_I (batch, n_prompts, d_model) for the decoder, its mask (None: all valid), the raw embedding (v or t),
    the prompted projections (v_p or t_p, (batch, n_prompts, P)), the per-observation head logits
    (batch, n_prompts, C; None for the zero prompt) and the prompt ids used."""

    last_hidden_state: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    features: torch.Tensor | None = None
    projections: torch.Tensor | None = None
    observation_logits: torch.Tensor | None = None
    prompt_ids: torch.Tensor | None = None


@dataclass
class DCRRGOutput(Seq2SeqLMOutput):
    """`loss` is L_RG (Eq. 14, token cross-entropy, padding ignored); `observation_logits` are the step-1 heads'
    logits for the prompts of f_I (softmax[..., 1] is an observation's probability, the paper's Table 7);
    `observation_loss` their step-1 cross-entropy (§3.1) when `observation_labels` are passed (not added to `loss`)."""

    observation_logits: torch.Tensor | None = None
    prompt_ids: torch.Tensor | None = None
    observation_loss: torch.Tensor | None = None


class DCRRGEncoder(nn.Module):
    """`forward(pixel_values, view_mask, observation_ids=None, text_input_ids=None, text_attention_mask=None)`: f_I
    from the image (or, when only `text_input_ids` are given, from the report text) under the prompts
    `observation_ids` (default: all L observations)."""

    main_input_name = "pixel_values"

    def __init__(self, config: DCRRGConfig) -> None:
        super().__init__()
        self.num_observations = config.num_observations
        self.dcclip = DCCLIPEncoder(config)

    @property
    def visual_extractor(self) -> nn.Module:
        return self.dcclip.visual_extractor

    def full_report_prompts(self, batch: int, device: torch.device) -> torch.Tensor:
        """(batch, L) prompt ids 0..L-1: the full-report mode."""
        return torch.arange(self.num_observations, device=device).unsqueeze(0).expand(batch, -1)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        view_mask: torch.Tensor | None = None,
        observation_ids: torch.Tensor | None = None,
        text_input_ids: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> DCRRGEncoderOutput:
        dcclip = self.dcclip
        if pixel_values is not None:
            features = dcclip.encode_image(pixel_values, view_mask)
        elif text_input_ids is not None:
            features = dcclip.encode_text(text_input_ids, text_attention_mask)
        else:
            raise ValueError("Pass `pixel_values` (image) or `text_input_ids` (report text) to the DCRRG encoder.")
        return self.from_features(features, observation_ids, "image" if pixel_values is not None else "text")

    def from_features(
        self, features: torch.Tensor, observation_ids: torch.Tensor | None, modality: str = "image"
    ) -> DCRRGEncoderOutput:
        """f_I from already encoded v (`modality="image"`) or t (`"text"`), (batch, D): prompted projections, the
        heads' logits and the memory tokens (lets a training loop encode each study once for many prompts)."""
        dcclip = self.dcclip
        prompts = observation_ids
        if prompts is None:
            prompts = self.full_report_prompts(features.size(0), features.device)
        elif prompts.dim() == 1:
            prompts = prompts.unsqueeze(1)
        if prompts.size(0) != features.size(0):
            raise ValueError(
                f"observation_ids (prompts) have batch {prompts.size(0)} but the inputs have {features.size(0)}"
            )
        prompts = prompts.to(features.device).long()
        if modality == "image":
            projections, heads = dcclip.project_image(features, prompts), dcclip.image_heads
        else:
            projections, heads = dcclip.project_text(features, prompts), dcclip.text_heads
        logits = heads(projections, prompts) if bool((prompts < self.num_observations).all()) else None
        memory = dcclip.memory_projection(projections)
        return DCRRGEncoderOutput(
            last_hidden_state=memory, attention_mask=None, features=features, projections=projections,
            observation_logits=logits, prompt_ids=prompts,
        )  # fmt: skip


class PostLNDecoderLayer(nn.Module):
    """Eq. 10-12: e_attn = LN(MMHA(y) + y); e_ca = LN(CA(e_attn, f_I) + e_attn); f_d(y) = LN(FFN(e_ca) + e_ca)
    (post-LN, dropout on each residual branch)."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(num_heads, d_model, dropout)
        self.cross_attn = MultiHeadAttention(num_heads, d_model, dropout)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        y: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None,
        self_mask: torch.Tensor,
        self_past: tuple[torch.Tensor, torch.Tensor] | None,
        cross_past: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, tuple, tuple]:
        out, self_kv = self.self_attn(y, y, y, self_mask, past=self_past)
        e_attn = self.norms[0](y + self.dropout(out))  # Eq. 12
        out, cross_kv = self.cross_attn(e_attn, memory, memory, memory_mask, cross_past, static_past=True)
        e_ca = self.norms[1](e_attn + self.dropout(out))  # Eq. 11
        return self.norms[2](e_ca + self.dropout(self.feed_forward(e_ca))), self_kv, cross_kv  # Eq. 10


class DCRRGDecoder(nn.Module):
    """Token embeddings (no positions unless `use_positional_encoding`, §3.3), two `PostLNDecoderLayer`s; honours a
    self-attention prefix of per-layer (key, value) in training and incremental decoding."""

    def __init__(self, config: DCRRGConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.positions = SinusoidalPositions(config.d_model, 0.0) if config.use_positional_encoding else None
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            PostLNDecoderLayer(config.d_model, config.num_heads, config.d_ff, config.dropout)
            for _ in range(config.num_layers)
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: RRGDecoderCache | None = None,
        prefix: PrefixKV | None = None,
    ) -> torch.Tensor:
        fresh = cache is None or cache.get_seq_length() == 0
        if fresh and prefix is not None and cache is not None:
            cache.shared["prefix_length"] = prefix[0][0].size(2)
        prefix_length = int(cache.shared.get("prefix_length", 0)) if cache is not None else 0
        if cache is None and prefix is not None:
            prefix_length = prefix[0][0].size(2)
        past = cache.get_seq_length() if cache is not None else 0
        hidden = self.embed_tokens(input_ids)
        if self.positions is not None:
            hidden = self.positions(hidden, offset=past)
        hidden = self.dropout(hidden)
        total = prefix_length + past + input_ids.size(1)
        key_padding = None
        if attention_mask is not None:
            key_padding = attention_mask.bool()
            if key_padding.size(1) < total:  # the caller's mask covers the real tokens only: prefix is visible
                ones = key_padding.new_ones(key_padding.size(0), total - key_padding.size(1))
                key_padding = torch.cat([ones, key_padding], dim=1)
        self_mask = causal_mask(input_ids.size(1), prefix_length + past, key_padding, input_ids.device)
        memory_mask = memory_mask.unsqueeze(1) if memory_mask is not None else None
        for index, layer in enumerate(self.layers):
            self_past, cross_past = cache.layer(index) if cache is not None else (None, None)
            if self_past is None and prefix is not None:
                self_past = prefix[index]
            hidden, self_kv, cross_kv = layer(hidden, memory, memory_mask, self_mask, self_past, cross_past)
            if cache is not None:
                cache.store(index, self_kv, cross_kv)
        if cache is not None:
            cache.seen_tokens += input_ids.size(1)
        return hidden


def prefix_from_past_key_values(past_key_values, num_layers: int) -> PrefixKV | None:
    """The per-layer self-attention prefix (key, value), each (B, heads, T_p, head_dim), from what PEFT passes as
    `past_key_values`: a transformers `Cache` (`DynamicCache`, or an `EncoderDecoderCache` whose self-attention
    part is used), legacy tuples per layer of (key, value[, cross key, cross value]) or per-layer stacked
    tensors (2 or 4, B, heads, T_p, head_dim). Returns None for an `RRGDecoderCache` (that is a generation cache)."""
    if past_key_values is None or isinstance(past_key_values, RRGDecoderCache):
        return None
    cache = getattr(past_key_values, "self_attention_cache", past_key_values)
    layers = getattr(cache, "layers", None)
    if layers is not None:
        pairs = [(layer.keys, layer.values) for layer in layers]
    else:
        pairs = [(entry[0], entry[1]) for entry in past_key_values]
    pairs = [(k, v) for k, v in pairs if k is not None and k.numel() > 0]
    if not pairs:
        return None
    if len(pairs) != num_layers:
        raise ValueError(
            f"the prefix has {len(pairs)} layers but the DCRRG decoder has {num_layers}; build the PEFT config with "
            "`hf_rrg.dcrrg.prefix.prefix_tuning_config(model)` (num_layers = config.num_layers)"
        )
    return pairs


class DCRRGForConditionalGeneration(RRGTransformerPreTrainedModel, GenerationMixin):
    """DCRRG: DCCLIP encoders (Eq. 1-2) -> f_I -> 2-layer post-LN decoder (Eq. 10-13) -> Linear (+ log-softmax in
    the loss and in generation) trained with L_RG (Eq. 14).

    `forward(pixel_values, view_mask, observation_ids=None, decoder_input_ids=None, decoder_attention_mask=None,
    labels=None, text_input_ids=None, text_attention_mask=None, past_key_values=None)` -> `DCRRGOutput`.
    `observation_ids` are the observation prompt ids of f_I ((B, 1): one observation's description; omitted: the
    full report). `past_key_values` may be a PEFT prefix (see the module docstring). `generate(pixel_values=...)`
    writes a full report (beam 3, Appendix A); `generate(pixel_values=..., observation_ids=k)` a description.
    """

    config_class = DCRRGConfig

    def __init__(self, config: DCRRGConfig) -> None:
        super().__init__(config)
        self.encoder = DCRRGEncoder(config)
        self.decoder = DCRRGDecoder(config)
        head_dim = config.d_model // config.num_heads
        if config.prefix_length > 0:
            self.prefix_key_values = nn.Parameter(
                torch.zeros(config.num_layers, 2, config.num_heads, config.prefix_length, head_dim)
            )
        else:
            self.prefix_key_values = None
        self._finish_init()

    @property
    def dcclip(self) -> DCCLIPEncoder:
        """The DCCLIP encoders (steps 1-2)."""
        return self.encoder.dcclip

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch defaults for layers (`reset_parameters`), τ = temperature_init, a zero merged prefix, and BERT's
        embedding buffers (position ids 0..n-1, token types 0)."""
        if isinstance(module, DCCLIPEncoder):
            module.reset_temperature()
        elif module is self and self.prefix_key_values is not None:
            with torch.no_grad():
                self.prefix_key_values.zero_()
        elif type(module).__name__ == "BertEmbeddings":
            with torch.no_grad():
                module.position_ids.copy_(torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
                module.token_type_ids.zero_()
        reset = getattr(module, "reset_parameters", None)
        if reset is not None and not isinstance(module, DCCLIPEncoder):
            reset()

    def load_pretrained_text_encoder(self, name_or_path: str | None = None) -> None:
        """ClinicalBERT weights into E_txt (Appendix A); default `config.text_encoder_name_or_path`."""
        name_or_path = name_or_path or self.config.text_encoder_name_or_path
        if name_or_path is None:
            raise ValueError("No text encoder checkpoint: pass one or set config.text_encoder_name_or_path.")
        self.dcclip.load_pretrained_text_encoder(name_or_path)

    def _merged_prefix(self, batch: int) -> PrefixKV | None:
        if self.prefix_key_values is None:
            return None
        kv = self.prefix_key_values
        return [(kv[i, 0].unsqueeze(0).expand(batch, -1, -1, -1), kv[i, 1].unsqueeze(0).expand(batch, -1, -1, -1))
                for i in range(kv.size(0))]  # fmt: skip

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        view_mask: torch.Tensor | None = None,
        observation_ids: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        text_input_ids: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
        observation_labels: torch.Tensor | None = None,
        encoder_outputs: DCRRGEncoderOutput | tuple | None = None,
        cache: RRGDecoderCache | None = None,
        past_key_values=None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DCRRGOutput:
        """Args:
        pixel_values: (batch, views, 3, H, W) or (batch, 3, H, W); or pass `text_input_ids` (step 3's text view).
        observation_ids: (batch, n) observation prompt ids of f_I, in [0, L]; None = all L (full report).
        decoder_input_ids / decoder_attention_mask: (batch, length) starting with `<bos>`; built from `labels`.
        input_ids: the decoder tokens under the name transformers 5's `generate` and PEFT's
            `PeftModelForSeq2SeqLM` use for a pixel-input encoder-decoder; used when `decoder_input_ids` is None.
        labels: (batch, length) next-token targets, -100 ignored.
        observation_labels: (batch, n) class of each prompt's observation (0/1, -100 excluded) for the step-1 CE.
        cache: an `RRGDecoderCache` (generation). past_key_values: a PEFT prefix, or (as other hf-rrg models) the
            generation cache under its old name.
        """
        if isinstance(past_key_values, RRGDecoderCache) and cache is None:
            cache, past_key_values = past_key_values, None
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                pixel_values, view_mask, observation_ids=observation_ids, text_input_ids=text_input_ids,
                text_attention_mask=text_attention_mask,
            )  # fmt: skip
        elif isinstance(encoder_outputs, tuple):
            encoder_outputs = DCRRGEncoderOutput(*encoder_outputs)
        if decoder_input_ids is None and input_ids is not None:
            decoder_input_ids = input_ids  # transformers 5 / PEFT name the decoder prompt `input_ids` here
        decoder_input_ids = self._decoder_input_ids(decoder_input_ids, labels)
        batch = decoder_input_ids.size(0)
        prefix = prefix_from_past_key_values(past_key_values, self.config.num_layers)
        if prefix is None:
            prefix = self._merged_prefix(batch)
        elif prefix[0][0].size(0) != batch:
            raise ValueError(f"the prefix has batch {prefix[0][0].size(0)} but the decoder inputs have {batch}")
        use_cache = use_cache if use_cache is not None else cache is not None
        if use_cache and cache is None:
            cache = RRGDecoderCache()
        if cache is not None and cache.get_seq_length() > 0:
            prefix = None  # already in the cache since the first step
        hidden = self.decoder(
            decoder_input_ids, encoder_outputs.last_hidden_state, encoder_outputs.attention_mask,
            decoder_attention_mask, cache if use_cache else None, prefix,
        )  # fmt: skip
        logits = self.lm_head(hidden)
        loss = self.token_loss(logits, labels) if labels is not None else None
        observation_loss = None
        if observation_labels is not None and encoder_outputs.observation_logits is not None:
            observation_loss = observation_cross_entropy(encoder_outputs.observation_logits, observation_labels)
        return DCRRGOutput(
            observation_loss=observation_loss,
            loss=loss, logits=logits, cache=cache if use_cache else None,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            observation_logits=encoder_outputs.observation_logits, prompt_ids=encoder_outputs.prompt_ids,
        )  # fmt: skip

    def observation_probabilities(
        self,
        pixel_values: torch.Tensor | None = None,
        view_mask: torch.Tensor | None = None,
        encoder_outputs: DCRRGEncoderOutput | None = None,
    ) -> torch.Tensor:
        """(batch, L) probability that each observation is positive, from the step-1 image heads (Table 7); from
        `encoder_outputs` of the full-report prompts when given (the image is then not encoded again)."""
        out = encoder_outputs if encoder_outputs is not None else self.encoder(pixel_values, view_mask)
        return torch.softmax(out.observation_logits.float(), dim=-1)[..., 1]

    @staticmethod
    def description_log_probs(logits: torch.Tensor) -> torch.Tensor:
        """The Linear & Log-Softmax output of §3.3."""
        return F.log_softmax(logits.float(), dim=-1)


__all__ = [
    "DCRRGDecoder",
    "DCRRGEncoder",
    "DCRRGEncoderOutput",
    "DCRRGForConditionalGeneration",
    "DCRRGOutput",
    "PostLNDecoderLayer",
    "prefix_from_past_key_values",
]
