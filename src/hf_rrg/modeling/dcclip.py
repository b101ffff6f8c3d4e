"""DCCLIP, DCRRG's encoders (§3.1-3.2): an image encoder E_img (timm CNN) and a text encoder E_txt (BERT), each
followed by a projection head that reads the raw embedding concatenated with a one-hot observation prompt
(Eq. 1b / 2b), and per-observation classification heads (§3.1).

Prompt ids: an integer k in [0, L) selects observation k (e_prompt = one-hot_k); k = L means "no observation"
(e_prompt = 0), which step 2 uses for the study-level embedding (the paper does not say which prompt the
contrastive step uses; the zero prompt is the simplest reading).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel

from .configuration_dcrrg import DCRRGConfig
from .dcrrg_losses import calibrated_semantic_matching_loss
from .visual_extractor import VisualExtractor


def prompt_one_hot(prompt_ids: torch.Tensor, num_observations: int) -> torch.Tensor:
    """e_prompt (Eq. 1b): (..., L) float one-hot of `prompt_ids` (...); id L gives the zero vector."""
    if prompt_ids.numel() and (int(prompt_ids.min()) < 0 or int(prompt_ids.max()) > num_observations):
        raise ValueError(
            f"prompt ids must lie in [0, {num_observations}] ({num_observations} = no observation), got "
            f"min {int(prompt_ids.min())}, max {int(prompt_ids.max())}"
        )
    return F.one_hot(prompt_ids.long(), num_observations + 1)[..., :num_observations].float()


def study_image_features(
    visual_extractor: VisualExtractor, pixel_values: torch.Tensor, view_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """v = E_img(x) (Eq. 1a), (B, D): each view's global-average-pooled CNN feature, averaged over the study's real
    views (also what DCCLIP's image classification of Table 3 reads)."""
    _, token_mask, pooled = visual_extractor(pixel_values, view_mask)
    views = token_mask.view(pooled.size(0), pooled.size(1), -1)[..., 0].to(pooled.dtype)
    return (pooled * views.unsqueeze(-1)).sum(1) / views.sum(1, keepdim=True)


class PromptedProjection(nn.Module):
    """f(concat(x, e_prompt)) -> R^P (Eq. 1b / 2b), a Linear layer (the paper does not give the head's depth).

    `forward(x (B, D), prompt_ids (B, n))` -> (B, n, P): one projection per requested prompt."""

    def __init__(self, in_features: int, num_observations: int, projection_dim: int) -> None:
        super().__init__()
        self.num_observations = num_observations
        self.linear = nn.Linear(in_features + num_observations, projection_dim)

    def forward(self, x: torch.Tensor, prompt_ids: torch.Tensor) -> torch.Tensor:
        prompts = prompt_one_hot(prompt_ids, self.num_observations).to(x.dtype)
        expanded = x.unsqueeze(1).expand(-1, prompts.size(1), -1)
        return self.linear(torch.cat([expanded, prompts], dim=-1))


class ObservationHeads(nn.Module):
    """One linear classification head per observation (§3.1): logits_k = W_k x + b_k, C classes each.

    `forward(embeds (B, n, P), prompt_ids (B, n))` -> (B, n, C), each embedding read by its observation's head."""

    def __init__(self, num_observations: int, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_observations, in_features, num_classes))
        self.bias = nn.Parameter(torch.empty(num_observations, num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / self.weight.size(1) ** 0.5  # nn.Linear's default range, per head
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, embeds: torch.Tensor, prompt_ids: torch.Tensor) -> torch.Tensor:
        if int(prompt_ids.max()) >= self.weight.size(0):
            raise ValueError("the classification heads need an observation prompt (ids < L), not the zero prompt")
        weight, bias = self.weight[prompt_ids], self.bias[prompt_ids]  # (B, n, P, C), (B, n, C)
        return torch.einsum("bnp,bnpc->bnc", embeds, weight.to(embeds.dtype)) + bias.to(embeds.dtype)


class DCCLIPEncoder(nn.Module):
    """E_img + f_v + image heads, E_txt + f_t + text heads, the learnable temperature τ, and the projection of the
    prompted embeddings to the decoder's memory f_I (Linear P -> d_model).

    `encode_image(pixel_values, view_mask)` -> v (B, D): the CNN's pooled feature, averaged over a study's real
    views. `encode_text(input_ids, attention_mask)` -> t (B, M). `project_image(v, prompt_ids)` / `project_text`
    -> v_p / t_p (B, n, P).
    """

    def __init__(self, config: DCRRGConfig) -> None:
        super().__init__()
        num_observations, projection = config.num_observations, config.projection_dim
        self.text_pooling = config.text_pooling
        self.visual_extractor = VisualExtractor(config.visual_backbone)
        bert = {key: value for key, value in config.text_encoder_config.items() if key != "vocab_size"}
        self.text_encoder = BertModel(BertConfig(vocab_size=config.text_vocab_size, **bert), add_pooling_layer=False)
        self.image_projection = PromptedProjection(self.visual_extractor.num_features, num_observations, projection)
        self.text_projection = PromptedProjection(self.text_encoder.config.hidden_size, num_observations, projection)
        self.image_heads = ObservationHeads(num_observations, projection, config.num_observation_classes)
        self.text_heads = ObservationHeads(num_observations, projection, config.num_observation_classes)
        self.log_inverse_temperature = nn.Parameter(
            torch.zeros(1), requires_grad=config.learnable_temperature
        )  # shape (1,), not 0-d: PEFT's embedding search indexes every parameter's shape[0]
        self.temperature_init = config.temperature_init
        self.detach_soft_targets = config.detach_soft_targets
        self.memory_projection = nn.Linear(projection, config.d_model)
        self.reset_temperature()

    def reset_temperature(self) -> None:
        """τ = temperature_init (§3.2: 0.07), stored as log(1/τ)."""
        with torch.no_grad():
            self.log_inverse_temperature.fill_(-math.log(self.temperature_init))

    @property
    def temperature(self) -> torch.Tensor:
        """τ of Eq. 7."""
        return torch.exp(-self.log_inverse_temperature).squeeze(0)

    def encode_image(self, pixel_values: torch.Tensor, view_mask: torch.Tensor | None = None) -> torch.Tensor:
        """v = E_img(x) (Eq. 1a): global-average-pooled CNN feature, mean over the study's real views."""
        return study_image_features(self.visual_extractor, pixel_values, view_mask)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """t = E_txt(x) (Eq. 2a): BERT's first-token state (`cls`) or the masked mean of its states (`mean`)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        positions = torch.arange(input_ids.size(1), device=input_ids.device).unsqueeze(0).expand_as(input_ids)
        states = self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids),
            position_ids=positions,
        ).last_hidden_state  # fmt: skip
        if self.text_pooling == "cls":
            return states[:, 0]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def project_image(self, features: torch.Tensor, prompt_ids: torch.Tensor) -> torch.Tensor:
        """v_p = f_v(concat(v, e_prompt)) (Eq. 1b), (B, n, P)."""
        return self.image_projection(features, prompt_ids)

    def project_text(self, features: torch.Tensor, prompt_ids: torch.Tensor) -> torch.Tensor:
        """t_p = f_t(concat(t, e_prompt)) (Eq. 2b), (B, n, P)."""
        return self.text_projection(features, prompt_ids)

    def matching_loss(self, *embeddings_labels_features: torch.Tensor) -> torch.Tensor:
        """L_CSM (Eq. 3-9) with this model's τ and `config.detach_soft_targets`: the arguments of
        `calibrated_semantic_matching_loss` up to the raw embeddings (v_p, t_p, image labels, text labels, v, t)."""
        return calibrated_semantic_matching_loss(
            *embeddings_labels_features, temperature=self.temperature, detach_targets=self.detach_soft_targets
        )

    def load_pretrained_text_encoder(self, name_or_path: str) -> None:
        """Copy a ClinicalBERT-style checkpoint's weights into E_txt (Appendix A). Its config must match
        `config.text_encoder_config` (hidden size, heads, layers, vocabulary)."""
        try:
            pretrained = BertModel.from_pretrained(name_or_path, add_pooling_layer=False)
        except Exception as error:  # missing folder, no network: say what failed and how to proceed
            raise RuntimeError(
                f"Could not load the text encoder checkpoint {name_or_path!r}: {error}. Pass a local BERT folder, "
                "connect to the Hub, or set text_encoder_name_or_path=None to train E_txt from its config."
            ) from error
        missing, unexpected = self.text_encoder.load_state_dict(pretrained.state_dict(), strict=False)
        if unexpected or [name for name in missing if "position_ids" not in name]:
            raise ValueError(
                f"{name_or_path} does not match the text encoder's config (missing {missing[:5]}, unexpected "
                f"{unexpected[:5]}); set model.text_encoder_config to the checkpoint's BertConfig values."
            )


__all__ = ["DCCLIPEncoder", "ObservationHeads", "PromptedProjection", "prompt_one_hot", "study_image_features"]
