"""ITHN (Voutharoja, Wang, Zhou. "Automatic Radiology Report Generation by Learning with Increasingly Hard
Negatives", ECAI 2023; `papers/001_7a44b13b1d94c933.txt`) as a wrapper around a report generator (the backbone).

Training (§3.1-3.5): each study (I_i, R_i) comes with its prior hard negative (I_i⁻, R_i⁻), the study whose report
is R_i's nearest neighbour (mined before training, `hf_rrg.ithn.mining`). Both go through the *same* backbone in one
pass (the batch is concatenated: the paper's encoders A/B and decoders A/B share their weights), with teacher
forcing. From that pass ITHN reads

- z: the pooled visual feature (averaged over the study's views) -> Linear(C -> 512) -> l2-normalised (§4.2);
- u: the mean over the report's tokens of the decoder's last hidden states -> Linear(d_model -> 512) ->
  l2-normalised (§4.2),

synthesises the harder negative ũ_i⁻ (Eq. 2 or Eq. 5-7, with λ = 1 − exp(−α·epoch)) and adds to the backbone's own
objective (its token cross-entropy L_CE on (I_i, R_i), plus e.g. XProNet's contrastive and label terms)
β·L_CP (the modified CLIP loss, Eq. 8-12) and γ·L_CS (Eq. 1): L_F = L_CE + β·L_CP + γ·L_CS (Eq. 13).
`ITHNConfig.from_preset("official")` switches to the official code's objective instead (0.7·L_CE, bias-free
projections, two uncapped temperatures, u averaged over padding, one view per study; docs/ithn.md).

Inference is the backbone's: `generate` delegates to it, and `backbone_model()` / `export_backbone()` give a plain
backbone checkpoint (the ITHN heads are training-only).

The backbone interface (see docs/ithn.md): `backbone.get_encoder()` returns a module whose output has
`pooled_features` ((B, V, C) per view, or (B, C)); `backbone.decoder` returns the decoder's last hidden states
(B, T, D) (a tensor, or an output with `last_hidden_state`); `backbone(pixel_values=, view_mask=,
decoder_input_ids=, decoder_attention_mask=, labels=, **extra)` returns an output with `loss` and `logits` (and
optionally `ce_loss` and other `*_loss` components); `backbone.generate(...)` decodes. ITHN reads (a) and (b)
with forward hooks during its own forward, so the backbone runs once and needs no change.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_ithn import ITHNConfig
from .ithn_losses import hardness_schedule, image_similarity_loss, ithn_clip_loss, synthesize_hard_negatives
from .modeling_r2gen import R2GenForConditionalGeneration
from .modeling_r2gencmn import R2GenCMNForConditionalGeneration
from .modeling_xpronet import XProNetForConditionalGeneration

#: Backbone model type -> model class (resolved locally so that remote code needs no registry).
BACKBONE_MODELS: dict[str, type[PreTrainedModel]] = {
    "r2gencmn": R2GenCMNForConditionalGeneration,
    "xpronet": XProNetForConditionalGeneration,
    "r2gen": R2GenForConditionalGeneration,
}

NEGATIVE_PREFIX = "negative_"
_TOKEN_PADDING = {"decoder_input_ids": "pad", "decoder_attention_mask": 0, "labels": -100}


@dataclass
class ITHNOutput(ModelOutput):
    """`loss` is Eq. 13 on top of the backbone's objective: w·backbone_loss + β·clip_loss + γ·cs_loss (w =
    `config.backbone_loss_weight`: 1 in the paper, 0.7 in the official code).

    ce_loss: the backbone's token cross-entropy (on (I_i, R_i) only unless `config.ce_on_negatives`).
    clip_loss: L_CP (Eq. 12); cs_loss: L_CS (Eq. 1); both None without a neighbour batch or when switched off.
    backbone_loss: the backbone's whole objective (= ce_loss for R2GenCMN; XProNet adds its contrastive and label
        terms, which are also returned under their own names: visual_contrastive_loss, text_contrastive_loss,
        label_loss).
    logits: (B, T, vocab) of the anchors (I_i, R_i). hardness: λ of this step. image_embeds / report_embeds /
    negative_image_embeds / negative_report_embeds / synthesized_negative_embeds: z_i, u_i, z_i⁻, u_i⁻, ũ_i⁻.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    ce_loss: torch.Tensor | None = None
    clip_loss: torch.Tensor | None = None
    cs_loss: torch.Tensor | None = None
    backbone_loss: torch.Tensor | None = None
    visual_contrastive_loss: torch.Tensor | None = None
    text_contrastive_loss: torch.Tensor | None = None
    label_loss: torch.Tensor | None = None
    hardness: torch.Tensor | None = None
    temperature: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    report_embeds: torch.Tensor | None = None
    negative_image_embeds: torch.Tensor | None = None
    negative_report_embeds: torch.Tensor | None = None
    synthesized_negative_embeds: torch.Tensor | None = None


