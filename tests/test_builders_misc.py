"""Builder registry, mimic_cxr (fake tree), report_folder, Parquet export, statistics and the `hf-rrg data` CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hf_rrg.cli import main
from hf_rrg.data import (
    available_builders,
    dataset_statistics,
    deterministic_split,
    export_parquet,
    load_builder,
)
from hf_rrg.modeling.report_cleaning import clean_report


def _png(path: Path, seed: int, size: tuple[int, int] = (8, 8)) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("builder_cache")


@pytest.fixture(scope="module")
def iu_reports(shared_data: Path) -> list[str]:
    """Real IU X-Ray reports (R2Gen's annotation) used as report text for the synthetic layouts."""
    with open(shared_data / "iu_xray" / "annotation.json", encoding="utf-8") as handle:
        annotation = json.load(handle)
    return [entry["report"] for entry in annotation["train"][:40]]


# ---------------------------------------------------------------- registry and split helper


def test_registry_lists_the_builders_and_rejects_unknown_names():
    names = available_builders()
    assert {"iu_xray", "mimic_cxr", "report_folder"} <= set(names)
    with pytest.raises(ValueError) as error:
        load_builder("no_such_dataset")
    assert "no_such_dataset" in str(error.value) and "iu_xray" in str(error.value)


def test_unknown_builder_option_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="skip_missing_imgs"):
        load_builder("mimic_cxr", tmp_path, skip_missing_imgs=True)


def test_deterministic_split_formula_and_ratios():
    key = "patient-42"
    u = int.from_bytes(hashlib.sha256(b"saltpatient-42").digest()[:8], "big") / 2**64
    expected = "train" if u < 0.7 else "validation" if u < 0.8 else "test"
    assert deterministic_split(key, salt="salt") == expected
    counts = Counter(deterministic_split(f"k{i}", (0.5, 0.25, 0.25)) for i in range(20000))
    assert abs(counts["train"] / 20000 - 0.5) < 0.02 and abs(counts["test"] / 20000 - 0.25) < 0.02
    assert deterministic_split("x", (0.0, 0.0, 1.0)) == "test"
    with pytest.raises(ValueError, match="sum to 1"):
        deterministic_split("x", (0.5, 0.2, 0.2))


# ---------------------------------------------------------------- mimic_cxr (fake R2Gen tree)


@pytest.fixture(scope="module")
def mimic_dir(tmp_path_factory, iu_reports) -> tuple[Path, dict]:
    """R2Gen's MIMIC layout: 5 studies (2 with two images) over train/val/test, synthetic JPG-named PNG pixels."""
    root = tmp_path_factory.mktemp("mimic")
    plan = {
        "train": [(101, 11, 2), (102, 11, 1), (103, 12, 2)],
        "val": [(201, 21, 1)],
        "test": [(301, 31, 1)],
    }
    annotation: dict[str, list[dict]] = {}
    seed = 0
    for split, studies in plan.items():
        annotation[split] = []
        for study_id, subject_id, n_images in studies:
            for k in range(n_images):
                dicom = f"d{study_id}-{k}"
                relative = f"p10/p100000{subject_id}/s{study_id}/{dicom}.jpg"
                path = root / "images" / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((6, 6), seed, dtype=np.uint8)).save(path, format="PNG")
                seed += 1
                annotation[split].append(
                    {
                        "id": dicom,
                        "study_id": study_id,
                        "subject_id": subject_id,
                        "report": iu_reports[study_id % 40],
                        "image_path": [relative],
                        "split": split,
                    }
                )
    (root / "annotation.json").write_text(json.dumps(annotation), encoding="utf-8")
    return root, annotation


def test_mimic_single_view_one_example_per_entry(mimic_dir, cache_dir):
    root, annotation = mimic_dir
    ds = load_builder("mimic_cxr", root, cache_dir=cache_dir)
    assert {s: len(d) for s, d in ds.items()} == {"train": 5, "validation": 1, "test": 1}
    assert ds["train"]["id"] == [e["id"] for e in annotation["train"]]
    assert ds["train"]["report"] == [e["report"] for e in annotation["train"]]
    first = ds["train"][1]
    assert first["study_id"] == 101 and first["subject_id"] == 11 and first["image_ids"] == ["d101-1"]
    assert len(first["images"]) == 1 and np.asarray(first["images"][0]).max() == 1  # the second image written


def test_mimic_multi_view_groups_by_study(mimic_dir, cache_dir):
    root, annotation = mimic_dir
    ds = load_builder("mimic_cxr", root, cache_dir=cache_dir, multi_view=True)
    assert ds["train"]["id"] == ["101", "102", "103"]
    assert [len(x) for x in ds["train"]["image_ids"]] == [2, 1, 2]
    row = ds["train"][2]
    assert row["image_path"] == [e["image_path"][0] for e in annotation["train"] if e["study_id"] == 103]
    assert [int(np.asarray(im).max()) for im in row["images"]] == [3, 4]


