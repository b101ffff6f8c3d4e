"""Custom handler for Hugging Face Inference Endpoints: `hf-rrg export` copies this file as ``handler.py`` into every
model repository. It imports only the standard library and transformers (hf-rrg need not be installed: the
repository's own code is loaded with ``trust_remote_code=True``).

Request body (JSON)::

    {"inputs": "<base64 of a PNG, JPEG or DICOM file>",           # one view, or
     "inputs": ["<base64 view 1>", "<base64 view 2>"],             # the views of ONE study
     "parameters": {"num_beams": 3, "max_new_tokens": 60}}         # optional

A ``data:...;base64,`` prefix is accepted; so are raw bytes and PIL images (what the Endpoints toolkit passes for a
binary request body). Response: ``[{"generated_text": "..."}]`` (one entry per returned sequence). A request that
cannot be served raises a ValueError whose message names the input and what is wrong.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

#: Generation parameters a request may set, with the type each must have.
PARAMETERS: dict[str, type] = {
    "num_beams": int,
    "max_new_tokens": int,
    "num_return_sequences": int,
    "length_penalty": float,
}


class EndpointHandler:
    """Loads the repository's `radiology-report-generation` pipeline once; each call reports one study."""

    def __init__(self, path: str = "") -> None:
        import torch
        from transformers import pipeline

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.pipeline = pipeline(model=path or ".", trust_remote_code=True, device=device)

    def __call__(self, data: dict[str, Any]) -> list[dict[str, str]]:
        if not isinstance(data, dict):
            raise ValueError('The request must be a JSON object: {"inputs": ..., "parameters": {...}}.')
        views = study_views(data.get("inputs"))
        parameters = generation_parameters(data.get("parameters"))
        return self.pipeline(tuple(views), generate_kwargs=parameters)


def study_views(inputs: Any) -> list[Any]:
    """The views of the request's one study, decoded from base64 where they are strings."""
    if inputs is None:
        raise ValueError('The request has no "inputs": send one base64-encoded image, or a list of them (one study).')
    if isinstance(inputs, dict) and "images" in inputs:
        inputs = inputs["images"]
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        raise ValueError('"inputs" is an empty list: send at least one image.')
    return [decode_view(item, f"inputs[{index}]" if len(items) > 1 else "inputs") for index, item in enumerate(items)]


def decode_view(item: Any, name: str) -> Any:
    """Base64 text (optionally a data URL) -> bytes; bytes and images pass through; anything else is an error."""
    if isinstance(item, str):
        text = item.split(",", 1)[1] if item.startswith("data:") and "," in item else item
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                f"{name} is not valid base64: encode the image file's bytes, e.g. base64.b64encode(open(path, "
                "'rb').read()).decode()."
            ) from None
    if isinstance(item, (bytes, bytearray)) or hasattr(item, "convert"):  # raw bytes or a PIL image
        return bytes(item) if isinstance(item, bytearray) else item
    raise ValueError(f"{name} is a {type(item).__name__}; send base64 text of a PNG, JPEG or DICOM file.")


def generation_parameters(parameters: Any) -> dict[str, Any]:
    """The request's generation settings, checked: known names, right types, positive counts."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise ValueError('"parameters" must be an object, e.g. {"num_beams": 1}.')
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"Unknown parameter(s) {unknown}; allowed: {sorted(PARAMETERS)}.")
    checked = {}
    for key, value in parameters.items():
        kind = PARAMETERS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise ValueError(f'Parameter "{key}" must be {"an integer" if kind is int else "a number"}, got {value!r}.')
        if kind is int and value < 1:
            raise ValueError(f'Parameter "{key}" must be at least 1, got {value}.')
        checked[key] = kind(value)
    return checked
