"""Nothing lost, nothing silently wrong at export: overwrite rules, weight checksums, local paths kept private.

Each test reproduces a hostile or careless use found in issue 16 (`hf-rrg export RUN --out RUN --overwrite`, flipped
bytes in exported weights, the training machine's data_dir in the card, `hf-rrg data export` over a user's folder).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from PIL import Image
from test_hub_fixtures import make_run_dir, misc_images, real_reports

from hf_rrg.cli import main
from hf_rrg.data import export_parquet
from hf_rrg.hub import check_model_dir, export_model
from hf_rrg.hub.loading import load_model_and_processor

MANIFEST = "hf_rrg_export.json"
SECRET = "/home/alice/hospital-x/iu_xray"


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_data) -> Path:
    """A run folder whose config and metrics hold absolute paths of the training machine."""
    run = make_run_dir(tmp_path_factory.mktemp("reliability") / "run", "r2gencmn", real_reports(shared_data))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"] = {"builder": "iu_xray", "data_dir": SECRET}
    config["recipe_options"] = {"label_file": f"{run}/labels.json", "text_encoder": "~/models/bert"}
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["skipped_metrics"] = {"meteor": f"FileNotFoundError: [Errno 2] No such file: '{SECRET}/java/bin/java'"}
    metrics["recipe"] = {"recipe": "r2gencmn", "label_file": f"{run}/labels.json", "source": "C:\\Users\\alice\\x"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> Path:
    return export_model(run, tmp_path_factory.mktemp("exported") / "repo", repo_id="org/tiny")


# ------------------------------------------------------------------------------------------ 1. data loss


@pytest.mark.parametrize("where", ["run", "parent"])
def test_export_over_the_run_or_a_folder_containing_it_refuses_and_keeps_the_run(run, where, capsys):
    before = _tree(run)
    out = run if where == "run" else run.parent
    assert main(["export", str(run), "--out", str(out), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hf-rrg export: error:") and "contains the source" in err
    assert _tree(run) == before  # nothing deleted, nothing added
    with pytest.raises(ValueError, match="contains the source"):
        export_model(run / "model", run / "model", overwrite=True)  # a model folder as source, exported over itself
    assert _tree(run) == before


def test_overwrite_replaces_only_a_previous_export_of_ours(run, tmp_path):
    user = tmp_path / "my_notes"
    user.mkdir()
    (user / "thesis.tex").write_text("a week of writing")
    with pytest.raises(FileExistsError, match=f"not a previous hf-rrg export.*{MANIFEST}"):
        export_model(run, user, overwrite=True)
    assert (user / "thesis.tex").read_text() == "a week of writing" and len(list(user.iterdir())) == 1
    a_file = tmp_path / "weights.txt"
    a_file.write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        export_model(run, a_file, overwrite=True)
    assert a_file.read_text() == "x"

    out = export_model(run, tmp_path / "export")
    (out / "stale.txt").write_text("left from an older export")
    export_model(run, out, overwrite=True)  # our own export (it has the manifest): replaced as a whole
    assert not (out / "stale.txt").exists() and (out / MANIFEST).is_file()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "staging or backup folder left behind"


# ------------------------------------------------------------------------------------------ checksums


def test_manifest_and_card_carry_the_sha256_of_every_weight_file(exported):
    manifest = json.loads((exported / MANIFEST).read_text())
    assert manifest["hf_rrg_export"] == "model"
    weights = sorted(p.name for p in exported.glob("*.safetensors"))
    assert sorted(manifest["sha256"]) == weights == ["model.safetensors"]
    digest = hashlib.sha256((exported / "model.safetensors").read_bytes()).hexdigest()
    assert manifest["sha256"]["model.safetensors"] == digest
    assert f"| model.safetensors | {digest} |" in (exported / "README.md").read_text()


def test_flipped_bytes_in_exported_weights_are_found_and_named(exported, tmp_path, shared_data, capsys):
    damaged = tmp_path / "damaged"
    shutil.copytree(exported, damaged)
    weights = damaged / "model.safetensors"
    data = bytearray(weights.read_bytes())
    for offset in range(len(data) - 4000, len(data) - 3000, 7):  # inside the tensor data: the header stays valid
        data[offset] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model\.safetensors.*sha256.*damaged"):
        check_model_dir(damaged)
    with pytest.raises(ValueError, match=r"model\.safetensors.*sha256"):
        load_model_and_processor(damaged)
    image = str(misc_images(shared_data)[0])
    assert main(["generate", "--model", str(damaged), image]) == 1
    err = capsys.readouterr().err
    assert "hf-rrg generate: error:" in err and "model.safetensors" in err and "damaged" in err
    check_model_dir(exported)  # the intact export passes


# ------------------------------------------------------------------------------------------ 6. privacy


def test_exports_do_not_leak_local_paths(run, exported):
    for name in ("training_config.yaml", "README.md", "metrics.json"):
        text = (exported / name).read_text()
        for leak in ("/home/alice", str(run), "~/models", "C:\\Users", "C:\\\\Users"):
            assert leak not in text, f"{leak!r} leaked into {name}"
    config = yaml.safe_load((exported / "training_config.yaml").read_text())
    assert config["data"] == {"builder": "iu_xray", "data_dir": "<local path>"}
    assert config["training"] == {"epochs": 2, "batch_size": 4, "seed": 9223}  # everything else kept
    metrics = json.loads((exported / "metrics.json").read_text())
    assert metrics["test"]["bleu_4"] == 0.1571
    assert metrics["skipped_metrics"]["meteor"] == "FileNotFoundError: [Errno 2] No such file: '<local path>'"
    assert metrics["recipe"]["recipe"] == "r2gencmn" and metrics["recipe"]["label_file"] == "<local path>"


# ------------------------------------------------------------------------------------------ data export


def _image_dataset(folder: Path, images: list[Path]) -> datasets.DatasetDict:
    rows = {"id": [p.stem for p in images], "report": ["heart is normal ."] * len(images),
            "images": [[str(p)] for p in images]}
    features = datasets.Features({"id": datasets.Value("string"), "report": datasets.Value("string"),
                                  "images": datasets.List(datasets.Image())})
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=features)})


def _pngs(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 256, (12, 10), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"im{i}.png")
        paths.append(folder / f"im{i}.png")
    return paths


def test_data_export_never_overwrites_a_users_folder_and_leaves_no_stale_splits(tmp_path):
    ds = _image_dataset(tmp_path, _pngs(tmp_path / "img", 3))
    user = tmp_path / "my_dataset"
    user.mkdir()
    (user / "README.md").write_text("# my own card")
    with pytest.raises(FileExistsError, match="not empty"):
        export_parquet(ds, user)
    with pytest.raises(FileExistsError, match="not a previous hf-rrg export"):
        export_parquet(ds, user, overwrite=True)
    assert _tree(user) == {"README.md": b"# my own card"}

    out = tmp_path / "export"
    export_parquet(datasets.DatasetDict({**ds, "test": ds["train"]}), out)
    assert (out / "data" / "test-00000-of-00001.parquet").is_file()
    export_parquet(ds, out, overwrite=True)  # a previous export of ours, now without a test split
    assert sorted(p.name for p in (out / "data").iterdir()) == ["train-00000-of-00001.parquet"]
    back = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert list(back) == ["train"] and back["train"]["id"] == ["im0", "im1", "im2"]


def test_data_export_cli_refuses_a_users_folder(tmp_path, capsys):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "README.md").write_text("# mine")
    args = ["data", "export", "demo", "--out", str(user), "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hf-rrg data export: error:") and "not a previous hf-rrg export" in err
    assert (user / "README.md").read_text() == "# mine"


def test_data_export_of_a_dicom_reads_back_and_a_corrupt_image_is_named(tmp_path, shared_data):
    from hf_rrg.modeling.image_loading import load_image

    dicom = shared_data / "misc_cxr_images" / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
    png = _pngs(tmp_path / "img", 1)[0]
    ds = _image_dataset(tmp_path, [png, dicom])
    out = tmp_path / "export"
    export_parquet(ds, out)
    back = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))["train"]
    decoded = [row["images"][0] for row in back]  # datasets decodes with PIL: every cell must be readable
    assert np.array_equal(np.asarray(load_image(decoded[0])), np.asarray(load_image(png)))
    assert np.array_equal(np.asarray(load_image(decoded[1])), np.asarray(load_image(dicom)))  # pixels as hf-rrg sees them
    import pyarrow.parquet as pq

    cells = pq.read_table(out / "data" / "train-00000-of-00001.parquet").column("images").to_pylist()
    assert [cell[0]["path"] for cell in cells] == ["im0.png", f"{dicom.stem}.png"]  # file names only, DICOM as PNG

    truncated = tmp_path / "img" / "cut.png"
    truncated.write_bytes(png.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"cut\.png"):
        export_parquet(_image_dataset(tmp_path, [png, truncated]), tmp_path / "export2")
    assert not (tmp_path / "export2").exists()