def test_mimic_missing_files_give_the_download_instructions(mimic_dir, tmp_path, cache_dir, capsys):
    with pytest.raises(FileNotFoundError) as error:
        load_builder("mimic_cxr", tmp_path, cache_dir=cache_dir)
    assert "annotation.json" in str(error.value) and "PhysioNet" in str(error.value)
    root, _ = mimic_dir
    shutil.copyfile(root / "annotation.json", tmp_path / "annotation.json")
    shutil.copytree(root / "images", tmp_path / "images")
    victim = next((tmp_path / "images").rglob("d201-0.jpg"))
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 7 MIMIC-CXR image files are missing"):
        load_builder("mimic_cxr", tmp_path, cache_dir=cache_dir)
    ds = load_builder("mimic_cxr", tmp_path, cache_dir=cache_dir, skip_missing_images=True)
    assert "validation" not in ds and len(ds["train"]) == 5
    assert (
        main(
            [
                "data",
                "info",
                "mimic_cxr",
                "--data-dir",
                str(tmp_path / "images"),
                "--cache-dir",
                str(cache_dir),
            ]
        )
        == 1
    )
    assert "credentialed" in capsys.readouterr().err


# ---------------------------------------------------------------- report_folder


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def folder(tmp_path, iu_reports) -> tuple[Path, list[dict]]:
    """30 studies of 12 patients; frontal + lateral columns, some lateral cells empty, two `;` lists."""
    rows = []
    for i in range(30):
        frontal = f"img/s{i}_pa.png"
        _png(tmp_path / frontal, i)
        lateral = ""
        if i % 3 == 0:
            lateral = f"img/s{i}_lat.png"
            _png(tmp_path / lateral, 100 + i)
        if i in (4, 5):
            extra = f"img/s{i}_extra.png"
            _png(tmp_path / extra, 200 + i)
            lateral = f"{extra};img/s{i}_pa.png"
        rows.append(
            {
                "id": f"s{i}",
                "patient": f"p{i % 12}",
                "frontal": frontal,
                "lateral": lateral,
                "report": iu_reports[i],
            }
        )
    _write_csv(tmp_path / "studies.csv", rows)
    return tmp_path, rows


def test_report_folder_csv_views_and_patient_split(folder, cache_dir):
    root, rows = folder
    ds = load_builder(
        "report_folder",
        root,
        cache_dir=cache_dir,
        image_columns=["frontal", "lateral"],
        patient_column="patient",
    )
    got = {row["id"]: (split, row) for split, d in ds.items() for row in d}
    assert sorted(got) == sorted(r["id"] for r in rows)
    split_of_patient: dict[str, set] = {}
    for source in rows:
        split, row = got[source["id"]]
        assert split == deterministic_split(source["patient"])
        split_of_patient.setdefault(source["patient"], set()).add(split)
        expected_paths = [source["frontal"], *[p for p in source["lateral"].split(";") if p]]
        assert row["image_path"] == expected_paths
        assert row["report"] == source["report"].strip() and row["patient_id"] == source["patient"]
        for image, relative in zip(row["images"], expected_paths):  # read later by hf-rrg's loader, not by datasets
            assert image == {"bytes": None, "path": str((root / relative).resolve())}
    assert all(len(s) == 1 for s in split_of_patient.values())  # a patient never spans two splits
    again = load_builder(
        "report_folder",
        root,
        cache_dir=cache_dir / "other",
        image_columns=["frontal", "lateral"],
        patient_column="patient",
    )
    assert {s: d["id"] for s, d in again.items()} == {s: d["id"] for s, d in ds.items()}


def test_report_folder_jsonl_with_split_column_and_lists(tmp_path, iu_reports, cache_dir):
    lines = []
    for i, split in enumerate(["train", "val", "test", "train", "dev", "TEST"]):
        paths = [f"a{i}.png", f"b{i}.png"]
        for k, p in enumerate(paths):
            _png(tmp_path / p, 10 * i + k)
        lines.append(json.dumps({"id": f"x{i}", "views": paths, "text": iu_reports[i], "split": split}))
    table = tmp_path / "meta.jsonl"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = load_builder(
        "report_folder",
        data_files=str(table),
        cache_dir=cache_dir,
        image_columns="views",
        report_column="text",
    )
    assert {s: d["id"] for s, d in ds.items()} == {
        "train": ["x0", "x3"],
        "validation": ["x1", "x4"],
        "test": ["x2", "x5"],
    }
    assert [len(x) for x in ds["test"]["images"]] == [2, 2]


