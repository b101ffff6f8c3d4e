"""Evaluation inputs that must be refused or reported, never averaged or scored silently (issue 16, items 3-4),
and the ROUGE-L whitespace edge against pycocoevalcap (issue 19)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hf_rrg.cli import main as cli_main
from hf_rrg.metrics import evaluate_reports, rouge_l


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


ROWS = [
    {"id": "s1", "prediction": "the heart is normal .", "reference": "the heart is normal ."},
    {"id": "s2", "prediction": "no effusion .", "reference": "no pleural effusion ."},
    {"id": "s3", "prediction": "lungs are clear .", "reference": "the lungs are clear ."},
]


def test_runs_with_different_ids_are_refused_naming_files_and_first_id(tmp_path, capsys):
    a = _write_jsonl(tmp_path / "seed1.jsonl", ROWS)
    b = _write_jsonl(tmp_path / "seed2.jsonl", [ROWS[0], {**ROWS[1], "id": "other"}, ROWS[2]])
    assert cli_main(["evaluate", "--runs", str(a), str(b), "--metrics", "rouge_l"]) == 1
    err = capsys.readouterr().err
    assert "seed1.jsonl" in err and "seed2.jsonl" in err and "'s2'" in err and "'other'" in err


def test_runs_with_different_lengths_are_refused(tmp_path, capsys):
    a = _write_jsonl(tmp_path / "seed1.jsonl", ROWS)
    b = _write_jsonl(tmp_path / "seed2.jsonl", ROWS[:2])
    assert cli_main(["evaluate", "--runs", str(a), str(b), "--metrics", "rouge_l"]) == 1
    err = capsys.readouterr().err
    assert "seed2.jsonl" in err and "2 studies" in err and "3" in err


def test_runs_without_ids_compare_references_line_by_line(tmp_path, capsys):
    plain = [{k: v for k, v in row.items() if k != "id"} for row in ROWS]
    a = _write_jsonl(tmp_path / "a.jsonl", plain)
    b = _write_jsonl(tmp_path / "b.jsonl", [plain[0], plain[2], plain[1]])  # same studies, other order
    assert cli_main(["evaluate", "--runs", str(a), str(b), "--metrics", "rouge_l"]) == 1
    assert "line 2" in capsys.readouterr().err


def test_duplicate_ids_are_refused(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "dup.jsonl", [ROWS[0], ROWS[1], {**ROWS[2], "id": "s1"}])
    assert cli_main(["evaluate", str(path), "--metrics", "rouge_l"]) == 1
    err = capsys.readouterr().err
    assert "dup.jsonl:3" in err and "'s1'" in err and "line 1" in err


class _NoFindingLabeler:
    """Like a CheXpert labeler: 'No Finding' is positive when no observation is mentioned."""

    def label_matrix(self, reports):
        matrix = np.full((len(reports), 14), np.nan)
        for row, report in enumerate(reports):
            if "effusion" in report:
                matrix[row, 10] = 1
            else:
                matrix[row, 0] = 1
        return matrix


def test_references_without_words_are_refused_not_scored_as_no_finding(tmp_path, capsys):
    # Today a reference "..." is labelled No Finding and a normal prediction scores CE F1 = 1.0 against it.
    with pytest.raises(ValueError, match=r"item 1 has a reference with no words \('\.\.\. \.'\)"):
        evaluate_reports(["heart normal .", "heart normal ."], ["effusion .", "... ."], metrics=("ce",),
                         labeler=_NoFindingLabeler())
    path = _write_jsonl(tmp_path / "dots.jsonl", [ROWS[0], {**ROWS[1], "reference": "..."}])
    assert cli_main(["evaluate", str(path), "--metrics", "bleu"]) == 1
    assert "dots.jsonl:2" in capsys.readouterr().err


def test_non_utf8_file_is_one_line_naming_file_and_encoding(tmp_path, capsys):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        (json.dumps(ROWS[0]) + "\n" + '{"prediction": "épanchement", "reference": "effusion"}\n').encode("latin-1")
    )
    assert cli_main(["evaluate", str(path), "--metrics", "bleu"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "latin1.jsonl" in err and "UTF-8" in err and "line 2" in err


def test_meteor_without_java_is_skipped_and_other_scores_kept(tmp_path, capsys, monkeypatch):
    path = _write_jsonl(tmp_path / "p.jsonl", ROWS)
    out = tmp_path / "scores.json"
    monkeypatch.setenv("PATH", str(tmp_path / "no-java-here"))
    code = cli_main(["evaluate", str(path), "--metrics", "bleu,rouge_l,meteor", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1  # meteor was asked for explicitly and could not be computed
    written = json.loads(out.read_text())
    assert written["scores"]["rouge_l"] == pytest.approx(evaluate_reports(
        [r["prediction"] for r in ROWS], [r["reference"] for r in ROWS], metrics=("rouge_l",))["rouge_l"])
    assert "bleu_4" in written["scores"] and "meteor" not in written["scores"]
    assert "Java was not found" in written["skipped"]["meteor"]
    assert "meteor skipped" in captured.err


def test_meteor_without_java_in_the_default_metrics_is_a_warning(tmp_path, capsys, monkeypatch):
    path = _write_jsonl(tmp_path / "p.jsonl", ROWS)
    monkeypatch.setenv("PATH", str(tmp_path / "no-java-here"))
    monkeypatch.setattr("hf_rrg.metrics.commands.DEFAULT_CLI_METRICS", ("bleu", "meteor"))
    assert cli_main(["evaluate", str(path), "--out", str(tmp_path / "s.json")]) == 0
    assert "meteor skipped" in capsys.readouterr().err


# ---- ROUGE-L: pycocoevalcap splits on single spaces and counts the empty tokens ----

DOUBLE_SPACED = [
    ("the heart is normal .  .", ["the heart is normal ."]),
    ("no  acute disease .", ["no acute  disease .  ."]),
    ("  lungs clear", ["lungs  clear  "]),
    ("a b", ["a  b"]),
]


def _pycoco_rouge(predictions, references):
    rouge = pytest.importorskip("pycocoevalcap.rouge.rouge")
    gts = {i: list(refs) for i, refs in enumerate(references)}
    res = {i: [p] for i, p in enumerate(predictions)}
    return rouge.Rouge().compute_score(gts, res)


def test_rouge_l_counts_empty_tokens_like_pycocoevalcap():
    predictions = [p for p, _ in DOUBLE_SPACED]
    references = [r for _, r in DOUBLE_SPACED]
    corpus, per_item = _pycoco_rouge(predictions, references)
    ours = rouge_l(predictions, references)
    assert ours.score == pytest.approx(corpus, abs=1e-15)
    np.testing.assert_allclose(ours.per_item["rouge_l"], per_item, atol=1e-15)
    assert ours.per_item["rouge_l"][3] < 1.0  # "a b" vs "a  b": the empty token is a word to pycocoevalcap


def test_evaluate_reports_scores_strings_as_given_like_pycocoevalcap(shared_data):
    """R2Gen's cleaner writes '.  .' for an empty sentence: the default protocol must not normalise it away."""
    from hf_rrg.modeling.report_cleaning import clean_r2gen_iu_xray

    annotation = json.loads((shared_data / "iu_xray" / "annotation.json").read_text())
    test_key = "test" if "test" in annotation else "    "
    references = [clean_r2gen_iu_xray(item["report"]) for item in annotation[test_key]]
    assert any("  " in text for text in references)  # the edge is present in the real test split
    predictions = references[1:] + references[:1]
    corpus, _ = _pycoco_rouge(predictions, [[r] for r in references])
    assert evaluate_reports(predictions, references, metrics=("rouge_l",))["rouge_l"] == pytest.approx(corpus, abs=1e-12)
