"""MIMIC-CXR in R2Gen's layout: a `datasets` builder for credentialed, manually downloaded data.

`<data_dir>/annotation.json` holds `train` / `val` / `test` lists of
`{"id", "study_id", "subject_id", "report", "image_path": [...], "split"}` and the images live under
`<data_dir>/images/` (the MIMIC-CXR-JPG `files/` tree, e.g. `images/p10/p10000032/s50414267/<dicom_id>.jpg`).
As in R2Gen, each annotation entry is one example with its first image; `multi_view=True` instead groups
the entries of a study into one example with all their images.

Load with `hf_rrg.data.load_builder("mimic_cxr", data_dir)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import datasets

_CITATION = """\
@article{johnson2019mimic,
  title   = {MIMIC-CXR, a de-identified publicly available database of chest radiographs with free-text reports},
  author  = {Johnson, Alistair E. W. and Pollard, Tom J. and Berkowitz, Seth J. and Greenbaum, Nathaniel R. and
             Lungren, Matthew P. and Deng, Chih-ying and Mark, Roger G. and Horng, Steven},
  journal = {Scientific Data}, volume = {6}, number = {1}, pages = {317}, year = {2019}
}
@article{johnson2019mimicjpg,
  title   = {MIMIC-CXR-JPG, a large publicly available database of labeled chest radiographs},
  author  = {Johnson, Alistair E. W. and Pollard, Tom J. and Greenbaum, Nathaniel R. and Lungren, Matthew P. and
             Deng, Chih-ying and Peng, Yifan and Lu, Zhiyong and Mark, Roger G. and Berkowitz, Seth J. and
             Horng, Steven},
  journal = {arXiv preprint arXiv:1901.07042}, year = {2019}
}
@inproceedings{chen2020generating,
  title     = {Generating Radiology Reports via Memory-driven Transformer},
  author    = {Chen, Zhihong and Song, Yan and Chang, Tsung-Hui and Wan, Xiang},
  booktitle = {Proceedings of EMNLP}, year = {2020}
}
"""

_DESCRIPTION = (
    "MIMIC-CXR: 377,110 chest radiographs from 227,835 studies at the Beth Israel Deaconess Medical Center with "
    "free-text reports. This builder reads R2Gen's preprocessed split (annotation.json + MIMIC-CXR-JPG images)."
)
_HOMEPAGE = "https://physionet.org/content/mimic-cxr-jpg/"
_LICENSE = "PhysioNet Credentialed Health Data License 1.5.0"

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
MIMIC-CXR needs credentialed PhysioNet access and a manual download:
  1. Become a credentialed PhysioNet user (https://physionet.org/settings/credentialing/), complete the required
     CITI "Data or Specimens Only Research" training, and sign the data use agreement of MIMIC-CXR-JPG
     (https://physionet.org/content/mimic-cxr-jpg/).
  2. Download the MIMIC-CXR-JPG `files/` tree (about 570 GB; R2Gen used the images resized so the short side is
     512 px) and put (or link) it at <data_dir>/images/, so that paths such as
     images/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg exist.
  3. Get R2Gen's annotation.json for MIMIC-CXR (linked from https://github.com/zhjohnchan/R2Gen; it is derived from
     the credentialed reports, so it is distributed under the same agreement) and put it at <data_dir>/annotation.json.
Then: hf_rrg.data.load_builder("mimic_cxr", "<data_dir>").  Never redistribute or commit these files."""

_SPLIT_KEYS = {"train": ("train",), "validation": ("val", "validation"), "test": ("test",)}


@dataclass
class MimicCXRConfig(datasets.BuilderConfig):
    """Options of the MIMIC-CXR builder.

    Attributes:
        annotation_file: R2Gen annotation.json (default `<data_dir>/annotation.json`).
        image_dir: image root the annotation's `image_path` entries are relative to (default `<data_dir>/images`).
        multi_view: False = one example per annotation entry with its first image (R2Gen); True = one example
            per study with the first image of each of its entries.
        skip_missing_images: drop examples whose image files are missing (and say how many) instead of failing.
    """

    annotation_file: str | None = None
    image_dir: str | None = None
    multi_view: bool = False
    skip_missing_images: bool = False