def test_report_folder_one_file_per_split(folder, tmp_path_factory, cache_dir):
    root, rows = folder
    _write_csv(root / "train.csv", rows[:20])
    _write_csv(root / "test.csv", rows[20:])
    ds = load_builder(
        "report_folder",
        data_files={"train": str(root / "train.csv"), "test": str(root / "test.csv")},
        cache_dir=cache_dir,
        image_columns=["frontal", "lateral"],
    )
    assert ds["train"]["id"] == [r["id"] for r in rows[:20]] and ds["test"]["id"] == [
        r["id"] for r in rows[20:]
    ]


def test_report_folder_errors(folder, cache_dir, capsys):
    root, rows = folder
    with pytest.raises(ValueError) as error:
        load_builder("report_folder", root, cache_dir=cache_dir, image_columns=["frontal", "side"])
    assert "'side'" in str(error.value) and "['id', 'patient', 'frontal', 'lateral', 'report']" in str(
        error.value
    )

    rows = [dict(r) for r in rows]
    for i in (3, 7, 8):
        rows[i]["report"] = "  "
    _write_csv(root / "studies.csv", rows)
    with pytest.raises(ValueError) as error:
        load_builder("report_folder", root, cache_dir=cache_dir, image_columns=["frontal"])
    assert "3 row(s) have an empty or word-less 'report'" in str(error.value) and "['s3', 's7', 's8']" in str(error.value)
    ds = load_builder(
        "report_folder", root, cache_dir=cache_dir, image_columns=["frontal"], drop_empty_reports=True
    )
    assert sum(len(d) for d in ds.values()) == 27
    assert "dropped 3 rows" in capsys.readouterr().out

    (root / "img" / "s10_pa.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\).*s10_pa.png"):
        load_builder(
            "report_folder", root, cache_dir=cache_dir, image_columns=["frontal"], drop_empty_reports=True
        )
    ds = load_builder(
        "report_folder",
        root,
        cache_dir=cache_dir,
        image_columns=["frontal"],
        drop_empty_reports=True,
        skip_missing_images=True,
    )
    assert sum(len(d) for d in ds.values()) == 26

    _write_csv(root / "second.csv", rows)
    with pytest.raises(ValueError, match="exactly one .csv"):
        load_builder("report_folder", root, cache_dir=cache_dir)


# ---------------------------------------------------------------- export and statistics


def test_export_parquet_embeds_image_bytes(folder, cache_dir, tmp_path_factory):
    root, _ = folder
    ds = load_builder("report_folder", root, cache_dir=cache_dir, image_columns=["frontal", "lateral"])
    expected = {
        split: {row["id"]: [np.asarray(Image.open(im["path"])) for im in row["images"]] for row in d}
        for split, d in ds.items()
    }
    out = tmp_path_factory.mktemp("export")
    card = root / "card.md"
    card.write_text("---\nlicense: cc-by-4.0\n---\n# My data\n", encoding="utf-8")
    written = export_parquet(ds, out, card_path=card)
    assert set(written) == set(ds)
    assert written["train"] == out / "data" / "train-00000-of-00001.parquet"
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert readme.startswith(card.read_text(encoding="utf-8")) and "datasets.load_dataset(" in readme
    shutil.rmtree(root / "img")  # the export must not depend on the source images any more

    cells = pq.read_table(written["train"], columns=["images"]).column("images").to_pylist()
    assert all(image["bytes"] for cell in cells for image in cell)

    back = datasets.load_dataset(str(out), cache_dir=str(cache_dir / "reload"))
    assert {s: len(d) for s, d in back.items()} == {s: len(d) for s, d in ds.items()}
    for split, d in back.items():
        for row in d:
            arrays = [np.asarray(im) for im in row["images"]]
            assert len(arrays) == len(expected[split][row["id"]])
            assert all(np.array_equal(a, b) for a, b in zip(arrays, expected[split][row["id"]]))
    via_files = datasets.load_dataset(
        "parquet", data_files={"test": str(written["test"])}, cache_dir=str(cache_dir / "reload2")
    )
    assert via_files["test"]["id"] == ds["test"]["id"]


