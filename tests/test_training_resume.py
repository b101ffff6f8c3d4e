"""What `--resume` accepts: the run's own config, changes that leave the trajectory as it was (recorded), other
changes only with `--resume-with-changes` (recorded), never another method's run; metric typos found before any
training; the CLI and `train.py` say each refusal in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hf_rrg.training import ConfigError, config_from_dict
from hf_rrg.training.resume import CHANGES_FILE, ResumeError, ResumePolicy, prepare_run_folder

REPO_ROOT = Path(__file__).resolve().parents[1]


class OneProcess:
    is_main_process = True

    def wait_for_everyone(self) -> None:
        pass


def config(**training):
    return config_from_dict({"method": "r2gencmn", "training": {"seed": 1, "batch_size": 4, **training},
                             "optimizer": {"lr_rest": 1e-3}})  # fmt: skip


def test_trajectory_changes_are_refused_unless_accepted_and_then_recorded(tmp_path: Path) -> None:
    prepare_run_folder(tmp_path, config(), ResumePolicy(), OneProcess())
    saved = (tmp_path / "config.yaml").read_text()
    for changed, shown in ((config(seed=2), "training.seed: 1 -> 2"), (config(batch_size=8), "training.batch_size"),
                           (config_from_dict({**config().to_dict(), "optimizer": {"lr_rest": 5e-4}}),
                            "optimizer.lr_rest: 0.001 -> 0.0005")):  # fmt: skip
        with pytest.raises(ResumeError, match=rf"{shown}.*--resume-with-changes"):
            prepare_run_folder(tmp_path, changed, ResumePolicy(resume=True), OneProcess())
    assert (tmp_path / "config.yaml").read_text() == saved and not (tmp_path / CHANGES_FILE).exists()

    changes = prepare_run_folder(tmp_path, config(epochs=200), ResumePolicy(resume=True), OneProcess())
    assert changes == {"training.epochs": (100, 200)}  # more epochs: the same trajectory, accepted and recorded
    prepare_run_folder(tmp_path, config(epochs=200, seed=2), ResumePolicy(resume=True, with_changes=True),
                       OneProcess())  # fmt: skip
    records = [json.loads(line) for line in (tmp_path / CHANGES_FILE).read_text().splitlines()]
    assert records[0]["changes"] == {"training.epochs": {"old": 100, "new": 200}}
    assert records[0]["accepted_with_flag"] == []
    assert records[1]["changes"] == {"training.seed": {"old": 1, "new": 2}}
    assert records[1]["accepted_with_flag"] == ["training.seed"]
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["training"]["seed"] == 2


def test_another_methods_run_is_never_resumed(tmp_path: Path) -> None:
    prepare_run_folder(tmp_path, config_from_dict({"method": "r2gen"}), ResumePolicy(), OneProcess())
    with pytest.raises(ResumeError, match=r"holds a 'r2gen' run; this config trains 'r2gencmn'"):
        prepare_run_folder(tmp_path, config(), ResumePolicy(resume=True, with_changes=True), OneProcess())


def test_a_fresh_run_refuses_a_folder_that_holds_one(tmp_path: Path) -> None:
    (tmp_path / "stages").mkdir()
    with pytest.raises(FileExistsError, match="pass --resume to continue it"):
        prepare_run_folder(tmp_path, config(), ResumePolicy(), OneProcess(), existing=tmp_path / "stages")


def test_metric_typos_are_found_before_training(tmp_path: Path) -> None:
    from hf_rrg.training import fit

    with pytest.raises(ConfigError, match=r"training.val_metric 'bleu4' is not a score of evaluation.val_metrics.*bleu_4"):
        fit(config(val_metric="bleu4"), tmp_path / "a")
    changed = config()
    changed.evaluation.test_metrics = ["bleuu"]  # changed in Python after the config was checked
    with pytest.raises(ConfigError, match=r"evaluation.test_metrics has unknown metric\(s\) \['bleuu'\]"):
        fit(changed, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing was started


@pytest.mark.parametrize("entry", ["cli", "train.py"])
def test_resume_problems_are_one_line_without_traceback(entry: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    prepare_run_folder(run_dir, config_from_dict({"method": "r2gen"}), ResumePolicy(), OneProcess())
    cfg = tmp_path / "cmn.yaml"
    cfg.write_text(yaml.safe_dump(config().to_dict()))
    if entry == "cli":
        command = [sys.executable, "-m", "hf_rrg.cli", "train", str(cfg)]
    else:
        command = [sys.executable, str(REPO_ROOT / "training_scripts" / "train.py"), "--config", str(cfg)]
    done = subprocess.run([*command, "--output-dir", str(run_dir), "--resume"], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert len(lines) == 1 and "holds a 'r2gen' run" in lines[0] and "Traceback" not in done.stderr, done.stderr
