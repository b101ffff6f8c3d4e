"""`RRGProcessor` and the Auto-class round trip of every processing class."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

import hf_rrg  # noqa: F401  (registers the Auto classes)
from hf_rrg import RRGImageProcessor, RRGProcessor, RRGTokenizer

REPORTS = [
    "The heart is normal in size. The lungs are clear.",
    "Heart size is normal. No pleural effusion or pneumothorax.",
    "The lungs are clear. No acute osseous abnormality.",
]


@pytest.fixture(scope="module")
def processor(shared_data) -> RRGProcessor:
    annotation = json.loads((shared_data / "iu_xray" / "annotation.json").read_text())
    tokenizer = RRGTokenizer.from_reports(
        [study["report"] for study in annotation["train"]], cleaner="r2gen_iu_xray", min_count=3
    )
    return RRGProcessor(RRGImageProcessor(max_views=2, eval_size=(96, 96)), tokenizer)


@pytest.fixture(scope="module")
def studies(shared_data) -> list[list[str]]:
    images = shared_data / "misc_cxr_images"
    return [
        [str(images / "00000001_000.png"), str(images / "pydicom-data_RG1_UNCR_chest_CR.dcm")],
        [str(images / "16747_3_1.jpg")],
        [str(images / "tb0005.png"), str(images / "h0001.png")],
    ]


def test_processor_outputs(processor: RRGProcessor, studies) -> None:
    batch = processor(images=studies, text=REPORTS)
    assert batch["pixel_values"].shape == (3, 2, 3, 96, 96)
    assert batch["view_mask"].tolist() == [[True, True], [True, False], [True, True]]
    assert torch.all(batch["pixel_values"][1, 1] == 0)  # the missing view is zero padding
    assert batch["input_ids"].shape[0] == 3
    assert (batch["input_ids"][:, 0] == processor.tokenizer.bos_token_id).all()
    assert processor.batch_decode(batch["input_ids"], skip_special_tokens=True) == [
        processor.tokenizer.normalize_report(report) for report in REPORTS
    ]


def test_processor_truncates_and_augments_reproducibly(processor: RRGProcessor, studies) -> None:
    batch = processor(images=studies[:1], text=REPORTS[:1], max_length=5)
    assert batch["input_ids"].shape == (1, 5) and batch["input_ids"][0, -1] == processor.tokenizer.eos_token_id
    processor.image_processor.resize_shorter = 112
    processor.image_processor.crop_size = {"height": 96, "width": 96}
    first = processor(images=studies, augment=True, generator=7)["pixel_values"]
    again = processor(images=studies, augment=True, generator=7)["pixel_values"]
    other = processor(images=studies, augment=True, generator=8)["pixel_values"]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_processor_errors(processor: RRGProcessor, studies) -> None:
    with pytest.raises(ValueError, match="needs `images`, `text` or both"):
        processor()
    with pytest.raises(ValueError, match="3 studies but 2 reports"):
        processor(images=studies, text=REPORTS[:2])
    with pytest.raises(ValueError, match="3 views but max_views is 2"):
        processor(images=[studies[0] + studies[1]])


def test_auto_classes_round_trip(processor: RRGProcessor, studies, tmp_path) -> None:
    processor.save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    processor_loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(tokenizer, RRGTokenizer)
    assert isinstance(processor_loaded, RRGProcessor)
    assert isinstance(processor_loaded.image_processor, RRGImageProcessor)
    assert tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    expected = processor(images=studies, text=REPORTS)
    actual = processor_loaded(images=studies, text=REPORTS)
    assert set(actual) == set(expected)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key

    image_dir = tmp_path / "image_processor"
    processor.image_processor.save_pretrained(image_dir)
    image_processor = AutoImageProcessor.from_pretrained(image_dir)
    assert isinstance(image_processor, RRGImageProcessor)
    np.testing.assert_array_equal(
        image_processor(studies, return_tensors="np")["pixel_values"],
        processor.image_processor(studies, return_tensors="np")["pixel_values"],
    )
