"""Move tensors between an official state dict and an hf-rrg model, strictly: every official tensor must find its
home and every tensor of the model must be filled, or the conversion stops with the keys listed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..modeling.transformer_layers import SinusoidalPositions
from .checkpoint import list_keys
from .key_maps import ITHN_HEAD, LABEL_PRIOR, ZEROS, KeyMap
from .vocabulary import NEVER_LOGIT, VocabularyMap

EMBEDDING_KEY = "decoder.embed_tokens.lut.weight"
LOGITS_KEYS = ("lm_head.weight", "lm_head.bias")
PROTOTYPES_KEY = "prototype_network.prototypes"
POSITION_TOLERANCE = 1e-4


@dataclass
class Filled:
    """The model's new state and what the conversion did beyond copying: official tensors with no place in hf-rrg
    (their values, for the card) and our tensors filled by rule."""

    state: dict[str, torch.Tensor]
    unused: dict[str, Any] = field(default_factory=dict)
    filled: dict[str, str] = field(default_factory=dict)


def _hint(extra: set[str], model: nn.Module) -> str:
    if any(key in ITHN_HEAD or key == "temp_3" for key in extra):
        return " These are ITHN's heads: convert with method ithn (add --backbone-only for the plain backbone)."
    if any(key.startswith("encoder_decoder.model.fuse_feature") for key in extra):
        return " The checkpoint has a separate word fusion layer: set model.share_fusion_layer=false."
    if any(".protypes" in key or ".memory_matrix" in key or ".rm." in key for key in extra):
        return " Is it a checkpoint of another method (R2Gen has .rm., R2GenCMN .memory_matrix, XProNet .protypes)?"
    return f" Check that the checkpoint is one of {type(model).__name__}'s method and that the model settings match."


def _check_positions(official: dict[str, torch.Tensor], keys: tuple[str, ...]) -> None:
    for key in keys:
        table = official[key]
        if table.dim() != 3 or table.size(0) != 1:
            raise ValueError(f"official position table {key} has shape {tuple(table.shape)}, expected (1, length, d)")
        expected = SinusoidalPositions(table.size(-1), 0.0).table(0, table.size(1), table.device)
        if not torch.allclose(table.float(), expected, atol=POSITION_TOLERANCE):
            raise ValueError(
                f"official position table {key} is not the sinusoid table hf-rrg computes (max difference "
                f"{(table.float() - expected).abs().max().item():.3g}); this checkpoint's positions were changed."
            )


def _to_ours(key: str, tensors: list[torch.Tensor], target: torch.Tensor, vocab: VocabularyMap) -> torch.Tensor:
    value = tensors[0]
    if key.endswith(EMBEDDING_KEY):
        value = vocab.embedding_to_ours(value)
    elif key.endswith(LOGITS_KEYS):
        value = vocab.logits_to_ours(value, 0.0 if key.endswith("weight") else NEVER_LOGIT)
    elif key.endswith(PROTOTYPES_KEY) and value.numel() == target.numel():
        value = value.reshape(target.shape)
    return value


def _from_ours(key: str, value: torch.Tensor, vocab: VocabularyMap) -> torch.Tensor:
    if key.endswith(EMBEDDING_KEY):
        return vocab.embedding_to_official(value)
    if key.endswith(LOGITS_KEYS):
        return vocab.logits_to_official(value)
    if key.endswith(PROTOTYPES_KEY):
        return value.flatten(0, 1).clone()
    return value.clone()


def official_to_ours(
    model: nn.Module,
    official: dict[str, torch.Tensor],
    key_map: KeyMap,
    vocab: VocabularyMap,
    fills: dict[str, torch.Tensor] | None = None,
) -> Filled:
    """The model's state dict filled from `official`; `fills` gives the tensors of `key_map.filled` rules that
    need data (the label-head prior). Raises ValueError listing missing, unexpected, untied or mis-shaped keys."""
    ours = model.state_dict()
    sources: dict[str, tuple[str, ...]] = {}
    unmapped = []
    for key in ours:
        if key in key_map.filled:
            continue
        names = key_map.official_keys(key)
        if not names:
            unmapped.append(key)
        else:
            sources[key] = names
    if unmapped:
        raise ValueError(f"hf-rrg has no official counterpart for {len(unmapped)} tensor(s) of "
                         f"{type(model).__name__}: {list_keys(unmapped)}")  # fmt: skip
    expected = {name for names in sources.values() for name in names} | set(key_map.positional) | set(key_map.unused)
    missing, extra = expected - set(official), set(official) - expected
    problems = []
    if missing:
        problems.append(f"{len(missing)} key(s) the model needs are missing from the checkpoint: {list_keys(missing)}")
    if extra:
        problems.append(f"{len(extra)} key(s) of the checkpoint have no place in {type(model).__name__}: "
                        f"{list_keys(extra)}.{_hint(extra, model)}")  # fmt: skip
    if problems:
        raise ValueError("The checkpoint does not match the model: " + "; ".join(problems))
    _check_positions(official, key_map.positional)

    result = Filled(state={})
    for key, names in sources.items():
        tensors = [official[name] for name in names]
        for name, tensor in zip(names[1:], tensors[1:]):
            if not torch.equal(tensor, tensors[0]):
                raise ValueError(f"{names[0]} and {name} are one tensor saved twice in the official model, but "
                                 "they differ in this checkpoint; it was edited after training.")  # fmt: skip
        value = _to_ours(key, tensors, ours[key], vocab)
        if value.shape != ours[key].shape:
            raise ValueError(
                f"{names[0]} has shape {tuple(value.shape)} where {key} needs {tuple(ours[key].shape)} (after the "
                "vocabulary mapping); a model setting differs from the checkpoint's: set it with --set model.<name>=."
            )
        result.state[key] = value.to(ours[key].dtype)
    for key, rule in key_map.filled.items():
        if rule == ZEROS:
            result.state[key] = torch.zeros_like(ours[key])
        elif rule == LABEL_PRIOR:
            result.state[key] = (fills or {})[key].to(ours[key].dtype)
        result.filled[key] = rule
    for name in key_map.unused:
        tensor = official[name]
        result.unused[name] = round(float(tensor), 6) if tensor.numel() == 1 else f"tensor {tuple(tensor.shape)}"
    return result


def ours_to_official(model: nn.Module, key_map: KeyMap, vocab: VocabularyMap, position_length: int = 5000) -> dict:
    """The model's weights in the official layout and vocabulary (the inverse of `official_to_ours`): what the
    official code would save for this model. Filled tensors are left out (the official model has none), official
    position tables are written as the official code builds them, unused official tensors take the value of the
    tensor of ours standing in for them."""
    ours = model.state_dict()
    official: dict[str, torch.Tensor] = {}
    for key, value in ours.items():
        if key in key_map.filled:
            continue
        for name in key_map.official_keys(key) or ():
            official[name] = _from_ours(key, value, vocab)
    for name in key_map.positional:
        d_model = official["encoder_decoder.logit.weight"].size(1)
        official[name] = SinusoidalPositions(d_model, 0.0).table(0, position_length, torch.device("cpu"))[None]
    for name, source in key_map.unused_source.items():
        official[name] = ours[source].clone()
    return official
