"""The `radiology-report-generation` pipeline in a process that imported hf-rrg: registration and construction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..modeling.pipeline_rrg import PIPELINE_TASK, RadiologyReportGenerationPipeline
from .loading import load_model_and_processor


def register_pipeline() -> None:
    """Register the pipeline with `transformers.pipelines.PIPELINE_REGISTRY` (idempotent), so that
    ``pipeline("radiology-report-generation", model=model, processor=processor)`` works in-process."""
    from transformers import AutoModelForImageTextToText
    from transformers.pipelines import PIPELINE_REGISTRY

    current = PIPELINE_REGISTRY.supported_tasks.get(PIPELINE_TASK)
    if current is not None and current.get("impl") is RadiologyReportGenerationPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        PIPELINE_TASK,
        pipeline_class=RadiologyReportGenerationPipeline,
        pt_model=AutoModelForImageTextToText,
        type="multimodal",
    )


def check_device(device: str | int | None) -> None:
    """`device` names a device this machine has: ``cpu``, ``cuda``/``cuda:N`` with a GPU, an index, ``mps``...;
    a ValueError that says what to use otherwise."""
    import torch

    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"--device {device} is not a device ({error}); use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {device}: no CUDA GPU is available on this machine (torch.cuda.is_available() is False); "
                "use --device cpu"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s) (cuda:0 ..); pick one "
                "of them"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available on this machine; use --device cpu")


def report_pipeline(
    model_dir: str | Path,
    *,
    device: str | int | None = None,
    trust_remote_code: bool = False,
    loading_bars: bool = True,
    **pipeline_kwargs: Any,
) -> RadiologyReportGenerationPipeline:
    """Load a saved/exported model folder or a training run folder (checked first: missing or corrupt files are
    named) and return its report-generation pipeline, using hf-rrg's own classes. `device`: ``"cpu"``, ``"cuda"``,
    an index, or None for the first accelerator when there is one; `loading_bars=False` hides transformers'
    weight-loading bars."""
    import torch

    check_device(device)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model, processor = load_model_and_processor(
        model_dir, trust_remote_code=trust_remote_code, loading_bars=loading_bars
    )
    return RadiologyReportGenerationPipeline(
        model=model, processor=processor, task=PIPELINE_TASK, device=device, **pipeline_kwargs
    )
