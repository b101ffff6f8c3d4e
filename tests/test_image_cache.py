"""The image cache (`hf_rrg.data.image_cache`, `hf-rrg data cache`): on the real chest X-rays in ../shared/data, the
cached and the uncached pipelines give identical tensors for both transforms, through the processor, the training
collator and a builder; a cache made for other sizes is refused."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_rrg.data.collators import IndexedStudies, ReportGenerationCollator
from hf_rrg.data.image_cache import ImageCacheSettings, cache_dataset
from hf_rrg.modeling.image_loading import load_image
from hf_rrg.modeling.image_processing_rrg import RRGImageProcessor

# real images of every kind the loader meets: RGBA and RGB JPEGs, an RGBA PNG, grayscale PNGs, a 2373 px JPEG
COVID = ["000001-12.jpg", "000001-19.jpg", "000001-2.jpg", "000001-3.png", "000001.jpg"]
MISC = ["covid-19-pneumonia-58-prior.jpg", "00000001_000.png", "tb0005.png", "16747_3_1.jpg"]
DICOMS = ["pydicom-data_RG1_UNCR_chest_CR.dcm", "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"]


def _studies(shared_data: Path) -> list[list[Path]]:
    covid = [shared_data / "covid_cxr_notes" / "images" / name for name in COVID]
    misc = [shared_data / "misc_cxr_images" / name for name in MISC]
    return [covid[:2], covid[2:3], covid[3:], misc[:1], misc[1:3], misc[3:]]


def _pixels(processor: RRGImageProcessor, images: list, augment: bool, seed: int) -> torch.Tensor:
    return processor([images], augment=augment, generator=seed, return_tensors="pt")["pixel_values"]


@pytest.fixture(scope="module")
def image_datasets(shared_data: Path):
    """A `datasets.Dataset` of real studies (`List(Image())`, decoded by datasets as the builders' are) and its
    cached copy."""
    import datasets

    studies = _studies(shared_data)
    features = datasets.Features({"images": datasets.List(datasets.Image()), "report": datasets.Value("string")})
    dataset = datasets.Dataset.from_dict(
        {"images": [[str(p) for p in study] for study in studies], "report": ["a report ."] * len(studies)},
        features=features,
    )
    return dataset, cache_dataset(dataset, ImageCacheSettings(size=256, eval_size=224), num_proc=2)


def test_cached_views_are_small_and_identical_for_both_transforms(image_datasets) -> None:
    dataset, cached = image_datasets
    processor = RRGImageProcessor()
    assert cached.column_names == dataset.column_names and len(cached) == len(dataset)
    for index in range(len(dataset)):
        full, small = dataset[index]["images"], cached[index]["images"]
        assert len(small) == len(full)
        for view, cell in zip(full, small):
            train, evaluation = load_image({"bytes": cell["bytes"]}), load_image({"bytes": cell["eval_bytes"]})
            assert min(train.size) == 256 and evaluation.size == (224, 224)
            ratio = max(view.size) / min(view.size)  # the aspect ratio is kept (torchvision's int() of the long side)
            assert max(train.size) == int(256 * ratio + 1e-9)
        for seed in (0, 1, 2):
            assert torch.equal(_pixels(processor, full, True, seed), _pixels(processor, small, True, seed))
        assert torch.equal(_pixels(processor, full, False, 0), _pixels(processor, small, False, 0))


def test_training_collator_batches_are_identical(image_datasets) -> None:
    dataset, cached = image_datasets
    processor = RRGImageProcessor(max_views=3)
    for augment in (True, False):
        batches = []
        for source in (dataset, cached):
            collator = ReportGenerationCollator(processor, augment=augment, seed=7)
            collator.epoch = 3
            studies = IndexedStudies(source)
            batches.append(collator([studies[i] for i in range(len(studies))]))
        assert torch.equal(batches[0]["pixel_values"], batches[1]["pixel_values"])
        assert torch.equal(batches[0]["view_mask"], batches[1]["view_mask"])


def test_cache_made_for_other_sizes_is_refused(image_datasets) -> None:
    _, cached = image_datasets
    images = cached[0]["images"]
    with pytest.raises(ValueError, match=r"image cache made for 'shorter256-eval224x224-resample2'.*shorter300"):
        RRGImageProcessor(resize_shorter=300)([images], augment=True, generator=0)
    with pytest.raises(ValueError, match=r"rebuild the cache"):
        RRGImageProcessor(eval_size=256)([images], augment=False)


def _report_folder(shared_data: Path, folder: Path) -> Path:
    """A report_folder table over real images, DICOMs included (cells decoded by hf-rrg's loader)."""
    misc = shared_data / "misc_cxr_images"
    rows = [
        {"id": "a", "image": str(misc / DICOMS[0]), "report": "no acute disease .", "split": "train"},
        {"id": "b", "image": f"{misc / DICOMS[1]};{misc / MISC[0]}", "report": "small effusion .", "split": "train"},
        {"id": "c", "image": str(misc / MISC[2]), "report": "clear lungs .", "split": "test"},
    ]
    folder.mkdir()
    with (folder / "table.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


@pytest.mark.slow
def test_builder_option_and_cli_serve_identical_dicom_and_jpeg_tensors(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    from hf_rrg.data import load_builder

    data_dir = _report_folder(shared_data, tmp_path / "data")
    cache_dir = tmp_path / "cache"
    plain = load_builder("report_folder", data_dir, cache_dir=cache_dir)
    cached = load_builder("report_folder", data_dir, cache_dir=cache_dir, image_cache_size=256)
    assert list(cached) == list(plain)
    processor = RRGImageProcessor()
    for split in plain:
        for row, cached_row in zip(plain[split], cached[split]):
            assert cached_row["id"] == row["id"] and cached_row["report"] == row["report"]
            names = [Path(c["path"]).name.replace(".dcm", ".png") for c in row["images"]]
            assert [cell["path"] for cell in cached_row["images"]] == names
            for augment in (True, False):
                expected = _pixels(processor, row["images"], augment, 5)
                assert torch.equal(expected, _pixels(processor, cached_row["images"], augment, 5))
    arrow = sorted(cache_dir.rglob("hf_rrg_image_cache/*/train/*.arrow"))
    assert len(arrow) == 1
    stamp = arrow[0].stat().st_mtime_ns
    result = subprocess.run(
        [sys.executable, "-m", "hf_rrg.cli", "data", "cache", "report_folder", "--data-dir", str(data_dir),
         "--cache-dir", str(cache_dir), "--size", "256", "--num-proc", "1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "train: 2 studies" in result.stdout and str(arrow[0].parents[1]) in result.stdout
    assert arrow[0].stat().st_mtime_ns == stamp  # the cache made by load_builder is reused, not rebuilt
