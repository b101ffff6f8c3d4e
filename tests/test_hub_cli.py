"""`hf-rrg export` and `hf-rrg generate` on a tiny run: outputs, and the errors for bad models and images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_hub_fixtures import make_run_dir, misc_images, real_reports

from hf_rrg.cli import main


@pytest.fixture(scope="module")
def exported(tmp_path_factory, shared_data) -> Path:
    base = tmp_path_factory.mktemp("cli")
    run = make_run_dir(base / "run", "r2gencmn", real_reports(shared_data), seed=3)
    out = base / "export"
    assert main(["export", str(run), "--out", str(out), "--repo-id", "org/tiny"]) == 0
    return out


@pytest.fixture(scope="module")
def expected(exported, shared_data):
    """Reports straight from the model: single-view studies of the 5 images, and one two-view study."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(exported).eval()
    processor = AutoProcessor.from_pretrained(exported)
    images = misc_images(shared_data)
    with torch.no_grad():
        single = model.generate(**processor(images=[[path] for path in images[:3]]))
        pair = model.generate(**processor(images=[[images[0], images[3]]]), num_beams=1)
    return (
        processor.batch_decode(single, skip_special_tokens=True),
        processor.batch_decode(pair, skip_special_tokens=True)[0],
    )


def test_export_command_writes_the_repo(exported, capsys):
    assert (exported / "model.safetensors").is_file() and (exported / "README.md").is_file()
    assert json.loads((exported / "config.json").read_text())["custom_pipelines"]
    again = exported.parent / "again"
    assert main(["export", str(exported.parent / "run"), "--out", str(again)]) == 0
    assert f"-> {again}" in capsys.readouterr().out
    # a second export into the now non-empty folder is refused with a clear message, unless --overwrite
    assert main(["export", str(exported.parent / "run"), "--out", str(again)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["export", str(exported.parent / "run"), "--out", str(again), "--overwrite"]) == 0


def test_generate_one_study_per_image(exported, expected, shared_data, capsys):
    images = [str(path) for path in misc_images(shared_data)[:3]]
    assert main(["generate", "--model", str(exported), images[0]]) == 0
    assert capsys.readouterr().out.strip() == expected[0][0]
    assert main(["generate", "--model", str(exported), *images, "--json", "--batch-size", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [{"images": [image], "report": report} for image, report in zip(images, expected[0])]


def test_generate_views_per_study(exported, expected, shared_data, capsys):
    images = misc_images(shared_data)
    args = ["generate", "--model", str(exported), str(images[0]), str(images[3]), "--views-per-study", "2"]
    assert main([*args, "--num-beams", "1"]) == 0
    assert capsys.readouterr().out.strip() == expected[1]
    assert main([*args[:5], str(images[1]), "--views-per-study", "2"]) == 1  # 3 images, 2 views per study
    assert "not a multiple of --views-per-study 2" in capsys.readouterr().err


def test_generate_bad_images_are_named(exported, tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("this is a text file, not an image")
    assert main(["generate", "--model", str(exported), str(text)]) == 1
    err = capsys.readouterr().err
    assert "hf-rrg generate: error:" in err and "notes.png" in err
    assert main(["generate", "--model", str(exported), str(tmp_path / "missing.png")]) == 1
    assert "missing.png does not exist" in capsys.readouterr().err


def test_generate_bad_model_folders(exported, shared_data, tmp_path, capsys):
    image = str(misc_images(shared_data)[0])
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / "model.safetensors").write_bytes((exported / "model.safetensors").read_bytes()[:1000])
    assert main(["generate", "--model", str(broken), image]) == 1
    err = capsys.readouterr().err
    assert "model.safetensors is not a readable safetensors file" in err and "corrupt" in err
    (broken / "model.safetensors").unlink()
    shutil.copyfile(exported / "model.safetensors", broken / "model.safetensors")
    (broken / "tokenizer.json").unlink()
    assert main(["generate", "--model", str(broken), image]) == 1
    assert "tokenizer.json is missing" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path / "nowhere"), image]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_generate_takes_a_run_folder_and_options_between_images(exported, expected, shared_data, capsys):
    """`--model RUN_DIR` is the run's `model/`; options may sit between the image paths (argparse alone refuses)."""
    run = exported.parent / "run"
    images = [str(path) for path in misc_images(shared_data)[:3]]
    command = ["generate", "--model", str(run), images[0], "--json", images[1], "--batch-size", "2", images[2]]
    assert main(command) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [{"images": [image], "report": report} for image, report in zip(images, expected[0])]
    with pytest.raises(SystemExit):  # an unknown option among the images is still a usage error
        main(["generate", "--model", str(run), images[0], "--no-such-option", images[1]])
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_generate_progress_bar_on_stderr_and_quiet(exported, expected, shared_data, capsys):
    images = [str(path) for path in misc_images(shared_data)[:3]]
    reports = [f"{image}: {report}" for image, report in zip(images, expected[0])]
    assert main(["generate", "--model", str(exported), *images]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == reports  # the bar never lands in the reports
    assert "generate: 100%" in captured.err and "3/3" in captured.err
    assert main(["generate", "--model", str(exported), *images, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == reports
    assert captured.err == ""  # neither our bar nor transformers' "Loading weights"


def test_export_shows_only_its_own_progress_bar(exported, capsys):
    from transformers.utils import logging

    out = exported.parent / "one_bar"
    assert main(["export", str(exported.parent / "run"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "export:" in err
    assert "Loading weights" not in err and "Writing model shards" not in err  # transformers' bars are off inside
    assert logging.is_progress_bar_enabled()  # and are back on afterwards
