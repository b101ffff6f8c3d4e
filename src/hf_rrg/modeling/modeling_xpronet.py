"""XProNet (Wang, Bhalerao, He. "Cross-modal Prototype Driven Network for Radiology Report Generation", ECCV 2022;
`papers/004_e9a48aa18c2efadd.txt`).

R2GenCMN's Transformer encoder-decoder in which the plain cross-modal memory is replaced by a cross-modal
prototype network (§3.2): the projected visual tokens (before the encoder) and the word embeddings (before the
decoder) query the prototypes of the sample's pseudo-label classes, and a linear layer fuses each feature with its
response (Eq. 14). Training adds the improved multi-label contrastive loss on the visual and textual responses
(§3.4, Eq. 17-20).

Labels at inference: the paper fed labels made from the *ground-truth report* at test time. Here an image-level
label head (pooled visual feature -> N_l logits, trained with BCE) predicts them whenever `observation_labels` is
not passed, so the model needs only the image. Passing `observation_labels=` to `forward`/`generate` reproduces
the paper's protocol (which leaks the reference report into the prediction).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import GenerationMixin
from transformers.modeling_outputs import Seq2SeqLMOutput

from .configuration_xpronet import XProNetConfig
from .decoder_cache import RRGDecoderCache
from .losses import xpronet_multilabel_contrastive_loss
from .prototype_network import CrossModalPrototypeNetwork
from .report_transformer import (
    ReportDecoder,
    ReportEncoder,
    RRGEncoderOutput,
    RRGTransformerPreTrainedModel,
    attention_recorder,
)


@dataclass
class XProNetEncoderOutput(RRGEncoderOutput):
    """`RRGEncoderOutput` plus the label head's logits (batch, N_l), the binary labels the prototypes were chosen
    by (batch, N_l; given or predicted) and the visual responses r^s (batch, tokens, d_model)."""

    observation_logits: torch.Tensor | None = None
    observation_labels: torch.Tensor | None = None
    visual_responses: torch.Tensor | None = None


@dataclass
class XProNetOutput(Seq2SeqLMOutput):
    """`loss` is Eq. 20 plus the label-head term: ce_loss + λ·visual_contrastive_loss + δ·text_contrastive_loss +
    label_loss_weight·label_loss. The components are None when their targets were not passed (the contrastive
    and label terms need `observation_labels`; all need `labels`)."""

    ce_loss: torch.Tensor | None = None
    visual_contrastive_loss: torch.Tensor | None = None
    text_contrastive_loss: torch.Tensor | None = None
    label_loss: torch.Tensor | None = None
    observation_logits: torch.Tensor | None = None
    observation_labels: torch.Tensor | None = None


class XProNetEncoder(ReportEncoder):
    """`ReportEncoder` whose cross-modal step is the prototype network's visual interaction (Eq. 8-14)."""

    output_class = XProNetEncoderOutput

    def __init__(self, config: XProNetConfig) -> None:
        super().__init__(config, memory=None, add_positions=True)
        self.prototype_network = (
            CrossModalPrototypeNetwork(config, self.visual_extractor.num_features)
            if config.use_prototype_network
            else None
        )

    def interact(
        self,
        hidden: torch.Tensor,
        pooled: torch.Tensor,
        token_mask: torch.Tensor,
        observation_labels: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        network = self.prototype_network
        if network is None:
            return hidden, {}
        view_mask = token_mask.view(pooled.size(0), pooled.size(1), -1)[..., 0]
        logits = network.label_logits(pooled, view_mask)
        if observation_labels is None:
            labels = network.predict_labels(logits)
        else:
            if observation_labels.shape != logits.shape:
                raise ValueError(
                    f"observation_labels has shape {tuple(observation_labels.shape)}, expected "
                    f"{tuple(logits.shape)} (batch, {logits.size(1)} label slots in config.observation_names order)"
                )
            labels = network.with_fallback(observation_labels)
        fused, responses = network.interact(hidden, labels.to(hidden.device), "visual")
        return fused, {"observation_logits": logits, "observation_labels": labels, "visual_responses": responses}


class XProNetForConditionalGeneration(RRGTransformerPreTrainedModel, GenerationMixin):
    """XProNet: visual tokens -> prototype interaction (Eq. 8-14) + positions -> Transformer encoder (Eq. 15);
    word embeddings -> prototype interaction -> Transformer decoder (Eq. 16).

    `forward(pixel_values, view_mask, observation_labels=None, decoder_input_ids=None, decoder_attention_mask=None,
    labels=None)` -> `XProNetOutput`; `generate(pixel_values=..., view_mask=..., [observation_labels=...])`.
    `observation_labels` are (batch, N_l) binary pseudo labels in `config.observation_names` order (training: from
    the label file, `hf_rrg.xpronet.labels`); when omitted, the label head predicts them.
    """

    config_class = XProNetConfig

    def __init__(self, config: XProNetConfig) -> None:
        super().__init__(config)
        self.encoder = XProNetEncoder(config)
        self.decoder = ReportDecoder(config, relational_memory=False)
        self._finish_init()

    @property
    def prototype_network(self) -> CrossModalPrototypeNetwork | None:
        """The shared prototype network (owned by the encoder; the decoder's word embeddings use it too)."""
        return self.encoder.prototype_network

    def load_prototypes(self, prototypes: torch.Tensor) -> None:
        """Put an initial prototype matrix PM (N_l, N_p, D) into the model (§3.2 Eq. 7; see
        `hf_rrg.xpronet.prototypes` for making one and reading it from safetensors)."""
        if self.prototype_network is None:
            raise ValueError("This XProNet has no prototype network (config.use_prototype_network is False).")
        self.prototype_network.load_prototypes(prototypes)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        view_mask: torch.Tensor | None = None,
        observation_labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        encoder_outputs: XProNetEncoderOutput | tuple | None = None,
        cache: RRGDecoderCache | None = None,
        past_key_values: RRGDecoderCache | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> XProNetOutput:
        """Args:
        pixel_values: (batch, views, 3, H, W) from `RRGImageProcessor` (or (batch, 3, H, W)).
        view_mask: (batch, views) bool, False for padded views.
        observation_labels: (batch, N_l) binary pseudo labels (Eq. 3). Training: pass them (they choose the
            prototypes and are the targets of the label head and of the contrastive losses). Inference: omit them
            to use the label head's predictions; passing report-derived labels is the paper's (leaky) protocol.
        decoder_input_ids / decoder_attention_mask: (batch, length), starting with `<bos>`; built from `labels`.
        labels: (batch, length) next-token targets, -100 ignored.
        cache / past_key_values: an `RRGDecoderCache` for incremental decoding.
        output_attentions: return `cross_attentions` (per decoder layer, over the views' patch tokens).
        """
        encoder_outputs = self._encoder_outputs(
            pixel_values, view_mask, encoder_outputs, observation_labels=observation_labels
        )
        decoder_input_ids = self._decoder_input_ids(decoder_input_ids, labels)
        network = self.prototype_network
        text: dict[str, torch.Tensor] = {}
        cross_attentions: list[torch.Tensor] | None = [] if output_attentions else None
        decoder_kwargs = attention_recorder(cross_attentions)
        cache = cache if cache is not None else past_key_values
        if use_cache and cache is None:
            cache = RRGDecoderCache()  # made here, so that the prototypes' keys/values are kept from the first step
        if network is not None:
            chosen = encoder_outputs.observation_labels

            def text_interaction(embeddings: torch.Tensor) -> torch.Tensor:
                keys_values = None
                if cache is not None:  # generation: the prototypes' keys/values depend on the weights only
                    keys_values = cache.shared.get("prototype_keys_values")
                    if keys_values is None:
                        keys_values = cache.shared["prototype_keys_values"] = network.keys_values()
                fused, text["responses"] = network.interact(embeddings, chosen, "text", keys_values)
                return fused

            decoder_kwargs["token_interaction"] = text_interaction
        logits, cache = self._decode(
            decoder_input_ids,
            encoder_outputs,
            decoder_attention_mask,
            cache,
            use_cache,
            **decoder_kwargs,
        )
        output = XProNetOutput(
            logits=logits,
            cache=cache,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            observation_logits=getattr(encoder_outputs, "observation_logits", None),
            observation_labels=getattr(encoder_outputs, "observation_labels", None),
            cross_attentions=None if cross_attentions is None else tuple(cross_attentions),
        )
        if labels is None:
            return output
        output.ce_loss = self.token_loss(logits, labels)
        output.loss = output.ce_loss
        if network is None or observation_labels is None:
            return output
        config = self.config
        targets = observation_labels.float()
        contrastive = dict(
            margin=config.contrastive_margin, theta=config.contrastive_theta, improved=config.contrastive_improved
        )
        target_labels = encoder_outputs.observation_labels  # with the no-positive fallback applied
        output.visual_contrastive_loss = xpronet_multilabel_contrastive_loss(
            encoder_outputs.visual_responses, target_labels, mask=encoder_outputs.attention_mask, **contrastive
        )
        if config.text_response_pooling == "all_positions":  # the official code: padding positions included
            text_mask = None
        else:
            text_mask = decoder_attention_mask.bool() if decoder_attention_mask is not None else labels != -100
        output.text_contrastive_loss = xpronet_multilabel_contrastive_loss(
            text["responses"], target_labels, mask=text_mask, **contrastive
        )
        output.label_loss = F.binary_cross_entropy_with_logits(encoder_outputs.observation_logits.float(), targets)
        output.loss = (
            output.ce_loss
            + config.visual_contrastive_weight * output.visual_contrastive_loss
            + config.text_contrastive_weight * output.text_contrastive_loss
            + config.label_loss_weight * output.label_loss
        )
        return output
