"""PEIR Gross (CoAtt §4.1): gross-pathology images with one-sentence captions, from a person's local copy.

The PEIR digital library (http://peir.path.uab.edu/library/) is not redistributable, and there is no official
packaged release, so this builder reads a local copy in a small documented layout (see README.md):

    <data_dir>/captions.tsv            one line per image: <image path relative to data_dir> TAB <caption>
    <data_dir>/<sub-category>/<name>.jpg

The sub-category is the first folder of the image path (21 in the paper's 7,442 pairs; empty when the image sits
at the top level). Splits: a seeded random draw of `split_counts` (validation, test) images, the rest train, or,
by default, a stable SHA-256 hash split of the image path with `split_ratios`.

Load with `hf_rrg.data.load_builder("peir_gross", data_dir)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import datasets

from hf_rrg.data import DEFAULT_SPLIT_RATIOS, counted_split, deterministic_split

_DESCRIPTION = "PEIR Gross (Jing et al., ACL 2018): gross pathology images with one-sentence captions, local copy."
CAPTIONS_FILE = "captions.tsv"


@dataclass
class PEIRGrossConfig(datasets.BuilderConfig):
    """Options of the PEIR Gross builder.

    Attributes:
        captions_file: the caption table (default `<data_dir>/captions.tsv`).
        split_ratios: train/validation/test ratios of the hash split (used without `split_counts`).
        split_counts: (validation, test) image counts drawn at random with `split_seed`, the rest train.
        split_seed: seed of the `split_counts` draw.
        skip_missing_images: drop rows whose image is missing (and say how many) instead of failing.
    """

    captions_file: str | None = None
    split_ratios: tuple[float, float, float] = DEFAULT_SPLIT_RATIOS
    split_counts: tuple[int, int] | None = None
    split_seed: int = 0
    skip_missing_images: bool = False


class PEIRGross(datasets.GeneratorBasedBuilder):
    """PEIR Gross image-caption pairs (one view per example)."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = PEIRGrossConfig

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=datasets.Features(
                {
                    "id": datasets.Value("string"),
                    "images": datasets.List(datasets.Image()),
                    "report": datasets.Value("string"),
                    "category": datasets.Value("string"),
                    "image_path": datasets.List(datasets.Value("string")),
                }
            ),
        )

    def _rows(self) -> tuple[Path, list[tuple[str, str, int]]]:
        if not self.config.data_dir and not self.config.captions_file:
            raise ValueError("peir_gross needs data_dir=<your PEIR Gross folder> (or captions_file=...)")
        table = Path(self.config.captions_file or Path(self.config.data_dir) / CAPTIONS_FILE).expanduser()
        if not table.is_file():
            raise FileNotFoundError(
                f"PEIR Gross caption table {table} does not exist; write one line per image: "
                "<image path relative to the folder><TAB><caption> (see datasets_scripts/peir_gross/README.md)"
            )
        rows = []
        for number, line in enumerate(table.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip():
                raise ValueError(f"{table} line {number}: expected '<image path><TAB><caption>', got {line!r:.120}")
            if not parts[1].strip():
                raise ValueError(f"{table} line {number}: the caption of {parts[0]!r} is empty")
            rows.append((parts[0].strip(), " ".join(parts[1].split()), number))
        if not rows:
            raise ValueError(f"PEIR Gross caption table {table} has no rows")
        seen: dict[str, int] = {}
        for image, _, number in rows:
            if image in seen:
                raise ValueError(f"{table}: image {image!r} is listed twice (lines {seen[image]} and {number})")
            seen[image] = number
        return table.parent, rows

    def _split_of(self, images: list[str]) -> dict[str, str]:
        if self.config.split_counts is None:
            return {image: deterministic_split(image, self.config.split_ratios) for image in images}
        return counted_split(images, self.config.split_counts, self.config.split_seed)

    def _split_generators(self, dl_manager):
        root, rows = self._rows()
        missing = [image for image, _, _ in rows if not (root / image).is_file()]
        if missing and not self.config.skip_missing_images:
            raise FileNotFoundError(
                f"{len(missing)} PEIR Gross images listed in the caption table are missing under {root} "
                f"(e.g. {missing[:3]}); fix the paths or pass skip_missing_images=True"
            )
        if missing:
            print(f"peir_gross: skipped {len(missing)} rows with missing images.")
        rows = [row for row in rows if row[0] not in set(missing)]
        split_of = self._split_of([image for image, _, _ in rows])
        splits: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
        for image, caption, _ in rows:
            path = root / image
            category = Path(image).parts[0] if len(Path(image).parts) > 1 else ""
            splits[split_of[image]].append(
                {
                    "id": Path(image).with_suffix("").as_posix(),
                    "images": [{"path": str(path), "bytes": None}],
                    "report": caption,
                    "category": category,
                    "image_path": [str(path)],
                }
            )
        return [
            datasets.SplitGenerator(name=name, gen_kwargs={"examples": examples})
            for name, examples in splits.items()
            if examples
        ]

    def _generate_examples(self, examples):
        for example in examples:
            yield example["id"], example
