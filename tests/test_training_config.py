"""Training config parsing/overrides, optimizer groups and schedules, the collator's shift and seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hf_rrg.data.collators import IndexedStudies, ReportGenerationCollator, shifted_targets
from hf_rrg.modeling import RRGImageProcessor, RRGTokenizer
from hf_rrg.training.config import ConfigError, config_from_dict, load_config, packaged_config_dir
from hf_rrg.training.optim import build_optimizer, build_scheduler, epoch_lr_factor


def test_demo_configs_are_shipped_and_small() -> None:
    for name in ("r2gen_demo", "r2gencmn_demo"):
        config = load_config(packaged_config_dir() / f"{name}.yaml")
        assert config.data.builder == "demo" and config.model["visual_pretrained"] is False


def test_overrides_are_typed_and_nested() -> None:
    config = load_config(
        "r2gencmn_demo",
        ["training.epochs=3", "optimizer.lr_rest=2e-3", "data.builder_kwargs.name=x", "training.patience=null"],
    )
    assert config.training.epochs == 3
    assert config.optimizer.lr_rest == pytest.approx(2e-3)  # YAML reads "2e-3" as a string; the field makes it a float
    assert config.data.builder_kwargs == {"name": "x"}
    assert config.training.patience is None


def test_unknown_keys_and_bad_values_say_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['training.epoch'\].*valid keys of training"):
        load_config("r2gencmn_demo", ["training.epoch=3"])
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['optimiser'\]"):
        config_from_dict({"optimiser": {}})
    with pytest.raises(ConfigError, match="training.batch_size must be an integer, got 'many'"):
        load_config("r2gencmn_demo", ["training.batch_size=many"])
    with pytest.raises(ConfigError, match="is not KEY=VALUE"):
        load_config("r2gencmn_demo", ["training.epochs"])
    with pytest.raises(ConfigError, match="scheduler.name must be"):
        config_from_dict({"method": "r2gencmn", "scheduler": {"name": "warmup"}})
    with pytest.raises(FileNotFoundError, match="shipped configs: .*r2gencmn_demo"):
        load_config("no_such_config")


def test_config_round_trips_through_yaml(tmp_path) -> None:
    config = load_config("r2gen_iu_xray", ["training.epochs=7"])
    config.save(tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def _tiny_model():
    from hf_rrg.modeling import R2GenCMNConfig, R2GenCMNForConditionalGeneration

    return R2GenCMNForConditionalGeneration(
        R2GenCMNConfig(
            vocab_size=20, visual_backbone="test_resnet", visual_pretrained=False, d_model=32, d_ff=32,
            num_heads=4, num_layers=1, cmm_size=16, cmm_dim=32, topk=4,
        )
    )


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step()`")
def test_two_parameter_groups_with_their_own_learning_rates_and_step_lr() -> None:
    model = _tiny_model()
    config = load_config("r2gen_iu_xray").optimizer
    optimizer = build_optimizer(model, config)
    visual = {id(p) for p in model.encoder.visual_extractor.parameters()}
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert {id(p) for p in groups["visual"]["params"]} == visual
    rest = {id(p) for p in groups["rest"]["params"]}
    assert not rest & visual and len(rest) + len(visual) == len(list(model.parameters()))
    assert (groups["visual"]["lr"], groups["rest"]["lr"]) == (5e-5, 1e-4)
    assert groups["rest"]["amsgrad"] and groups["rest"]["weight_decay"] == pytest.approx(5e-5)

    # Our per-epoch `step` schedule equals torch's StepLR(step_size=3, gamma=0.5) epoch by epoch.
    schedule = load_config("r2gen_iu_xray", ["scheduler.step_size=3", "scheduler.gamma=0.5"]).scheduler
    ours = build_scheduler(optimizer, schedule, epochs=10)
    reference_opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    reference = torch.optim.lr_scheduler.StepLR(reference_opt, step_size=3, gamma=0.5)
    for _ in range(9):
        assert optimizer.param_groups[1]["lr"] == pytest.approx(reference_opt.param_groups[0]["lr"])
        ours.step()
        reference.step()
    cosine = load_config("r2gen_iu_xray", ["scheduler.name=cosine"]).scheduler
    assert epoch_lr_factor(cosine, 5, 10) == pytest.approx(0.5 * (1 + np.cos(np.pi * 0.5)))


def test_collator_shifts_labels_and_seeds_augmentation_per_sample() -> None:
    tokenizer = RRGTokenizer.from_reports(["the heart is normal", "no effusion seen"], min_count=1)
    shifted = shifted_targets(tokenizer, ["the heart is normal", "no effusion"], max_length=None)
    encoded = tokenizer(["the heart is normal", "no effusion"], padding=True, return_tensors="pt")
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    assert torch.equal(shifted["decoder_input_ids"], ids[:, :-1])
    assert torch.equal(shifted["decoder_attention_mask"], mask[:, :-1])
    expected = [[t if m else -100 for t, m in zip(row[1:].tolist(), keep[1:].tolist())] for row, keep in zip(ids, mask)]
    assert shifted["labels"].tolist() == expected
    assert expected[1][-1] == -100 and expected[0][-1] == tokenizer.eos_token_id  # the shorter report is padded

    # R2Gen's truncation: the first max_length ids of <bos> .. <eos>; a long report loses <eos>, keeps max_length-1 words
    truncated = shifted_targets(tokenizer, ["the heart is normal", "no effusion"], max_length=4)
    vocab = tokenizer.get_vocab()
    words = [vocab[w] for w in ("the", "heart", "is")]
    assert truncated["decoder_input_ids"][0].tolist() == [tokenizer.bos_token_id, *words[:2]]
    assert truncated["labels"][0].tolist() == words  # 'normal' and <eos> cut
    assert truncated["labels"][1].tolist() == [vocab["no"], vocab["effusion"], vocab["."]]  # <eos> cut

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(3)]
    rows = [{"images": [image], "report": "the heart is normal"} for image in images]
    dataset = IndexedStudies(rows)
    processor = RRGImageProcessor(eval_size=32, resize_shorter=36, crop_size=32, max_views=1)
    collator = ReportGenerationCollator(processor, tokenizer, max_length=10, augment=True, seed=5)
    batch = collator([dataset[0], dataset[1], dataset[2]])
    alone = collator([dataset[2]])  # same epoch and index, different batch: same crop/flip
    assert torch.equal(batch["pixel_values"][2], alone["pixel_values"][0])
    collator.epoch = 1
    assert not torch.equal(collator([dataset[2]])["pixel_values"][0], alone["pixel_values"][0])
    assert batch["index"].tolist() == [0, 1, 2] and batch["view_mask"].all()
