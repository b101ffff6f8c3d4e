"""`evaluate_reports`, the evaluation protocols, the `hf-rrg evaluate` command and the `evaluate` modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hf_rrg.cli import main as cli_main
from hf_rrg.metrics import bleu, cider_d, evaluate_reports, module_path, prepare_texts, rouge_l
from hf_rrg.metrics.commands import aggregate_runs, read_predictions


@pytest.fixture(scope="module")
def iu_pairs(shared_data) -> tuple[list[str], list[str]]:
    annotation = json.loads((shared_data / "iu_xray" / "annotation.json").read_text())
    reports = [item["report"] for item in annotation["train"] if item["report"].strip()]
    return reports[:60], reports[60:120]


class KeywordLabeler:
    """Labels 'effusion' (positive unless preceded by 'no ') in Pleural Effusion's column."""

    def label_matrix(self, reports: list[str]) -> np.ndarray:
        matrix = np.full((len(reports), 14), np.nan)
        for row, report in enumerate(reports):
            if "effusion" in report:
                matrix[row, 10] = 0 if "no effusion" in report or "no pleural effusion" in report else 1
        return matrix


def test_evaluate_reports_default_equals_the_metric_functions(iu_pairs):
    predictions, references = iu_pairs
    scores = evaluate_reports(predictions, references, metrics=("bleu", "rouge_l", "cider_d"))
    # Without a cleaner the strings are scored as given (as pycocoevalcap would score them).
    assert scores["bleu_4"] == bleu(predictions, references)["bleu_4"]
    assert scores["rouge_l"] == rouge_l(predictions, references).score
    assert scores["cider_d"] == cider_d(predictions, references).score
    assert set(scores) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d"}


def test_empty_predictions_score_zero_and_empty_references_fail():
    scores = evaluate_reports(["", "heart"], ["the heart is normal .", "heart"], metrics=("bleu", "rouge_l", "cider_d"))
    assert 0 <= scores["bleu_1"] < 1 and scores["rouge_l"] == pytest.approx(0.5)
    alone = evaluate_reports([""], ["the heart is normal ."], metrics=("bleu", "rouge_l", "cider_d", "cider"))
    assert alone["bleu_4"] < 1e-6 and alone["rouge_l"] == 0.0 and alone["cider_d"] == 0.0 and alone["cider"] == 0.0
    with pytest.raises(ValueError, match=r"item 1 has an empty reference"):
        evaluate_reports(["a", "b"], ["a", "  "], metrics=("bleu",))
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_reports(["a"], ["a"], metrics=("bleu", "spice"))


def test_ce_in_evaluate_reports_with_a_labeler():
    scores = evaluate_reports(
        ["small effusion .", "no effusion ."], ["left effusion .", "effusion ."], metrics=("ce",),
        labeler=KeywordLabeler(),
    )
    assert scores["ce_micro_precision"] == 1.0 and scores["ce_micro_recall"] == 0.5
    assert scores["ce_micro_f1"] == pytest.approx(2 / 3)


def test_r2gen_protocol_maps_unknown_words_and_truncates_references(iu_pairs):
    from hf_rrg.modeling.tokenization_rrg import RRGTokenizer

    predictions, references = iu_pairs
    tokenizer = RRGTokenizer.from_reports(references, cleaner="r2gen_iu_xray", min_count=3)
    preds, refs = prepare_texts(predictions, [[r] for r in references], "r2gen", tokenizer, max_seq_length=10)
    vocab = tokenizer.get_vocab()
    assert all(len(item[0].split()) <= 9 for item in refs)
    assert all(word in vocab for text in preds for word in text.split())
    assert any("<unk>" in text.split() for text in preds)  # a 60-report vocabulary misses some words
    assert refs[0][0].split() == tokenizer.normalize_report(references[0]).split()[:9]

    r2gen = evaluate_reports(predictions, references, ("bleu",), "r2gen", tokenizer, max_seq_length=10)
    default = evaluate_reports(predictions, references, ("bleu",), "default", tokenizer)
    assert r2gen["bleu_1"] != default["bleu_1"]  # truncation and <unk> change the numbers
    assert r2gen["bleu_1"] == bleu(preds, refs)["bleu_1"]
    with pytest.raises(ValueError, match="needs max_seq_length"):
        evaluate_reports(predictions, references, ("bleu",), "r2gen", tokenizer)
    with pytest.raises(ValueError, match="pass the model's tokenizer"):
        evaluate_reports(predictions, references, ("bleu",), "r2gen", max_seq_length=60)
    with pytest.raises(ValueError, match="only applies to protocol 'r2gen'"):
        evaluate_reports(predictions, references, ("bleu",), "default", max_seq_length=60)


def test_default_protocol_with_tokenizer_cleans_without_unk_or_truncation(iu_pairs):
    from hf_rrg.modeling.report_cleaning import clean_report
    from hf_rrg.modeling.tokenization_rrg import RRGTokenizer

    predictions, references = iu_pairs
    tokenizer = RRGTokenizer.from_reports(references[:5], cleaner="r2gen_iu_xray", min_count=3)
    preds, refs = prepare_texts(predictions, [[r] for r in references], "default", tokenizer)
    assert preds[3] == clean_report(predictions[3], "r2gen_iu_xray")
    assert refs[7] == [clean_report(references[7], "r2gen_iu_xray")]
    assert "<unk>" not in " ".join(preds)


