"""The `radiology-report-generation` pipeline: chest X-ray studies (one or more views each) in, reports out.

Exported with every hf-rrg model (`custom_pipelines` in `config.json`), so that
``pipeline(model="org/model", trust_remote_code=True)(image)`` works where hf-rrg is not installed; in a process
that imported hf-rrg it is also registered under the same task name (`hf_rrg.hub.register_pipeline`).

Inputs of one call (what the image processor's `load_image` reads: a path to a PNG/JPEG/DICOM file, bytes, a
`PIL.Image`, a numpy array or torch tensor, a `datasets` image dict):

- one image -> one single-view study -> ``[{"generated_text": report}]``;
- a tuple of images, or ``{"images": [view, view, ...]}`` -> one study with several views -> as above;
- a list of the above (a list inside the list is one multi-view study) -> one result per study, in order.

Keyword arguments (at construction or per call): ``generate_kwargs`` (a dict passed to ``model.generate``, e.g.
``{"num_beams": 1}``), ``max_new_tokens``, ``num_beams`` and ``num_return_sequences`` (shortcuts for the same),
``max_views`` (views each study is padded to; default the image processor's ``max_views``, else the model's
``config.max_views``) and ``batch_size`` (studies generated together).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import Pipeline

PIPELINE_TASK = "radiology-report-generation"


class RadiologyReportGenerationPipeline(Pipeline):
    """Report generation for chest X-ray studies with any hf-rrg model and its `RRGProcessor`."""

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.image_processor is None or self.tokenizer is None:
            raise ValueError(
                f"The {PIPELINE_TASK} pipeline needs the model's processor (image processor + tokenizer); pass "
                "`processor=AutoProcessor.from_pretrained(model_dir)` or load from a folder that has "
                "processor_config.json, tokenizer.json and tokenizer_config.json."
            )

    def _sanitize_parameters(
        self,
        generate_kwargs: dict[str, Any] | None = None,
        max_new_tokens: int | None = None,
        num_beams: int | None = None,
        num_return_sequences: int | None = None,
        max_views: int | None = None,
        **unknown: Any,
    ) -> tuple[dict, dict, dict]:
        if unknown:
            raise TypeError(
                f"{PIPELINE_TASK} pipeline got unexpected argument(s) {sorted(unknown)}; pass generation settings "
                "in `generate_kwargs={...}`."
            )
        preprocess: dict[str, Any] = {}
        if max_views is not None:
            preprocess["max_views"] = max_views
        forward: dict[str, Any] = dict(generate_kwargs or {})
        for name, value in (
            ("max_new_tokens", max_new_tokens),
            ("num_beams", num_beams),
            ("num_return_sequences", num_return_sequences),
        ):
            if value is not None:
                if name in forward and forward[name] != value:
                    raise ValueError(
                        f"`{name}` is given twice, directly and in generate_kwargs, with different values."
                    )
                forward[name] = value
        return preprocess, forward, {}

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        """Generate the report of one study, or one report per study for a list of studies (see module doc)."""
        if isinstance(inputs, list):
            if not inputs:
                raise ValueError("Got an empty list of studies; pass at least one image.")
            inputs = [tuple(item) if isinstance(item, list) else item for item in inputs]
        return super().__call__(inputs, **kwargs)

    def _views_per_study(self, max_views: int | None) -> int:
        for value in (max_views, getattr(self.image_processor, "max_views", None), self.model.config.max_views):
            if value is not None:
                return int(value)
        return 1

    def preprocess(self, inputs: Any, max_views: int | None = None) -> dict[str, torch.Tensor]:
        views = list(_study_views(inputs))
        if not views:
            raise ValueError("A study without images was given; every study needs at least one image.")
        limit = self._views_per_study(max_views)
        if len(views) > limit:
            raise ValueError(
                f"A study has {len(views)} views but this model reads at most {limit} (max_views); pass fewer views "
                "per study, or several single-view studies as a list."
            )
        features = self.image_processor([views], max_views=limit, return_tensors="pt")
        return {"pixel_values": features["pixel_values"].to(self.dtype), "view_mask": features["view_mask"]}

    def _forward(self, model_inputs: dict[str, torch.Tensor], **generate_kwargs: Any) -> dict[str, torch.Tensor]:
        batch = model_inputs["pixel_values"].shape[0]
        sequences = self.model.generate(
            pixel_values=model_inputs["pixel_values"], view_mask=model_inputs["view_mask"], **generate_kwargs
        )
        return {"sequences": sequences.reshape(batch, -1, sequences.shape[-1])}

    def postprocess(self, model_outputs: dict[str, torch.Tensor]) -> list[dict[str, str]]:
        sequences = model_outputs["sequences"][0]
        reports = self.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        return [{"generated_text": report} for report in reports]


def _study_views(inputs: Any) -> tuple:
    """The views of one study: a tuple of sources, ``{"images": [...]}``, or one source."""
    if isinstance(inputs, tuple):
        return inputs
    if isinstance(inputs, Mapping) and "images" in inputs:
        images = inputs["images"]
        return tuple(images) if isinstance(images, (list, tuple)) else (images,)
    return (inputs,)


__all__ = ["PIPELINE_TASK", "RadiologyReportGenerationPipeline"]
