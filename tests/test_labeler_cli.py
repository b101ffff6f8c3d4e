"""`hf-rrg label`: CheXpert CSV in/out (byte-identical to the labeler's own gold file) and JSONL."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from hf_rrg.cli import main
from hf_rrg.labeling import OBSERVATIONS, CheXpertLabeler
from hf_rrg.labeling.io import infer_format, read_reports


def test_chexpert_csv_round_trip_matches_gold_bytes(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "chexpert_labeler"
    out = tmp_path / "labeled.csv"
    assert main(["label", str(folder / "sample_reports.csv"), "--out", str(out), "--no-progress"]) == 0
    assert out.read_bytes() == (folder / "labeled_reports.csv").read_bytes()


def test_csv_with_commas_quotes_and_newlines(tmp_path: Path) -> None:
    reports = ['No effusion, no pneumothorax.', 'Line 1.\nPossible "pneumonia".', "Mild cardiomegaly."]
    source = tmp_path / "reports.csv"
    with open(source, "w", newline="") as handle:
        csv.writer(handle).writerows([[r] for r in reports])
    out = tmp_path / "out.csv"
    assert main(["label", str(source), "--out", str(out), "--no-progress"]) == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["Reports"] for r in rows] == reports
    assert list(rows[0]) == ["Reports", *OBSERVATIONS]
    assert (rows[0]["Pleural Effusion"], rows[0]["Pneumothorax"], rows[0]["No Finding"]) == ("0.0", "0.0", "1.0")
    assert (rows[1]["Pneumonia"], rows[1]["No Finding"]) == ("-1.0", "")
    assert rows[2]["Cardiomegaly"] == "1.0" and rows[2]["Edema"] == ""


def test_jsonl_round_trip_with_ids_and_mentions(tmp_path: Path) -> None:
    records = [{"id": "a", "report": "No effusion. Mild cardiomegaly."}, {"report": "Possible pneumonia."}]
    source = tmp_path / "reports.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    out = tmp_path / "labels.jsonl"
    assert main(["label", str(source), "--out", str(out), "--no-progress"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["id"] == "a" and "id" not in lines[1]
    assert list(lines[0]["labels"]) == list(OBSERVATIONS)
    assert lines[0]["labels"]["Cardiomegaly"] == 1 and lines[0]["labels"]["Pleural Effusion"] == 0
    assert lines[0]["labels"]["Edema"] is None and lines[1]["labels"]["Pneumonia"] == -1
    mention = next(m for m in lines[0]["mentions"] if m["observation"] == "Cardiomegaly")
    assert lines[0]["sentences"][mention["sentence_index"]][mention["start"]:mention["end"]] == "cardiomegaly"
    expected = CheXpertLabeler().label(records[0]["report"])
    assert lines[0]["mentions"] == [m.to_dict() for m in expected.mentions]


def test_format_flags_override_suffixes(tmp_path: Path) -> None:
    source = tmp_path / "reports.txt"
    source.write_text(json.dumps({"id": 7, "report": "No pneumothorax."}) + "\n")
    out = tmp_path / "labels.out"
    code = main(["label", str(source), "--input-format", "jsonl", "--out", str(out), "--format", "csv", "--no-progress"])
    assert code == 0
    with open(out, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[1][0] == "No pneumothorax." and rows[1][1 + OBSERVATIONS.index("Pneumothorax")] == "0.0"


def test_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["label", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o.csv")]) == 1
    assert "missing.csv" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no report key"}\n')
    assert main(["label", str(bad), "--out", str(tmp_path / "o.jsonl")]) == 1
    assert 'line 1 must be an object with a string "report"' in capsys.readouterr().err
    two = tmp_path / "two.csv"
    two.write_text("a,b\n")
    with pytest.raises(ValueError, match="2 fields"):
        read_reports(two)
    with pytest.raises(ValueError, match="suffix"):
        infer_format(tmp_path / "labels.parquet")