class ITHNContrastiveHead(nn.Module):
    """The training-only part of ITHN: the two projections into the shared space (§4.2) and log(1/τ) (plus
    log(1/τ₃) for S3' when it has its own temperature, as in the official code)."""

    def __init__(
        self,
        image_dim: int,
        report_dim: int,
        embed_dim: int,
        initial_temperature: float,
        bias: bool = True,
        max_logit_scale: float | None = 100.0,
        separate_synthesis_temperature: bool = False,
    ) -> None:
        super().__init__()
        self.initial_temperature = initial_temperature
        self.max_logit_scale = max_logit_scale
        self.image_projection = nn.Linear(image_dim, embed_dim, bias=bias)
        self.report_projection = nn.Linear(report_dim, embed_dim, bias=bias)
        self.logit_scale = nn.Parameter(torch.empty(()))
        self.synthesis_logit_scale = nn.Parameter(torch.empty(())) if separate_synthesis_temperature else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.image_projection.reset_parameters()
        self.report_projection.reset_parameters()
        with torch.no_grad():
            for scale in (self.logit_scale, self.synthesis_logit_scale):
                if scale is not None:
                    scale.fill_(math.log(1.0 / self.initial_temperature))

    def _temperature(self, logit_scale: torch.Tensor) -> torch.Tensor:
        scale = logit_scale.exp()
        return 1.0 / (scale if self.max_logit_scale is None else scale.clamp(max=self.max_logit_scale))

    def temperature(self) -> torch.Tensor:
        """τ = 1 / exp(logit_scale), with 1/τ capped at `max_logit_scale` (CLIP: 100) unless that is None."""
        return self._temperature(self.logit_scale)

    def synthesis_temperature(self) -> torch.Tensor | None:
        """τ₃ of S3' when it has its own scale (official code), else None (S3' shares τ)."""
        return None if self.synthesis_logit_scale is None else self._temperature(self.synthesis_logit_scale)


class _FeatureCapture:
    """Forward hooks that keep the encoder's pooled visual features and the decoder's last hidden states."""

    def __init__(self) -> None:
        self.pooled: torch.Tensor | None = None
        self.hidden: torch.Tensor | None = None

    def encoder_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        pooled = getattr(output, "pooled_features", None)
        if pooled is None and isinstance(output, dict):
            pooled = output.get("pooled_features")
        self.pooled = pooled

    def decoder_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        self.hidden = output if torch.is_tensor(output) else getattr(output, "last_hidden_state", None)


def _pad_to(tensor: torch.Tensor, size: int, dim: int, value: float | int) -> torch.Tensor:
    if tensor.size(dim) >= size:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = size - tensor.size(dim)
    return torch.cat([tensor, tensor.new_full(shape, value)], dim=dim)


