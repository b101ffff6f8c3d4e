"""Export an ITHN-trained model as a plain backbone repository (what ITHN is at inference: §3, the heads only
shape training). The ITHN model itself exports with `hf_rrg.hub.export_model` like any hf-rrg model."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..hub.run_folder import METRICS_FILE, MODEL_SUBDIR, read_run


def export_backbone_run(source: str | Path, out_dir: str | Path, **export_kwargs: Any) -> Path:
    """Export the backbone of the ITHN model in `source` (a run folder or an ITHN model folder) to `out_dir` as a
    self-contained Hub repository (`hf_rrg.hub.export_model`: weights, code, processor, the run's metrics and
    training config, model card). The repository loads as the backbone class (e.g. R2GenCMN) and generates the
    same reports as the ITHN model. `export_kwargs` go to `export_model` (repo_id, model_name, license, overwrite).
    """
    from ..hub.export import export_model
    from ..hub.loading import load_model_and_processor

    run = read_run(source)
    model, processor = load_model_and_processor(run.model_dir)
    if not hasattr(model, "backbone_model"):
        raise ValueError(
            f"{run.model_dir} holds a {type(model).__name__}, not an ITHN model; export it with `hf-rrg export`"
        )
    if not export_kwargs.get("repo_id"):
        export_kwargs.setdefault("model_name", f"{Path(source).resolve().name}-{model.config.backbone_type}")
    staging = Path(tempfile.mkdtemp(prefix="ithn-backbone-"))
    try:
        backbone_dir = staging / MODEL_SUBDIR
        model.backbone_model().save_pretrained(backbone_dir)
        processor.save_pretrained(backbone_dir)
        base = run.run_dir or run.model_dir
        if (base / METRICS_FILE).is_file():
            shutil.copyfile(base / METRICS_FILE, staging / METRICS_FILE)
        if run.training_config_text is not None and run.training_config_file is not None:
            (staging / run.training_config_file.name).write_text(run.training_config_text, encoding="utf-8")
        return export_model(staging, out_dir, **export_kwargs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


__all__ = ["export_backbone_run"]
