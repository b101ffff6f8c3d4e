"""Hub-ready Parquet export with the image bytes embedded (not just the local paths)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["export_parquet", "parquet_path"]


def parquet_path(out_dir: str | Path, split: str) -> Path:
    """`out_dir/data/<split>-00000-of-00001.parquet`, the layout `load_dataset(out_dir)` recognises."""
    return Path(out_dir) / "data" / f"{split}-00000-of-00001.parquet"


def _image_columns(features: Mapping[str, Any]) -> list[str]:
    from datasets.features.features import require_storage_embed

    return [name for name, feature in features.items() if require_storage_embed(feature)]


def _check_embedded(path: Path, columns: list[str]) -> None:
    """Read the written file back and fail if any image cell kept a path but no bytes."""
    import pyarrow.parquet as pq

    if not columns:
        return
    table = pq.read_table(path, columns=columns)
    for column in columns:
        for cell in table.column(column).to_pylist():
            for image in cell if isinstance(cell, list) else [cell]:
                if image is not None and image.get("bytes") is None:
                    raise ValueError(
                        f"{path}: column {column!r} holds an image without bytes (path {image.get('path')!r}); "
                        "the image file could not be embedded. Check that the source images exist."
                    )


EXPORT_NOTE = (
    "> **This folder is a Parquet export** written by `hf-rrg data export` (images embedded). Load it\n"
    "> with `datasets.load_dataset(\"<this folder or its Hub repo id>\")`: no builder script and no\n"
    "> hf-rrg are needed. Where the card below mentions `load_builder` or a script in\n"
    "> `datasets_scripts/`, it describes how this copy was made from the source data, not how to read it.\n"
)


def _with_export_note(card: str) -> str:
    """`card` with EXPORT_NOTE after its title (after the YAML front matter when it has no `# ` title)."""
    lines = card.splitlines(keepends=True)
    body_start = 0
    if lines and lines[0].strip() == "---":
        closing = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
        body_start = closing + 1 if closing is not None else 0
    title = next((i for i in range(body_start, len(lines)) if lines[i].startswith("# ")), None)
    cut = title + 1 if title is not None else body_start
    head, tail = "".join(lines[:cut]), "".join(lines[cut:])
    if head and not head.endswith("\n"):
        head += "\n"
    return f"{head}\n{EXPORT_NOTE}\n{tail.lstrip(chr(10))}"


def _default_card(dataset_dict: Mapping[str, Any]) -> str:
    first = next(iter(dataset_dict.values()))
    splits = "\n".join(f"| {split} | {len(ds)} |" for split, ds in dataset_dict.items())
    features = "\n".join(f"- `{name}`: {feature!r}" for name, feature in first.features.items())
    return _with_export_note(
        "---\ntask_categories:\n- image-to-text\ntags:\n- medical\n- radiology-report-generation\n---\n\n"
        "# Radiology report generation dataset (exported by hf-rrg)\n\n"
        f"| split | examples |\n|---|---|\n{splits}\n\n## Features\n\n{features}\n"
    )


def export_parquet(
    dataset_dict: Mapping[str, Any],
    out_dir: str | Path,
    card_path: str | Path | None = None,
) -> dict[str, Path]:
    """Write each split to `out_dir/data/<split>-00000-of-00001.parquet` with image bytes embedded.

    Images stored as local paths are read and embedded (`datasets.table.embed_table_storage`), so the files
    are self-contained; each written file is read back to check it. The dataset card `card_path` is copied
    to `out_dir/README.md` with a note after its title saying to load the folder with `load_dataset` (a
    minimal card listing splits and features is written when it is None).
    Returns {split: parquet path}. `datasets.load_dataset(str(out_dir))` reads the folder back.
    """
    import datasets
    from datasets.table import embed_table_storage

    if isinstance(dataset_dict, datasets.Dataset):
        dataset_dict = datasets.DatasetDict({str(dataset_dict.split or "train"): dataset_dict})
    if not dataset_dict:
        raise ValueError("export_parquet got no splits to write.")
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    for split, dataset in dataset_dict.items():
        path = parquet_path(out_dir, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = _image_columns(dataset.features)
        if columns:
            dataset = dataset.with_format("arrow").map(
                embed_table_storage,
                batched=True,
                batch_size=64,
                keep_in_memory=True,
                desc=f"Embedding images ({split})",
            )
        dataset.with_format(None).to_parquet(str(path))
        _check_embedded(path, columns)
        written[split] = path
    readme = out_dir / "README.md"
    if card_path is not None:
        card = Path(card_path)
        if not card.is_file():
            raise FileNotFoundError(f"Dataset card {card} does not exist.")
        readme.write_text(_with_export_note(card.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        readme.write_text(_default_card(dataset_dict), encoding="utf-8")
    return written
