"""Learned metrics: BERTScore equals the `bert-score` package on a local model; CheXbert loads the authors'
checkpoint layout and labels as its heads say; every learned metric without its weights fails with a message
naming the weights and the option that provides them (tested offline, with an empty Hugging Face cache)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_rrg.cli import main as cli_main
from hf_rrg.metrics import CHEXPERT_OBSERVATIONS
from hf_rrg.metrics.errors import MetricPackageMissingError, MetricWeightsNotFoundError

WORDS = ("[PAD] [UNK] [CLS] [SEP] [MASK] the heart is normal size lungs are clear no pleural effusion . mild "
         "cardiomegaly left right small there ##s ##ed").split()
CANDIDATES = ["the heart is normal .", "lungs are clear", "mild cardiomegaly . no effusion", "the the the",
              "there is a small left effusion ."]
REFERENCES = ["the heart size is normal .", "no effusion", "cardiomegaly is mild .", "left right",
              "small right pleural effusion ."]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 3-layer BERT from a config and a WordPiece vocabulary, saved to a folder (no Hub needed)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny_bert")
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True, model_max_length=64).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture
def offline_empty_cache(tmp_path, monkeypatch):
    """The Hub switched off and an empty cache: only local files can be found."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ---- BERTScore ----


@pytest.mark.parametrize("idf", [False, True])
def test_bertscore_equals_the_bert_score_package(tiny_bert, idf):
    bert_score = pytest.importorskip("bert_score")
    from hf_rrg.metrics.bertscore import BERTScorer

    expected = bert_score.score(CANDIDATES, REFERENCES, model_type=str(tiny_bert), num_layers=2, idf=idf,
                                batch_size=2)
    ours = BERTScorer(model=str(tiny_bert), num_layers=2, idf=idf, batch_size=3).score(CANDIDATES, REFERENCES)
    for tensor, name in zip(expected, ("bertscore_precision", "bertscore_recall", "bertscore_f1")):
        np.testing.assert_allclose(ours.per_item[name], tensor.numpy(), atol=1e-6)
        assert ours.corpus[name] == pytest.approx(float(tensor.mean()), abs=1e-6)


def test_bertscore_multiple_references_and_baseline_rescaling_as_the_package(tiny_bert, tmp_path):
    bert_score = pytest.importorskip("bert_score")
    from hf_rrg.metrics.bertscore import BERTScorer

    baseline = tmp_path / "baseline.tsv"
    baseline.write_text("LAYER,P,R,F\n0,0.1,0.2,0.3\n1,0.4,0.35,0.38\n2,0.5,0.45,0.47\n3,0.6,0.6,0.6\n")
    refs = [[r, REFERENCES[(i + 1) % 5]] for i, r in enumerate(REFERENCES)]
    expected = bert_score.score(CANDIDATES, refs, model_type=str(tiny_bert), num_layers=3, lang="en",
                                rescale_with_baseline=True, baseline_path=str(baseline))
    ours = BERTScorer(model=str(tiny_bert), num_layers=3, rescale_with_baseline=True,
                      baseline_path=str(baseline)).score(CANDIDATES, refs)
    np.testing.assert_allclose(ours.per_item["bertscore_f1"], expected[2].numpy(), atol=1e-6)
    np.testing.assert_allclose(ours.per_item["bertscore_recall"], expected[1].numpy(), atol=1e-6)


def test_bertscore_of_an_empty_prediction_is_zero_before_rescaling(tiny_bert):
    from hf_rrg.metrics.bertscore import BERTScorer

    scores = BERTScorer(model=str(tiny_bert), num_layers=2).score(["", "the heart"], ["the heart", "the heart"])
    assert [scores.per_item[k][0] for k in ("bertscore_precision", "bertscore_recall", "bertscore_f1")] == [0, 0, 0]
    assert scores.per_item["bertscore_f1"][1] == pytest.approx(1.0)


def test_bertscore_without_weights_names_them(offline_empty_cache):
    from hf_rrg.metrics.bertscore import BERTScorer

    with pytest.raises(MetricWeightsNotFoundError, match=r"BERTScore needs the model 'roberta-large'.*--bertscore-model"):
        BERTScorer()


