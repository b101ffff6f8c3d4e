"""`RRGImageProcessor`: R2Gen's transforms (torchvision as the oracle), batching, save/load, Auto classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_rrg.modeling.image_loading import ImageNotFoundError, load_image
from hf_rrg.modeling.image_processing_rrg import RRGImageProcessor

T = pytest.importorskip("torchvision.transforms")
F = pytest.importorskip("torchvision.transforms.functional")

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NIH_PNG = "00000001_000.png"  # 512x512 grayscale
PADCHEST_JPEG = "16747_3_1.jpg"  # 1036x885 RGB: not square
TB_PNG = "tb0005.png"


def r2gen_eval(image: Image.Image) -> torch.Tensor:
    """R2Gen's test transform, torchvision's own implementation."""
    return T.Compose([T.Resize((224, 224)), T.ToTensor(), T.Normalize(MEAN, STD)])(image)


def r2gen_train_fixed(image: Image.Image, top: int, left: int, flip: bool) -> torch.Tensor:
    """R2Gen's train transform (Resize(256), RandomCrop(224), RandomHorizontalFlip), randomness fixed."""
    resized = T.Resize(256)(image)
    cropped = F.crop(resized, top, left, 224, 224)
    if flip:
        cropped = F.hflip(cropped)
    return T.Normalize(MEAN, STD)(T.ToTensor()(cropped))


@pytest.fixture(scope="module")
def misc(shared_data: Path) -> Path:
    folder = shared_data / "misc_cxr_images"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    return folder


@pytest.fixture(scope="module")
def processor() -> RRGImageProcessor:
    return RRGImageProcessor()


# ------------------------------------------------------------------------------------- eval on real images


def test_eval_transform_matches_torchvision_on_every_misc_image(
    misc: Path, processor: RRGImageProcessor
) -> None:
    files = sorted(misc.iterdir())
    out = processor([str(f) for f in files])  # a batch of single-view studies, DICOMs included
    assert out["pixel_values"].shape == (len(files), 1, 3, 224, 224)
    assert out["pixel_values"].dtype == torch.float32 and out["view_mask"].dtype == torch.bool
    assert out["view_mask"].all() and torch.isfinite(out["pixel_values"]).all()
    for index, path in enumerate(files):
        expected = r2gen_eval(load_image(path))
        assert torch.allclose(out["pixel_values"][index, 0], expected, atol=1e-6, rtol=0), path.name


def test_every_covid_image_loads_and_processes_in_batches(
    shared_data: Path, processor: RRGImageProcessor
) -> None:
    folder = shared_data / "covid_cxr_notes" / "images"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    files = sorted(folder.iterdir())
    assert len(files) == 191
    images = []
    for path in files:
        image = load_image(path)
        with Image.open(path) as source:
            assert image.mode == "RGB" and image.size == source.size, path.name
        images.append(image)
    for start in range(0, len(images), 64):
        batch = images[start : start + 64]
        out = processor(batch, return_tensors="np")
        assert isinstance(out["pixel_values"], np.ndarray)
        assert out["pixel_values"].shape == (len(batch), 1, 3, 224, 224) and out["view_mask"].all()
        assert np.isfinite(out["pixel_values"]).all()
        # normalised [0, 1] values stay within ImageNet's bounds
        low = (0 - np.array(MEAN)) / np.array(STD)
        high = (1 - np.array(MEAN)) / np.array(STD)
        per_channel = out["pixel_values"].transpose(2, 0, 1, 3, 4).reshape(3, -1)
        assert (per_channel.min(axis=1) >= low - 1e-6).all() and (
            per_channel.max(axis=1) <= high + 1e-6
        ).all()
    for index in range(0, len(images), 40):  # spot-check against the oracle
        got = processor(images[index])["pixel_values"][0, 0]
        assert torch.allclose(got, r2gen_eval(images[index]), atol=1e-6, rtol=0), files[index].name


# ------------------------------------------------------------------------------------------ train transform


@pytest.mark.parametrize(
    ("name", "top", "left", "flip"),
    [
        (PADCHEST_JPEG, 0, 0, False),
        (PADCHEST_JPEG, 32, 75, True),
        (NIH_PNG, 17, 5, True),
        (TB_PNG, 32, 32, False),
    ],
)
def test_train_transform_with_fixed_crop_and_flip_matches_torchvision(
    misc: Path, name: str, top: int, left: int, flip: bool
) -> None:
    image = load_image(misc / name)
    array = RRGImageProcessor.train_transform(image, top, left, flip)
    got = RRGImageProcessor.to_normalized_chw(array, True, 1 / 255, True, MEAN, STD)
    expected = r2gen_train_fixed(image, top, left, flip)
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-6, rtol=0)


