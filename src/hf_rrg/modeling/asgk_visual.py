"""ASGK's visual branch with internal auxiliary signals (§3.3, Fig. 2; Eq. 9).

global DenseNet-121 -> feature maps f_c (C x h x w; 1024 x 7 x 7 at 224 px) and pooled f_g (C)
-> heat map -> region -> crop of the *input image* resized to `region_size` -> local DenseNet-121 -> f_l
-> fusion f_f = f_g + f_l (or f_g * f_l). Three linear tag classifiers read f_g, f_l and f_f.

Two heat-map procedures (`heatmap_mode`):

- "max_abs" (Eq. 9): H = max_k |f_c^k| on the h x w grid, min-max normalised to [0, 1], threshold τ (0.7, §4 and
  Fig. 3), the largest connected component of grid cells, its bounding box mapped to image pixels (cell (r, c)
  covers rows [floor(r H / h), ceil((r + 1) H / h)) and the same for columns). timm's feature maps end with the
  backbone's last ReLU, so |f_c| = f_c here.
- "official" (the official code, `Attention_gen_patchs`): the channel *sum* of the last block's maps *before* the
  final ReLU (DenseNet's `norm5` output), min-max normalised, scaled to uint8 (255 · x, truncated), upsampled
  bilinearly (half-pixel centres, as OpenCV's `resize`) to the input image's size, kept where the 0-255 value is
  above 255 · τ (178: OpenCV's `threshold(heat, 178, 255, THRESH_BINARY)`), the largest connected component of
  *pixels* (8-connected; ties: the first in raster order, as `skimage.measure.label` numbers them) and its bounding
  box. The official code slices the crop as `[min:max]` and so drops the box's last row and column; the box here
  keeps them (ends exclusive, max + 1).

The crop is not differentiable (the box is discrete); both DenseNets get gradients through f_g and f_l.
Connected components: a breadth-first search over the grid ("max_abs", 49 cells at 224 px) or, on the pixel grid
("official"), a union-find over the runs of each row.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .configuration_asgk import ASGKConfig
from .visual_extractor import checked_views


def heat_map(features: torch.Tensor, mode: str = "max_abs") -> torch.Tensor:
    """(B, C, h, w) feature maps -> (B, h, w) heat maps in [0, 1].

    "max_abs": H = max_k |f_c^k| (Eq. 9); "official": the sum over channels on the grid (the official procedure
    works on pixels: `official_heat_map`). Each map is min-max normalised; a constant map becomes all ones (no
    region stands out: the whole image is the region).
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (batch, channels, h, w), got {tuple(features.shape)}")
    if mode == "max_abs":
        heat = features.abs().amax(dim=1)
    elif mode == "official":
        heat = features.sum(dim=1)
    else:
        raise ValueError(f"heat-map mode must be max_abs or official, got {mode!r}")
    flat = heat.flatten(1)
    low, high = flat.amin(dim=1)[:, None, None], flat.amax(dim=1)[:, None, None]
    span = high - low
    constant = span <= 1e-12
    normalised = (heat - low) / torch.where(constant, torch.ones_like(span), span)
    return torch.where(constant, torch.ones_like(normalised), normalised)


def largest_component(mask: torch.Tensor, weights: torch.Tensor | None = None, connectivity: int = 8) -> torch.Tensor:
    """The largest connected component of a (h, w) bool mask, as a bool mask.

    Components are 4- or 8-connected. Ties in size go to the component with the larger sum of `weights` (the heat),
    then to the one met first in raster order. An empty mask gives an empty mask.
    """
    if mask.dim() != 2:
        raise ValueError(f"mask must be (h, w), got {tuple(mask.shape)}")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    grid = mask.detach().cpu().bool().tolist()
    heat = weights.detach().cpu().float().tolist() if weights is not None else None
    h, w = len(grid), len(grid[0]) if grid else 0
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    seen = [[False] * w for _ in range(h)]
    best: list[tuple[int, int]] = []
    best_key = (-1, -math.inf)
    for r0 in range(h):
        for c0 in range(w):
            if not grid[r0][c0] or seen[r0][c0]:
                continue
            cells, queue = [], deque([(r0, c0)])
            seen[r0][c0] = True
            while queue:
                r, c = queue.popleft()
                cells.append((r, c))
                for dr, dc in steps:
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < h and 0 <= cc < w and grid[rr][cc] and not seen[rr][cc]:
                        seen[rr][cc] = True
                        queue.append((rr, cc))
            key = (len(cells), sum(heat[r][c] for r, c in cells) if heat is not None else 0.0)
            if key > best_key:
                best, best_key = cells, key
    out = torch.zeros(h, w, dtype=torch.bool)
    for r, c in best:
        out[r, c] = True
    return out.to(mask.device)


