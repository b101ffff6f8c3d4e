"""Hub-ready Parquet export with the image bytes embedded (not just the local paths).

Every image is read with hf-rrg's own loader before it is written, so the Parquet only holds images that read back:
a corrupt one is refused naming its file, and a DICOM (which `datasets` cannot decode) is written as the PNG of the
pixels hf-rrg decodes from it. Only file names are kept in the image cells, never the local folders. The output
folder follows the export rules of `hf_rrg.export_folder` (never a user's folder, swapped in whole).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..export_folder import check_output_folder, staged_folder, write_manifest

__all__ = ["export_parquet", "parquet_path"]

EXPORT_KIND = "dataset"  # the kind recorded in the export's manifest (hf_rrg_export.json)


def parquet_path(out_dir: str | Path, split: str) -> Path:
    """`out_dir/data/<split>-00000-of-00001.parquet`, the layout `load_dataset(out_dir)` recognises."""
    return Path(out_dir) / "data" / f"{split}-00000-of-00001.parquet"


def _image_columns(features: Mapping[str, Any]) -> list[str]:
    from datasets.features.features import require_storage_embed

    return [name for name, feature in features.items() if require_storage_embed(feature)]


def _with_decode(feature: Any, decode: bool) -> Any:
    """`feature` with every `datasets.Image` inside it set to `decode`."""
    import datasets
    from datasets.features.features import _visit

    return _visit(feature, lambda f: datasets.Image(decode=decode) if isinstance(f, datasets.Image) else f)


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


def portable_image(image: Mapping[str, Any] | None, failures: list[str]) -> dict[str, Any] | None:
    """One ``{"bytes", "path"}`` image cell made self-contained: bytes embedded, checked with `load_image`, DICOM
    turned into PNG, the path cut to the file name. A cell that cannot be read is kept as it was and its problem
    appended to `failures`."""
    from ..modeling.image_loading import ImageLoadError, is_dicom, load_image

    if image is None or (image.get("bytes") is None and not image.get("path")):
        return None if image is None else dict(image)
    path, data = image.get("path"), image.get("bytes")
    try:
        if data is None:
            data = Path(path).read_bytes()
        decoded = load_image({"bytes": data, "path": path})
    except OSError as error:
        failures.append(f"image file {path} cannot be read ({error.strerror or error})")
        return dict(image)
    except ImageLoadError as error:
        failures.append(str(error))
        return dict(image)
    name = Path(path).name if path else None
    if is_dicom(data, path):
        gray = decoded.convert("L")
        pixels = gray if gray.convert("RGB").tobytes() == decoded.tobytes() else decoded
        buffer = io.BytesIO()
        pixels.save(buffer, format="PNG")
        data = buffer.getvalue()
        name = f"{Path(name).stem}.png" if name else None
    return {"bytes": data, "path": name}


def _portable_cell(cell: Any, failures: list[str]) -> Any:
    if isinstance(cell, list):
        return [_portable_cell(item, failures) for item in cell]
    return portable_image(cell, failures)


def _portable_split(dataset: Any, columns: list[str], split: str) -> Any:
    """`dataset` with every image of `columns` embedded and readable (see `portable_image`); an error naming the
    unreadable files otherwise."""
    for column in columns:
        dataset = dataset.cast_column(column, _with_decode(dataset.features[column], False))
    failures: list[str] = []

    def convert(batch: dict[str, list]) -> dict[str, list]:
        return {column: [_portable_cell(cell, failures) for cell in batch[column]] for column in columns}

    dataset = dataset.map(
        convert, batched=True, batch_size=64, load_from_cache_file=False, desc=f"Checking and embedding images ({split})"
    )
    if failures:
        shown = "; ".join(failures[:5]) + (f"; and {len(failures) - 5} more" if len(failures) > 5 else "")
        raise ValueError(
            f"{len(failures)} image(s) of split {split!r} cannot be exported, because they could not be read back: "
            f"{shown}. Fix or remove them and export again."
        )
    for column in columns:
        dataset = dataset.cast_column(column, _with_decode(dataset.features[column], True))
    return dataset


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
    *,
    overwrite: bool = False,
    sources: Iterable[str | Path] = (),
) -> dict[str, Path]:
    """Write each split to `out_dir/data/<split>-00000-of-00001.parquet` with image bytes embedded.

    Images stored as local paths are read, checked with hf-rrg's loader and embedded (DICOM as PNG), so the files
    are self-contained and read back; each written file is read back to check it. The dataset card `card_path` is
    copied to `out_dir/README.md` with a note after its title saying to load the folder with `load_dataset` (a minimal card listing splits and features is written when it is None).
    `out_dir` must be new or empty, or, with `overwrite`, a previous hf-rrg dataset export; it may not be or contain
    one of `sources` (the source data folders). Returns {split: parquet path}.
    `datasets.load_dataset(str(out_dir))` reads the folder back.
    """
    import datasets

    if isinstance(dataset_dict, datasets.Dataset):
        dataset_dict = datasets.DatasetDict({str(dataset_dict.split or "train"): dataset_dict})
    if not dataset_dict:
        raise ValueError("export_parquet got no splits to write.")
    out_dir = Path(out_dir)
    check_output_folder(out_dir, EXPORT_KIND, [Path(source) for source in sources], overwrite)
    card = None
    if card_path is not None:
        card = Path(card_path)
        if not card.is_file():
            raise FileNotFoundError(f"Dataset card {card} does not exist.")
    with staged_folder(out_dir) as staging:
        for split, dataset in dataset_dict.items():
            path = parquet_path(staging, split)
            path.parent.mkdir(parents=True, exist_ok=True)
            columns = _image_columns(dataset.features)
            if columns:
                dataset = _portable_split(dataset, columns, split)
            dataset.with_format(None).to_parquet(str(path))
            _check_embedded(path, columns)
        if card is not None:
            (staging / "README.md").write_text(_with_export_note(card.read_text(encoding="utf-8")), encoding="utf-8")
        else:
            (staging / "README.md").write_text(_default_card(dataset_dict), encoding="utf-8")
        write_manifest(staging, EXPORT_KIND, (staging / "data").glob("*.parquet"))
    return {split: parquet_path(out_dir, split) for split in dataset_dict}
