"""Step 4 of DCRRG (§3.4): P-Tuning v2 through PEFT — `PrefixTuningConfig(prefix_projection=True)` (PEFT's
P-Tuning v2; `PromptEncoderConfig` is v1) plus the randomly re-initialised classification head (the decoder's
Linear output layer, saved with the adapter via `modules_to_save`), everything else frozen.

- `prefix_tuning_config(model, ...)` the PEFT config sized to the decoder (layers, heads, d_model).
- `add_prefix_adapter(model, ...)` -> `DCRRGPeftModel` (a `PeftModelForSeq2SeqLM`) with only the prefix encoder and
  the head trainable; `peft_model.generate(pixel_values=...)` writes full reports through the adapter.
- `AutoPeftModelForImageTextToText.from_pretrained(adapter)` loads an adapter folder or Hub repo alone: the base
  model named in `adapter_config.json` through `AutoModelForImageTextToText`, wrapped as a `DCRRGPeftModel`.
- `generate_with_adapter(peft_model, pixel_values, ...)` the same reports for any PEFT wrapper of DCRRG, also PEFT's
  stock `PeftModelForSeq2SeqLM` (what `peft.PeftModel.from_pretrained` returns), by passing the `<bos>` prompt.
- `merge_prefix(peft_model)` -> a plain `DCRRGForConditionalGeneration` with the prefix key/values and the head
  baked in (`config.prefix_length`), so the exported model writes full reports without PEFT (remote code, the
  pipeline, the metrics treat it like any other hf-rrg model).

The known trap (verified in `tests/test_dcrrg.py`): PEFT passes the prefix as `past_key_values` while transformers
5's `generate()` passes its own `cache`; the DCRRG model writes the prefix into that cache at the first step.

Why a subclass: PEFT 0.21's `PeftModelForSeq2SeqLM.generate` refuses a prompt-learning adapter without `input_ids`
("input_ids must be provided for Peft model generation"): it assumes a text encoder. DCRRG reads pixels, and its
decoder prompt is `<bos>`, which transformers takes from `input_ids` when the main input is not text. So
`DCRRGPeftModel.generate` fills it in; the prefix injection stays PEFT's. PEFT's generic `AutoPeftModel` cannot load
any prompt-learning adapter (it refuses a config with a `task_type`, and without one PEFT builds a plain `PeftModel`
that never passes the prefix), and PEFT has no Auto class for image-text-to-text models: hence
`AutoPeftModelForImageTextToText`. PEFT's `AutoPeftModelForSeq2SeqLM` works too (DCRRG is registered for
`AutoModelForSeq2SeqLM`), with PEFT's stock wrapper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import PeftConfig, PeftModelForSeq2SeqLM

from ..modeling.configuration_dcrrg import DCRRGConfig
from ..modeling.modeling_dcrrg import DCRRGForConditionalGeneration

HEAD_MODULE = "lm_head"
ADAPTER_CONFIG = "adapter_config.json"


class DCRRGPeftModel(PeftModelForSeq2SeqLM):
    """PEFT's seq2seq wrapper for a pixel-input DCRRG model: `generate(pixel_values=...)` (or positionally, as the
    base model) writes full reports through the adapter; the `<bos>` decoder prompt PEFT insists on is filled in.
    `save_pretrained` writes a model card for the adapter (`hf_rrg.hub.adapter_card`) instead of PEFT's template."""

    def generate(self, pixel_values: torch.Tensor | None = None, **kwargs: Any) -> Any:
        if pixel_values is not None:
            kwargs["pixel_values"] = pixel_values
        if "input_ids" not in kwargs:
            prompt = kwargs.pop("decoder_input_ids", None)
            kwargs["input_ids"] = prompt if prompt is not None else bos_prompt(self, *_batch_and_device(kwargs))
        return super().generate(**kwargs)

    def create_or_update_model_card(self, output_dir: str) -> None:
        """Nothing here: `save_pretrained` writes the card once `adapter_config.json` exists."""

    def save_pretrained(self, save_directory: str | Path, *args: Any, is_main_process: bool = True,
                        **kwargs: Any) -> None:  # fmt: skip
        from ..hub.adapter_card import write_adapter_card

        super().save_pretrained(save_directory, *args, is_main_process=is_main_process, **kwargs)
        if is_main_process:
            write_adapter_card(Path(save_directory))


def _batch_and_device(inputs: dict[str, Any]) -> tuple[int, torch.device]:
    """(batch size, device) of `generate`'s inputs: pixels, precomputed encoder outputs or the text view."""
    for key in ("pixel_values", "text_input_ids"):
        if inputs.get(key) is not None:
            return inputs[key].size(0), inputs[key].device
    encoded = inputs.get("encoder_outputs")
    if encoded is not None:
        hidden = encoded[0] if isinstance(encoded, tuple) else encoded.last_hidden_state
        return hidden.size(0), hidden.device
    raise ValueError("DCRRG's generate needs `pixel_values` (images), `text_input_ids` or `encoder_outputs`")


