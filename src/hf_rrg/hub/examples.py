"""Example chest X-rays shipped with every export and Space: real images of the hf-rrg demo set whose own licence
allows redistribution and adaptation for any purpose with attribution (CC BY), credited where they are shipped."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..resources import resource_dir

EXAMPLES_DIR = "examples"
DEMO_METADATA = Path("demo") / "data" / "metadata.jsonl"
# Licences of the demo set that allow shipping the image in any repo, commercial or not, with attribution.
PERMISSIVE_LICENCES = ("CC BY 4.0", "CC BY")
EXAMPLE_COUNT = 2


@dataclass(frozen=True)
class ExampleImage:
    """One demo image: its file, the name it is shipped under, its licence, source page and author credit."""

    path: Path
    name: str
    licence: str
    source_url: str
    credit: str


def example_images(count: int = EXAMPLE_COUNT) -> list[ExampleImage]:
    """The first `count` CC BY images of the demo set (by id), PA views only."""
    folder = resource_dir("datasets_scripts")
    metadata = folder / DEMO_METADATA
    if not metadata.is_file():
        raise FileNotFoundError(f"{metadata} is missing: the demo set ships the example images; reinstall hf-rrg.")
    rows = [json.loads(line) for line in metadata.read_text(encoding="utf-8").splitlines() if line.strip()]
    chosen = sorted((row for row in rows if row["license"] in PERMISSIVE_LICENCES and row.get("view") == "PA"),
                    key=lambda row: row["id"])[:count]  # fmt: skip
    return [
        ExampleImage(
            path=metadata.parent / row["file_name"],
            name=Path(row["file_name"]).name,
            licence=row["license"],
            source_url=row["source_url"],
            credit=row.get("credit") or "the authors of the linked article",
        )
        for row in chosen
    ]


def copy_examples(folder: Path, count: int = EXAMPLE_COUNT) -> list[str]:
    """Copy the example images into `folder`/examples; returns their paths relative to `folder`."""
    target = folder / EXAMPLES_DIR
    target.mkdir(parents=True, exist_ok=True)
    names = []
    for example in example_images(count):
        shutil.copyfile(example.path, target / example.name)
        names.append(f"{EXAMPLES_DIR}/{example.name}")
    return names


def attribution(count: int = EXAMPLE_COUNT) -> str:
    """Markdown crediting the shipped example images (their licence asks for it)."""
    lines = [
        f"- `{EXAMPLES_DIR}/{example.name}`: {example.licence}, from <{example.source_url}> ({example.credit}); "
        "downscaled in the hf-rrg demo set (COVID-19 Image Data Collection, Cohen et al. 2020)."
        for example in example_images(count)
    ]
    return "The example images are real chest X-rays under their own licences:\n\n" + "\n".join(lines)


__all__ = ["EXAMPLES_DIR", "ExampleImage", "attribution", "copy_examples", "example_images"]
