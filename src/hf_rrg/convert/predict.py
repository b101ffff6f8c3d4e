"""`hf-rrg predict`: the reports a saved (or converted) model writes for a dataset split, as the JSONL file
`hf-rrg evaluate` scores (`id`, `prediction`, `reference` per study)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

SPLITS = ("train", "validation", "test")


def reference_labels(label_file: str | Path, ids: list[str], config: Any) -> torch.Tensor:
    """XProNet's labels of the reference reports (the paper's protocol), in the model's slot order."""
    from ..xpronet.labels import read_label_file

    names = getattr(config, "observation_names", None) or getattr(
        getattr(config, "backbone_config", None), "observation_names", None
    )
    if names is None:
        raise ValueError("--labels applies to models that read observation labels (XProNet, ITHN + XProNet).")
    return read_label_file(label_file).tensor(ids, names)


def predict_split(
    model_dir: str | Path,
    dataset: str,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    split: str = "test",
    labels: str | Path | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    device: str | None = None,
    generate_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Generate the report of every study of `dataset`'s `split` with the model folder's own generation settings
    (overridden by `generate_kwargs`) and write them, with their references, to `out` (JSONL)."""
    from tqdm.auto import tqdm

    from ..data import load_builder
    from ..hub.loading import load_model_and_processor

    if split not in SPLITS:
        raise ValueError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}.")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}.")
    model, processor = load_model_and_processor(model_dir, device=device)
    data = load_builder(dataset, data_dir, split=split)
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for start in tqdm(range(0, len(data), batch_size), desc=f"predict {split}", unit="batch", file=sys.stderr):
            rows = data[start : start + batch_size]
            inputs = processor(images=rows["images"])
            inputs = {key: value.to(model.device) for key, value in inputs.items()}
            if labels is not None:
                inputs["observation_labels"] = reference_labels(labels, rows["id"], model.config).to(model.device)
            with torch.no_grad():
                ids = model.generate(**inputs, **(generate_kwargs or {}))
            texts = processor.batch_decode(ids, skip_special_tokens=True)
            for example_id, text, reference in zip(rows["id"], texts, rows["report"]):
                handle.write(json.dumps({"id": example_id, "prediction": text, "reference": reference}) + "\n")
    partial.replace(out)
    return out
