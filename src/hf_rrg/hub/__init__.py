"""Hub export: a training run -> a self-contained model repository (code, weights, processor, model card), the
upload to the Hub, and the `radiology-report-generation` pipeline in-process."""

from .export import custom_pipelines_entry, export_model
from .loading import check_model_dir, load_model_and_processor
from .model_card import model_index, render_model_card
from .pipeline_registration import register_pipeline, report_pipeline
from .push import PushResult, push_to_hub
from .run_folder import RunInfo, read_run

__all__ = [
    "PushResult",
    "RunInfo",
    "check_model_dir",
    "custom_pipelines_entry",
    "export_model",
    "load_model_and_processor",
    "model_index",
    "push_to_hub",
    "read_run",
    "register_pipeline",
    "render_model_card",
    "report_pipeline",
]
