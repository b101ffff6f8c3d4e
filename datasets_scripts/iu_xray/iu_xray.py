"""IU X-Ray (Indiana University Chest X-ray Collection, Open-i): a `datasets` builder with two layouts.

- `r2gen` (default): R2Gen's preprocessed layout, `<data_dir>/annotation.json` (`train` / `val` / `test` lists of
  `{"id", "report", "image_path", "split"}`; a test key of four spaces, as in some copies, is accepted) and
  `<data_dir>/images/<id>/<k>.png`. `report` is the annotation's report (raw FINDINGS).
- `nlm`: the original NLM release, read straight from `<data_dir>/NLMCXR_reports.tgz` (never extracted: the
  reports are CC BY-NC-ND) plus a folder of PNGs named `<parentImage id>.png` (`<data_dir>/NLMCXR_png/`).
  Splits come from an R2Gen `annotation_file` (joined on the number after `CXR` in its ids, which equals the
  XML uid) or from a deterministic hash split of the uid.

Load with `hf_rrg.data.load_builder("iu_xray", data_dir, name="nlm", ...)`.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import datasets

from hf_rrg.data import DEFAULT_SPLIT_RATIOS, counted_split, deterministic_split

_CITATION = """\
@article{demner2016preparing,
  title   = {Preparing a collection of radiology examinations for distribution and retrieval},
  author  = {Demner-Fushman, Dina and Kohli, Marc D. and Rosenman, Marc B. and Shooshan, Sonya E. and
             Rodriguez, Laritza and Antani, Sameer and Thoma, George R. and McDonald, Clement J.},
  journal = {Journal of the American Medical Informatics Association},
  volume  = {23}, number = {2}, pages = {304--310}, year = {2016}
}
@inproceedings{chen2020generating,
  title     = {Generating Radiology Reports via Memory-driven Transformer},
  author    = {Chen, Zhihong and Song, Yan and Chang, Tsung-Hui and Wan, Xiang},
  booktitle = {Proceedings of EMNLP}, year = {2020}
}
"""

_DESCRIPTION = (
    "IU X-Ray: 3,955 de-identified chest X-ray reports with 7,470 images from the Indiana Network for "
    "Patient Care, released by the NLM Open-i service. The `r2gen` config reads R2Gen's preprocessed split "
    "(2,069 / 296 / 590 studies with two views each); the `nlm` config parses the original XML reports."
)
_HOMEPAGE = "https://openi.nlm.nih.gov/faq#collection"
_LICENSE = "CC BY-NC-ND 4.0"

_R2GEN_SPLIT_KEYS = {"train": ("train",), "validation": ("val", "validation"), "test": ("test", "    ", "")}
_REPORT_SECTIONS = ("findings", "impression", "findings+impression", "impression+findings")
_CXR_ID = re.compile(r"^CXR(\d+)")
_XML_NAME = re.compile(r"(?:^|/)ecgen-radiology/(\d+)\.xml$")
# Some parentImage ids carry an extra `_<n>` after `CXR<uid>` that the DICOM metadata ids do not have.
_EXTRA_IMAGE_INDEX = re.compile(r"^(CXR\d+)_\d+_")


@dataclass
class IUXRayConfig(datasets.BuilderConfig):
    """Options of the IU X-Ray builder (paths default to the standard names inside `data_dir`).

    Attributes:
        annotation_file: R2Gen annotation.json (r2gen: default `<data_dir>/annotation.json`; nlm: if given,
            its splits are used and reports not in it are dropped).
        image_dir: r2gen image root (default `<data_dir>/images`).
        reports_archive: nlm reports archive (default `<data_dir>/NLMCXR_reports.tgz`).
        png_dir: nlm PNG folder, files `<parentImage id>.png` (default `<data_dir>/NLMCXR_png`).
        metadata_file: nlm DICOM metadata table for view positions (default
            `<data_dir>/nlmcxr_dicom_metadata.csv.gz`, used when present).
        report_section: nlm `report` text: "findings", "impression", "findings+impression" or
            "impression+findings" (CoAtt §4.1).
        require_report: nlm: drop reports whose `report` text is empty.
        min_images: nlm: drop reports with fewer parentImage ids than this.
        images_required: nlm: True = keep reports with at least one image, every listed image must exist in
            `png_dir`; False = keep all reports, each with the images that exist (possibly none).
        skip_missing_images: drop studies with missing image files (and say how many) instead of failing.
        split_ratios: nlm without annotation_file: train/validation/test ratios of the hash split by uid.
        split_counts: nlm without annotation_file: (validation, test) study counts drawn at random with
            `split_seed`, the rest train (CoAtt §4.1: 500 / 500); replaces `split_ratios`.
        split_seed: seed of the `split_counts` draw.
    """

    annotation_file: str | None = None
    image_dir: str | None = None
    reports_archive: str | None = None
    png_dir: str | None = None
    metadata_file: str | None = None
    report_section: str = "findings"
    require_report: bool = False
    min_images: int = 0
    images_required: bool = True
    skip_missing_images: bool = False
    split_ratios: tuple[float, float, float] = DEFAULT_SPLIT_RATIOS
    split_counts: tuple[int, int] | None = None
    split_seed: int = 0


def _text(element: ET.Element | None) -> str:
    return " ".join((element.text or "").split()) if element is not None else ""


def parse_nlm_report(xml_bytes: bytes) -> dict:
    """Parse one `ecgen-radiology/<uid>.xml` report into plain fields."""
    root = ET.fromstring(xml_bytes)
    sections = {(node.get("Label") or "").lower(): _text(node) for node in root.iter("AbstractText")}
    mesh = root.find("MeSH")
    return {
        "uid": int(root.find("IUXRId").get("id")) if root.find("IUXRId") is not None else -1,
        "comparison": sections.get("comparison", ""),
        "indication": sections.get("indication", ""),
        "findings": sections.get("findings", ""),
        "impression": sections.get("impression", ""),
        "image_ids": [node.get("id") for node in root.findall("parentImage")],
        "mesh_major": [_text(n) for n in mesh.findall("major")] if mesh is not None else [],
        "mesh_automatic": [_text(n) for n in mesh.findall("automatic")] if mesh is not None else [],
    }


def read_nlm_archive(archive: Path) -> list[dict]:
    """All reports in the NLM archive, sorted by uid (the file name's number)."""
    reports = []
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            match = _XML_NAME.search(member.name)
            if not member.isfile() or match is None:
                continue
            report = parse_nlm_report(tar.extractfile(member).read())
            report["uid"] = int(match.group(1))
            reports.append(report)
    if not reports:
        raise ValueError(f"{archive} holds no ecgen-radiology/<uid>.xml reports; is it NLMCXR_reports.tgz?")
    return sorted(reports, key=lambda r: r["uid"])


def read_r2gen_annotation(path: Path) -> dict[str, list[dict]]:
    """R2Gen's annotation.json as {datasets split name: entries}; accepts `test`, four spaces or `val`."""
    if not path.is_file():
        raise FileNotFoundError(
            f"IU X-Ray annotation file {path} does not exist; put R2Gen's annotation.json there or pass "
            "annotation_file=..."
        )
    with open(path, encoding="utf-8") as handle:
        raw = json.load(handle)
    out: dict[str, list[dict]] = {}
    for split, keys in _R2GEN_SPLIT_KEYS.items():
        found = [k for k in raw if k in keys or k.strip() in keys]
        if len(found) > 1:
            raise ValueError(f"{path} has several keys for the {split} split: {found}.")
        if found:
            out[split] = raw[found[0]]
    unknown = [
        k for k in raw if not any(k in keys or k.strip() in keys for keys in _R2GEN_SPLIT_KEYS.values())
    ]
    if unknown or not out:
        raise ValueError(
            f"{path}: unexpected split keys {unknown or list(raw)}; expected train / val / test "
            "(a test key of four spaces is accepted)."
        )
    return out


def _view_positions(metadata_file: Path | None) -> dict[str, str]:
    if metadata_file is None or not metadata_file.is_file():
        return {}
    opener = gzip.open if metadata_file.suffix == ".gz" else open
    with opener(metadata_file, "rt", encoding="utf-8", newline="") as handle:
        return {row["imageid"]: row.get("View Position", "") or "" for row in csv.DictReader(handle)}


def _view_of(image_id: str, views: dict[str, str]) -> str:
    """View position of a parentImage id ("" when unknown)."""
    if image_id in views:
        return views[image_id]
    return views.get(_EXTRA_IMAGE_INDEX.sub(r"\1_", image_id), "")


def _missing_message(missing: list[Path], total: int, what: str) -> str:
    shown = ", ".join(str(p) for p in missing[:3])
    return (
        f"{len(missing)} of {total} image files for {what} are missing (first: {shown}). Put the images there, "
        "or pass skip_missing_images=True to drop the studies that lack them."
    )


class IUXRay(datasets.GeneratorBasedBuilder):
    """IU X-Ray report generation dataset (configs `r2gen` and `nlm`)."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = IUXRayConfig
    BUILDER_CONFIGS = [
        IUXRayConfig(
            name="r2gen", version=VERSION, description="R2Gen's annotation.json + images/<id>/<k>.png"
        ),
        IUXRayConfig(name="nlm", version=VERSION, description="Original NLM XML reports + NLMCXR_png images"),
    ]
    DEFAULT_CONFIG_NAME = "r2gen"

    def _info(self) -> datasets.DatasetInfo:
        features = {
            "id": datasets.Value("string"),
            "images": datasets.List(datasets.Image()),
            "report": datasets.Value("string"),
        }
        if self.config.name == "nlm":
            features.update(
                uid=datasets.Value("int32"),
                image_ids=datasets.List(datasets.Value("string")),
                views=datasets.List(datasets.Value("string")),
                findings=datasets.Value("string"),
                impression=datasets.Value("string"),
                indication=datasets.Value("string"),
                comparison=datasets.Value("string"),
                mesh_major=datasets.List(datasets.Value("string")),
                mesh_automatic=datasets.List(datasets.Value("string")),
            )
        else:
            features["image_path"] = datasets.List(datasets.Value("string"))
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=datasets.Features(features),
            homepage=_HOMEPAGE,
            license=_LICENSE,
            citation=_CITATION,
        )

    def _path(self, value: str | None, default: str) -> Path | None:
        if value:
            return Path(value).expanduser()
        if self.config.data_dir:
            return Path(self.config.data_dir) / default
        return None

    def _split_generators(self, dl_manager):
        if self.config.name == "nlm":
            studies = self._nlm_studies()
        else:
            studies = self._r2gen_studies()
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"studies": items})
            for split, items in studies.items()
            if items
        ]

    def _generate_examples(self, studies):
        for study in studies:
            yield study["id"], study

    def _require_data_dir(self, what: str) -> None:
        if not self.config.data_dir:
            raise ValueError(f"iu_xray ({self.config.name}) needs data_dir=<folder with {what}>.")

    def _drop_missing(self, studies: dict[str, list[dict]], image_key: str) -> dict[str, list[dict]]:
        """Check every study's image files; fail (or drop with skip_missing_images) when some are absent."""
        missing: list[Path] = []
        total = 0
        kept: dict[str, list[dict]] = {}
        for split, items in studies.items():
            kept[split] = []
            for study in items:
                paths = [Path(p) for p in study[image_key]]
                total += len(paths)
                absent = [p for p in paths if not p.is_file()]
                missing.extend(absent)
                if not absent:
                    kept[split].append(study)
        if missing and not self.config.skip_missing_images:
            raise FileNotFoundError(_missing_message(missing, total, f"iu_xray ({self.config.name})"))
        if missing:
            dropped = sum(len(v) for v in studies.values()) - sum(len(v) for v in kept.values())
            print(f"iu_xray: skipped {dropped} studies with {len(missing)} missing image files.")
        return kept

    def _r2gen_studies(self) -> dict[str, list[dict]]:
        self._require_data_dir("annotation.json and images/")
        annotation = read_r2gen_annotation(self._path(self.config.annotation_file, "annotation.json"))
        image_dir = self._path(self.config.image_dir, "images")
        studies: dict[str, list[dict]] = {}
        for split, entries in annotation.items():
            studies[split] = [
                {
                    "id": entry["id"],
                    "report": entry["report"],
                    "image_path": list(entry["image_path"]),
                    "images": [str(image_dir / p) for p in entry["image_path"]],
                }
                for entry in entries
            ]
        studies = self._drop_missing(studies, "images")
        for items in studies.values():
            for study in items:
                study["images"] = [{"path": p, "bytes": None} for p in study["images"]]
        return studies

    def _nlm_report_text(self, report: dict) -> str:
        section = self.config.report_section
        if section not in _REPORT_SECTIONS:
            raise ValueError(f"report_section must be one of {_REPORT_SECTIONS}; got {section!r}.")
        if "+" in section:
            return " ".join(report[part] for part in section.split("+") if report[part])
        return report[section]

    def _nlm_studies(self) -> dict[str, list[dict]]:
        self._require_data_dir("NLMCXR_reports.tgz")
        archive = self._path(self.config.reports_archive, "NLMCXR_reports.tgz")
        if not archive.is_file():
            raise FileNotFoundError(
                f"IU X-Ray reports archive {archive} does not exist; download NLMCXR_reports.tgz from Open-i "
                "(https://openi.nlm.nih.gov/faq#collection) into data_dir or pass reports_archive=..."
            )
        png_dir = self._path(self.config.png_dir, "NLMCXR_png")
        if self.config.images_required and not png_dir.is_dir():
            raise FileNotFoundError(
                f"IU X-Ray PNG folder {png_dir} does not exist; download NLMCXR_png.tgz from Open-i and extract "
                "it there, pass png_dir=..., or pass images_required=False for the reports alone."
            )
        views = _view_positions(self._path(self.config.metadata_file, "nlmcxr_dicom_metadata.csv.gz"))
        split_of: dict[int, str] | None = None
        if self.config.annotation_file:
            split_of = {}
            for split, entries in read_r2gen_annotation(Path(self.config.annotation_file)).items():
                for entry in entries:
                    match = _CXR_ID.match(entry["id"])
                    if match is None:
                        raise ValueError(f"Annotation id {entry['id']!r} does not start with CXR<uid>.")
                    split_of[int(match.group(1))] = split
        studies: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
        min_images = max(self.config.min_images, 1 if self.config.images_required else 0)
        reports = []
        for report in read_nlm_archive(archive):
            report["text"] = self._nlm_report_text(report)
            if (self.config.require_report and not report["text"]) or len(report["image_ids"]) < min_images:
                continue
            if split_of is not None and report["uid"] not in split_of:
                continue
            reports.append(report)
        counted = self.config.split_counts is not None and split_of is None
        drawn = counted_split([r["uid"] for r in reports], self.config.split_counts, self.config.split_seed) if counted else None
        for report in reports:
            text = report.pop("text")
            if split_of is not None:
                split = split_of[report["uid"]]
            elif drawn is not None:
                split = drawn[report["uid"]]
            else:
                split = deterministic_split(str(report["uid"]), self.config.split_ratios)
            paths = [png_dir / f"{i}.png" for i in report["image_ids"]] if png_dir is not None else []
            if not self.config.images_required:
                paths = [p for p in paths if p.is_file()]
            studies[split].append(
                {
                    **report,
                    "id": f"CXR{report['uid']}",
                    "report": text,
                    "views": [_view_of(i, views) for i in report["image_ids"]],
                    "images": [str(p) for p in paths],
                }
            )
        if self.config.images_required:
            studies = self._drop_missing(studies, "images")
        for items in studies.values():
            for study in items:
                study["images"] = [{"path": p, "bytes": None} for p in study["images"]]
        return studies