def test_train_resize_follows_torchvision_resize_int(misc: Path) -> None:
    for size in [(1036, 885), (885, 1036), (300, 299), (512, 512), (257, 1000)]:
        image = load_image(misc / PADCHEST_JPEG).resize(size)
        assert (
            RRGImageProcessor.train_resize(image, 256, Image.Resampling.BILINEAR).size
            == T.Resize(256)(image).size
        )


def _matching_crops(resized: np.ndarray, crop: np.ndarray) -> set[tuple[int, int, bool]]:
    """Every (top, left, flip) at which `crop` (224x224x3 uint8) is a (flipped) window of `resized`."""
    found = set()
    rows, cols = resized.shape[:2]
    for flip in (False, True):
        target = crop[:, ::-1] if flip else crop
        for top in range(rows - 223):
            for left in range(cols - 223):
                if np.array_equal(resized[top, left : left + 224], target[0]) and np.array_equal(
                    resized[top : top + 224, left : left + 224], target
                ):
                    found.add((top, left, flip))
    return found


def _to_uint8(pixel_values: torch.Tensor) -> np.ndarray:
    """Undo Normalize and ToTensor on one (3, H, W) view."""
    values = pixel_values.numpy() * np.array(STD)[:, None, None] + np.array(MEAN)[:, None, None]
    return np.rint(values * 255).astype(np.uint8).transpose(1, 2, 0)


def test_random_train_output_is_torchvisions_transform_at_some_valid_crop(misc: Path) -> None:
    processor = RRGImageProcessor()
    image = load_image(misc / PADCHEST_JPEG)
    resized = np.asarray(T.Resize(256)(image))  # 256 x 299
    seen_flips = set()
    for seed in range(6):
        view = processor(image, augment=True, generator=seed)["pixel_values"][0, 0]
        assert view.shape == (3, 224, 224)
        matches = _matching_crops(resized, _to_uint8(view))
        assert len(matches) == 1, (seed, matches)
        top, left, flip = matches.pop()
        assert torch.allclose(view, r2gen_train_fixed(image, top, left, flip), atol=1e-6, rtol=0)
        seen_flips.add(flip)
    assert seen_flips == {False, True}

    no_flip = RRGImageProcessor(do_flip=False)
    for seed in range(4):
        view = no_flip(image, augment=True, generator=seed)["pixel_values"][0, 0]
        assert {flip for _, _, flip in _matching_crops(resized, _to_uint8(view))} == {False}


def test_train_transform_is_reproducible_with_a_seed_and_differs_across_seeds(
    misc: Path, processor: RRGImageProcessor
) -> None:
    study = [[misc / NIH_PNG, misc / PADCHEST_JPEG]]
    first = processor(study, augment=True, generator=123)["pixel_values"]
    assert torch.equal(first, processor(study, augment=True, generator=123)["pixel_values"])
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    assert torch.equal(
        processor(study, augment=True, generator=rng_a)["pixel_values"],
        processor(study, augment=True, generator=rng_b)["pixel_values"],
    )
    others = [processor(study, augment=True, generator=seed)["pixel_values"] for seed in (124, 125)]
    assert all(not torch.equal(first, other) for other in others)
    # eval ignores the generator and is deterministic
    assert torch.equal(
        processor(study, generator=1)["pixel_values"], processor(study, generator=2)["pixel_values"]
    )


# ------------------------------------------------------------------------------------------------ batching


def test_two_view_and_one_view_studies_are_padded_and_masked(
    misc: Path, processor: RRGImageProcessor
) -> None:
    a, b, c = misc / NIH_PNG, misc / PADCHEST_JPEG, misc / TB_PNG
    out = processor([[a, b], [c]])
    assert out["pixel_values"].shape == (2, 2, 3, 224, 224)
    assert out["view_mask"].tolist() == [[True, True], [True, False]]
    assert torch.count_nonzero(out["pixel_values"][1, 1]) == 0
    for (study, view), path in {(0, 0): a, (0, 1): b, (1, 0): c}.items():
        assert torch.equal(out["pixel_values"][study, view], processor(path)["pixel_values"][0, 0])

    fixed = RRGImageProcessor(max_views=3)([[a, b], c])  # a bare image in a list of studies is one view
    assert fixed["pixel_values"].shape == (2, 3, 3, 224, 224)
    assert fixed["view_mask"].tolist() == [[True, True, False], [True, False, False]]
    assert torch.equal(fixed["pixel_values"][:, :2], out["pixel_values"])
    assert torch.count_nonzero(fixed["pixel_values"][:, 2]) == 0


