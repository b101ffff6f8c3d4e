"""Validate `hf_rrg.labeling.CheXpertLabeler` against the manual MeSH tags of the IU X-Ray reports.

Reads the original archive (`NLMCXR_reports.tgz`: `ecgen-radiology/<uid>.xml`) with tarfile and
xml.etree, labels FINDINGS + IMPRESSION of every report, and compares "positive or uncertain" with the
report's manual `MeSH/major` tags mapped to CheXpert observations (`MESH_TO_OBSERVATION`).

    python benchmarks/validate_labeler_iu.py [--tgz ../shared/data/iu_xray/NLMCXR_reports.tgz]
        [--show-errors Cardiomegaly]
"""

from __future__ import annotations

import argparse
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hf_rrg.labeling import OBSERVATIONS, CheXpertLabeler

DEFAULT_TGZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "iu_xray" / "NLMCXR_reports.tgz"

#: MeSH major-tag term (the part before the first "/") -> CheXpert observation, where the mapping is sound.
MESH_TO_OBSERVATION: dict[str, str] = {
    "normal": "No Finding",
    "Cardiomegaly": "Cardiomegaly",
    "Pleural Effusion": "Pleural Effusion",
    "Pneumothorax": "Pneumothorax",
    "Pulmonary Atelectasis": "Atelectasis",
    "Pulmonary Edema": "Edema",
    "Pneumonia": "Pneumonia",
    "Consolidation": "Consolidation",
    "Fractures, Bone": "Fracture",
    "Opacity": "Lung Opacity",
    "Airspace Disease": "Lung Opacity",
    "Infiltrate": "Lung Opacity",
    "Nodule": "Lung Lesion",
    "Mass": "Lung Lesion",
}
EVALUATED = list(dict.fromkeys(MESH_TO_OBSERVATION.values()))
#: Extra rows with a wider MeSH mapping: CheXpert labels "pulmonary congestion" and "heart failure" as
#: Edema (uncertain / positive), which IU indexes as separate MeSH terms.
WIDER_ROWS: dict[str, tuple[str, set[str]]] = {
    "Edema (+ Pulmonary Congestion, Heart Failure)": (
        "Edema", {"Pulmonary Edema", "Pulmonary Congestion", "Heart Failure"}),
    "Cardiomegaly (+ Cardiac Shadow/enlarged)": ("Cardiomegaly", {"Cardiomegaly", "Cardiac Shadow/enlarged"}),
}


@dataclass
class IUReport:
    uid: str
    text: str
    mesh_major: list[str]


def read_iu_reports(tgz: Path) -> list[IUReport]:
    """Every report of the archive with non-empty FINDINGS or IMPRESSION, ordered by uid."""
    if not tgz.is_file():
        raise FileNotFoundError(f"IU X-Ray report archive {tgz} not found; pass --tgz <path to NLMCXR_reports.tgz>.")
    reports = []
    with tarfile.open(tgz, "r:gz") as archive:
        for member in archive:
            if not (member.isfile() and member.name.endswith(".xml")):
                continue
            root = ET.fromstring(archive.extractfile(member).read())
            sections = {el.get("Label"): (el.text or "").strip() for el in root.iter("AbstractText")}
            text = " ".join(s for s in (sections.get("FINDINGS", ""), sections.get("IMPRESSION", "")) if s)
            if not text:
                continue
            uid = root.find("uId").get("id")
            majors = [(el.text or "").strip() for el in root.iter("major")]
            reports.append(IUReport(uid, text, majors))
    reports.sort(key=lambda r: int(r.uid.removeprefix("CXR")))
    return reports


def mesh_targets(reports: list[IUReport]) -> np.ndarray:
    """(N, len(EVALUATED)) booleans: does a report carry a MeSH major tag mapped to each observation?"""
    targets = np.zeros((len(reports), len(EVALUATED)), dtype=bool)
    for row, report in enumerate(reports):
        for tag in report.mesh_major:
            observation = MESH_TO_OBSERVATION.get(tag.split("/")[0].strip())
            if observation is not None:
                targets[row, EVALUATED.index(observation)] = True
    return targets


def _scores(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
    tp = int(np.sum(predicted & target))
    fp = int(np.sum(predicted & ~target))
    fn = int(np.sum(~predicted & target))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": int(target.sum()),
            "predicted": int(predicted.sum())}


def evaluate(tgz: Path = DEFAULT_TGZ, labeler: CheXpertLabeler | None = None, progress: bool = False) -> dict:
    """Per-class precision / recall / F1 / support of predicted positive-or-uncertain against MeSH tags."""
    reports = read_iu_reports(Path(tgz))
    labeler = labeler or CheXpertLabeler()
    matrix = labeler.label_matrix([r.text for r in reports], progress=progress)
    columns = [OBSERVATIONS.index(o) for o in EVALUATED]
    predicted = np.isin(matrix[:, columns], (1.0, -1.0))
    targets = mesh_targets(reports)
    per_class = {}
    for j, observation in enumerate(EVALUATED):
        per_class[observation] = _scores(predicted[:, j], targets[:, j])
    for name, (observation, terms) in WIDER_ROWS.items():
        target = np.array([any(t.split("/")[0].strip() in terms or "/".join(t.split("/")[:2]) in terms
                               for t in r.mesh_major) for r in reports])
        pred = np.isin(matrix[:, OBSERVATIONS.index(observation)], (1.0, -1.0))
        per_class[name] = _scores(pred, target)
    return {"n_reports": len(reports), "per_class": per_class, "reports": reports,
            "predicted": predicted, "targets": targets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tgz", type=Path, default=DEFAULT_TGZ)
    parser.add_argument("--show-errors", metavar="OBSERVATION", help="print the disagreements for one class")
    parser.add_argument("--limit", type=int, default=40, help="how many disagreements of each kind to print")
    args = parser.parse_args()
    result = evaluate(args.tgz, progress=True)
    print(f"IU X-Ray reports labelled: {result['n_reports']}")
    print("| observation | MeSH support | predicted | precision | recall | F1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for observation, row in result["per_class"].items():
        print(f"| {observation} | {row['support']} | {row['predicted']} | {row['precision']:.3f} | "
              f"{row['recall']:.3f} | {row['f1']:.3f} |")
    if args.show_errors:
        j = EVALUATED.index(args.show_errors)
        labeler = CheXpertLabeler()
        for kind, mask in (("false positive", result["predicted"][:, j] & ~result["targets"][:, j]),
                           ("false negative", ~result["predicted"][:, j] & result["targets"][:, j])):
            print(f"\n## {kind}s ({int(mask.sum())})")
            for i in np.flatnonzero(mask)[: args.limit]:
                report = result["reports"][i]
                labels = labeler.label(report.text)
                found = [(m.phrase, m.value) for m in labels.mentions + labels.other_mentions
                         if m.observation in (args.show_errors, "No Finding")]
                print(f"- {report.uid} {report.mesh_major} {found}\n  {report.text}")


if __name__ == "__main__":
    main()