def test_cli_bertscore_with_a_local_model_and_interval(tiny_bert, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"id": i, "prediction": c, "reference": r}) + "\n"
                            for i, (c, r) in enumerate(zip(CANDIDATES, REFERENCES))))
    out = tmp_path / "s.json"
    assert cli_main(["evaluate", str(path), "--metrics", "bleu,bertscore", "--bertscore-model", str(tiny_bert),
                     "--bertscore-layers", "2", "--ci", "--resamples", "100", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    from hf_rrg.metrics.bertscore import bertscore

    expected = bertscore(CANDIDATES, REFERENCES, model=str(tiny_bert), num_layers=2).corpus
    assert written["scores"]["bertscore_f1"] == pytest.approx(expected["bertscore_f1"], abs=1e-12)
    assert written["ci"]["bertscore_f1"]["low"] <= expected["bertscore_f1"] <= written["ci"]["bertscore_f1"]["high"]


# ---- F1-CheXbert ----

CHEXBERT_HEADS = ("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
                  "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
                  "Fracture", "Support Devices", "No Finding")


@pytest.fixture(scope="module")
def tiny_chexbert(tiny_bert, tmp_path_factory):
    """A folder laid out like the authors' checkpoint: chexbert.pth ({'model_state_dict': 'module.'-prefixed
    BERT + 14 heads}), with the tiny BERT's config.json and vocab.txt."""
    import shutil

    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_chexbert")
    for name in ("config.json", "vocab.txt"):
        shutil.copy(tiny_bert / name, folder / name)
    torch.manual_seed(1)
    bert = BertModel(BertConfig.from_json_file(str(folder / "config.json")))
    heads = [torch.nn.Linear(32, 4) for _ in range(13)] + [torch.nn.Linear(32, 2)]
    for head in heads:
        torch.nn.init.normal_(head.weight, std=2.0)
    state = {f"module.bert.{k}": v for k, v in bert.state_dict().items()}
    for i, head in enumerate(heads):
        state[f"module.linear_heads.{i}.weight"], state[f"module.linear_heads.{i}.bias"] = head.weight, head.bias
    torch.save({"epoch": 3, "model_state_dict": state}, folder / "chexbert.pth")
    return folder, bert.eval(), heads


def test_chexbert_labels_are_its_heads_argmax_in_our_column_order(tiny_chexbert):
    from transformers import BertTokenizer

    from hf_rrg.metrics.chexbert import CheXbertLabeler

    folder, bert, heads = tiny_chexbert
    labels = CheXbertLabeler(weights=str(folder), device="cpu", batch_size=2).label_matrix(CANDIDATES)
    tokenizer = BertTokenizer(str(folder / "vocab.txt"))
    value = {0: np.nan, 1: 1.0, 2: 0.0, 3: -1.0}
    for row, text in enumerate(CANDIDATES):
        ids = torch.tensor([tokenizer(" ".join(text.split()))["input_ids"]])
        with torch.no_grad():
            cls = bert(ids).last_hidden_state[0, 0]
            classes = {name: int((head.weight @ cls + head.bias).argmax()) for name, head in zip(CHEXBERT_HEADS, heads)}
        expected = [value[classes[name]] for name in CHEXPERT_OBSERVATIONS]
        np.testing.assert_array_equal(labels[row], expected)


def test_f1chexbert_counts_uncertain_as_present_micro_macro_14_and_5():
    from hf_rrg.metrics.chexbert import chexbert_statistics

    nan = np.nan
    predicted = np.full((2, 14), nan)
    reference = np.full((2, 14), nan)
    cardio, edema, effusion, fracture = (CHEXPERT_OBSERVATIONS.index(n) for n in
                                         ("Cardiomegaly", "Edema", "Pleural Effusion", "Fracture"))
    predicted[0, [cardio, edema]] = [1, -1]  # uncertain edema counts as present
    reference[0, [cardio, effusion]] = [1, 1]
    predicted[1, fracture], reference[1, fracture] = 1, 0
    scores = {k: float(v[0]) for k, v in chexbert_statistics(predicted, reference).corpus(np.ones((1, 2))).items()}
    # 14 observations: TP = 1 (cardiomegaly), FP = 2 (edema, fracture), FN = 1 (effusion).
    assert scores["f1chexbert_micro_f1_14"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))
    assert scores["f1chexbert_macro_f1_14"] == pytest.approx(1.0 / 14)  # only cardiomegaly has F1 = 1
    # Top five: TP = 1, FP = 1 (edema), FN = 1 (effusion).
    assert scores["f1chexbert_micro_f1_5"] == pytest.approx(2 / 4)
    assert scores["f1chexbert_macro_f1_5"] == pytest.approx(1.0 / 5)


def test_chexbert_without_weights_names_them(offline_empty_cache):
    from hf_rrg.metrics.chexbert import CheXbertLabeler

    with pytest.raises(MetricWeightsNotFoundError,
                       match=r"F1-CheXbert needs the CheXbert weights chexbert.pth of 'StanfordAIMI/RRG_scorers'.*"
                             r"--chexbert-weights"):
        CheXbertLabeler()


def test_cli_skips_a_learned_metric_without_weights_and_keeps_the_others(offline_empty_cache, tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prediction": c, "reference": r}) + "\n" for c, r in zip(CANDIDATES, REFERENCES)))
    out = tmp_path / "s.json"
    assert cli_main(["evaluate", str(path), "--metrics", "rouge_l,f1chexbert", "--out", str(out)]) == 1
    written = json.loads(out.read_text())
    assert "rouge_l" in written["scores"] and "StanfordAIMI/RRG_scorers" in written["skipped"]["f1chexbert"]
    assert "f1chexbert skipped" in capsys.readouterr().err


# ---- F1-RadGraph and RaTEScore: thin wrappers of their packages ----


def test_radgraph_without_weights_names_them(offline_empty_cache, monkeypatch, tmp_path):
    from hf_rrg.metrics import radgraph

    monkeypatch.setattr(radgraph, "_backend", lambda: object)  # the package is checked before the weights
    with pytest.raises(MetricWeightsNotFoundError,
                       match=r"radgraph.tar.gz of 'StanfordAIMI/RRG_scorers'.*--radgraph-weights"):
        radgraph.radgraph_f1(["a"], ["b"], cache=tmp_path / "radgraph_cache")


def test_radgraph_without_its_package_says_what_to_install(monkeypatch):
    import importlib.util

    from hf_rrg.metrics import radgraph

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("radeval", "radgraph") else real(name, *a))
    with pytest.raises(MetricPackageMissingError, match="pip install radeval"):
        radgraph.radgraph_f1(["a"], ["b"])


def test_ratescore_without_weights_names_them(offline_empty_cache, monkeypatch):
    from hf_rrg.metrics import ratescore

    monkeypatch.setattr(ratescore, "require_package", lambda *args: None)
    with pytest.raises(MetricWeightsNotFoundError, match=r"'Angelakeke/RaTE-NER-Deberta'.*--ratescore-ner"):
        ratescore.ratescore(["a"], ["b"])


def test_ratescore_without_its_package_says_what_to_install(monkeypatch):
    import importlib.util

    from hf_rrg.metrics import ratescore

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "RaTEScore" else real(name, *a))
    with pytest.raises(MetricPackageMissingError, match="pip install ratescore"):
        ratescore.ratescore(["a"], ["b"])


def test_a_local_path_that_does_not_exist_is_named(tmp_path):
    from hf_rrg.metrics.bertscore import BERTScorer
    from hf_rrg.metrics.chexbert import CheXbertLabeler

    with pytest.raises(MetricWeightsNotFoundError, match=r"folder .*missing_model does not exist \(given with --bertscore-model\)"):
        BERTScorer(model=str(tmp_path / "missing_model"), num_layers=2)
    with pytest.raises(MetricWeightsNotFoundError, match=r"chexbert.pth does not exist \(given with --chexbert-weights\)"):
        CheXbertLabeler(weights=str(tmp_path))
