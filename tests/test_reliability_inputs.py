"""Bad input gets one clear line and loses nothing: the CLI, `generate`, DICOM size, report_folder, encodings, push.

Issue 16 items 3 (datasets), 4 (tracebacks) and 5 (bounded memory), each reproduced here.
"""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_hub_fixtures import make_run_dir, misc_images, real_reports

from hf_rrg.cli import main
from hf_rrg.data import load_builder
from hf_rrg.modeling import RRGImageProcessor
from hf_rrg.modeling.image_loading import ImageLoadError, ImageTooLargeError, load_image

pydicom = pytest.importorskip("pydicom")


def write_dicom(path: Path, rows: int, columns: int, pixel_bytes: bytes | None = None) -> Path:
    """A minimal 16-bit MONOCHROME2 DICOM written by pydicom (pixel data zeros unless given)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "OT", "anonymous"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixel_bytes if pixel_bytes is not None else bytes(rows * columns * 2)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, shared_data) -> Path:
    run = make_run_dir(tmp_path_factory.mktemp("inputs") / "run", "r2gencmn", real_reports(shared_data), seed=3)
    out = run.parent / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    return out


# ------------------------------------------------------------------------------------------ the CLI itself


@pytest.mark.parametrize(
    ("option", "value"), [("--num-beams", "0"), ("--max-new-tokens", "-1"), ("--batch-size", "0")]
)
def test_generate_refuses_non_positive_numbers(model_dir, shared_data, option, value, capsys):
    image = str(misc_images(shared_data)[0])
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--model", str(model_dir), image, option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"hf-rrg generate: error: argument {option}: must be an integer >= 1, got {value!r}" in err


def test_generate_on_cuda_without_a_gpu_says_so(model_dir, shared_data, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    image = str(misc_images(shared_data)[0])
    assert main(["generate", "--model", str(model_dir), image, "--device", "cuda"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "hf-rrg generate: error: --device cuda: no CUDA GPU is available on this machine "
        "(torch.cuda.is_available() is False); use --device cpu"
    ]
    assert main(["generate", "--model", str(model_dir), image, "--device", "gpu0"]) == 1
    assert "--device gpu0 is not a device" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path, capsys):
    missing = str(tmp_path / "nothing.yaml")
    assert main(["train", missing]) == 1
    assert capsys.readouterr().err.strip() == f"hf-rrg train: error: training config file {missing} does not exist"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["--debug", "train", missing])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["train", missing, "--debug"])  # also accepted after the sub-command


def test_nested_sub_commands_are_named_in_errors(capsys):
    assert main(["data", "info", "not_a_builder"]) == 1
    assert capsys.readouterr().err.startswith("hf-rrg data info: error: Unknown dataset builder 'not_a_builder'")


# ------------------------------------------------------------------------------------------ 5. generate, memory


def test_one_bad_image_among_many_writes_the_good_reports_and_names_the_bad_file(model_dir, shared_data, tmp_path,
                                                                                 capsys):
    good = [str(p) for p in misc_images(shared_data)[:3]]
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(Path(good[0]).read_bytes()[:2000])
    images = [good[0], good[1], str(truncated), good[2]]
    assert main(["generate", "--model", str(model_dir), *good, "--json", "--num-beams", "1"]) == 0
    expected = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert main(["generate", "--model", str(model_dir), *images, "--json", "--num-beams", "1", "--batch-size", "2"]) == 1
    captured = capsys.readouterr()
    assert [json.loads(line) for line in captured.out.splitlines()] == expected  # the good studies, in order
    err = [line for line in captured.err.splitlines() if line.startswith("hf-rrg")]  # not the progress bars
    assert len(err) == 2
    assert err[0].startswith(f"hf-rrg generate: error: Image file {truncated} is truncated or corrupt")
    assert err[1] == "hf-rrg generate: error: 1 of 4 studies failed (named above); the other 3 reports were written"


def test_a_huge_dicom_is_refused_before_decoding_with_bounded_memory(tmp_path):
    path = write_dicom(tmp_path / "huge.dcm", 12000, 12000)  # 288 MB of 16-bit pixels
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match=r"huge\.dcm is 12000x12000 = 144000000 pixels.*HF_RRG_MAX_IMAGE_PIXELS"):
            load_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, f"peak {peak / 2**20:.0f} MiB while refusing the file"


def test_the_pixel_limit_is_configurable_and_applies_to_png_too(tmp_path, monkeypatch):
    ramp = (np.arange(300 * 200, dtype=np.uint32).reshape(300, 200) * 7 % 65536).astype(np.uint16)
    dicom = write_dicom(tmp_path / "small.dcm", 300, 200, ramp.tobytes())
    png = tmp_path / "small.png"
    Image.fromarray(ramp).save(png)
    assert load_image(dicom).size == load_image(png).size == (200, 300)
    monkeypatch.setenv("HF_RRG_MAX_IMAGE_PIXELS", "50000")
    for path in (dicom, png):
        with pytest.raises(ImageTooLargeError, match=f"{path.name} is 200x300 = 60000 pixels, more than the limit of 50000"):
            load_image(path)
    monkeypatch.setenv("HF_RRG_MAX_IMAGE_PIXELS", "none")
    assert load_image(dicom).size == (200, 300)


# ------------------------------------------------------------------------------------------ report_folder


def _folder(root: Path, reports: list[str], images: dict[int, Path] | None = None) -> Path:
    """`root`/studies.csv with one PNG per report (row i uses `images[i]` instead when given); splits by row."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, report in enumerate(reports):
        path = root / f"s{i}.png"
        pixels = np.random.default_rng(i).integers(0, 256, (16, 12), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        if images and i in images:
            path = images[i]
        rows.append({"id": f"s{i}", "image": path.name, "report": report, "split": ["train", "val", "test"][i % 3]})
    with open(root / "studies.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


REPORTS = [f"the heart is normal . study {i} ." for i in range(9)]


def test_report_folder_decodes_dicom_through_the_hf_rrg_loader(tmp_path, shared_data):
    source = shared_data / "misc_cxr_images" / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
    root = tmp_path / "data"
    root.mkdir()
    (root / "scan.dcm").write_bytes(source.read_bytes())
    root = _folder(root, REPORTS, {1: root / "scan.dcm"})
    ds = load_builder("report_folder", root, cache_dir=tmp_path / "cache")
    row = next(r for r in ds["validation"] if r["id"] == "s1")
    processor = RRGImageProcessor(eval_size=64, max_views=1)
    ours = processor([row["images"]], return_tensors="pt")["pixel_values"]
    direct = processor([[load_image(source)]], return_tensors="pt")["pixel_values"]
    assert torch.equal(ours, direct)


def test_report_folder_checks_every_image_when_built_and_can_skip_and_list_bad_ones(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    write_dicom(bad / "empty.dcm", 4, 4)  # constant pixels: carries no information
    root = _folder(bad, REPORTS, {2: bad / "cut.png", 4: bad / "empty.dcm"})
    with pytest.raises(ImageLoadError, match=r"2 image file\(s\) .* cannot be read.*cut\.png.*empty\.dcm.*skip_bad_images=True"):
        load_builder("report_folder", root, cache_dir=tmp_path / "cache")
    capsys.readouterr()
    ds = load_builder("report_folder", root, cache_dir=tmp_path / "cache", skip_bad_images=True)
    assert sorted(r for d in ds.values() for r in d["id"]) == [f"s{i}" for i in range(9) if i not in (2, 4)]
    captured = capsys.readouterr()
    assert "left out 2 studies with unreadable images" in captured.out
    assert str(bad / "cut.png") in captured.out and str(bad / "empty.dcm") in captured.out
    assert "checking images" in captured.err  # the progress bar over the check


def test_report_folder_refuses_reports_without_words(tmp_path):
    root = _folder(tmp_path / "data", [*REPORTS[:3], "...", " - ", *REPORTS[5:]])
    with pytest.raises(ValueError, match=r"2 row\(s\) have an empty or word-less 'report' \(first: \['s3', 's4'\]\)"):
        load_builder("report_folder", root, cache_dir=tmp_path / "cache")


def test_non_utf8_tables_and_label_files_name_the_file_and_the_byte(tmp_path):
    root = _folder(tmp_path / "data", REPORTS)
    table = root / "studies.csv"
    table.write_bytes(table.read_text(encoding="utf-8").replace("study 4", "étude 4").encode("latin-1"))
    with pytest.raises(ValueError, match=r"studies\.csv is not UTF-8 text: byte 0xe9 at line 6.*iconv"):
        load_builder("report_folder", root, cache_dir=tmp_path / "cache")

    from hf_rrg.labeling.io import read_reports
    from hf_rrg.xpronet.labels import read_label_file

    reports = tmp_path / "reports.jsonl"
    reports.write_bytes('{"report": "épanchement"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"reports\.jsonl is not UTF-8 text: byte 0xe9 at line 1"):
        read_reports(reports)
    labels = tmp_path / "labels.json"
    labels.write_bytes('{"format": "é"}'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"labels\.json is not UTF-8 text: byte 0xe9 at line 1"):
        read_label_file(labels)


# ------------------------------------------------------------------------------------------ push


def test_push_without_a_token_says_how_to_log_in(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    exports = []
    monkeypatch.setattr("hf_rrg.hub.push.export_model", lambda *a, **k: exports.append(a))
    assert main(["push", str(tmp_path), "--repo-id", "me/tiny"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hf-rrg push: error: no Hugging Face token") and "hf auth login" in err and "HF_TOKEN" in err
    assert exports == []  # nothing exported before the missing token was found
