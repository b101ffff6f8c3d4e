"""Hub export: a training run -> a self-contained model repository (code, weights, processor, model card), the
upload to the Hub, and the `radiology-report-generation` pipeline in-process.

Names are imported on first use, so that `hf-rrg --help` (which registers `commands`) does not load torch.
"""

from ..modeling.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "export": ("custom_pipelines_entry", "export_model"),
        "loading": ("check_model_dir", "load_model_and_processor"),
        "model_card": ("model_index", "render_model_card"),
        "pipeline_registration": ("register_pipeline", "report_pipeline"),
        "push": ("PushResult", "push_to_hub"),
        "run_folder": ("RunInfo", "read_run"),
    },
)