def test_chinese_protocol_scores_characters():
    scores = evaluate_reports(["心脏大小正常"], ["心脏大小正常，肺野清晰"], metrics=("rouge_l",), protocol="chinese")
    p, r, b2 = 1.0, 6 / 11, 1.2**2  # the comma is a token too
    assert scores["rouge_l"] == pytest.approx((1 + b2) * p * r / (r + b2 * p))


def test_ptb_tokenizer_as_pycocoevalcap():
    pytest.importorskip("pycocoevalcap.tokenizer.ptbtokenizer")
    import shutil

    if shutil.which("java") is None:
        pytest.skip("the PTB tokenizer needs Java")
    from hf_rrg.metrics.ptb import ptb_tokenize

    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    texts = ["The heart, is NORMAL.", "", "No effusion; (left) ok...", "Mild cardiomegaly - stable."]
    tokens = ptb_tokenize(texts)
    assert tokens == ["the heart is normal", "", "no effusion -lrb- left -rrb- ok", "mild cardiomegaly stable"]
    non_empty = [text for text in texts if text]
    oracle = PTBTokenizer().tokenize({i: [{"caption": text}] for i, text in enumerate(non_empty)})
    assert ptb_tokenize(non_empty) == [oracle[i][0] for i in range(len(non_empty))]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_cli_evaluate_single_run_and_seeds(tmp_path, capsys):
    rows_a = [{"prediction": "the heart is normal .", "reference": "the heart is normal ."},
              {"prediction": "", "reference": ["no effusion .", "lungs are clear ."]}]
    rows_b = [{"prediction": "the heart is big .", "reference": "the heart is normal ."},
              {"prediction": "no effusion .", "reference": ["no effusion .", "lungs are clear ."]}]
    a, b = _write_jsonl(tmp_path / "a.jsonl", rows_a), _write_jsonl(tmp_path / "b.jsonl", rows_b)
    out = tmp_path / "scores.json"
    assert cli_main(["evaluate", str(a), "--metrics", "bleu,rouge_l,cider_d", "--out", str(out)]) == 0
    single = json.loads(out.read_text())
    expected = evaluate_reports(*read_predictions(a), metrics=("bleu", "rouge_l", "cider_d"))
    assert single["scores"] == pytest.approx(expected)
    assert "rouge_l" in capsys.readouterr().out  # the table

    assert cli_main(["evaluate", "--runs", str(a), str(b), "--metrics", "rouge_l"]) == 0
    captured = capsys.readouterr()
    seeds = json.loads(captured.out)
    r_a = evaluate_reports(*read_predictions(a), metrics=("rouge_l",))["rouge_l"]
    r_b = evaluate_reports(*read_predictions(b), metrics=("rouge_l",))["rouge_l"]
    assert seeds["mean"]["rouge_l"] == pytest.approx((r_a + r_b) / 2)
    assert seeds["std"]["rouge_l"] == pytest.approx(abs(r_a - r_b) / np.sqrt(2))
    assert "±" in captured.err


def test_cli_errors_name_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prediction": "a", "reference": "a"}\n{"prediction": "b", "reference": ""}\n')
    assert cli_main(["evaluate", str(bad), "--metrics", "bleu"]) == 1
    assert "bad.jsonl:2: empty or invalid 'reference'" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prediction": "a", "reference": "a"}\n{"prediction": \n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2: not valid JSON"):
        read_predictions(broken)
    assert cli_main(["evaluate", str(tmp_path / "missing.jsonl")]) == 1


def test_aggregate_runs():
    mean, std = aggregate_runs([{"x": 1.0, "y": 2.0}, {"x": 3.0, "y": 2.0}, {"x": 5.0, "y": 2.0}])
    assert mean == {"x": 3.0, "y": 2.0} and std == {"x": 2.0, "y": 0.0}


def test_evaluate_modules_load_offline(tmp_path):
    """`evaluate.load(module_path(name))` works with the Hub switched off and gives the functions' numbers."""
    pytest.importorskip("evaluate")
    script = """
import json, evaluate
from hf_rrg.metrics import module_path
preds = ["the heart is normal .", "no effusion .", ""]
refs = [["the heart is normal .", "heart normal ."], ["no pleural effusion ."], ["clear lungs ."]]
out = {}
for name in ("bleu", "rouge_l", "cider_d", "cider"):
    out[name] = evaluate.load(module_path(name)).compute(predictions=preds, references=refs)
out["single"] = evaluate.load(module_path("cider_d")).compute(predictions=preds, references=[r[0] for r in refs], per_item=True)
print(json.dumps(out))
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    preds = ["the heart is normal .", "no effusion .", ""]
    refs = [["the heart is normal .", "heart normal ."], ["no pleural effusion ."], ["clear lungs ."]]
    assert out["bleu"]["bleu_4"] == pytest.approx(bleu(preds, refs)["bleu_4"], abs=1e-12)
    assert out["rouge_l"]["rouge_l"] == pytest.approx(rouge_l(preds, refs).score, abs=1e-12)
    assert out["cider_d"]["cider_d"] == pytest.approx(cider_d(preds, refs).score, abs=1e-12)
    single = cider_d(preds, [r[0] for r in refs])
    assert out["single"]["cider_d_per_item"] == pytest.approx(single.per_item["cider_d"].tolist(), abs=1e-12)
    with pytest.raises(ValueError, match="no evaluate module named"):
        module_path("spice")
