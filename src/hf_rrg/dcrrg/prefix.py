"""Step 4 of DCRRG (§3.4): P-Tuning v2 through PEFT — `PrefixTuningConfig(prefix_projection=True)` (PEFT's
P-Tuning v2; `PromptEncoderConfig` is v1) plus the randomly re-initialised classification head (the decoder's
Linear output layer, saved with the adapter via `modules_to_save`), everything else frozen.

- `prefix_tuning_config(model, ...)` the PEFT config sized to the decoder (layers, heads, d_model).
- `add_prefix_adapter(model, ...)` -> `PeftModelForSeq2SeqLM` with only the prefix encoder and the head trainable.
- `generate_with_adapter(peft_model, pixel_values, ...)` full reports through the adapter (PEFT's seq2seq
  `generate` insists on `input_ids`; here they are the `<bos>` decoder prompt).
- `merge_prefix(peft_model)` -> a plain `DCRRGForConditionalGeneration` with the prefix key/values and the head
  baked in (`config.prefix_length`), so the exported model writes full reports without PEFT (remote code, the
  pipeline, the metrics treat it like any other hf-rrg model).

The known trap (verified in `tests/test_dcrrg.py`): PEFT passes the prefix as `past_key_values` while transformers
5's `generate()` passes its own `cache`; the DCRRG model writes the prefix into that cache at the first step.
"""

from __future__ import annotations

from typing import Any

import torch

from ..modeling.configuration_dcrrg import DCRRGConfig
from ..modeling.modeling_dcrrg import DCRRGForConditionalGeneration

HEAD_MODULE = "lm_head"


def prefix_tuning_config(
    model: DCRRGForConditionalGeneration,
    num_virtual_tokens: int = 20,
    encoder_hidden_size: int | None = None,
    train_head: bool = True,
) -> Any:
    """PEFT `PrefixTuningConfig` for `model`'s decoder: `prefix_projection=True` (P-Tuning v2's reparameterisation
    MLP, hidden `encoder_hidden_size`, default d_model), one transformer submodule (the decoder), and the output
    head in `modules_to_save` when `train_head` (§3.4's "randomly-initialized classification head").
    The paper gives no prompt length; 20 virtual tokens (a common P-Tuning v2 setting) by default."""
    from peft import PrefixTuningConfig

    config = model.config
    return PrefixTuningConfig(
        task_type="SEQ_2_SEQ_LM",
        num_virtual_tokens=num_virtual_tokens,
        token_dim=config.d_model,
        num_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_transformer_submodules=1,
        prefix_projection=True,
        encoder_hidden_size=encoder_hidden_size or config.d_model,
        modules_to_save=[HEAD_MODULE] if train_head else None,
    )


def add_prefix_adapter(
    model: DCRRGForConditionalGeneration,
    num_virtual_tokens: int = 20,
    encoder_hidden_size: int | None = None,
    reinitialise_head: bool = True,
    seed: int | None = None,
) -> Any:
    """Freeze `model`, re-initialise its output head (§3.4) and wrap it with a P-Tuning v2 prefix adapter.
    Trainable afterwards: the prefix encoder (embedding + 2-layer MLP) and the head copy, nothing else."""
    from peft import get_peft_model

    if model.config.prefix_length:
        raise ValueError(
            "this model already has a merged prefix (config.prefix_length > 0); add an adapter to the step-3 model"
        )
    if seed is not None:
        torch.manual_seed(seed)
    if reinitialise_head:
        model.lm_head.reset_parameters()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return get_peft_model(model, prefix_tuning_config(model, num_virtual_tokens, encoder_hidden_size))


def bos_prompt(peft_model: Any, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(batch, 1) `<bos>`: the decoder prompt PEFT's seq2seq `generate` needs as `input_ids`."""
    bos = peft_model.get_base_model().config.bos_token_id
    return torch.full((batch, 1), bos, dtype=torch.long, device=device)


def generate_with_adapter(peft_model: Any, pixel_values: torch.Tensor, **kwargs) -> Any:
    """`peft_model.generate` for images: full reports written through the prefix (beam 3 by default)."""
    kwargs.setdefault("input_ids", bos_prompt(peft_model, pixel_values.size(0), pixel_values.device))
    return peft_model.generate(pixel_values=pixel_values, **kwargs)


def prefix_key_values(peft_model: Any) -> torch.Tensor:
    """The adapter's prefix as one tensor (num_layers, 2, heads, T_p, head_dim), what `get_prompt` hands the model."""
    from ..modeling.modeling_dcrrg import prefix_from_past_key_values

    base = peft_model.get_base_model()
    with torch.no_grad():
        pairs = prefix_from_past_key_values(peft_model.get_prompt(1), base.config.num_layers)
    return torch.stack([torch.stack([k[0], v[0]]) for k, v in pairs]).detach().clone()


def merge_prefix(peft_model: Any) -> DCRRGForConditionalGeneration:
    """A new `DCRRGForConditionalGeneration` equal to `peft_model` (prefix + tuned head baked in), without PEFT."""
    base = peft_model.get_base_model()
    kv = prefix_key_values(peft_model)
    head = {name: tensor.detach().clone() for name, tensor in _active_head(peft_model).state_dict().items()}
    config = DCRRGConfig.from_dict({**base.config.to_dict(), "prefix_length": kv.size(3)})
    merged = DCRRGForConditionalGeneration(config)
    state = {name: tensor for name, tensor in base.state_dict().items() if not name.startswith(f"{HEAD_MODULE}.")}
    state = {name.replace(f"{HEAD_MODULE}.original_module.", f"{HEAD_MODULE}."): t for name, t in state.items()}
    missing, unexpected = merged.load_state_dict(state, strict=False)
    leftover = [name for name in missing if not name.startswith(HEAD_MODULE) and name != "prefix_key_values"]
    if leftover or unexpected:
        raise ValueError(f"cannot merge: missing {leftover[:5]}, unexpected {unexpected[:5]}")
    merged.lm_head.load_state_dict(head)
    with torch.no_grad():
        merged.prefix_key_values.copy_(kv)
    merged.generation_config = base.generation_config
    return merged.eval()


def _active_head(peft_model: Any) -> torch.nn.Module:
    """The head the adapter uses (PEFT's trainable copy when the head is in `modules_to_save`)."""
    head = getattr(peft_model.get_base_model(), HEAD_MODULE)
    copies = getattr(head, "modules_to_save", None)
    if copies is not None:
        return copies[peft_model.active_adapter]
    return head


def count_trainable(module: torch.nn.Module) -> int:
    """Number of trainable parameter elements."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = [
    "add_prefix_adapter",
    "bos_prompt",
    "count_trainable",
    "generate_with_adapter",
    "merge_prefix",
    "prefix_key_values",
    "prefix_tuning_config",
]
