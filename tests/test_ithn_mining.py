"""ITHN's hard-negative mining (§3.2): the exact blocked search against brute force, exclusions, TF-IDF by hand, a
local encoder's pooling, the neighbours file and CLI, and a spot check on the real IU X-Ray reports that the mined
neighbours are genuinely similar reports."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
import torch

from hf_rrg.ithn.mining import (
    NeighbourFile,
    encoder_embeddings,
    mine_hard_negatives,
    nearest_neighbours,
    read_neighbour_file,
    tfidf_embeddings,
)


def test_blocked_search_equals_brute_force_and_excludes_self_and_groups() -> None:
    torch.manual_seed(0)
    features = torch.randn(50, 12)
    scores, indices = nearest_neighbours(features, k=4, block_size=7, progress=False)
    normed = torch.nn.functional.normalize(features, dim=1)
    full = normed @ normed.T
    full.fill_diagonal_(float("-inf"))
    expected = full.topk(4, dim=1)
    assert torch.equal(indices, expected.indices)
    torch.testing.assert_close(scores, expected.values)
    assert not (indices == torch.arange(50)[:, None]).any()
    groups = [i // 5 for i in range(50)]  # ten "patients" with five studies each
    scores, indices = nearest_neighbours(features, k=4, groups=groups, block_size=16, progress=False)
    for row in range(50):
        allowed = [j for j in range(50) if groups[j] != groups[row]]
        best = sorted(allowed, key=lambda j: -full[row, j].item())[:4]
        assert indices[row].tolist() == best
    # fewer candidates than k: the missing slots are -1 / -inf
    scores, indices = nearest_neighbours(features[:6], k=5, groups=[0, 0, 0, 0, 1, 1], progress=False)
    assert indices[0].tolist()[:2] == sorted([4, 5], key=lambda j: -full[0, j].item()) and indices[0, 2:].eq(-1).all()
    assert torch.isinf(scores[0, 2:]).all()


def _brute_force_top_k(features: torch.Tensor, k: int, groups: list[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row against every row in one product, then one top-k: the straightforward search."""
    normed = torch.nn.functional.normalize(features, dim=1)
    full = normed @ normed.T
    if groups is None:
        full.fill_diagonal_(float("-inf"))
    else:
        keys = torch.tensor(groups)
        full.masked_fill_(keys[:, None] == keys[None, :], float("-inf"))
    top = full.topk(k, dim=1)
    return top.values, top.indices.masked_fill(torch.isinf(top.values), -1)


@pytest.mark.parametrize(
    ("rows", "k", "block_size", "patients"),
    [
        (1000, 3, 384, None),  # 384-row tiles take the chunked top-k; the last 232-row block is ranked whole
        (1000, 3, 384, 250),  # patients scattered over the rows: groups cross tile boundaries
        (777, 5, 640, 40),  # large groups, fewer tiles than groups' spans
        (300, 10, 64, 300),  # as many patients as rows (about a third of them share one)
        (40, 6, 7, 4),  # tiny tiles, ten studies per patient: most candidates excluded
    ],
)
def test_tiled_symmetric_search_equals_brute_force_with_exclusions(
    rows: int, k: int, block_size: int, patients: int | None
) -> None:
    generator = torch.Generator().manual_seed(rows + k)
    features = torch.randn(rows, 16, generator=generator)
    groups = None
    if patients is not None:
        groups = torch.randint(0, patients, (rows,), generator=generator).tolist()
    original = features.clone()
    scores, indices = nearest_neighbours(features, k=k, groups=groups, block_size=block_size, progress=False)
    assert torch.equal(features, original)  # the search normalises its own copy in place, never the caller's rows
    expected_scores, expected_indices = _brute_force_top_k(features, k, groups)
    assert torch.equal(indices, expected_indices)
    torch.testing.assert_close(scores, expected_scores, atol=1e-6, rtol=0)
    if groups is not None:  # no neighbour ever shares the row's patient
        keys = torch.tensor(groups)
        found = indices >= 0
        assert not (keys[indices.clamp_min(0)] == keys[:, None])[found].any()


