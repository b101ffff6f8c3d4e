"""BLEU, ROUGE-L, CIDEr-D and original CIDEr against pycocoevalcap 1.2 (the oracle) and the papers' formulas."""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter

import numpy as np
import pytest

from hf_rrg.metrics import NLGScore, bleu, cider_d, cider_original, lcs_length, rouge_l

pytest.importorskip("pycocoevalcap.bleu.bleu", reason="pycocoevalcap (the test oracle) is not installed")
from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402
from pycocoevalcap.rouge.rouge import Rouge  # noqa: E402


def _tokenize(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower()))


@pytest.fixture(scope="module")
def iu_reports(shared_data) -> list[str]:
    annotation = json.loads((shared_data / "iu_xray" / "annotation.json").read_text())
    reports = [_tokenize(item["report"]) for item in annotation["train"]]
    return [report for report in reports if report]


@pytest.fixture(scope="module")
def iu_items(iu_reports) -> tuple[list[str], list[list[str]]]:
    """Real IU X-Ray reports, each scored against 1-4 other patients' reports, plus edge cases."""
    rng = random.Random(1234)
    predictions, references = [], []
    for index in range(400):
        predictions.append(iu_reports[index])
        others = rng.sample(range(len(iu_reports)), 4)
        references.append([iu_reports[j] for j in others[: 1 + index % 4] if j != index] or [iu_reports[index + 1]])
    edge_cases = [
        ("", [iu_reports[0]]),  # empty hypothesis
        ("heart", [iu_reports[1], iu_reports[2]]),  # one word, in the references
        ("zzyzx", [iu_reports[3]]),  # one unknown word
        ("qwerty heart asdf lungs are clear", [iu_reports[4], "the lungs are clear ."]),  # unknown words
        ("the the the the the the", ["the heart is normal . the lungs are clear .", "the the"]),  # repeats
        ("heart heart heart", ["heart heart heart"] * 3),  # identical references
        (iu_reports[5], [iu_reports[5]]),  # a perfect match
        ("no acute disease .", ["no acute disease .", "no acute cardiopulmonary disease .", "normal .", "clear ."]),
    ]
    for prediction, refs in edge_cases:
        predictions.append(prediction)
        references.append(refs)
    return predictions, references


def _coco(predictions, references):
    return {i: list(r) for i, r in enumerate(references)}, {i: [p] for i, p in enumerate(predictions)}


def test_bleu_equals_pycocoevalcap(iu_items):
    predictions, references = iu_items
    gts, res = _coco(predictions, references)
    expected, expected_items = Bleu(4).compute_score(gts, res, verbose=0)
    result = bleu(predictions, references)
    assert isinstance(result, NLGScore)
    for k in range(4):
        assert result[f"bleu_{k + 1}"] == pytest.approx(expected[k], abs=1e-9)
        np.testing.assert_allclose(result.per_item[f"bleu_{k + 1}"], expected_items[k], rtol=0, atol=1e-12)
    assert result.per_item["bleu_4"][400] < 1e-6  # the empty hypothesis
    assert result.per_item["bleu_1"][406] == pytest.approx(1.0)  # the perfect match


@pytest.mark.parametrize("name", ["rouge_l", "cider_d"])
def test_rouge_l_and_cider_d_equal_pycocoevalcap(name, iu_items):
    ours, official = {"rouge_l": (rouge_l, Rouge), "cider_d": (cider_d, Cider)}[name]
    predictions, references = iu_items
    gts, res = _coco(predictions, references)
    expected, expected_items = official().compute_score(gts, res)
    result = ours(predictions, references)
    assert result.score == pytest.approx(expected, abs=1e-9)
    np.testing.assert_allclose(result.per_item[name], expected_items, rtol=0, atol=1e-12)
    if name == "rouge_l":
        assert result.per_item["rouge_l"][400] == 0.0  # the empty hypothesis
        assert result.per_item["rouge_l"][406] == pytest.approx(1.0)  # the perfect match


def test_rouge_l_takes_max_precision_and_max_recall_separately():
    # ref 1: LCS 2 of 2 words (R = 1), P = 2/4; ref 2: LCS 4 of 8 words, P = 1, R = 0.5.
    result = rouge_l(["a b c d"], [["a b", "a x b x c x d x"]])
    p, r, beta2 = 1.0, 1.0, 1.2**2
    assert result.score == pytest.approx((1 + beta2) * p * r / (r + beta2 * p))
    single = rouge_l(["a b c d"], ["a b"])
    p, r = 0.5, 1.0
    assert single.score == pytest.approx((1 + beta2) * p * r / (r + beta2 * p))