def test_study_structure_errors_name_the_study(misc: Path, processor: RRGImageProcessor) -> None:
    a = misc / NIH_PNG
    with pytest.raises(ValueError, match=r"Study 1 has 3 views but max_views is 2"):
        RRGImageProcessor(max_views=2)([[a], [a, a, a]])
    with pytest.raises(ValueError, match=r"Study 1 has no views"):
        processor([[a], []])
    with pytest.raises(ValueError, match="No images were given"):
        processor([])
    with pytest.raises(
        ImageNotFoundError, match=r"Study 1, view 1: Image file .*missing\.png does not exist"
    ):
        processor([[a], [a, misc / "missing.png"]])


def test_inputs_of_every_kind_give_the_same_pixels(misc: Path, processor: RRGImageProcessor) -> None:
    path = misc / NIH_PNG
    expected = processor(str(path))["pixel_values"]
    assert expected.shape == (1, 1, 3, 224, 224)
    gray = np.asarray(Image.open(path))
    for source in (
        path,
        path.read_bytes(),
        {"bytes": None, "path": str(path)},
        Image.open(path),
        gray,
        torch.from_numpy(gray.copy()),
    ):
        assert torch.equal(processor(source)["pixel_values"], expected), type(source).__name__


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match=r"crop_size \(300x300\) is larger than resize_shorter \(256\)"):
        RRGImageProcessor(crop_size=300)
    with pytest.raises(ValueError, match="max_views must be a positive int"):
        RRGImageProcessor(max_views=0)
    with pytest.raises(ValueError, match="eval_size must be"):
        RRGImageProcessor(eval_size=(224, 0))


# ---------------------------------------------------------------------------------------------- save/load


def test_save_and_load_round_trip_gives_identical_tensors(misc: Path, tmp_path: Path) -> None:
    original = RRGImageProcessor(
        eval_size=(256, 240),
        resize_shorter=288,
        crop_size=256,
        do_flip=False,
        max_views=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.25, 0.25, 0.25],
        resample=Image.Resampling.BICUBIC,
    )
    original.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "RRGImageProcessor"
    assert saved["eval_size"] == [256, 240] and saved["resize_shorter"] == 288 and saved["do_flip"] is False
    assert saved["crop_size"] == {"height": 256, "width": 256} and saved["max_views"] == 2
    assert saved["image_mean"] == [0.5, 0.5, 0.5] and saved["resample"] == int(Image.Resampling.BICUBIC)
    assert "augment" not in saved and "generator" not in saved

    loaded = RRGImageProcessor.from_pretrained(tmp_path)
    studies = [[misc / NIH_PNG, misc / PADCHEST_JPEG], [misc / TB_PNG]]
    before, after = original(studies), loaded(studies)
    assert before["pixel_values"].shape == (2, 2, 3, 256, 240)
    assert torch.equal(before["pixel_values"], after["pixel_values"])
    assert torch.equal(before["view_mask"], after["view_mask"])
    train_before = original(studies, augment=True, generator=3)["pixel_values"]
    assert train_before.shape == (2, 2, 3, 256, 256)
    assert torch.equal(train_before, loaded(studies, augment=True, generator=3)["pixel_values"])
    assert loaded.to_dict() == original.to_dict()

    default = RRGImageProcessor()
    default.save_pretrained(tmp_path / "default")
    assert json.loads((tmp_path / "default" / "preprocessor_config.json").read_text())["max_views"] is None
    assert RRGImageProcessor.from_pretrained(tmp_path / "default").to_dict() == default.to_dict()


def test_auto_image_processor_resolves_the_saved_config(misc: Path, tmp_path: Path) -> None:
    from transformers import AutoImageProcessor

    from hf_rrg.modeling.configuration_rrg import RRGConfig

    AutoImageProcessor.register(RRGConfig, image_processor_classes={"pil": RRGImageProcessor}, exist_ok=True)
    original = RRGImageProcessor(max_views=2)
    original.save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded) is RRGImageProcessor and loaded.max_views == 2
    studies = [[misc / NIH_PNG, misc / TB_PNG]]
    assert torch.equal(original(studies)["pixel_values"], loaded(studies)["pixel_values"])
