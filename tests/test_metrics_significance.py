"""Bootstrap intervals and paired significance tests: per-study statistics give each resample's *corpus* score
exactly as the metric functions compute it on the resampled list; intervals and p-values behave as defined."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hf_rrg.cli import main as cli_main
from hf_rrg.metrics import bleu, cider_d, cider_original, clinical_efficacy_from_labels, rouge_l
from hf_rrg.metrics.bleu import bleu_statistics
from hf_rrg.metrics.cider import cider_statistics
from hf_rrg.metrics.evaluate_reports import evaluate_detailed
from hf_rrg.metrics.significance import bootstrap_intervals, compare_systems, resample_weights
from hf_rrg.metrics.statistics import BleuStatistics, LabelStatistics, MeanStatistics


@pytest.fixture(scope="module")
def iu_reports(shared_data) -> list[str]:
    annotation = json.loads((shared_data / "iu_xray" / "annotation.json").read_text())
    return [item["report"] for split in annotation.values() for item in split if item["report"].strip()]


def _resampled(values, weights_row):
    return [values[i] for i in np.repeat(np.arange(len(values)), weights_row.astype(int))]


def test_each_resample_is_the_metric_of_the_resampled_list(iu_reports):
    """BLEU, ROUGE-L, CIDEr-D (document frequencies of the resample) and original CIDEr, with 1-2 references."""
    refs = [[r] if i % 3 else [r, iu_reports[(i + 7) % 120]] for i, r in enumerate(iu_reports[:120])]
    preds = iu_reports[120:240]
    weights = resample_weights(len(preds), resamples=3, seed=5).astype(np.float64)
    families = [BleuStatistics(*bleu_statistics(preds, refs)), MeanStatistics(rouge_l(preds, refs).per_item),
                cider_statistics(preds, refs), cider_statistics(preds, refs, clipped=False)]
    fast = {name: values for family in families for name, values in family.corpus(weights).items()}
    for row, w in enumerate(weights):
        p, r = _resampled(preds, w), _resampled(refs, w)
        assert fast["bleu_4"][row] == pytest.approx(bleu(p, r)["bleu_4"], abs=1e-12)
        assert fast["bleu_1"][row] == pytest.approx(bleu(p, r)["bleu_1"], abs=1e-12)
        assert fast["rouge_l"][row] == pytest.approx(rouge_l(p, r).score, abs=1e-12)
        assert fast["cider_d"][row] == pytest.approx(cider_d(p, r).score, abs=1e-12)
        assert fast["cider"][row] == pytest.approx(cider_original(p, r).score, abs=1e-12)


def test_label_statistics_resample_equals_clinical_efficacy():
    rng = np.random.default_rng(3)
    predicted = rng.choice([1.0, 0.0, -1.0, np.nan], size=(40, 14))
    reference = rng.choice([1.0, 0.0, -1.0, np.nan], size=(40, 14))
    statistics = LabelStatistics((predicted == 1).astype(int), (reference == 1).astype(int))
    weights = resample_weights(40, resamples=2, seed=1)
    fast = statistics.corpus(weights)
    for row, w in enumerate(weights):
        index = np.repeat(np.arange(40), w)
        expected = clinical_efficacy_from_labels(predicted[index], reference[index]).as_dict()
        for name in statistics.names:
            assert fast[name][row] == pytest.approx(expected[name], abs=1e-12), name


def test_resample_weights_are_seeded_multinomial_counts():
    weights = resample_weights(50, resamples=20, seed=7)
    assert weights.shape == (20, 50) and (weights.sum(axis=1) == 50).all()
    assert np.array_equal(weights, resample_weights(50, resamples=20, seed=7))
    assert not np.array_equal(weights, resample_weights(50, resamples=20, seed=8))


def test_interval_is_the_percentile_of_the_resampled_means():
    values = np.array([0.1, 0.9, 0.4, 0.3, 0.8, 0.0, 0.5])
    interval = bootstrap_intervals([MeanStatistics({"x": values})], resamples=200, seed=2, level=0.9)["x"]
    means = resample_weights(7, 200, 2) @ values / 7
    assert interval.estimate == pytest.approx(values.mean())
    assert interval.low == pytest.approx(np.quantile(means, 0.05)) and interval.high == pytest.approx(np.quantile(means, 0.95))


def test_interval_contains_the_estimate_and_shrinks_with_more_studies(iu_reports):
    def widths(n):
        refs, preds = iu_reports[:n], iu_reports[1 : n + 1]
        result = evaluate_detailed(preds, refs, metrics=("bleu", "rouge_l", "cider_d"), statistics=True)
        intervals = bootstrap_intervals(result.statistics, resamples=200, seed=0)
        for name, interval in intervals.items():
            assert interval.low <= result.scores[name] <= interval.high, name
            assert interval.estimate == pytest.approx(result.scores[name], abs=1e-12)
        return {name: i.high - i.low for name, i in intervals.items()}

    small, large = widths(100), widths(900)
    for name in ("bleu_4", "rouge_l", "cider_d"):
        assert large[name] < 0.6 * small[name], name  # ~1/3 expected (1/sqrt(9))


def test_compare_references_against_predictions_is_significant_and_a_file_against_itself_is_not(iu_reports):
    refs, preds = iu_reports[:150], iu_reports[150:300]
    both = evaluate_detailed(refs + preds, refs + refs, metrics=("bleu", "rouge_l", "cider_d"), statistics=True)
    result = compare_systems(both.statistics, trials=300, resamples=300, seed=0)
    for name, row in result.items():
        assert row.a > row.b and row.p_randomization < 0.01 and row.p_bootstrap < 0.01, name
        assert row.difference_low > 0, name
    alone = evaluate_detailed(preds, refs, metrics=("bleu", "rouge_l", "cider_d")).scores
    assert result["cider_d"].b == pytest.approx(alone["cider_d"], abs=1e-12)
    assert result["bleu_4"].b == pytest.approx(alone["bleu_4"], abs=1e-12)

    same = evaluate_detailed(preds + preds, refs + refs, metrics=("bleu", "rouge_l", "cider_d"), statistics=True)
    for name, row in compare_systems(same.statistics, trials=200, resamples=200, seed=0).items():
        assert abs(row.difference) < 1e-12 and row.p_randomization == 1.0 and row.p_bootstrap == 1.0, name


def _write_jsonl(path, ids, preds, refs):
    path.write_text("".join(json.dumps({"id": i, "prediction": p, "reference": r}) + "\n"
                            for i, p, r in zip(ids, preds, refs)), encoding="utf-8")
    return path


def test_cli_ci_and_compare(iu_reports, tmp_path, capsys):
    ids = [f"s{i}" for i in range(80)]
    refs, preds = iu_reports[:80], iu_reports[80:160]
    a = _write_jsonl(tmp_path / "refs.jsonl", ids, refs, refs)
    b = _write_jsonl(tmp_path / "model.jsonl", ids, preds, refs)
    out = tmp_path / "ci.json"
    assert cli_main(["evaluate", str(b), "--metrics", "bleu,rouge_l", "--ci", "--resamples", "200", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert set(written["ci"]) == set(written["scores"]) and written["ci_settings"]["resamples"] == 200
    for name, value in written["scores"].items():
        assert written["ci"][name]["low"] <= value <= written["ci"][name]["high"]
    assert "[" in capsys.readouterr().out  # the interval is in the table

    assert cli_main(["evaluate", str(a), "--compare", str(b), "--metrics", "rouge_l", "--resamples", "200",
                     "--out", str(out)]) == 0
    row = json.loads(out.read_text())["comparison"]["rouge_l"]
    assert row["a"] == pytest.approx(1.0) and row["p_randomization"] < 0.01 and row["p_bootstrap"] < 0.01
    assert "p (rand.)" in capsys.readouterr().out

    other = _write_jsonl(tmp_path / "other.jsonl", ids[:5] + ["x"] + ids[6:], preds, refs)
    assert cli_main(["evaluate", str(a), "--compare", str(other), "--metrics", "rouge_l"]) == 1
    err = capsys.readouterr().err
    assert "refs.jsonl" in err and "other.jsonl" in err and "'s5'" in err and "'x'" in err


def test_cli_into_merges_scores_and_intervals_into_metrics_json(iu_reports, tmp_path, capsys):
    ids = [f"s{i}" for i in range(40)]
    predictions = _write_jsonl(tmp_path / "predictions.jsonl", ids, iu_reports[40:80], iu_reports[:40])
    metrics_json = tmp_path / "metrics.json"
    metrics_json.write_text(json.dumps({"method": "r2gen", "test": {"bleu_1": 0.123}}))
    assert cli_main(["evaluate", str(predictions), "--metrics", "rouge_l", "--ci", "--resamples", "100",
                     "--out", str(tmp_path / "o.json"), "--into", str(metrics_json)]) == 0
    merged = json.loads(metrics_json.read_text())
    assert merged["method"] == "r2gen" and merged["test"]["bleu_1"] == 0.123
    assert merged["test_ci"]["rouge_l"]["low"] <= merged["test"]["rouge_l"] <= merged["test_ci"]["rouge_l"]["high"]
    # A score computed differently (another protocol) must not overwrite the run's number.
    assert cli_main(["evaluate", str(predictions), "--metrics", "bleu", "--out", str(tmp_path / "o.json"),
                     "--into", str(metrics_json)]) == 1
    assert "already has test bleu_1 = 0.123" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java")
def test_meteor_statistics_give_the_jar_scores_of_any_resample(iu_reports):
    from hf_rrg.metrics.meteor import meteor, meteor_from_statistics, parse_statistics
    from hf_rrg.metrics.statistics import MeteorStatistics

    # Real reports, plus a perfect match, an empty hypothesis, no overlap, a repeated word and two references.
    preds = iu_reports[:12] + ["the heart is normal", "", "zebra quantum", "heart"]
    refs = [[r] for r in iu_reports[12:24]] + [["the heart is normal"], ["no effusion ."], ["no effusion ."],
                                                ["heart heart", "a heart"]]
    lines: list[str] = []
    full = meteor(preds, refs, statistics=lines)
    np.testing.assert_allclose(meteor_from_statistics(parse_statistics(lines)), full.per_item["meteor"], atol=1e-12)
    weights = resample_weights(len(preds), resamples=1, seed=4)
    fast = MeteorStatistics(lines).corpus(np.vstack([np.ones(len(preds)), weights]))["meteor"]
    assert fast[0] == pytest.approx(full.score, abs=1e-12)
    assert fast[1] == pytest.approx(meteor(_resampled(preds, weights[0]), _resampled(refs, weights[0])).score, abs=1e-12)


def test_model_card_shows_the_interval_next_to_each_number(tmp_path):
    from types import SimpleNamespace

    from hf_rrg.hub.model_card import card_context, results_table
    from hf_rrg.hub.run_folder import RunInfo

    intervals = {"bleu_4": {"low": 0.081, "high": 0.1234, "level": 0.95}}
    table = results_table({"bleu_4": 0.1, "rouge_l": 0.3}, {}, intervals)
    assert "| BLEU-4 | 0.1000 [0.0810, 0.1234] |" in table and "| ROUGE-L | 0.3000 |" in table
    assert "95% bootstrap confidence interval" in table
    assert "bootstrap" not in results_table({"bleu_4": 0.1}, {})
    run = RunInfo(model_dir=tmp_path, metrics={"test": {"bleu_4": 0.1}, "test_ci": intervals})
    context = card_context(run, SimpleNamespace(model_type="r2gen"), SimpleNamespace(num_beams=3), "m")
    assert "0.1000 [0.0810, 0.1234]" in context["results_table"]
