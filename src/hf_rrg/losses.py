"""Public losses of hf-rrg (implemented in `hf_rrg.modeling.losses`, so that exported Hub models carry them).

>>> import torch
>>> from hf_rrg.losses import xpronet_multilabel_contrastive_loss
>>> features, labels = torch.randn(4, 10, 32), torch.tensor([[1, 0], [1, 1], [0, 1], [0, 1]])
>>> xpronet_multilabel_contrastive_loss(features, labels, margin=0.4, theta=1.75).shape
torch.Size([])
"""

from .modeling.ithn_losses import (
    hardness_schedule,
    image_similarity_loss,
    ithn_clip_loss,
    ithn_similarity_matrix,
    project_onto_line,
    synthesize_hard_negatives,
)
from .modeling.losses import pooled_normalized, xpronet_multilabel_contrastive_loss

__all__ = [
    "hardness_schedule",
    "image_similarity_loss",
    "ithn_clip_loss",
    "ithn_similarity_matrix",
    "pooled_normalized",
    "project_onto_line",
    "synthesize_hard_negatives",
    "xpronet_multilabel_contrastive_loss",
]