def test_tfidf_vectors_by_hand() -> None:
    reports = ["No effusion. No effusion.", "Small effusion", "Heart normal", "small heart"]
    matrix = tfidf_embeddings(reports, min_df=2, max_features=None)
    # vocabulary: words in >= 2 reports, most frequent first then alphabetical: effusion(2), heart(2), no(1 -> out)...
    idf = {w: math.log(5 / (1 + df)) + 1 for w, df in {"effusion": 2, "heart": 2, "small": 2}.items()}
    order = ["effusion", "heart", "small"]
    raw = [[(1 + math.log(2)) * idf["effusion"], 0, 0], [idf["effusion"], 0, idf["small"]], [0, idf["heart"], 0],
           [0, idf["heart"], idf["small"]]]  # fmt: skip
    expected = torch.nn.functional.normalize(torch.tensor(raw), dim=1)
    assert matrix.shape == (4, len(order))
    torch.testing.assert_close(matrix, expected)
    with pytest.raises(ValueError, match="lower min_df"):
        tfidf_embeddings(["a b", "c d"], min_df=2)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    """A small BERT built from a config (random weights) and a word-level tokenizer, saved locally."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + "the lung heart chest normal no effusion size is clear".split()
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]")  # fmt: skip
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    return folder


def test_local_encoder_pooling_and_order(tiny_encoder: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    reports = ["the lung is clear", "heart size is normal and the lung is clear", "no effusion", "chest"]
    mean = encoder_embeddings(reports, tiny_encoder, "mean", batch_size=3, progress=False)
    cls = encoder_embeddings(reports, tiny_encoder, "cls", batch_size=3, progress=False)
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_encoder), AutoModel.from_pretrained(tiny_encoder).eval()
    with torch.no_grad():
        for i, report in enumerate(reports):  # one at a time: no padding, so the order and masking are checked
            hidden = model(**tokenizer([report], return_tensors="pt")).last_hidden_state[0]
            torch.testing.assert_close(mean[i], torch.nn.functional.normalize(hidden.mean(0), dim=0), atol=1e-5, rtol=0)
            torch.testing.assert_close(cls[i], torch.nn.functional.normalize(hidden[0], dim=0), atol=1e-5, rtol=0)
    result = mine_hard_negatives(list("abcd"), reports, encoder=tiny_encoder, pooling="cls", top_k=2, progress=False)
    assert result.metadata["pooling"] == "cls" and result.metadata["encoder"] == str(tiny_encoder)
    assert result.metadata["embedding_dim"] == 16 and all(len(v) == 2 for v in result.neighbours.values())
    with pytest.raises(ValueError, match="pooling must be one of"):
        encoder_embeddings(reports, tiny_encoder, "max")


def test_neighbours_file_round_trip_and_checks(tmp_path: Path) -> None:
    reports = ["heart normal lungs clear", "heart normal lungs clear no effusion", "large effusion",
               "large effusion left"]
    result = mine_hard_negatives(["s1", "s2", "s3", "s4"], reports, top_k=2, progress=False)
    assert [n for n, _ in result.neighbours["s1"]][0] == "s2" and result.neighbours["s3"][0][0] == "s4"
    path = result.write(tmp_path / "neighbours.json")
    loaded = read_neighbour_file(path)
    assert loaded.neighbours.keys() == result.neighbours.keys() and loaded.metadata == result.metadata
    for key, value in result.neighbours.items():
        assert [n for n, _ in loaded.neighbours[key]] == [n for n, _ in value]
        assert [s for _, s in loaded.neighbours[key]] == pytest.approx([s for _, s in value], abs=1e-6)
    loaded.check_covers(["s1", "s2", "s3", "s4"])
    with pytest.raises(ValueError, match="no neighbours for 1 of the 5 training ids"):
        loaded.check_covers(["s1", "s2", "s3", "s4", "s5"])
    with pytest.raises(ValueError, match="outside the training split"):
        loaded.check_covers(["s1", "s3"])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_neighbour_file(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="hf-rrg ithn mine"):
        read_neighbour_file(tmp_path / "missing.json")
    same_patient = mine_hard_negatives(["s1", "s2", "s3", "s4"], reports, top_k=2, patient_ids=["p", "p", "q", "r"],
                                       progress=False)  # fmt: skip
    assert "s2" not in [n for n, _ in same_patient.neighbours["s1"]] and same_patient.metadata["exclude_same_patient"]
    with pytest.raises(ValueError, match="ids must be unique"):
        mine_hard_negatives(["a", "a"], ["x y", "x y"], progress=False)


# ------------------------------------------------------------------------------------------ real IU X-Ray reports

_WORDS = re.compile(r"[a-z]+")


def _jaccard(a: str, b: str) -> float:
    x, y = set(_WORDS.findall(a.lower())), set(_WORDS.findall(b.lower()))
    return len(x & y) / len(x | y)


def test_mined_neighbours_of_real_iu_reports_are_genuinely_similar(shared_data: Path, tmp_path: Path) -> None:
    """The 2,069 training reports of R2Gen's IU X-Ray split, TF-IDF encoder, identical texts excluded: a report's
    nearest neighbour shares three times more of its words than a random report does, and reports naming a rarer
    finding get neighbours naming it too far more often than its base rate."""
    from hf_rrg.cli import build_parser

    annotation = shared_data / "iu_xray" / "annotation.json"
    out = tmp_path / "neighbours.json"
    args = build_parser().parse_args(["ithn", "mine", str(annotation), "--out", str(out), "--top-k", "5",
                                      "--exclude-identical", "--no-progress"])  # fmt: skip
    assert args.func(args) == 0
    train = json.loads(annotation.read_text())["train"]
    reports = {entry["id"]: entry["report"] for entry in train}
    mined = read_neighbour_file(out)
    assert mined.metadata["encoder"] == "tfidf" and mined.metadata["exclude_identical"]
    assert set(mined.neighbours) == set(reports) and all(len(v) == 5 for v in mined.neighbours.values())
    nearest = {i: v[0][0] for i, v in mined.neighbours.items()}
    assert all(reports[i].lower().split() != reports[n].lower().split() for i, n in nearest.items())
    rng = random.Random(0)
    ids = sorted(reports)
    neighbour_overlap = sum(_jaccard(reports[i], reports[nearest[i]]) for i in ids) / len(ids)
    random_overlap = sum(_jaccard(reports[i], reports[rng.choice(ids)]) for i in ids) / len(ids)
    assert neighbour_overlap > 3 * random_overlap, (neighbour_overlap, random_overlap)
    for finding in ("cardiomegaly", "granuloma", "nodule", "emphysema", "atelectasis"):
        having = [i for i in ids if finding in reports[i].lower()]
        base_rate = len(having) / len(ids)
        hit_rate = sum(finding in reports[nearest[i]].lower() for i in having) / len(having)
        assert hit_rate > 3 * base_rate, (finding, hit_rate, base_rate)
    # scores are the cosines of the TF-IDF vectors, most similar first
    scores = [s for _, s in mined.neighbours[ids[0]]]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] <= 1.0


def test_demo_split_mining_excludes_the_same_patient() -> None:
    from hf_rrg.data import load_builder

    train = load_builder("demo")["train"].select_columns(["id", "report", "patient_id"])
    ids, reports, patients = list(train["id"]), list(train["report"]), list(train["patient_id"])
    result = mine_hard_negatives(ids, reports, top_k=3, patient_ids=patients, progress=False)
    patient_of = dict(zip(ids, patients))
    assert all(patient_of[n] != patient_of[i] for i, v in result.neighbours.items() for n, _ in v)
    plain = mine_hard_negatives(ids, reports, top_k=3, progress=False)
    assert any(patient_of[v[0][0]] == patient_of[i] for i, v in plain.neighbours.items())  # the exclusion matters
    assert isinstance(plain, NeighbourFile)
