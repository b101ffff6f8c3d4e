"""COV-CTR (COVID-19 CT Reports; Li, Wang, Chang, Liang 2020, the ASGK paper): 728 lung CT images from published
papers (349 COVID-19, 379 non-COVID) with reports written by three radiologists, as a `datasets` builder.

The dataset is not redistributed by hf-rrg. Point `data_dir` at a local copy in the layout of the release its
project page (github.com/mlii0117/COV-CTR) links: one flat folder `COV-CTR/` holding the image files (.png/.jpg)
and `reports_ZH_EN.csv` with the columns

    image_id       the image file name in the folder
    findings       the Chinese report (findings)
    terminologies  the report's medical tags (Chinese terms, separated by commas / 、 / ；)
    COVID          1 for COVID-19, 0 otherwise
    impression     the Chinese impression
    reports_En     the English translation of the report

Images may also sit in `<data_dir>/images/`. The paper splits 7:1:2 at random; here a SHA-256 hash of the image id
(`deterministic_split`) gives a stable 0.7 / 0.1 / 0.2 split. An image id listed twice keeps its first row (the
others are counted and reported). Chinese reports are tokenised per character with the `chinese_char` cleaner.

Load with `hf_rrg.data.load_builder("cov_ctr", "/path/to/COV-CTR", language="zh")`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import datasets

from hf_rrg.data import deterministic_split

_DESCRIPTION = "COV-CTR: COVID-19 lung CT images with Chinese (and English) radiology reports and medical tags."
_HOMEPAGE = "https://github.com/mlii0117/COV-CTR"
REPORTS_FILE = "reports_ZH_EN.csv"
REQUIRED_COLUMNS = ("image_id", "findings", "terminologies", "COVID", "impression", "reports_En")
_TAG_SEPARATORS = re.compile(r"[,，、;；/\s]+")


@dataclass
class CovCtrConfig(datasets.BuilderConfig):
    """Options of the COV-CTR builder.

    Attributes:
        reports_file: the report table (default `<data_dir>/reports_ZH_EN.csv`).
        image_dir: the image folder (default `<data_dir>/images` when it exists, else `data_dir`).
        language: `report` text: "zh" (the `findings` column, the paper's setting) or "en" (`reports_En`).
        include_impression: zh: append the `impression` column to the findings.
        split_ratios: train/validation/test ratios of the hash split (paper: 7:1:2).
        split_salt: text mixed into the split hash.
        skip_missing_images: drop rows whose image is missing (and say how many) instead of failing.
    """

    reports_file: str | None = None
    image_dir: str | None = None
    language: str = "zh"
    include_impression: bool = False
    split_ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    split_salt: str = ""
    skip_missing_images: bool = False


def split_terminologies(text: str) -> list[str]:
    """The tags of a `terminologies` cell, in order, without duplicates."""
    tags: list[str] = []
    for part in _TAG_SEPARATORS.split(text or ""):
        part = part.strip()
        if part and part not in tags:
            tags.append(part)
    return tags


class CovCtr(datasets.GeneratorBasedBuilder):
    """COV-CTR from a local copy."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = CovCtrConfig

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            homepage=_HOMEPAGE,
            features=datasets.Features(
                {
                    "id": datasets.Value("string"),
                    "images": datasets.List(datasets.Image()),
                    "report": datasets.Value("string"),
                    "findings_zh": datasets.Value("string"),
                    "impression_zh": datasets.Value("string"),
                    "report_en": datasets.Value("string"),
                    "terminologies": datasets.List(datasets.Value("string")),
                    "covid": datasets.Value("int32"),
                    "image_path": datasets.List(datasets.Value("string")),
                }
            ),
        )

    def _paths(self) -> tuple[Path, Path]:
        if not self.config.data_dir:
            raise ValueError(
                "cov_ctr needs data_dir: the local COV-CTR folder with reports_ZH_EN.csv and the images "
                f"(see {_HOMEPAGE})"
            )
        data_dir = Path(self.config.data_dir)
        table = Path(self.config.reports_file) if self.config.reports_file else data_dir / REPORTS_FILE
        if not table.is_file():
            raise FileNotFoundError(
                f"COV-CTR report table {table} does not exist; put reports_ZH_EN.csv from the release into data_dir "
                "or pass reports_file=..."
            )
        if self.config.image_dir:
            images = Path(self.config.image_dir)
        else:
            images = data_dir / "images" if (data_dir / "images").is_dir() else data_dir
        return table, images

    def _split_generators(self, dl_manager):
        if self.config.language not in ("zh", "en"):
            raise ValueError(f"cov_ctr language must be zh or en, got {self.config.language!r}")
        table, image_dir = self._paths()
        with open(table, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise ValueError(f"{table} lacks the column(s) {missing}; COV-CTR's table has {list(REQUIRED_COLUMNS)}")
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
        splits: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
        seen: set[str] = set()
        duplicates, absent = 0, []
        for row in rows:
            image_id = row["image_id"]
            if not image_id:
                continue
            if image_id in seen:
                duplicates += 1
                continue
            seen.add(image_id)
            path = image_dir / image_id
            if not path.is_file():
                absent.append(image_id)
                continue
            findings, impression, english = row["findings"], row["impression"], row["reports_En"]
            if self.config.language == "zh":
                report = findings + (impression if self.config.include_impression else "")
            else:
                report = english
            if not report:
                continue
            split = deterministic_split(image_id, self.config.split_ratios, salt=self.config.split_salt)
            splits[split].append({
                "id": image_id, "images": [{"path": str(path), "bytes": None}], "report": report,
                "findings_zh": findings, "impression_zh": impression, "report_en": english,
                "terminologies": split_terminologies(row["terminologies"]),
                "covid": int(row["COVID"]) if row["COVID"].lstrip("-").isdigit() else -1,
                "image_path": [image_id],
            })  # fmt: skip
        if absent and not self.config.skip_missing_images:
            raise FileNotFoundError(
                f"{len(absent)} COV-CTR image(s) listed in {table.name} are missing from {image_dir} (first: "
                f"{absent[:3]}); fix image_dir or pass skip_missing_images=True"
            )
        if absent:
            print(f"cov_ctr: skipped {len(absent)} rows whose image is missing.")
        if duplicates:
            print(f"cov_ctr: {duplicates} repeated image_id row(s) ignored (the first row of each id is kept).")
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"examples": examples})
            for split, examples in splits.items()
            if examples
        ]

    def _generate_examples(self, examples):
        for example in examples:
            yield example["id"], example
