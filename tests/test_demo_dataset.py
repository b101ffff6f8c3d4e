"""The embedded `demo` dataset: committed data, its card, its builder, the no-code ImageFolder route and the
script that makes them (report curation included)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import datasets
import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO_ROOT / "datasets_scripts" / "demo"
DATA_DIR = DEMO_DIR / "data"
CARD = DEMO_DIR / "README.md"
# Written out on purpose (not imported from make_demo): licences permitting redistribution AND adaptation.
ALLOWED = {"CC BY", "CC BY 4.0", "CC BY-SA", "CC BY-NC-SA", "CC BY-NC-SA 4.0"}
SPLITS = ("train", "validation", "test")


def _import_by_path(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def make_demo() -> ModuleType:
    return _import_by_path(DEMO_DIR / "make_demo.py", "_test_demo_make_demo")


@pytest.fixture(scope="module")
def records() -> list[dict]:
    path = DATA_DIR / "metadata.jsonl"
    assert path.is_file(), f"{path} is missing: run datasets_scripts/demo/make_demo.py"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _builder_class(script: Path, module_name: str) -> type[datasets.GeneratorBasedBuilder]:
    module = _import_by_path(script, module_name)
    classes = [
        c
        for c in vars(module).values()
        if isinstance(c, type)
        and issubclass(c, datasets.GeneratorBasedBuilder)
        and c.__module__ == module_name
    ]
    assert len(classes) == 1, classes
    return classes[0]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> datasets.DatasetDict:
    """The demo set prepared by instantiating the builder class directly (no data_dir: its own data/)."""
    builder = _builder_class(DEMO_DIR / "demo.py", "_test_demo_builder")(
        cache_dir=str(tmp_path_factory.mktemp("c"))
    )
    builder.download_and_prepare()
    return builder.as_dataset()


# --- committed data -------------------------------------------------------------------------------


def test_metadata_fields_ids_and_files(records: list[dict]) -> None:
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) > 100
    assert ids == sorted(ids)
    for r in records:
        assert r["file_name"] == f"images/{r['id']}.jpg"
        assert (DATA_DIR / r["file_name"]).is_file()
        assert r["split"] in SPLITS
    on_disk = {p.name for p in (DATA_DIR / "images").iterdir()}
    assert on_disk == {Path(r["file_name"]).name for r in records}, (
        "images/ holds files not listed in metadata.jsonl"
    )


def test_every_licence_allows_redistribution_and_adaptation(records: list[dict]) -> None:
    assert {r["license"] for r in records} <= ALLOWED
    assert all(r["source_url"] for r in records), "every image needs a source URL for attribution"


def test_reports_are_non_empty_and_whitespace_normalised(records: list[dict]) -> None:
    for r in records:
        for key in ("report", "clinical_notes"):
            assert r[key].strip(), (r["id"], key)
            assert r[key] == " ".join(r[key].split()), f"{r['id']}: {key} whitespace not normalised"
        assert r["history"] == " ".join(r["history"].split())
        assert r["report_source"] in ("rules", "reviewed")


# The card's documented spelling unification: every other report word must come from the image's own notes.
UNIFIED_SPELLINGS = {
    "airspace", "ground-glass", "appearances", "pattern", "opacities", "bronchovascular", "a", "bulging",
}  # fmt: skip


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower()))


def test_reports_are_radiographic_findings_taken_from_the_notes(records: list[dict]) -> None:
    for r in records:
        notes = _words(r["clinical_notes"]) | UNIFIED_SPELLINGS | {"air", "space", "ground", "glass"}
        assert _words(r["report"]) <= notes, (r["id"], _words(r["report"]) - notes)
        assert r["report"].endswith(".") and r["report"][0].isupper(), r["id"]
    reports = " ".join(r["report"] for r in records)
    # history, laboratory values, diagnosis tests and figure pointers stay out of the reports
    markers = ("year-old", "years old", "presented", "laboratory", "PCR", "(arrow", "(Fig", "Discussion:")
    for marker in markers:
        assert marker not in reports, marker
    assert len({r["report"] for r in records}) > 0.8 * len(records)
    # short findings, not case notes
    assert sum(len(r["report"].split()) for r in records) / len(records) < 40
    assert sum(bool(r["history"]) for r in records) > len(records) / 2


def test_reviewed_fragments_are_verbatim_notes_of_kept_or_dropped_images(records: list[dict]) -> None:
    reviewed = json.loads((DEMO_DIR / "reviewed_findings.json").read_text(encoding="utf-8"))
    by_id = {r["id"]: r for r in records}
    card = CARD.read_text(encoding="utf-8")
    for ident, entry in reviewed.items():
        assert entry["why"].strip(), ident
        if entry["findings"] is None:
            assert ident not in by_id and entry["why"] in card, f"{ident} is reviewed as dropped"
            continue
        record = by_id[ident]
        assert record["report_source"] == "reviewed"
        for fragment in entry["findings"]:
            assert fragment in record["clinical_notes"], (ident, fragment)
    assert sum(r["report_source"] == "reviewed" for r in records) == sum(
        e["findings"] is not None for e in reviewed.values()
    )


def test_no_patient_in_two_splits_and_ratios_roughly_70_10_20(records: list[dict]) -> None:
    split_of: dict[str, set[str]] = {}
    for r in records:
        group = re.sub(r"[A-Za-z]+$", "", r["patient_id"])  # 331a/331b are treated as one patient
        split_of.setdefault(group, set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of.values()), {p: s for p, s in split_of.items() if len(s) > 1}
    n = len(split_of)
    share = {name: sum(name in s for s in split_of.values()) / n for name in SPLITS}
    assert (
        0.55 <= share["train"] <= 0.85 and 0.03 <= share["validation"] <= 0.2 and 0.1 <= share["test"] <= 0.3
    )


def test_images_are_real_downscaled_8bit_jpegs(records: list[dict]) -> None:
    for r in records:
        with Image.open(DATA_DIR / r["file_name"]) as image:
            assert image.format == "JPEG" and image.mode in ("L", "RGB"), (r["id"], image.format, image.mode)
            assert image.size == (r["width"], r["height"])
            arr = np.asarray(image, dtype=np.float64)
        ow, oh = r["original_width"], r["original_height"]
        assert min(image.size) == min(256, ow, oh), r["id"]
        # aspect ratio kept to within rounding of the longer side
        assert abs(max(image.size) - max(ow, oh) * min(image.size) / min(ow, oh)) <= 1.0, r["id"]
        assert arr.std() > 10.0 and arr.max() - arr.min() > 100, f"{r['id']}: image is (nearly) constant"


def test_total_size_is_small() -> None:
    total = sum(p.stat().st_size for p in DATA_DIR.rglob("*") if p.is_file())
    assert total <= 5 * 1024 * 1024, f"demo data is {total / 1e6:.2f} MB; the budget is 5 MB"


# --- card -----------------------------------------------------------------------------------------


def test_card_lists_every_image_with_its_licence_and_source(records: list[dict]) -> None:
    text = CARD.read_text(encoding="utf-8")
    assert text.startswith("---\nlicense: other\n")
    assert "Cohen JP, Morrison P, Dao L, Roth K, Duong TQ, Ghassemi M." in text
    assert "non-commercial" in text and "not a benchmark" in text.lower()
    table = text.split("## Per-image attribution", 1)[1]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and cells[0] not in ("id",):
            rows[cells[0]] = cells
    assert set(rows) == {r["id"] for r in records}
    for r in records:
        cells = rows[r["id"]]
        assert cells[1] == r["original_filename"] and cells[2] == r["license"]
        assert r["source_url"] in cells[3]
    for name in SPLITS:
        count = sum(r["split"] == name for r in records)
        assert re.search(rf"^\| {name} \| {count} \| \d+ \|$", text, flags=re.M), (
            f"split table wrong for {name}"
        )


# --- builder --------------------------------------------------------------------------------------


def test_builder_split_sizes_and_features_match_metadata(
    prepared: datasets.DatasetDict, records: list[dict]
) -> None:
    assert set(prepared) == set(SPLITS)
    by_id = {r["id"]: r for r in records}
    for name in SPLITS:
        expected = {r["id"] for r in records if r["split"] == name}
        ds = prepared[name]
        assert ds.num_rows == len(expected)
        assert set(ds["id"]) == expected
    features = prepared["train"].features
    assert isinstance(features["images"], datasets.List) and isinstance(
        features["images"].feature, datasets.Image
    )
    assert features["view_positions"] == datasets.List(datasets.Value("string"))
    for ex in prepared["validation"]:
        r = by_id[ex["id"]]
        keys = ("report", "history", "clinical_notes", "finding", "patient_id", "license", "source_url")
        assert [ex[k] for k in keys] == [r[k] for k in keys]
        assert ex["view_positions"] == [r["view"] or ""]
        assert len(ex["images"]) == 1
        decoded = np.asarray(ex["images"][0])
        with Image.open(DATA_DIR / r["file_name"]) as on_disk:
            np.testing.assert_array_equal(decoded, np.asarray(on_disk))


def test_builder_embeds_image_bytes(prepared: datasets.DatasetDict) -> None:
    raw = prepared["test"].cast_column("images", datasets.List(datasets.Image(decode=False)))[0]["images"][0]
    assert raw["bytes"][:3] == b"\xff\xd8\xff" and raw["path"] is None


def test_builder_finds_data_next_to_a_copied_script(tmp_path: Path) -> None:
    """As after a wheel install: the script elsewhere, imported by path, defaults to the data/ beside it."""
    copy = tmp_path / "site" / "hf_rrg" / "datasets_scripts" / "demo"
    shutil.copytree(DEMO_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    metadata = copy / "data" / "metadata.jsonl"
    kept = metadata.read_text(encoding="utf-8").splitlines()[:5]
    metadata.write_text("\n".join(kept) + "\n", encoding="utf-8")
    builder = _builder_class(copy / "demo.py", "_test_demo_builder_copy")(cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    ds = builder.as_dataset()
    expected: dict[str, list[str]] = {}
    for line in kept:
        expected.setdefault(json.loads(line)["split"], []).append(json.loads(line)["id"])
    assert {name: sorted(d["id"]) for name, d in ds.items()} == {k: sorted(v) for k, v in expected.items()}


def test_builder_errors_name_the_bad_input(tmp_path: Path) -> None:
    cls = _builder_class(DEMO_DIR / "demo.py", "_test_demo_builder_err")
    with pytest.raises(FileNotFoundError, match="metadata.jsonl"):
        cls(cache_dir=str(tmp_path / "c1"), data_dir=str(tmp_path)).download_and_prepare()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metadata.jsonl").write_text('{"id": "x"}\n{not json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"metadata.jsonl line 1 lacks key"):
        cls(cache_dir=str(tmp_path / "c2"), data_dir=str(bad)).download_and_prepare()
    good = json.loads((DATA_DIR / "metadata.jsonl").read_text(encoding="utf-8").splitlines()[0])
    (bad / "metadata.jsonl").write_text(json.dumps(good) + "\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=re.escape(good["file_name"].split("/")[-1])):
        cls(cache_dir=str(tmp_path / "c3"), data_dir=str(bad)).download_and_prepare()


def test_load_builder_returns_the_demo_splits(tmp_path: Path, records: list[dict]) -> None:
    load_builder = pytest.importorskip("hf_rrg.data").load_builder
    ds = load_builder("demo", cache_dir=tmp_path)
    for name in SPLITS:
        assert ds[name].num_rows == sum(r["split"] == name for r in records)
    test = load_builder("demo", cache_dir=tmp_path, split="test")
    assert sorted(test["id"]) == sorted(r["id"] for r in records if r["split"] == "test")


def test_no_code_imagefolder_route_reads_every_image_and_column(tmp_path: Path, records: list[dict]) -> None:
    """`load_dataset("imagefolder", data_dir=...)` without hf-rrg: the `file_name` key names each image."""
    ds = datasets.load_dataset("imagefolder", data_dir=str(DATA_DIR), split="train", cache_dir=str(tmp_path))
    assert ds.num_rows == len(records)
    assert isinstance(ds.features["image"], datasets.Image)
    assert {"id", "report", "history", "split", "license"} <= set(ds.column_names)
    by_id = {r["id"]: r for r in records}
    test = ds.filter(lambda row: row["split"] == "test")
    assert sorted(test["id"]) == sorted(r["id"] for r in records if r["split"] == "test")
    for row in test.select(range(3)):
        assert row["report"] == by_id[row["id"]]["report"]
        with Image.open(DATA_DIR / by_id[row["id"]]["file_name"]) as on_disk:
            np.testing.assert_array_equal(np.asarray(row["image"]), np.asarray(on_disk))


def test_every_dataset_card_says_how_to_load_it_without_load_dataset_on_the_folder() -> None:
    for card in sorted((REPO_ROOT / "datasets_scripts").glob("*/README.md")):
        text = card.read_text(encoding="utf-8")
        assert "Dataset scripts are no longer supported" in text, card
        assert f'load_builder("{card.parent.name}"' in text, card
        assert "hf-rrg data export" in text, card


# --- report curation ------------------------------------------------------------------------------


def test_curation_takes_the_imaging_section_of_headed_notes(make_demo: ModuleType) -> None:
    notes = (
        "Presentation: Fever and cough for 3 days.. Imaging Notes: Bilateral patchy air space opacities "
        "(arrows). No pleural effusion.. Discussion: This case is typical of COVID-19. PCR was positive."
    )
    curated = make_demo.curate_notes("x", notes, {})
    assert curated.report == "Bilateral patchy airspace opacities. No pleural effusion."
    assert curated.history == "Fever and cough for 3 days." and curated.decided_by == "rules"


def test_curation_splits_unlabelled_notes_into_history_findings_and_discussion(make_demo: ModuleType) -> None:
    notes = (
        "A 52-year-old man presented with cough. Laboratory tests showed leucocytosis (Fig. 1). "
        "Chest X-ray at admission showed a right upper lobe consolidation (arrow). The heart size is normal. "
        "The patient recovered after treatment. A CT was performed. Ground glass opacities in both lungs."
    )
    curated = make_demo.curate_notes("x", notes, {})
    # the lead-in is gone; the CT findings are not taken
    assert curated.report == "A right upper lobe consolidation. The heart size is normal."
    assert curated.history == "A 52-year-old man presented with cough. Laboratory tests showed leucocytosis."
    # a lead-in is never removed across a negation
    negated = make_demo.curate_notes("x", "Chest radiograph did not show pleural changes.", {})
    assert negated.report == "Chest radiograph did not show pleural changes."
    assert make_demo.curate_notes("x", "Fever and two days of odynophagia", {}) is None


def test_reviewed_entries_decide_with_verbatim_fragments(make_demo: ModuleType, tmp_path: Path) -> None:
    notes = "Fever and shortness of breath On the PA radiograph there is opacity in the left midzone."
    assert make_demo.curate_notes("x", notes, {}) is None  # run-on sentence: the rules see the symptoms
    path = tmp_path / "reviewed.json"
    path.write_text(
        json.dumps({
            "x": {"findings": ["there is opacity in the left midzone"], "history": ["Fever"], "why": "run"},
            "y": {"findings": None, "why": "series"},
        }),
        encoding="utf-8",
    )
    reviewed = make_demo.load_reviewed(path)
    curated = make_demo.curate_notes("x", notes, reviewed)
    assert (curated.report, curated.history, curated.decided_by) == (
        "There is opacity in the left midzone.", "Fever.", "reviewed",
    )  # fmt: skip
    assert make_demo.curate_notes("y", "Bilateral opacities.", reviewed) is None
    path.write_text(json.dumps({"x": {"findings": ["right midzone"], "why": "w"}}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"'right midzone' of 'x' is not in its clinical_notes"):
        make_demo.curate_notes("x", notes, make_demo.load_reviewed(path))
    path.write_text(json.dumps({"x": {"findings": ["a"]}}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"entry 'x' needs 'findings'.*'why'"):
        make_demo.load_reviewed(path)
    rows = [{"filename": "x.png", "clinical_notes": notes}]
    with pytest.raises(ValueError, match=r"names id\(s\) \['y'\]"):
        make_demo.curate_rows(rows, {"y": make_demo.Review(findings=None, why="series")})


# --- maintainer script ----------------------------------------------------------------------------


def test_make_demo_reproduces_committed_outputs(
    shared_data: Path, tmp_path: Path, make_demo: ModuleType
) -> None:
    out, card = tmp_path / "data", tmp_path / "README.md"
    assert (
        make_demo.main(
            ["--source", str(shared_data / "covid_cxr_notes"), "--out", str(out), "--card", str(card)]
        )
        == 0
    )
    assert (out / "metadata.jsonl").read_bytes() == (DATA_DIR / "metadata.jsonl").read_bytes()
    assert card.read_bytes() == CARD.read_bytes()
    committed = sorted(p.name for p in (DATA_DIR / "images").iterdir())
    assert sorted(p.name for p in (out / "images").iterdir()) == committed
    for name in committed[::10]:  # pixels agree up to JPEG encoder differences between library versions
        with Image.open(out / "images" / name) as a, Image.open(DATA_DIR / "images" / name) as b:
            assert a.size == b.size and a.mode == b.mode
            diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
            assert diff.mean() < 1.0, name


def test_selection_drops_unlicensed_and_empty_rows(make_demo: ModuleType) -> None:
    rows = [
        {"filename": "a.png", "license": "CC BY-NC-SA", "clinical_notes": " Cough.\n"},
        {"filename": "b.png", "license": "listed as authorized for everyone", "clinical_notes": "Cough."},
        {"filename": "c.png", "license": "CC BY-ND", "clinical_notes": "Cough."},
        {"filename": "d.png", "license": "CC BY 4.0", "clinical_notes": " \n\t "},
    ]
    kept, dropped = make_demo.select_rows(rows)
    assert [r["filename"] for r in kept] == ["a.png"]
    assert {d.filename: d.reason for d in dropped}["d.png"] == "empty clinical_notes"
    assert {d.filename for d in dropped} == {"b.png", "c.png", "d.png"}
    assert make_demo.normalise_whitespace(" A\n\tb  c\u00a0d ") == "A b c d"


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1024, 768), (341, 256)),
        ((768, 1024), (256, 341)),
        ((300, 256), (300, 256)),
        ((200, 180), (200, 180)),
    ],
)
def test_target_size_keeps_aspect_and_never_upscales(
    make_demo: ModuleType, size: tuple, expected: tuple
) -> None:
    assert make_demo.target_size(*size) == expected


def test_split_is_hash_of_patient_group(make_demo: ModuleType) -> None:
    import hashlib

    u = int.from_bytes(hashlib.sha256(b"hf-rrg-demo/331").digest()[:8], "big") / 2.0**64
    expected = "train" if u < 0.7 else "validation" if u < 0.8 else "test"
    assert make_demo.split_for_patient("331a") == make_demo.split_for_patient("331b") == expected
    counts = {name: 0 for name in SPLITS}
    for i in range(5000):
        counts[make_demo.split_for_patient(str(i))] += 1
    assert abs(counts["train"] / 5000 - 0.7) < 0.03 and abs(counts["validation"] / 5000 - 0.1) < 0.02


def test_image_modes_are_flattened_to_8bit(make_demo: ModuleType, tmp_path: Path) -> None:
    ramp = np.tile(np.arange(0, 4096, 8, dtype=np.uint16), (300, 1))  # 300 x 512, 12-bit values
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    original, size = make_demo.convert_image(tmp_path / "deep.png", tmp_path / "deep.jpg")
    assert original == (512, 300) and size == (437, 256)
    with Image.open(tmp_path / "deep.jpg") as out:
        assert out.mode == "L" and out.size == size
        row = np.asarray(out, dtype=np.float64)[128]
    assert row[0] < 5 and row[-1] > 250 and np.all(np.diff(row[5:-5]) > -3)  # min-max scaled, still a ramp
    rgba = np.zeros((260, 260, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = 255
    rgba[:, :130, 3] = 0  # transparent left half -> black
    gray = make_demo.drop_fake_colour(make_demo.normalise_mode(Image.fromarray(rgba, mode="RGBA")))
    assert gray.mode == "L" and np.asarray(gray)[0, 0] == 0 and np.asarray(gray)[0, 200] == 200
    tinted = np.zeros((64, 64, 3), dtype=np.uint8)
    tinted[..., 2] = 180  # blue: real colour stays RGB
    assert make_demo.drop_fake_colour(Image.fromarray(tinted)).mode == "RGB"


def test_missing_source_is_a_clear_error(make_demo: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        make_demo.main(["--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--no-card"])
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "metadata.csv").write_text("patientid,filename\n1,a.png\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['sex'"):
        make_demo.main(["--source", str(tmp_path / "src"), "--out", str(tmp_path / "o"), "--no-card"])


# --- Parquet export -------------------------------------------------------------------------------


def test_parquet_export_card_tells_the_reader_to_use_load_dataset(
    tmp_path: Path, records: list[dict]
) -> None:
    """The exported folder loads with `load_dataset(folder)`, and its card says so before anything else."""
    main = pytest.importorskip("hf_rrg.cli").main
    out = tmp_path / "export"
    assert main(["data", "export", "demo", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlicense: other\n")  # the Hub still reads the front matter
    opening = card.split("\n## ", 1)[0]  # front matter, title and what comes before the first section
    assert "datasets.load_dataset(" in opening and "hf-rrg data export" in opening
    assert "no builder script" in opening
    assert "## Per-image attribution" in card  # the source card follows in full
    back = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "reload"))
    assert {name: back[name].num_rows for name in back} == {
        name: sum(r["split"] == name for r in records) for name in SPLITS
    }
    by_id = {r["id"]: r for r in records}
    row = back["test"][0]
    assert row["report"] == by_id[row["id"]]["report"]