def first_view(
    pixel_values: torch.Tensor, view_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each study's first view only: (B, V, 3, H, W) -> (B, 1, 3, H, W) (a (B, 3, H, W) batch is already one)."""
    if pixel_values.dim() != 5:
        return pixel_values, view_mask
    return pixel_values[:, :1], (None if view_mask is None else view_mask[:, :1])


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over dim 1 of (B, N, D) where `mask` (B, N) is true (all positions when None)."""
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class ITHNPreTrainedModel(PreTrainedModel):
    config_class = ITHNConfig
    base_model_prefix = "ithn"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _supports_cache_class = False

    def _init_weights(self, module: nn.Module) -> None:
        """The backbone's blocks initialise as the backbone does; ITHN's head as `ITHNContrastiveHead` does."""
        reset = getattr(module, "reset_rrg_parameters", None) or getattr(module, "reset_parameters", None)
        if reset is not None:
            reset()


class ITHNForConditionalGeneration(ITHNPreTrainedModel, GenerationMixin):
    """A backbone report generator trained with ITHN (Eq. 13). `generate` is the backbone's.

    `forward(pixel_values, view_mask, decoder_input_ids, decoder_attention_mask, labels, negative_pixel_values,
    negative_view_mask, negative_decoder_input_ids, negative_decoder_attention_mask, negative_labels, epoch=None,
    **backbone_kwargs)` -> `ITHNOutput`. The `negative_*` tensors are the neighbour studies (I_i⁻, R_i⁻) in the same
    format as the anchors; any backbone input `x` passed for the anchors (e.g. XProNet's `observation_labels`) is
    expected for the neighbours as `negative_x`. Without `negative_pixel_values` the forward is the backbone's.
    `epoch` (else `model.current_epoch`, set by `set_epoch`) gives λ = 1 − exp(−α·epoch).
    """

    def __init__(self, config: ITHNConfig) -> None:
        super().__init__(config)
        backbone_config = config.backbone_config
        model_class = BACKBONE_MODELS.get(backbone_config.model_type)
        if model_class is None:
            raise ValueError(
                f"no ITHN backbone model for {backbone_config.model_type!r}; supported: {sorted(BACKBONE_MODELS)}"
            )
        self.backbone = model_class(backbone_config)
        image_dim = config.image_feature_dim or self._backbone_image_dim()
        report_dim = config.report_feature_dim or backbone_config.d_model
        self.ithn_head = ITHNContrastiveHead(
            image_dim, report_dim, config.embed_dim, config.initial_temperature, config.projection_bias,
            config.max_logit_scale, config.separate_synthesis_temperature,
        )  # fmt: skip
        for scale in (self.ithn_head.logit_scale, self.ithn_head.synthesis_logit_scale):
            if scale is not None:
                scale.requires_grad_(config.learnable_temperature and config.use_clip_loss)
        # parameters no loss reads are frozen (distributed training refuses parameters without gradients)
        self.ithn_head.report_projection.requires_grad_(config.use_clip_loss)
        self.ithn_head.image_projection.requires_grad_(config.use_clip_loss or config.use_cs_loss)
        self.current_epoch: float = 0.0
        self.post_init()
        self.generation_config = copy.deepcopy(self.backbone.generation_config)

    def _backbone_image_dim(self) -> int:
        extractor = getattr(self.backbone.get_encoder(), "visual_extractor", None)
        if extractor is None or not hasattr(extractor, "num_features"):
            raise ValueError(
                f"cannot find the pooled visual feature size of a {type(self.backbone).__name__}; set "
                "config.image_feature_dim"
            )
        return int(extractor.num_features)

    # ------------------------------------------------------------------------------------------- the backbone
    def load_pretrained_backbone(self) -> None:
        """ImageNet weights for the backbone's visual extractor (training with `visual_pretrained`)."""
        self.backbone.load_pretrained_backbone()

    def get_encoder(self, modality: str | None = None) -> nn.Module:
        return self.backbone.get_encoder()

    def backbone_model(self) -> PreTrainedModel:
        """The wrapped backbone, with this model's generation settings: what ITHN is at inference."""
        self.backbone.generation_config = copy.deepcopy(self.generation_config)
        return self.backbone

    def export_backbone(self, save_directory: str, **kwargs: Any) -> None:
        """Save the plain backbone checkpoint (config, weights, generation config) to `save_directory`; it loads
        as e.g. `R2GenCMNForConditionalGeneration` and generates the same reports as this model."""
        self.backbone_model().save_pretrained(save_directory, **kwargs)

    def set_epoch(self, epoch: float) -> None:
        """The current epoch number, for λ = 1 − exp(−α·epoch) (hf-rrg's recipe calls it before every epoch)."""
        self.current_epoch = float(epoch)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The backbone's `generate`, with this model's `generation_config` as the backbone's defaults."""
        self.backbone.generation_config = self.generation_config
        if self.config.single_view and kwargs.get("pixel_values") is not None:
            kwargs["pixel_values"], kwargs["view_mask"] = first_view(kwargs["pixel_values"], kwargs.get("view_mask"))
        return self.backbone.generate(*args, **kwargs)

    # ----------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        view_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        negative_pixel_values: torch.Tensor | None = None,
        negative_view_mask: torch.Tensor | None = None,
        negative_decoder_input_ids: torch.Tensor | None = None,
        negative_decoder_attention_mask: torch.Tensor | None = None,
        negative_labels: torch.Tensor | None = None,
        epoch: float | torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> ITHNOutput:
        """Args:
        pixel_values, view_mask, decoder_input_ids, decoder_attention_mask, labels: the anchors (I_i, R_i), as for
            the backbone (`decoder_input_ids` built from `labels` when omitted).
        negative_*: the same for the neighbours (I_i⁻, R_i⁻), row i being the neighbour of anchor i.
        epoch: the epoch number for λ (default `self.current_epoch`).
        **kwargs: further backbone inputs (e.g. `observation_labels`) and their `negative_` counterparts.
        """
        negative_keys = [key for key in kwargs if key.startswith(NEGATIVE_PREFIX)]
        negatives = {key[len(NEGATIVE_PREFIX) :]: kwargs.pop(key) for key in negative_keys}
        if self.config.single_view and pixel_values is not None:
            pixel_values, view_mask = first_view(pixel_values, view_mask)
        anchors = dict(pixel_values=pixel_values, view_mask=view_mask, decoder_input_ids=decoder_input_ids,
                       decoder_attention_mask=decoder_attention_mask, labels=labels, **kwargs)  # fmt: skip
        if negative_pixel_values is None:
            if negatives or negative_labels is not None:
                raise ValueError(
                    "neighbour inputs were passed without negative_pixel_values; pass the neighbour images"
                )
            return self._backbone_only(anchors)
        negatives.update(pixel_values=negative_pixel_values, view_mask=negative_view_mask,
                         decoder_input_ids=negative_decoder_input_ids,
                         decoder_attention_mask=negative_decoder_attention_mask, labels=negative_labels)  # fmt: skip
        if self.config.single_view:
            negatives["pixel_values"], negatives["view_mask"] = first_view(negative_pixel_values, negative_view_mask)
        return self._ithn_forward(anchors, negatives, epoch)

    def _backbone_only(self, inputs: dict[str, Any]) -> ITHNOutput:
        out = self.backbone(**{k: v for k, v in inputs.items() if v is not None})
        output = ITHNOutput(logits=out.logits)
        self._copy_backbone_losses(out, output)
        output.loss = out.loss
        return output

    @staticmethod
    def _copy_backbone_losses(source: Any, output: ITHNOutput) -> None:
        if source.loss is None:
            return
        output.backbone_loss = source.loss
        output.ce_loss = getattr(source, "ce_loss", None)
        if output.ce_loss is None:
            output.ce_loss = source.loss
        for key, value in source.items():
            if key.endswith("_loss") and key != "ce_loss" and torch.is_tensor(value):
                output[key] = value

    def _joint_batch(self, anchors: dict[str, Any], negatives: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Anchors and neighbours concatenated along the batch (views and tokens padded to the longer one)."""
        backbone = self.backbone
        for inputs, name in ((anchors, "anchors"), (negatives, "neighbours")):
            if inputs.get("decoder_input_ids") is None:
                if inputs.get("labels") is None:
                    raise ValueError(f"the {name} need decoder_input_ids or labels (teacher forcing, §3.4)")
                inputs["decoder_input_ids"] = backbone.shift_labels_right(inputs["labels"])
        missing = sorted(
            k for k, v in anchors.items() if v is not None and k != "view_mask" and negatives.get(k) is None
        )
        if missing:
            raise ValueError(
                f"the anchors have {missing} but the neighbours do not; pass them as "
                f"{[NEGATIVE_PREFIX + k for k in missing]}"
            )
        joint: dict[str, torch.Tensor] = {}
        pixels = [self._views(inputs["pixel_values"], inputs.get("view_mask")) for inputs in (anchors, negatives)]
        views = max(pair[0].size(1) for pair in pixels)
        joint["pixel_values"] = torch.cat([_pad_to(pair[0], views, 1, 0.0) for pair in pixels], dim=0)
        joint["view_mask"] = torch.cat([_pad_to(pair[1], views, 1, False) for pair in pixels], dim=0)
        for key, first in anchors.items():
            if first is None or key in joint:
                continue
            second = negatives[key]
            if key == "labels" and not self.config.ce_on_negatives:
                second = torch.full_like(second, -100)  # L_CE on (I_i, R_i) only (§3.3)
            if key in _TOKEN_PADDING:
                fill = self.config.pad_token_id if _TOKEN_PADDING[key] == "pad" else _TOKEN_PADDING[key]
                length = max(first.size(1), second.size(1))
                first, second = _pad_to(first, length, 1, fill), _pad_to(second, length, 1, fill)
            joint[key] = torch.cat([first, second.to(first.dtype)], dim=0)
        return joint

    @staticmethod
    def _views(pixel_values: torch.Tensor, view_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, V, 3, H, W) pixels and a bool (B, V) view mask (all views when None)."""
        if pixel_values.dim() == 4:
            pixel_values = pixel_values.unsqueeze(1)
        if view_mask is None:
            view_mask = torch.ones(pixel_values.shape[:2], dtype=torch.bool, device=pixel_values.device)
        return pixel_values, view_mask.bool()

    @contextmanager
    def _capture(self):
        capture = _FeatureCapture()
        decoder = getattr(self.backbone, "decoder", None)
        if decoder is None:
            raise ValueError(f"{type(self.backbone).__name__} has no `decoder` module; see the ITHN backbone interface")
        handles = [
            self.backbone.get_encoder().register_forward_hook(capture.encoder_hook),
            decoder.register_forward_hook(capture.decoder_hook),
        ]
        try:
            yield capture
        finally:
            for handle in handles:
                handle.remove()

    def _ithn_forward(self, anchors: dict[str, Any], negatives: dict[str, Any], epoch: Any) -> ITHNOutput:
        batch = anchors["pixel_values"].size(0)
        if negatives["pixel_values"].size(0) != batch:
            raise ValueError(
                f"negative_pixel_values has {negatives['pixel_values'].size(0)} studies, the batch has {batch}: "
                "row i must be the neighbour of study i"
            )
        joint = self._joint_batch(anchors, negatives)
        with self._capture() as capture:
            out = self.backbone(**joint)
        if capture.pooled is None or capture.hidden is None:
            raise ValueError(
                f"{type(self.backbone).__name__} did not expose `pooled_features` from its encoder and hidden states "
                "from its decoder; see the ITHN backbone interface (docs/ithn.md)"
            )
        pooled = capture.pooled
        if pooled.dim() == 3:  # (2B, V, C): average the real views
            pooled = masked_mean(pooled, joint.get("view_mask"))
        output = ITHNOutput(logits=out.logits[:batch])
        self._copy_backbone_losses(out, output)
        if output.backbone_loss is None:
            raise ValueError("ITHN training needs `labels` (the report targets of the anchors)")
        epoch = self.current_epoch if epoch is None else float(epoch)
        report_mask = self._report_mask(capture.hidden, joint, anchors, negatives)
        return self.ithn_objective(pooled, capture.hidden, report_mask, output, epoch)

    def _report_mask(
        self, hidden: torch.Tensor, joint: dict[str, Any], anchors: dict[str, Any], negatives: dict[str, Any]
    ) -> torch.Tensor | None:
        """Which decoder positions u averages: the real tokens ("tokens"), or every position of the anchors' and of
        the neighbours' own padded batches ("all_positions", the official code's two separate passes)."""
        if self.config.report_pooling == "tokens":
            return joint.get("decoder_attention_mask")
        positions = torch.arange(hidden.size(1), device=hidden.device)
        lengths = [inputs["decoder_input_ids"].size(1) for inputs in (anchors, negatives)]
        batch = anchors["decoder_input_ids"].size(0)
        return torch.cat([(positions < length).expand(batch, -1) for length in lengths], dim=0)

    def ithn_objective(
        self,
        pooled: torch.Tensor,
        hidden: torch.Tensor,
        report_mask: torch.Tensor | None,
        output: ITHNOutput,
        epoch: float,
    ) -> ITHNOutput:
        """Eq. 1-13 on the joint batch's features: `pooled` (2B, C) image features and `hidden` (2B, T, D) decoder
        states, anchors first; `report_mask` (2B, T) the positions u averages (None: all); `output` carries the
        backbone's losses. Fills in the embeddings, λ, L_CP, L_CS and
        loss = backbone_loss_weight·L_backbone + β·L_CP + γ·L_CS."""
        config, head = self.config, self.ithn_head
        batch = pooled.size(0) // 2
        z = F.normalize(head.image_projection(pooled.float()), dim=-1)
        u = F.normalize(head.report_projection(masked_mean(hidden, report_mask).float()), dim=-1)
        z_pos, z_neg, u_pos, u_neg = z[:batch], z[batch:], u[:batch], u[batch:]
        output.image_embeds, output.report_embeds = z_pos, u_pos
        output.negative_image_embeds, output.negative_report_embeds = z_neg, u_neg
        lam = hardness_schedule(epoch, config.hardness_alpha)
        output.hardness = torch.tensor(lam)
        total = config.backbone_loss_weight * output.backbone_loss
        if config.use_clip_loss:
            synthesized = synthesize_hard_negatives(
                u_pos, u_neg, lam, strategy=config.synthesis, image=z_pos, clamp=config.projection_clamp
            )
            if config.detach_synthesized:
                synthesized = synthesized.detach()
            temperature = head.temperature()
            output.synthesized_negative_embeds = synthesized
            output.temperature = temperature.detach()
            output.clip_loss = ithn_clip_loss(
                z_pos, u_pos, z_neg, u_neg, synthesized, temperature, head.synthesis_temperature()
            )
            total = total + config.clip_loss_weight * output.clip_loss
        if config.use_cs_loss:
            output.cs_loss = image_similarity_loss(z_pos, z_neg, absolute=config.cs_absolute)
            total = total + config.cs_loss_weight * output.cs_loss
        output.loss = total
        return output


__all__ = ["ITHNContrastiveHead", "ITHNForConditionalGeneration", "ITHNOutput", "ITHNPreTrainedModel"]
