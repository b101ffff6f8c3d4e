"""The visual extractor: a timm CNN turning each view of a study into patch tokens and a pooled feature."""

from __future__ import annotations

import timm
import torch
from torch import nn


def checked_views(
    pixel_values: torch.Tensor, view_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`pixel_values` as (B, V, 3, H, W) (a 4-D batch is one view per study) and a bool `view_mask` (B, V)
    (all True when None); clear errors for other shapes and for studies without any view."""
    if pixel_values.dim() == 4:
        pixel_values = pixel_values.unsqueeze(1)
    if pixel_values.dim() != 5:
        raise ValueError(
            f"pixel_values must be (batch, views, 3, H, W) or (batch, 3, H, W), got shape {tuple(pixel_values.shape)}"
        )
    batch, views = pixel_values.shape[:2]
    if view_mask is None:
        view_mask = torch.ones(batch, views, dtype=torch.bool, device=pixel_values.device)
    view_mask = view_mask.bool()
    if view_mask.shape != (batch, views):
        raise ValueError(f"view_mask has shape {tuple(view_mask.shape)}, expected {(batch, views)}")
    if not view_mask.any(dim=1).all():
        empty = (~view_mask.any(dim=1)).nonzero().flatten().tolist()
        raise ValueError(f"Studies {empty} of the batch have no view (view_mask is all False).")
    return pixel_values, view_mask


class VisualExtractor(nn.Module):
    """Patch tokens of the backbone's last feature map and their average, for every view of a study.

    `forward(pixel_values (B, V, 3, H, W) or (B, 3, H, W), view_mask (B, V))` returns
    `tokens (B, V * L, C)` (views concatenated, as R2Gen does for IU X-Ray's two views), `token_mask (B, V * L)`
    (False for the tokens of missing views) and `pooled (B, V, C)` (zeros for missing views). Only real views go
    through the CNN, so padding never touches batch-norm statistics.
    """

    def __init__(self, backbone: str) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0, global_pool="")
        self.num_features: int = self.backbone.num_features

    def load_pretrained_backbone(self) -> None:
        """Copy timm's pretrained (ImageNet) weights for this backbone into the model (downloads them once)."""
        try:
            pretrained = timm.create_model(self.backbone_name, pretrained=True, num_classes=0, global_pool="")
        except Exception as error:  # network, missing weights: say what failed and how to proceed
            raise RuntimeError(
                f"Could not fetch pretrained weights for timm backbone {self.backbone_name!r}: {error}. Connect to "
                "the Hugging Face Hub, pre-download them, or set `visual_pretrained=False` to train from scratch."
            ) from error
        self.backbone.load_state_dict(pretrained.state_dict())

    def forward(
        self, pixel_values: torch.Tensor, view_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pixel_values, view_mask = checked_views(pixel_values, view_mask)
        batch, views = pixel_values.shape[:2]
        features = self.backbone.forward_features(pixel_values[view_mask])
        if features.dim() == 4:  # CNN: (n, C, h, w) -> (n, h*w, C)
            features = features.flatten(2).transpose(1, 2)
        length, channels = features.shape[1:]
        tokens = features.new_zeros(batch, views, length, channels)
        tokens[view_mask] = features
        pooled = tokens.mean(dim=2)
        token_mask = view_mask.repeat_interleave(length, dim=1)
        return tokens.reshape(batch, views * length, channels), token_mask, pooled