def test_dataset_statistics_against_hand_counts():
    ds = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {
                    "report": ["Heart is normal. Lungs clear.", "Heart is enlarged.", "Heart is normal.", ""],
                    "images": [["a"], ["a", "b"], ["a", "b", "c"], []],
                }
            ),
            "test": datasets.Dataset.from_dict({"report": ["No effusion."], "images": [["a"]]}),
        }
    )
    stats = dataset_statistics(ds, cleaner="basic", min_count=2)
    # basic cleaning: "heart is normal . lungs clear ." (7), "heart is enlarged ." (4), "heart is normal ." (4), "" (0)
    assert [len(clean_report(r, "basic").split()) for r in ds["train"]["report"]] == [7, 4, 4, 0]
    assert stats["splits"] == {"train": 4, "test": 1}
    tokens = stats["report_tokens"]["train"]
    assert tokens["mean"] == pytest.approx(15 / 4) and tokens["median"] == pytest.approx(4.0)
    assert tokens["max"] == 7 and tokens["p95"] == pytest.approx(4 + 0.85 * 3)  # numpy 'linear' percentile
    assert stats["images_per_study"]["train"]["mean"] == pytest.approx(6 / 4)
    # counts in train: heart 3, is 3, normal 2, . 4, lungs 1, clear 1, enlarged 1 -> 4 tokens with count >= 2
    assert stats["vocab_size"] == 4 and stats["vocab_split"] == "train"
    assert np.percentile([7, 4, 4, 0], 95) == pytest.approx(tokens["p95"])


# ---------------------------------------------------------------- CLI


def test_cli_info_and_export(folder, cache_dir, tmp_path_factory, capsys):
    root, _ = folder
    args = [
        "--data-dir",
        str(root),
        "--set",
        "image_columns=frontal,lateral",
        "--set",
        "patient_column=patient",
        "--cache-dir",
        str(cache_dir),
    ]
    assert main(["data", "info", "report_folder", *args, "--cleaner", "basic", "--min-count", "1"]) == 0
    out = capsys.readouterr().out
    ds = load_builder(
        "report_folder",
        root,
        cache_dir=cache_dir,
        image_columns=("frontal", "lateral"),
        patient_column="patient",
    )
    for split, d in ds.items():
        assert any(line.split()[:2] == [split, str(len(d))] for line in out.splitlines())
    vocab = len({t for r in ds["train"]["report"] for t in clean_report(r, "basic").split()})
    assert f"vocabulary: {vocab} tokens with count >= 1" in out

    out_dir = tmp_path_factory.mktemp("cli_export")
    assert main(["data", "export", "report_folder", *args, "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert str(out_dir) in printed
    for split, d in ds.items():
        path = out_dir / "data" / f"{split}-00000-of-00001.parquet"
        assert pq.read_metadata(path).num_rows == len(d)
    assert "report_folder" in (out_dir / "README.md").read_text(encoding="utf-8")

    assert main(["data", "info", "not_a_builder"]) == 1
    assert "iu_xray" in capsys.readouterr().err


def test_cli_demo(capsys, cache_dir):
    if "demo" not in available_builders():
        pytest.skip("datasets_scripts/demo is not in this checkout yet")
    assert main(["data", "demo", "--cache-dir", str(cache_dir)]) == 0
    out = capsys.readouterr().out
    demo = load_builder("demo", cache_dir=cache_dir)
    assert any(line.split()[:2] == ["train", str(len(demo["train"]))] for line in out.splitlines())
    first = demo["train"][0]
    assert f"example {first['id']!r}" in out and first["report"] in out
    assert f"{first['images'][0].width}x{first['images'][0].height}" in out


def test_load_builder_single_split_and_bad_inputs(mimic_dir, cache_dir, tmp_path):
    root, annotation = mimic_dir
    test = load_builder("mimic_cxr", root, cache_dir=cache_dir, split="test")
    assert isinstance(test, datasets.Dataset) and test["id"] == [e["id"] for e in annotation["test"]]
    with pytest.raises(ValueError, match=r"no split 'val'.*'validation'"):
        load_builder("mimic_cxr", root, cache_dir=cache_dir, split="val")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_builder("report_folder", data_files=str(tmp_path / "missing.csv"), cache_dir=cache_dir)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_builder("mimic_cxr", tmp_path / "nowhere", cache_dir=cache_dir)


def test_cli_set_option_parsing():
    from hf_rrg.data.commands import parse_set_options

    parsed = parse_set_options(
        [
            "images_required=false",
            "min_images=2",
            "split_ratios=0.8,0.1,0.1",
            "image_columns=frontal,lateral",
            "report_section=findings+impression",
            'image_columns2=["a", "b"]',
        ]
    )
    assert parsed == {
        "images_required": False,
        "min_images": 2,
        "split_ratios": (0.8, 0.1, 0.1),
        "image_columns": ("frontal", "lateral"),
        "report_section": "findings+impression",
        "image_columns2": ("a", "b"),
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_set_options(["no_equals_sign"])
