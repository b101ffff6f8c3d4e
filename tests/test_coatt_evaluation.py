"""CoAtt's Table 3 (tag prediction, recall@k of the MLC): the metric against its definition written out, and the
`hf-rrg coatt tag-recall` command on the demo set against the model's own tag logits ranked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hf_rrg.cli import main
from hf_rrg.coatt.evaluation import recall_at_k
from hf_rrg.coatt.tags import build_tag_vocabulary, example_tags
from hf_rrg.data import load_builder
from hf_rrg.modeling import RRGImageProcessor
from hf_rrg.modeling.configuration_coatt import CoAttConfig
from hf_rrg.modeling.modeling_coatt import CoAttForConditionalGeneration


def hand_recall(scores: list[list[float]], targets: list[list[int]], k: int) -> float:
    """Mean over rows with a tag of |top-k columns ∩ the row's tags| / |the row's tags| (ties: lower column)."""
    recalls = []
    for row, truth in zip(scores, targets):
        tags = {j for j, y in enumerate(truth) if y}
        if tags:
            top = sorted(range(len(row)), key=lambda j: (-row[j], j))[:k]
            recalls.append(len(tags & set(top)) / len(tags))
    return sum(recalls) / len(recalls)


def test_recall_at_k_is_the_mean_per_image_recall_of_the_top_k() -> None:
    scores = [[0.9, 0.1, 0.5, 0.3, 0.7, 0.2], [0.0, 0.8, 0.8, 0.1, 0.2, 0.9], [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]]
    targets = [[1, 0, 0, 1, 0, 1], [0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]]  # the last image has no tag
    result = recall_at_k(torch.tensor(scores), torch.tensor(targets), ks=(1, 2, 3, 10))
    assert (result["images_scored"], result["images_without_tags"]) == (2, 1)
    for k in (1, 2, 3, 10):
        assert result[f"recall@{k}"] == pytest.approx(hand_recall(scores, targets, k))
    assert result["recall@1"] == pytest.approx((1 / 3 + 0) / 2)  # row 0: column 0 hit; row 1: column 5 misses
    assert result["recall@3"] == pytest.approx((1 / 3 + 1) / 2)  # row 1: 0.8 tie, the lower column (1) first
    assert result["recall@10"] == 1.0  # k above L: every tag counts
    with pytest.raises(ValueError, match="no image has a ground-truth tag"):
        recall_at_k(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="must be the same"):
        recall_at_k(torch.zeros(2, 3), torch.zeros(2, 4))


def test_tag_recall_command_on_the_demo_set(tmp_path: Path) -> None:
    demo = load_builder("demo")
    vocabulary = build_tag_vocabulary(demo["train"], "words", max_tags=40)
    run = tmp_path / "run"
    torch.manual_seed(0)
    model = CoAttForConditionalGeneration(CoAttConfig(
        vocab_size=30, visual_backbone="test_resnet", visual_pretrained=False, hidden_size=16, embedding_size=16,
        mlc_hidden_size=16, num_semantic_tags=4, num_tags=len(vocabulary), max_sentences=2,
        max_words_per_sentence=5, sentence_end_token_id=4, max_views=1,
    )).eval()  # fmt: skip
    model.save_pretrained(run / "model")
    processor = RRGImageProcessor(eval_size=(48, 48), max_views=1)
    processor.save_pretrained(run / "model")
    vocabulary.save(run / "tags.json")
    out = tmp_path / "table3.json"
    code = main(["coatt", "tag-recall", str(run), "demo", "--split", "test", "--batch-size", "8", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())

    test = demo["test"]
    with torch.no_grad():
        inputs = processor([list(row["images"]) for row in test], return_tensors="pt")
        logits = model.encode(inputs["pixel_values"], inputs["view_mask"]).tag_logits
    index = {tag: i for i, tag in enumerate(vocabulary.tags)}
    truth = [[int(tag in set(example_tags(row, "words"))) for tag in vocabulary.tags] for row in test]
    assert sum(map(sum, truth)) > 0 and all(tag in index for tag in vocabulary.tags)
    for k in (5, 10, 20):
        assert result[f"recall@{k}"] == pytest.approx(hand_recall(logits.tolist(), truth, k), abs=1e-5)
    assert result["images"] == len(test) and result["images_scored"] == sum(1 for row in truth if any(row))
    assert result["tag_source"] == "words" and result["num_tags"] == 40

    assert main(["coatt", "tag-recall", str(run / "model"), "demo"]) == 1  # a bare model folder needs --tags
    assert main(["coatt", "tag-recall", str(run / "model"), "demo", "--tags", str(run / "tags.json"),
                 "--max-samples", "4", "--k", "5"]) == 0  # fmt: skip
    small = build_tag_vocabulary(demo["train"], "words", max_tags=10)
    small.save(tmp_path / "small.json")
    assert main(["coatt", "tag-recall", str(run), "demo", "--tags", str(tmp_path / "small.json")]) == 1