@pytest.mark.parametrize("n_refs", [1, 2, 3, 4])
def test_all_metrics_equal_pycocoevalcap_per_reference_count(iu_reports, n_refs):
    predictions = iu_reports[:60] + ["", "heart", "unknownword"]
    references = [[iu_reports[(i * 7 + j * 13 + 100) % len(iu_reports)] for j in range(n_refs)] for i in range(63)]
    gts, res = _coco(predictions, references)
    b, b_items = Bleu(4).compute_score(gts, res, verbose=0)
    ours = bleu(predictions, references)
    assert [ours[f"bleu_{k}"] for k in range(1, 5)] == pytest.approx(b, abs=1e-9)
    np.testing.assert_allclose(ours.per_item["bleu_2"], b_items[1], rtol=0, atol=1e-12)
    r, r_items = Rouge().compute_score(gts, res)
    np.testing.assert_allclose(rouge_l(predictions, references).per_item["rouge_l"], r_items, rtol=0, atol=1e-12)
    c, c_items = Cider().compute_score(gts, res)
    ours_c = cider_d(predictions, references)
    assert ours_c.score == pytest.approx(c, abs=1e-9)
    np.testing.assert_allclose(ours_c.per_item["cider_d"], c_items, rtol=0, atol=1e-12)


def test_single_strings_and_lists_of_one_reference_agree():
    predictions = ["the heart is normal .", "no effusion ."]
    as_strings = cider_d(predictions, ["heart is normal .", "no pleural effusion ."])
    as_lists = cider_d(predictions, [["heart is normal ."], ["no pleural effusion ."]])
    np.testing.assert_array_equal(as_strings.per_item["cider_d"], as_lists.per_item["cider_d"])


def test_bleu_hand_computed():
    # hyp: 4 words; ref: 6 words. Unigram matches 3/4, bigram 1/3 ("the heart"), no tri/4-grams.
    result = bleu(["the heart is big"], ["the heart size is normal ."])
    bp = math.exp(1 - (6 + 1e-9) / (4 + 1e-15))
    assert result["bleu_1"] == pytest.approx(bp * (3 + 1e-15) / (4 + 1e-9))
    assert result["bleu_2"] == pytest.approx(bp * ((3 / 4) * (1 / 3)) ** 0.5)
    closest = bleu(["a b c"], [["a b c d e f g", "a b"]])  # |3-2| < |3-7|: r = 2, no penalty
    assert closest["bleu_1"] == pytest.approx(1.0)


def _cider_original_formula(predictions, references, n=4):
    """Vedantam et al. (2015) eqs. 2-4, written directly with dictionaries."""

    def grams(text):
        words = text.split()
        return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))

    df = Counter()
    for refs in references:
        df.update(set(g for r in refs for g in grams(r)))
    log_n = math.log(len(predictions))

    def vector(text, k):
        return {g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in grams(text).items() if len(g) == k}

    scores = []
    for prediction, refs in zip(predictions, references):
        total = 0.0
        for k in range(1, n + 1):
            h = vector(prediction, k)
            for ref in refs:
                r = vector(ref, k)
                norm = math.sqrt(sum(v * v for v in h.values())) * math.sqrt(sum(v * v for v in r.values()))
                total += sum(v * r.get(g, 0.0) for g, v in h.items()) / norm if norm else 0.0
        scores.append(total / n / len(refs))
    return scores


def test_cider_original_matches_paper_formula(iu_reports):
    predictions = iu_reports[:50] + ["", "heart heart heart"]
    references = [[iu_reports[(i + 50) % len(iu_reports)], iu_reports[(i + 99) % len(iu_reports)]] for i in range(52)]
    expected = _cider_original_formula(predictions, references)
    result = cider_original(predictions, references)
    np.testing.assert_allclose(result.per_item["cider"], expected, rtol=0, atol=1e-12)
    assert result.score == pytest.approx(np.mean(expected), abs=1e-12)
    # Repeating a word inflates the unclipped original CIDEr relative to CIDEr-D's clipped numerator.
    assert cider_original(["a a a a b"], [["a b c"]]).score >= 0


def test_lcs_matches_dynamic_programming():
    rng = random.Random(7)

    def dp(a, b):
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j], table[i][j - 1])
        return table[-1][-1]

    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 90))]
        b = [rng.choice("abcdef") for _ in range(rng.randint(0, 90))]
        assert lcs_length(a, b) == dp(a, b)


def test_input_errors_are_clear():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="item 0 has no reference"):
        rouge_l(["a"], [[]])
    with pytest.raises(TypeError, match="prediction 0 is a int"):
        cider_d([3], ["a"])
    with pytest.raises(TypeError, match="not a single str"):
        bleu("a b", "a b")
