"""Where every tensor of an hf-rrg model lives in the official checkpoints of its method, per method family.

Official layouts (read from the public repositories; every model is `visual_extractor` + `encoder_decoder`):

- visual extractor: torchvision's ResNet without its pooling and classifier, `visual_extractor.model.<i>.*`, i the
  child's position (0 conv1, 1 bn1, 4-7 layer1-4); hf-rrg's timm ResNet has the same children in the same order.
- `encoder_decoder.att_embed.0`: the patch projection; `encoder_decoder.logit`: the output layer;
  `encoder_decoder.model.{encoder,decoder}.layers.<n>`: annotated-Transformer layers whose attention projections are
  `linears.0-3` (query, key, value, output) and whose sublayer norms are `sublayer.<j>.norm` (R2Gen names the norm
  parameters `gamma`/`beta`, R2GenCMN and its descendants `a_2`/`b_2`); `tgt_embed.0.lut`: word embeddings;
  `tgt_embed.1.pe` / `src_embed.0.pe`: sinusoidal position tables saved as buffers (hf-rrg computes them).
- R2Gen: the relational memory `encoder_decoder.model.rm` and conditional norms with `mlp_gamma`/`mlp_beta`.
- R2GenCMN: `encoder_decoder.memory_matrix`; the memory attention is one module registered twice, so its weights are
  saved under `encoder_decoder.cmn` and `encoder_decoder.model.cmn` (they must be equal).
- XProNet: `encoder_decoder.protypes` (N_l * N_p rows, class-major), `dim_reduction` (W_pv), the querying attention
  as R2GenCMN's `cmn` (twice), `encoder_decoder.fuse_feature` (image patches) and `encoder_decoder.model.fuse_feature`
  (words). It has no label head: hf-rrg's is filled with a constant prior (see `writer.label_head_prior`).
- ITHN: the backbone's keys plus `img_projection.linear1` and `text_projection.linear1` (no bias) and two learnable
  temperatures, `temp_1` (positive/negative pairs) and `temp_3` (synthesised negatives): the head of hf-rrg's
  `official` ITHN preset, which conversions build.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

ATTENTION_INDEX = {"q": 0, "k": 1, "v": 2, "out": 3, "query": 0, "key": 1, "value": 2}
R2GEN_NORM = {"gamma": "gamma", "beta": "beta"}
CMN_NORM = {"gamma": "a_2", "beta": "b_2"}
ED = "encoder_decoder"
MODEL = f"{ED}.model"

#: Our keys filled without an official tensor: the rule's name (see `writer.FILL_RULES`).
ZEROS = "zeros"
LABEL_PRIOR = "label_prior"

Rename = Callable[[re.Match], tuple[str, ...]]


@dataclass
class KeyMap:
    """Our key -> official key(s) by ordered regular expressions, plus official tensors with no tensor of ours.

    Attributes:
        rules: (pattern over our key, function of the match -> official keys); several keys = one tensor saved
            under several names (they must be equal).
        positional: official position tables, checked against the sinusoid hf-rrg computes.
        filled: our key -> fill rule, for tensors the official model lacks (hf-rrg's additions, absent biases).
        unused: official key -> reason, for official tensors hf-rrg has no place for (recorded in the card).
        unused_source: official key -> our key whose value stands in for it when writing the official layout.
    """

    rules: list[tuple[re.Pattern, Rename]] = field(default_factory=list)
    positional: tuple[str, ...] = ()
    filled: dict[str, str] = field(default_factory=dict)
    unused: dict[str, str] = field(default_factory=dict)
    unused_source: dict[str, str] = field(default_factory=dict)

    def add(self, pattern: str, rename: Rename) -> None:
        self.rules.append((re.compile(pattern + r"\Z"), rename))

    def official_keys(self, key: str) -> tuple[str, ...] | None:
        """The official key(s) of our `key`, or None when no rule matches."""
        for pattern, rename in self.rules:
            match = pattern.match(key)
            if match:
                return rename(match)
        return None

    def prefixed(self, ours: str) -> KeyMap:
        """This map for a model nested under `ours` (ITHN's `backbone.`); official keys are unchanged."""
        nested = KeyMap(positional=self.positional, unused=dict(self.unused), unused_source={
            key: ours + value for key, value in self.unused_source.items()
        })  # fmt: skip
        nested.filled = {ours + key: rule for key, rule in self.filled.items()}
        for pattern, rename in self.rules:
            nested.rules.append((re.compile(re.escape(ours) + pattern.pattern), rename))
        return nested


def _one(template: str) -> Rename:
    return lambda match: (template.format(*match.groups()),)


def _attention(*prefixes: str) -> Rename:
    """`<x>_proj.<param>` -> `<prefix>.linears.<index>.<param>` for every prefix (tied copies)."""

    def rename(match: re.Match) -> tuple[str, ...]:
        *layer, projection, param = match.groups()
        index = ATTENTION_INDEX[projection]
        return tuple(prefix.format(*layer) + f".linears.{index}.{param}" for prefix in prefixes)

    return rename


def _norm(template: str, names: dict[str, str]) -> Rename:
    def rename(match: re.Match) -> tuple[str, ...]:
        *groups, param = match.groups()
        return (template.format(*groups) + "." + names[param],)

    return rename


def visual_child_indices(backbone: nn.Module) -> dict[str, int]:
    """Child name -> position in torchvision's `list(resnet.children())`: timm ResNets with the plain stem only."""
    names = [name for name, _ in backbone.named_children()]
    if names[:8] != ["conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"] or not isinstance(
        backbone.conv1, nn.Conv2d
    ):
        raise ValueError(
            f"the visual backbone ({type(backbone).__name__} with children {names[:8]}) does not have torchvision's "
            "ResNet layout that the official code uses; convert into a model with visual_backbone resnet101 / "
            "resnet101.tv_in1k (or another plain-stem timm ResNet)."
        )
    return {name: index for index, name in enumerate(names[:8])}


def _transformer(key_map: KeyMap, backbone: nn.Module, norm: dict[str, str], conditional: bool) -> None:
    """The parts every family shares: visual extractor, patch projection, encoder, decoder, embeddings, logits."""
    index = visual_child_indices(backbone)
    key_map.add(
        r"encoder\.visual_extractor\.backbone\.(\w+)\.(.+)",
        lambda match: (f"visual_extractor.model.{index[match[1]]}.{match[2]}",) if match[1] in index else (),
    )
    key_map.add(r"encoder\.patch_projection\.0\.(weight|bias)", _one(ED + ".att_embed.0.{}"))
    for side, official_side in (("encoder.transformer", "encoder"), ("decoder", "decoder")):
        layer = rf"{re.escape(side)}\.layers\.(\d+)"
        target = f"{MODEL}.{official_side}.layers.{{}}"
        key_map.add(layer + r"\.self_attn\.(\w+)_proj\.(weight|bias)", _attention(target + ".self_attn"))
        key_map.add(layer + r"\.feed_forward\.(w_[12])\.(weight|bias)", _one(target + ".feed_forward.{}.{}"))
        key_map.add(layer + r"\.norms\.(\d)\.(gamma|beta)", _norm(target + ".sublayer.{}.norm", norm))
        key_map.add(rf"{re.escape(side)}\.norm\.(gamma|beta)", _norm(f"{MODEL}.{official_side}.norm", norm))
    decoder_layer = f"{MODEL}.decoder.layers.{{}}"
    key_map.add(r"decoder\.layers\.(\d+)\.cross_attn\.(\w+)_proj\.(weight|bias)", _attention(decoder_layer + ".src_attn"))
    if conditional:
        key_map.add(
            r"decoder\.layers\.(\d+)\.norms\.(\d)\.(mlp_gamma|mlp_beta)\.(\d)\.(weight|bias)",
            _one(decoder_layer + ".sublayer.{}.norm.{}.{}.{}"),
        )
    key_map.add(r"decoder\.embed_tokens\.lut\.weight", _one(MODEL + ".tgt_embed.0.lut.weight"))
    key_map.add(r"lm_head\.(weight|bias)", _one(ED + ".logit.{}"))


def r2gen_map(model: nn.Module) -> KeyMap:
    """R2Gen (zhjohnchan/R2Gen): no encoder positions, relational memory, conditional layer norms."""
    key_map = KeyMap(positional=(f"{MODEL}.tgt_embed.1.pe",))
    _transformer(key_map, model.encoder.visual_extractor.backbone, R2GEN_NORM, conditional=True)
    key_map.add(r"decoder\.relational_memory\.attn\.(\w+)_proj\.(weight|bias)", _attention(MODEL + ".rm.attn"))
    key_map.add(r"decoder\.relational_memory\.(mlp\.\d|W|U)\.(weight|bias)", _one(MODEL + ".rm.{}.{}"))
    return key_map


def r2gencmn_map(model: nn.Module) -> KeyMap:
    """R2GenCMN (zhjohnchan/R2GenCMN): a memory matrix queried through one attention saved under two names."""
    key_map = KeyMap(positional=(f"{MODEL}.src_embed.0.pe", f"{MODEL}.tgt_embed.1.pe"))
    _transformer(key_map, model.encoder.visual_extractor.backbone, CMN_NORM, conditional=False)
    key_map.add(r"encoder\.memory\.matrix", _one(ED + ".memory_matrix"))
    key_map.add(r"encoder\.memory\.attention\.(\w+)_proj\.(weight|bias)", _attention(ED + ".cmn", MODEL + ".cmn"))
    return key_map


def xpronet_map(model: nn.Module) -> KeyMap:
    """XProNet (Markin-Wang/XProNet): prototypes, W_pv, the querying as R2GenCMN's memory attention, two FCNs."""
    key_map = KeyMap(positional=(f"{MODEL}.src_embed.0.pe", f"{MODEL}.tgt_embed.1.pe"))
    _transformer(key_map, model.encoder.visual_extractor.backbone, CMN_NORM, conditional=False)
    network = r"encoder\.prototype_network\."
    key_map.add(network + "prototypes", _one(ED + ".protypes"))
    key_map.add(network + r"prototype_projection\.(weight|bias)", _one(ED + ".dim_reduction.{}"))
    key_map.add(network + r"querying\.(\w+)_proj\.(weight|bias)", _attention(ED + ".cmn", MODEL + ".cmn"))
    key_map.add(network + r"visual_fusion\.(weight|bias)", _one(ED + ".fuse_feature.{}"))
    key_map.add(network + r"text_fusion\.(weight|bias)", _one(MODEL + ".fuse_feature.{}"))
    for param in ("weight", "bias"):
        key_map.filled[f"encoder.prototype_network.label_head.{param}"] = LABEL_PRIOR
    return key_map


BACKBONE_MAPS: dict[str, Callable[[nn.Module], KeyMap]] = {
    "r2gen": r2gen_map,
    "r2gencmn": r2gencmn_map,
    "xpronet": xpronet_map,
}

#: ITHN's training head in the official checkpoint: official key -> hf-rrg key of `ITHNForConditionalGeneration`.
ITHN_HEAD = {
    "img_projection.linear1.weight": "ithn_head.image_projection.weight",
    "text_projection.linear1.weight": "ithn_head.report_projection.weight",
    "temp_1": "ithn_head.logit_scale",
}
ITHN_SECOND_TEMPERATURE = "temp_3"


def ithn_map(model: nn.Module) -> KeyMap:
    """ITHN (Bhanu068/ITHN): the backbone's map under `backbone.` plus the contrastive head. A head built with the
    official preset (bias-free projections, a second temperature) takes every official tensor; a head built with
    the paper's switches gets zero biases and reads one temperature."""
    backbone, head = model.backbone, model.ithn_head
    key_map = BACKBONE_MAPS[backbone.config.model_type](backbone).prefixed("backbone.")
    for official, ours in ITHN_HEAD.items():
        key_map.add(re.escape(ours), _one(official))
    if head.image_projection.bias is not None:
        for projection in ("image_projection", "report_projection"):
            key_map.filled[f"ithn_head.{projection}.bias"] = ZEROS  # the official projections have no bias
    if head.synthesis_logit_scale is not None:
        key_map.add(re.escape("ithn_head.synthesis_logit_scale"), _one(ITHN_SECOND_TEMPERATURE))
    else:
        key_map.unused[ITHN_SECOND_TEMPERATURE] = (
            "the official code learns a second temperature for the synthesised negatives (S3); this ITHN head has "
            "one, read from temp_1 (training only: generation does not use it)"
        )
        key_map.unused_source[ITHN_SECOND_TEMPERATURE] = "ithn_head.logit_scale"
    return key_map


def ithn_backbone_map(model: nn.Module) -> KeyMap:
    """An ITHN checkpoint converted to its plain backbone (`--backbone-only`): the head's tensors are left out."""
    key_map = BACKBONE_MAPS[model.config.model_type](model)
    for official in (*ITHN_HEAD, ITHN_SECOND_TEMPERATURE):
        key_map.unused[official] = "ITHN's training head: not part of the backbone, which alone generates reports"
    return key_map


def key_map_for(model: nn.Module, ithn_backbone_only: bool = False) -> KeyMap:
    """The key map of an hf-rrg model (its `config.model_type`), or of an ITHN checkpoint's bare backbone."""
    model_type = model.config.model_type
    if ithn_backbone_only:
        return ithn_backbone_map(model)
    if model_type == "ithn":
        return ithn_map(model)
    if model_type not in BACKBONE_MAPS:
        raise ValueError(f"no official checkpoint layout is known for {model_type!r}; supported: r2gen, r2gencmn, "
                         "xpronet, ithn")  # fmt: skip
    return BACKBONE_MAPS[model_type](model)
