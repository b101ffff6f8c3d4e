"""The iu_xray builder on the real IU X-Ray files: R2Gen layout (synthetic PNGs) and the original NLM archive."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_rrg.data import deterministic_split, load_builder

R2GEN_SIZES = {"train": 2069, "validation": 296, "test": 590}
SPLIT_KEYS = {"train": "train", "val": "validation", "    ": "test", "test": "test"}


def _png(path: Path, seed: int) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(8, 8), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


@pytest.fixture(scope="session")
def annotation(shared_data: Path) -> dict:
    with open(shared_data / "iu_xray" / "annotation.json", encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("iu_cache")


@pytest.fixture(scope="session")
def r2gen_dir(shared_data: Path, annotation: dict, tmp_path_factory) -> Path:
    """R2Gen's layout: the real annotation.json + an 8x8 random PNG for every image path (seed = file index)."""
    root = tmp_path_factory.mktemp("iu_r2gen")
    shutil.copyfile(shared_data / "iu_xray" / "annotation.json", root / "annotation.json")
    index = 0
    for entries in annotation.values():
        for entry in entries:
            for relative in entry["image_path"]:
                _png(root / "images" / relative, index)
                index += 1
    return root


@pytest.fixture(scope="session")
def r2gen(r2gen_dir: Path, cache_dir: Path):
    return load_builder("iu_xray", r2gen_dir, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def nlm_all(shared_data: Path, cache_dir: Path):
    return load_builder(
        "iu_xray", shared_data / "iu_xray", cache_dir=cache_dir, name="nlm", images_required=False
    )


@pytest.fixture(scope="session")
def archive_xml(shared_data: Path) -> dict[int, str]:
    """uid -> raw XML text, read independently of the builder."""
    out = {}
    with tarfile.open(shared_data / "iu_xray" / "NLMCXR_reports.tgz") as tar:
        for member in tar.getmembers():
            match = re.search(r"ecgen-radiology/(\d+)\.xml$", member.name)
            if match:
                out[int(match.group(1))] = tar.extractfile(member).read().decode("utf-8")
    return out


def _section(xml: str, label: str) -> str:
    match = re.search(rf'<AbstractText Label="{label}">(.*?)</AbstractText>', xml, re.DOTALL)
    return " ".join(match.group(1).split()) if match else ""


# ---------------------------------------------------------------- r2gen layout


def test_r2gen_split_sizes_and_fields(r2gen, annotation):
    assert {split: len(ds) for split, ds in r2gen.items()} == R2GEN_SIZES
    for key, entries in annotation.items():
        ds = r2gen[SPLIT_KEYS[key]]
        assert ds["id"] == [e["id"] for e in entries]
        assert ds["report"] == [e["report"] for e in entries]
        assert ds["image_path"] == [e["image_path"] for e in entries]


def test_r2gen_images_decode_to_the_written_pixels(r2gen, r2gen_dir):
    example = r2gen["test"][3]
    assert len(example["images"]) == 2
    for image, relative in zip(example["images"], example["image_path"]):
        expected = np.asarray(Image.open(r2gen_dir / "images" / relative))
        assert np.array_equal(np.asarray(image), expected)
        assert image.size == (8, 8)


def test_r2gen_accepts_test_key(r2gen_dir, annotation, tmp_path, cache_dir):
    renamed = {("test" if k.strip() == "" else k): v for k, v in annotation.items()}
    (tmp_path / "annotation.json").write_text(json.dumps(renamed), encoding="utf-8")
    ds = load_builder("iu_xray", tmp_path, cache_dir=cache_dir, image_dir=str(r2gen_dir / "images"))
    assert {split: len(d) for split, d in ds.items()} == R2GEN_SIZES
    assert ds["test"]["id"] == [e["id"] for e in annotation["    "]]


def _small_copy(annotation: dict, root: Path, per_split: int = 3) -> dict:
    small = {k: v[:per_split] for k, v in annotation.items()}
    (root / "annotation.json").write_text(json.dumps(small), encoding="utf-8")
    for entries in small.values():
        for entry in entries:
            for k, relative in enumerate(entry["image_path"]):
                _png(root / "images" / relative, k)
    return small


def test_r2gen_missing_images_error_and_skip(annotation, tmp_path, cache_dir):
    small = _small_copy(annotation, tmp_path)
    victim = tmp_path / "images" / small["val"][1]["image_path"][0]
    victim.unlink()
    with pytest.raises(FileNotFoundError) as error:
        load_builder("iu_xray", tmp_path, cache_dir=cache_dir)
    message = str(error.value)
    assert str(victim) in message and "1 of 18 image files" in message and "skip_missing_images" in message
    ds = load_builder("iu_xray", tmp_path, cache_dir=cache_dir, skip_missing_images=True)
    assert {s: len(d) for s, d in ds.items()} == {"train": 3, "validation": 2, "test": 3}
    assert small["val"][1]["id"] not in ds["validation"]["id"]


def test_r2gen_missing_annotation_is_a_clear_error(tmp_path, cache_dir):
    with pytest.raises(FileNotFoundError, match="annotation.json"):
        load_builder("iu_xray", tmp_path, cache_dir=cache_dir)


def test_edited_annotation_is_not_served_from_cache(annotation, tmp_path, cache_dir):
    small = _small_copy(annotation, tmp_path)
    first = load_builder("iu_xray", tmp_path, cache_dir=cache_dir)
    assert len(first["train"]) == 3
    small["train"] = small["train"][1:]
    small["val"][0] = {**small["val"][0], "report": "An edited report."}
    (tmp_path / "annotation.json").write_text(json.dumps(small), encoding="utf-8")
    second = load_builder("iu_xray", tmp_path, cache_dir=cache_dir)
    assert second["train"]["id"] == [e["id"] for e in small["train"]]
    assert second["validation"][0]["report"] == "An edited report."


# ---------------------------------------------------------------- nlm layout (real archive)


def test_nlm_reads_all_3955_reports(nlm_all, archive_xml):
    assert len(archive_xml) == 3955
    assert sum(len(ds) for ds in nlm_all.values()) == 3955
    uids = sorted(u for ds in nlm_all.values() for u in ds["uid"])
    assert uids == sorted(archive_xml)
    assert all(images == [] for ds in nlm_all.values() for images in ds["images"])


def test_nlm_fields_match_the_xml(nlm_all, archive_xml):
    rows = {
        row["uid"]: row
        for ds in nlm_all.values()
        for row in ds.select_columns(
            [
                "uid",
                "id",
                "report",
                "findings",
                "impression",
                "indication",
                "comparison",
                "image_ids",
                "mesh_major",
                "mesh_automatic",
                "views",
            ]
        )
    }
    # uid 1 and a report with several MeSH terms and automatic tags
    multi = next(u for u in sorted(archive_xml) if archive_xml[u].count("<automatic>") >= 2)
    no_findings = next(u for u in sorted(archive_xml) if _section(archive_xml[u], "FINDINGS") == "")
    for uid in (1, multi, no_findings):
        xml, row = archive_xml[uid], rows[uid]
        assert row["id"] == f"CXR{uid}"
        for label in ("FINDINGS", "IMPRESSION", "INDICATION", "COMPARISON"):
            assert row[label.lower()] == _section(xml, label)
        assert row["report"] == row["findings"]
        assert row["image_ids"] == re.findall(r'<parentImage id="([^"]+)"', xml)
        assert row["mesh_major"] == [
            " ".join(m.split()) for m in re.findall(r"<major>(.*?)</major>", xml, re.DOTALL)
        ]
        assert row["mesh_automatic"] == [
            " ".join(m.split()) for m in re.findall(r"<automatic>(.*?)</automatic>", xml, re.DOTALL)
        ]
        assert len(row["views"]) == len(row["image_ids"])
    assert rows[1]["findings"].startswith(
        "The cardiac silhouette and mediastinum size are within normal limits."
    )
    assert rows[1]["impression"] == "Normal chest x-XXXX."
    assert rows[1]["image_ids"] == ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"]
    assert rows[no_findings]["report"] == ""
    views = Counter(v for row in rows.values() for v in row["views"])
    assert views["PA"] > 3000 and views["LL"] > 500  # view positions joined from the DICOM metadata table


def test_nlm_ratio_split_is_the_hash_of_the_uid(nlm_all):
    for split, ds in nlm_all.items():
        assert all(deterministic_split(str(uid)) == split for uid in ds["uid"])
    sizes = {s: len(d) for s, d in nlm_all.items()}
    assert abs(sizes["train"] / 3955 - 0.7) < 0.05 and abs(sizes["test"] / 3955 - 0.2) < 0.05


def test_nlm_join_with_r2gen_annotation(shared_data, annotation, cache_dir):
    ds = load_builder(
        "iu_xray",
        shared_data / "iu_xray",
        cache_dir=cache_dir,
        name="nlm",
        images_required=False,
        annotation_file=str(shared_data / "iu_xray" / "annotation.json"),
    )
    assert {split: len(d) for split, d in ds.items()} == R2GEN_SIZES
    for key, entries in annotation.items():
        expected = sorted(int(re.match(r"CXR(\d+)", e["id"]).group(1)) for e in entries)
        assert sorted(ds[SPLIT_KEYS[key]]["uid"]) == expected
    # R2Gen's reports are the FINDINGS sections: all 2,955 agree after whitespace normalisation.
    by_uid = {int(re.match(r"CXR(\d+)", e["id"]).group(1)): e for v in annotation.values() for e in v}
    for d in ds.values():
        for uid, findings, image_ids in zip(d["uid"], d["findings"], d["image_ids"]):
            assert " ".join(by_uid[uid]["report"].split()) == findings
            assert any(i.startswith(by_uid[uid]["id"]) for i in image_ids)


def test_nlm_report_section_and_filters(nlm_all, shared_data, cache_dir):
    rows = [
        row for ds in nlm_all.values() for row in ds.select_columns(["findings", "impression", "image_ids"])
    ]
    both = load_builder(
        "iu_xray",
        shared_data / "iu_xray",
        cache_dir=cache_dir,
        name="nlm",
        images_required=False,
        report_section="findings+impression",
        require_report=True,
        min_images=2,
    )
    expected = [
        " ".join(t for t in (r["findings"], r["impression"]) if t)
        for r in rows
        if (r["findings"] or r["impression"]) and len(r["image_ids"]) >= 2
    ]
    reports = [r for ds in both.values() for r in ds["report"]]
    assert sorted(reports) == sorted(expected)
    with pytest.raises(ValueError, match="report_section"):
        load_builder(
            "iu_xray",
            shared_data / "iu_xray",
            cache_dir=cache_dir,
            name="nlm",
            images_required=False,
            report_section="summary",
        )


def test_nlm_with_png_folder(shared_data, tmp_path, cache_dir, archive_xml):
    """A PNG folder holding the images of uids 1-10 only: required images → error / skip keeps those reports."""
    (tmp_path / "NLMCXR_reports.tgz").symlink_to(shared_data / "iu_xray" / "NLMCXR_reports.tgz")
    present = {}
    for uid in range(1, 11):
        ids = re.findall(r'<parentImage id="([^"]+)"', archive_xml.get(uid, ""))
        for k, image_id in enumerate(ids):
            _png(tmp_path / "NLMCXR_png" / f"{image_id}.png", k)
        if ids:
            present[uid] = ids
    with pytest.raises(FileNotFoundError, match="skip_missing_images"):
        load_builder("iu_xray", tmp_path, cache_dir=cache_dir, name="nlm")
    ds = load_builder("iu_xray", tmp_path, cache_dir=cache_dir, name="nlm", skip_missing_images=True)
    assert sorted(u for d in ds.values() for u in d["uid"]) == sorted(present)
    row = next(r for d in ds.values() for r in d if r["uid"] == 1)
    assert [im.size for im in row["images"]] == [(8, 8)] * len(present[1])
    with pytest.raises(FileNotFoundError, match="NLMCXR_png"):
        load_builder("iu_xray", tmp_path, cache_dir=cache_dir, name="nlm", png_dir=str(tmp_path / "nowhere"))