def component_box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """(row_start, row_end, col_start, col_end) of a non-empty (h, w) mask, ends exclusive, in grid cells."""
    rows, cols = mask.nonzero(as_tuple=True)
    if rows.numel() == 0:
        raise ValueError("the mask is empty: it has no bounding box")
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def box_to_pixels(
    box: tuple[int, int, int, int], grid_size: tuple[int, int], image_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A grid box (r0, r1, c0, c1) -> the pixel box (y0, y1, x0, x1) it covers in an image (ends exclusive).

    Cell r of h covers rows [floor(r H / h), ceil((r + 1) H / h)), so the box always covers the whole cells."""
    (r0, r1, c0, c1), (h, w), (height, width) = box, grid_size, image_size
    return (
        (r0 * height) // h,
        -((-r1 * height) // h),
        (c0 * width) // w,
        -((-c1 * width) // w),
    )


def region_boxes(
    heat: torch.Tensor, threshold: float, image_size: tuple[int, int], connectivity: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, h, w) heat maps -> (pixel boxes (B, 4) as y0, y1, x0, x1; region masks (B, h, w)): per map, the
    bounding box of the largest connected component of H >= τ."""
    boxes, masks = [], []
    for single in heat:
        component = largest_component(single >= threshold, single, connectivity)
        if not component.any():  # cannot happen on a normalised map (its max is 1), kept for safety
            component = torch.ones_like(component)
        grid_box = component_box(component)
        boxes.append(box_to_pixels(grid_box, tuple(single.shape), image_size))
        masks.append(component)
    return torch.tensor(boxes, dtype=torch.long, device=heat.device), torch.stack(masks)


def pre_activation_module(backbone: nn.Module) -> nn.Module:
    """The backbone's last activation module (DenseNet's `norm5.act`, a ResNet's last `act3`): its input is the last
    block's feature map before the final ReLU, which the official heat map sums."""
    activations = [m for m in backbone.modules() if isinstance(m, (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.LeakyReLU))]
    if not activations:
        raise ValueError(f"{type(backbone).__name__} has no activation module; heatmap_mode 'official' needs one")
    return activations[-1]


def official_heat_map(maps: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(n, C, h, w) pre-activation feature maps -> (n, H, W) heat maps on the image's pixels, values k/255.

    Channel sum, min-max normalisation, uint8 (255 · x, truncated), bilinear upsampling to `image_size` with
    half-pixel centres, rounded to uint8 again (the official code's `cv2.resize` of the uint8 map). A constant map
    becomes all 255 (the whole image is the region)."""
    if maps.dim() != 4:
        raise ValueError(f"feature maps must be (batch, channels, h, w), got {tuple(maps.shape)}")
    cam = maps.double().sum(dim=1)
    low = cam.flatten(1).amin(dim=1)[:, None, None]
    cam = cam - low
    high = cam.flatten(1).amax(dim=1)[:, None, None]
    constant = high <= 0
    scaled = torch.floor(255.0 * cam / torch.where(constant, torch.ones_like(high), high))
    scaled = torch.where(constant, torch.full_like(scaled, 255.0), scaled)
    upsampled = F.interpolate(scaled.unsqueeze(1), size=tuple(image_size), mode="bilinear", align_corners=False)
    return (torch.round(upsampled.squeeze(1)).clamp(0, 255) / 255.0).float()


def _row_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, starts, ends) of the horizontal runs of True in an (H, W) mask, in raster order (ends exclusive)."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    change = np.diff(padded, axis=1)
    rows, starts = np.nonzero(change == 1)
    _, ends = np.nonzero(change == -1)
    return rows, starts, ends


def largest_pixel_component(mask: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """The largest connected component of an (H, W) bool mask (8- or 4-connected); ties go to the component whose
    first pixel comes first in raster order (as `skimage.measure.label` numbers them). Runs of each row are joined
    to the touching runs of the row above with a union-find, so the cost grows with the number of runs."""
    rows, starts, ends = _row_runs(mask)
    out = np.zeros(mask.shape, dtype=bool)
    if rows.size == 0:
        return out
    parent = list(range(rows.size))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    reach = 1 if connectivity == 8 else 0  # 8-connected runs also touch diagonally
    row_first = np.searchsorted(rows, np.arange(mask.shape[0] + 1))
    for r in range(1, mask.shape[0]):
        above, here = range(row_first[r - 1], row_first[r]), range(row_first[r], row_first[r + 1])
        j = above.start
        for i in here:
            while j < above.stop and ends[j] + reach <= starts[i]:
                j += 1
            k = j
            while k < above.stop and starts[k] < ends[i] + reach:
                a, b = root(i), root(k)
                if a != b:
                    parent[max(a, b)] = min(a, b)  # the root is the component's first run in raster order
                k += 1
    roots = np.array([root(i) for i in range(rows.size)])
    sizes = np.bincount(roots, weights=ends - starts)
    best = int(np.flatnonzero(sizes == sizes.max())[0])  # the largest; ties: the first in raster order
    for i in np.flatnonzero(roots == best):
        out[rows[i], starts[i] : ends[i]] = True
    return out


def largest_pixel_components(mask: torch.Tensor, connectivity: int = 8) -> torch.Tensor:
    """`largest_pixel_component` of each (H, W) mask of an (n, H, W) batch. An empty mask stays empty."""
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    masks = mask.detach().cpu().bool().numpy()
    out = np.stack([largest_pixel_component(m, connectivity) for m in masks]) if len(masks) else masks
    return torch.from_numpy(out).to(mask.device)


def official_region_boxes(
    heat: torch.Tensor, threshold: float, connectivity: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, H, W) pixel heat maps (values k/255) -> (pixel boxes (n, 4) as y0, y1, x0, x1; region masks (n, H, W)):
    the bounding box of the largest connected component of the pixels above `threshold` (strictly, as OpenCV's
    THRESH_BINARY). A map without such a pixel keeps the whole image."""
    levels = torch.round(heat * 255.0)
    masks = largest_pixel_components(levels > round(threshold * 255.0, 6), connectivity)
    boxes = []
    for index, component in enumerate(masks):
        if not component.any():
            masks[index] = True
            component = masks[index]
        boxes.append(component_box(component))
    return torch.tensor(boxes, dtype=torch.long, device=heat.device), masks


def crop_regions(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop each (3, H, W) image of a (B, 3, H, W) batch to its pixel box (y0, y1, x0, x1) and resize the crop to
    size x size (bilinear)."""
    crops = []
    for image, (y0, y1, x0, x1) in zip(images, boxes.tolist()):
        crop = image[:, y0:y1, x0:x1].unsqueeze(0)
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False))
    return torch.cat(crops) if crops else images.new_zeros(0, images.size(1), size, size)


@dataclass
class ASGKVisualOutput(ModelOutput):
    """Per study: pooled features (B, C) averaged over its views (f_g, f_l, f_f; f_l and f_f are None without the
    internal signals), the classifiers' tag logits (B, N) and, per view, heat maps and region masks (B, V, h, w) on
    the feature grid ("max_abs") or (B, V, H, W) on the image's pixels ("official"), and pixel boxes (B, V, 4)
    (zeros for missing views)."""

    global_features: torch.Tensor | None = None
    local_features: torch.Tensor | None = None
    fused_features: torch.Tensor | None = None
    global_logits: torch.Tensor | None = None
    local_logits: torch.Tensor | None = None
    fusion_logits: torch.Tensor | None = None
    heat_maps: torch.Tensor | None = None
    region_masks: torch.Tensor | None = None
    region_boxes: torch.Tensor | None = None

    @property
    def input_features(self) -> torch.Tensor:
        """f_input of the graph encoder: f_f with the internal signals, else f_g."""
        return self.fused_features if self.fused_features is not None else self.global_features


def _backbone(name: str) -> nn.Module:
    return timm.create_model(name, pretrained=False, num_classes=0, global_pool="")


class ASGKVisualExtractor(nn.Module):
    """Global + local backbones and the three tag classifiers (§3.3). Named `visual_extractor` in the model, so
    the two-group optimizer gives it `lr_visual` (§4: 1e-5 in the final step)."""

    def __init__(self, config: ASGKConfig) -> None:
        super().__init__()
        self.backbone_name = config.visual_backbone
        self.heatmap_mode = config.heatmap_mode
        self.threshold = config.effective_heatmap_threshold
        self.connectivity = config.heatmap_connectivity
        self.region_size = config.region_size
        self.fusion = config.fusion
        self.global_backbone = _backbone(config.visual_backbone)
        self.num_features: int = self.global_backbone.num_features
        self.global_classifier = nn.Linear(self.num_features, config.num_tags)
        if config.use_internal_signals:
            self.local_backbone = _backbone(config.visual_backbone)
            self.local_classifier = nn.Linear(self.num_features, config.num_tags)
            self.fusion_classifier = nn.Linear(self.num_features, config.num_tags)
        else:
            self.local_backbone = self.local_classifier = self.fusion_classifier = None

    def load_pretrained_backbone(self) -> None:
        """ImageNet weights into both backbones (the paper trains them from scratch; `visual_pretrained`)."""
        try:
            pretrained = timm.create_model(self.backbone_name, pretrained=True, num_classes=0, global_pool="")
        except Exception as error:  # network, missing weights: say what failed and how to proceed
            raise RuntimeError(
                f"Could not fetch pretrained weights for timm backbone {self.backbone_name!r}: {error}. Connect to "
                "the Hugging Face Hub, pre-download them, or set `visual_pretrained=False` (the paper's setting)."
            ) from error
        for backbone in (self.global_backbone, self.local_backbone):
            if backbone is not None:
                backbone.load_state_dict(pretrained.state_dict())

    def feature_maps(self, images: torch.Tensor, local: bool = False) -> torch.Tensor:
        """(n, 3, H, W) -> (n, C, h, w) feature maps of the global (or local) backbone."""
        backbone = self.local_backbone if local else self.global_backbone
        features = backbone.forward_features(images)
        if features.dim() != 4:
            raise ValueError(f"backbone {self.backbone_name!r} must give (n, C, h, w) feature maps for the heat map")
        return features

    def global_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The global backbone's feature maps and, for the official heat map, the same maps before the final
        activation (a copy of that activation's input, kept by a forward pre-hook; None in "max_abs" mode)."""
        if self.heatmap_mode != "official":
            return self.feature_maps(images), None
        kept: list[torch.Tensor] = []

        def keep(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            kept.append(inputs[0].detach().clone())  # cloned: the activation may work in place

        handle = pre_activation_module(self.global_backbone).register_forward_pre_hook(keep)
        try:
            maps = self.feature_maps(images)
        finally:
            handle.remove()
        return maps, kept[-1]

    def regions(
        self, maps: torch.Tensor, pre_activation: torch.Tensor | None, image_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(heat maps, pixel boxes (n, 4), region masks) of the configured procedure: grid-level maps and masks for
        "max_abs", pixel-level for "official"."""
        if pre_activation is None:
            heat = heat_map(maps.detach().float(), self.heatmap_mode)
            boxes, masks = region_boxes(heat, self.threshold, image_size, self.connectivity)
            return heat, boxes, masks
        heat = official_heat_map(pre_activation, image_size)
        boxes, masks = official_region_boxes(heat, self.threshold, self.connectivity)
        return heat, boxes, masks

    def forward(self, pixel_values: torch.Tensor, view_mask: torch.Tensor | None = None) -> ASGKVisualOutput:
        pixel_values, view_mask = checked_views(pixel_values, view_mask)
        batch, views = pixel_values.shape[:2]
        images = pixel_values[view_mask]  # (n, 3, H, W), real views only
        maps, pre_activation = self.global_maps(images)
        pooled_global = maps.mean(dim=(2, 3))
        heat, boxes, masks = self.regions(maps, pre_activation, tuple(images.shape[-2:]))
        pooled_local = None
        if self.local_backbone is not None:
            crops = crop_regions(images, boxes, self.region_size)
            pooled_local = self.feature_maps(crops, local=True).mean(dim=(2, 3))

        weights = view_mask.to(pooled_global.dtype)
        counts = weights.sum(dim=1, keepdim=True)

        def per_study(per_view: torch.Tensor) -> torch.Tensor:
            full = per_view.new_zeros(batch, views, per_view.size(-1))
            full[view_mask] = per_view
            return full.sum(dim=1) / counts

        def per_view_grid(values: torch.Tensor) -> torch.Tensor:
            full = values.new_zeros(batch, views, *values.shape[1:])
            full[view_mask] = values
            return full

        f_g = per_study(pooled_global)
        output = ASGKVisualOutput(
            global_features=f_g,
            global_logits=self.global_classifier(f_g),
            heat_maps=per_view_grid(heat),
            region_masks=per_view_grid(masks),
            region_boxes=per_view_grid(boxes),
        )
        if pooled_local is not None:
            f_l = per_study(pooled_local)
            f_f = f_g + f_l if self.fusion == "sum" else f_g * f_l
            output.local_features, output.fused_features = f_l, f_f
            output.local_logits = self.local_classifier(f_l)
            output.fusion_logits = self.fusion_classifier(f_f)
        return output

    def branch_logits(self, output: ASGKVisualOutput) -> list[torch.Tensor]:
        """The logits of the classifiers that exist (global; local and fusion with the internal signals)."""
        return [x for x in (output.global_logits, output.local_logits, output.fusion_logits) if x is not None]
