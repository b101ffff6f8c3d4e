"""XProNet's pipelines: pseudo-label files (Eq. 3 policy, slot order), deterministic K-means, the prototype
initialisation (Eq. 4-7) with a tiny local BERT, the safetensors PM file loaded into the model, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hf_rrg.labeling import OBSERVATIONS, CheXpertLabeler
from hf_rrg.modeling.configuration_xpronet import XPRONET_OBSERVATIONS, XProNetConfig
from hf_rrg.modeling.modeling_xpronet import XProNetForConditionalGeneration
from hf_rrg.xpronet.labels import make_label_file, read_label_file, slot_labels
from hf_rrg.xpronet.prototypes import (
    kmeans,
    load_prototype_file,
    load_prototypes_into,
    prototypes_from_features,
)


def test_slot_order_and_policy() -> None:
    assert set(XPRONET_OBSERVATIONS) == set(OBSERVATIONS) and XPRONET_OBSERVATIONS[-1] == "No Finding"
    assert OBSERVATIONS[0] == "No Finding"  # the labeler's CheXpert order differs: slots are matched by name
    values = dict.fromkeys(OBSERVATIONS)
    values.update({"Cardiomegaly": 1, "Edema": -1, "Pneumothorax": 0})
    assert slot_labels(values) == [0, 1, 0, 0, 1] + [0] * 9  # uncertain Edema counts as positive
    assert slot_labels(values, uncertain_as_positive=False) == [0, 1] + [0] * 12
    only_uncertain = dict.fromkeys(OBSERVATIONS)
    only_uncertain["Edema"] = -1
    assert slot_labels(only_uncertain, uncertain_as_positive=False) == [0] * 13 + [1]  # fallback: No Finding
    assert slot_labels(only_uncertain, uncertain_as_positive=False, no_positive_slot=None) == [0] * 14
    real = CheXpertLabeler().label("Mild cardiomegaly. No pleural effusion. Possible edema.").values
    assert slot_labels(real) == slot_labels(values)


@pytest.fixture(scope="module")
def demo_train():
    from hf_rrg.data import load_builder

    return load_builder("demo")["train"].select(range(12))


def test_label_file_round_trip_and_counts(demo_train, tmp_path: Path) -> None:
    label_file = make_label_file({"train": demo_train}, progress=False)
    path = label_file.write(tmp_path / "labels.json")
    data = json.loads(path.read_text())
    assert data["format"] == "hf-rrg/xpronet-labels/v1" and data["observation_names"] == list(XPRONET_OBSERVATIONS)
    assert data["policy"]["uncertain_as_positive"] is True and data["policy"]["no_positive_slot"] == "No Finding"
    labeler = CheXpertLabeler()
    for sample_id, report in zip(demo_train["id"], demo_train["report"]):
        assert data["labels"][sample_id] == slot_labels(labeler.label(report).values)
        assert sum(data["labels"][sample_id]) >= 1
    expected_counts = [sum(row[k] for row in data["labels"].values()) for k in range(14)]
    assert list(data["counts"]["train"].values()) == expected_counts
    loaded = read_label_file(path)
    reordered = loaded.tensor(demo_train["id"][:3], list(reversed(XPRONET_OBSERVATIONS)))
    assert torch.equal(reordered, loaded.tensor(demo_train["id"][:3]).flip(1))
    with pytest.raises(ValueError, match="label file lacks 1 sample id"):
        loaded.tensor(["no-such-id"])
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="is not an XProNet label file"):
        read_label_file(tmp_path / "bad.json")


def test_kmeans_finds_separated_clusters_and_is_deterministic() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + 0.1 * torch.randn(20, 2, generator=generator) for c in centres])
    found = kmeans(points, 3, seed=1)
    order = torch.tensor(sorted(range(3), key=lambda i: tuple(found[i].tolist())))  # K-means' order is arbitrary
    expected = torch.stack([points[20 * i : 20 * (i + 1)].mean(0) for i in range(3)])  # Eq. 7: cluster means
    expected = expected[torch.tensor(sorted(range(3), key=lambda i: tuple(expected[i].tolist())))]
    torch.testing.assert_close(found[order], expected)
    assert torch.equal(kmeans(points, 3, seed=1), found)
    with pytest.raises(ValueError, match="num_clusters <= number of points"):
        kmeans(points[:2], 3)


def test_prototypes_from_features_shape_small_and_empty_classes() -> None:
    torch.manual_seed(0)
    n, names = 30, ["A", "B", "C"]
    labels = torch.zeros(n, 3)
    labels[:25, 0] = 1  # big class
    labels[25:27, 1] = 1  # 2 samples < N_p / 2 = 4: points repeated
    image, flipped, text = torch.randn(n, 6), torch.randn(n, 6), torch.randn(n, 5)
    result = prototypes_from_features(image, flipped, text, labels, names, num_prototypes_per_class=8, seed=3)
    assert result.prototypes.shape == (3, 8, 11)
    assert result.class_sizes == {"A": 25, "B": 2, "C": 0}
    assert result.small_classes == ["B"] and result.empty_classes == ["C"]
    first, second = torch.cat([image[25], text[25]]), torch.cat([image[26], text[26]])
    assert torch.equal(result.prototypes[1, :4], torch.stack([first, second, first, second]))
    assert torch.equal(result.prototypes[1, 4:6], torch.stack([torch.cat([flipped[25], text[25]]),
                                                               torch.cat([flipped[26], text[26]])]))  # fmt: skip
    all_unflipped = torch.cat([image, text], dim=1)
    torch.testing.assert_close(result.prototypes[2, :4], kmeans(all_unflipped, 4, seed=3 + 4))  # class-agnostic
    again = prototypes_from_features(image, flipped, text, labels, names, num_prototypes_per_class=8, seed=3)
    assert torch.equal(again.prototypes, result.prototypes)
    with pytest.raises(ValueError, match="must be even"):
        prototypes_from_features(image, flipped, text, labels, names, num_prototypes_per_class=7)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A small BERT built from a config (random weights) and a word-level tokenizer, saved locally."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + "the lung heart chest normal no effusion".split()
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]")  # fmt: skip
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=600)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    return folder


def test_init_prototypes_cli_writes_a_pm_the_model_loads(demo_train, tiny_bert: Path, tmp_path: Path) -> None:
    from hf_rrg.cli import build_parser

    parser = build_parser()
    if "xpronet" not in parser._subparsers._group_actions[0].choices:  # until the lead registers the module
        import argparse

        from hf_rrg.xpronet import commands

        parser = argparse.ArgumentParser(prog="hf-rrg")
        commands.register(parser.add_subparsers(dest="command"))

    def run(argv: list[str]) -> None:
        args = parser.parse_args(argv)
        assert args.func(args) == 0

    labels = tmp_path / "labels.json"
    run(["xpronet", "labels", "demo", "--out", str(labels), "--no-progress"])
    from hf_rrg.data import load_builder

    demo = load_builder("demo")
    assert len(read_label_file(labels).labels) == sum(len(split) for split in demo.values())  # every split
    common = ["xpronet", "init-prototypes", "demo", "--labels", str(labels), "--text-encoder", str(tiny_bert),
              "--backbone", "test_resnet", "--no-pretrained", "--image-size", "64", "--num-prototypes", "4",
              "--limit", "24", "--no-progress", "--seed", "5"]  # fmt: skip
    run(common + ["--out", str(tmp_path / "pm.safetensors")])
    run(common + ["--out", str(tmp_path / "pm_again.safetensors")])
    tensor, metadata = load_prototype_file(tmp_path / "pm.safetensors")
    assert tensor.shape == (14, 4, 96 + 16)  # test_resnet: 96 channels; tiny BERT: 16
    assert torch.equal(tensor, load_prototype_file(tmp_path / "pm_again.safetensors")[0])  # deterministic
    assert metadata["observation_names"] == list(XPRONET_OBSERVATIONS) and metadata["settings"]["seed"] == 5
    config = XProNetConfig(vocab_size=20, visual_backbone="test_resnet", visual_pretrained=False, d_model=32, d_ff=64,
                           num_heads=4, num_layers=1, prototype_visual_dim=96, prototype_text_dim=16,
                           num_prototypes_per_class=4, prototype_top_k=3, prototype_num_heads=4)  # fmt: skip
    model = XProNetForConditionalGeneration(config)
    load_prototypes_into(model, tmp_path / "pm.safetensors")
    assert torch.equal(model.prototype_network.prototypes.detach(), tensor)
    wrong = XProNetForConditionalGeneration(XProNetConfig(**{**config.to_diff_dict(), "prototype_text_dim": 8}))
    with pytest.raises(ValueError, match="prototype matrix has shape"):
        load_prototypes_into(wrong, tmp_path / "pm.safetensors")