class AutoPeftModelForImageTextToText:
    """Load a DCRRG adapter folder (or Hub repo) alone: `from_pretrained(adapter)` reads `adapter_config.json`,
    loads its base model (`base_model_name_or_path`, or `base_model=`) with `AutoModelForImageTextToText` and
    returns the `DCRRGPeftModel` in inference mode (PEFT's `AutoPeftModelFor*` pattern; PEFT has no image-text-to-text
    class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise OSError(f"{type(self).__name__} is used through `{type(self).__name__}.from_pretrained(adapter)`")

    @classmethod
    def from_pretrained(cls, adapter: str | Path, *, base_model: str | Path | None = None, revision: str | None = None,
                        adapter_name: str = "default", **kwargs: Any) -> DCRRGPeftModel:  # fmt: skip
        """`adapter`: a folder with `adapter_config.json` or a Hub repo id; `kwargs` go to the base model's
        `from_pretrained` (e.g. `trust_remote_code=True` without hf-rrg's registration, `dtype`)."""
        from transformers import AutoModelForImageTextToText

        if Path(adapter).is_dir() and not (Path(adapter) / ADAPTER_CONFIG).is_file():
            raise ValueError(f"{adapter} holds no {ADAPTER_CONFIG}: pass a folder written by a PEFT model's "
                             "`save_pretrained` (e.g. RUN_DIR/prompt/adapter) or an adapter's Hub repo id")  # fmt: skip
        config = PeftConfig.from_pretrained(str(adapter), revision=revision)
        source = base_model or config.base_model_name_or_path
        if not source:
            raise ValueError(f"{adapter}/{ADAPTER_CONFIG} names no base model; pass base_model=")
        base = AutoModelForImageTextToText.from_pretrained(str(source), revision=config.revision, **kwargs)
        return load_adapter(base, adapter, adapter_name=adapter_name, revision=revision)


def load_adapter(base: DCRRGForConditionalGeneration, adapter: str | Path, **kwargs: Any) -> DCRRGPeftModel:
    """`base` with the adapter of folder/repo `adapter`, as a `DCRRGPeftModel` in inference mode (`kwargs`: those
    of `peft.PeftModel.from_pretrained`)."""
    from peft import PeftModel

    loaded = PeftModel.from_pretrained(base, str(adapter), **kwargs)
    if not isinstance(loaded, PeftModelForSeq2SeqLM):
        raise TypeError(f"{adapter} is a {type(loaded).__name__} adapter; DCRRG adapters are SEQ_2_SEQ_LM")
    loaded.__class__ = DCRRGPeftModel  # a subclass adding methods only: the loaded state is PEFT's own
    return loaded.eval()


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
    base_model_id: str | None = None,
) -> DCRRGPeftModel:
    """Freeze `model`, re-initialise its output head (§3.4) and wrap it with a P-Tuning v2 prefix adapter.
    Trainable afterwards: the prefix encoder (embedding + 2-layer MLP) and the head copy, nothing else.
    `base_model_id`: the Hub id of `model` for `adapter_config.json` and the card (default: the folder `model` was
    loaded from, which `hf-rrg push --base-model` replaces at upload)."""
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
    config = prefix_tuning_config(model, num_virtual_tokens, encoder_hidden_size)
    config.base_model_name_or_path = base_model_id or model.name_or_path or None  # as `peft.get_peft_model` does
    return DCRRGPeftModel(model, config)


def bos_prompt(peft_model: Any, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(batch, 1) `<bos>`: the decoder prompt PEFT's seq2seq `generate` needs as `input_ids`."""
    bos = peft_model.get_base_model().config.bos_token_id
    return torch.full((batch, 1), bos, dtype=torch.long, device=device)


def generate_with_adapter(peft_model: Any, pixel_values: torch.Tensor, **kwargs) -> Any:
    """`peft_model.generate(pixel_values=...)` for any PEFT wrapper of DCRRG, also PEFT's stock
    `PeftModelForSeq2SeqLM`, which needs the `<bos>` prompt as `input_ids` (a `DCRRGPeftModel` does not)."""
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
    "AutoPeftModelForImageTextToText",
    "DCRRGPeftModel",
    "add_prefix_adapter",
    "bos_prompt",
    "count_trainable",
    "generate_with_adapter",
    "load_adapter",
    "merge_prefix",
    "prefix_key_values",
    "prefix_tuning_config",
]