class MimicCXR(datasets.GeneratorBasedBuilder):
    """MIMIC-CXR report generation dataset (R2Gen layout)."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = MimicCXRConfig
    BUILDER_CONFIGS = [
        MimicCXRConfig(name="r2gen", version=VERSION, description="R2Gen's annotation.json split")
    ]
    DEFAULT_CONFIG_NAME = "r2gen"

    @property
    def manual_download_instructions(self) -> str:
        return MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=datasets.Features(
                {
                    "id": datasets.Value("string"),
                    "images": datasets.List(datasets.Image()),
                    "report": datasets.Value("string"),
                    "study_id": datasets.Value("int64"),
                    "subject_id": datasets.Value("int64"),
                    "image_ids": datasets.List(datasets.Value("string")),
                    "image_path": datasets.List(datasets.Value("string")),
                }
            ),
            homepage=_HOMEPAGE,
            license=_LICENSE,
            citation=_CITATION,
        )

    def _manual_path(self, value: str | None, default: str, what: str) -> Path:
        if value:
            path = Path(value).expanduser()
        elif self.config.data_dir:
            path = Path(self.config.data_dir) / default
        else:
            raise FileNotFoundError(f"mimic_cxr needs data_dir=<folder>.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
        if not path.exists():
            raise FileNotFoundError(
                f"MIMIC-CXR {what} {path} does not exist.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        return path

    def _read_annotation(self, path: Path) -> dict[str, list[dict]]:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
        out: dict[str, list[dict]] = {}
        for split, keys in _SPLIT_KEYS.items():
            found = [k for k in raw if k.strip() in keys]
            if found:
                out[split] = raw[found[0]]
        unknown = [k for k in raw if not any(k.strip() in keys for keys in _SPLIT_KEYS.values())]
        if unknown or not out:
            raise ValueError(
                f"{path}: unexpected split keys {unknown or list(raw)}; expected train / val / test."
            )
        return out

    def _split_generators(self, dl_manager):
        annotation = self._read_annotation(
            self._manual_path(self.config.annotation_file, "annotation.json", "annotation file")
        )
        image_dir = self._manual_path(self.config.image_dir, "images", "image folder")
        splits: dict[str, list[dict]] = {}
        missing: list[Path] = []
        total = 0
        for split, entries in annotation.items():
            examples = self._examples(entries, image_dir)
            kept = []
            for example in examples:
                absent = [p for p in example["images"] if not Path(p).is_file()]
                total += len(example["images"])
                missing.extend(Path(p) for p in absent)
                if not absent:
                    kept.append(example)
            splits[split] = kept
        if missing and not self.config.skip_missing_images:
            shown = ", ".join(str(p) for p in missing[:3])
            raise FileNotFoundError(
                f"{len(missing)} of {total} MIMIC-CXR image files are missing (first: {shown}); pass "
                f"skip_missing_images=True to drop those examples.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        if missing:
            print(f"mimic_cxr: skipped examples with {len(missing)} missing image files.")
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"examples": examples})
            for split, examples in splits.items()
            if examples
        ]

    def _examples(self, entries: list[dict], image_dir: Path) -> list[dict]:
        for entry in entries:
            if not entry.get("image_path"):
                raise ValueError(f"MIMIC-CXR annotation entry {entry.get('id')!r} has no image_path.")
        if not self.config.multi_view:
            return [
                {
                    "id": str(entry["id"]),
                    "report": entry["report"],
                    "study_id": int(entry["study_id"]),
                    "subject_id": int(entry["subject_id"]),
                    "image_ids": [str(entry["id"])],
                    "image_path": [entry["image_path"][0]],
                    "images": [str(image_dir / entry["image_path"][0])],
                }
                for entry in entries
            ]
        studies: dict[int, dict] = {}
        for entry in entries:
            study_id = int(entry["study_id"])
            study = studies.setdefault(
                study_id,
                {
                    "id": str(study_id),
                    "report": entry["report"],
                    "study_id": study_id,
                    "subject_id": int(entry["subject_id"]),
                    "image_ids": [],
                    "image_path": [],
                    "images": [],
                },
            )
            study["image_ids"].append(str(entry["id"]))
            study["image_path"].append(entry["image_path"][0])
            study["images"].append(str(image_dir / entry["image_path"][0]))
        return list(studies.values())

    def _generate_examples(self, examples):
        for example in examples:
            yield example["id"], example
