"""Training-image throughput with and without the image cache (`hf-rrg data cache`), on the real chest X-rays in
../shared/data, through the training path: `IndexedStudies` -> `ReportGenerationCollator` (train transform:
resize shorter side 256, random crop 224, flip) -> `torch.utils.data.DataLoader` with worker processes.

Run by hand (never a timed test):

    python benchmarks/bench_image_cache.py                  # both image sets, 0 and 2 workers
    python benchmarks/bench_image_cache.py --workers 0 2 4 --epochs 3

Image sets: `covid_cxr_notes` (191 real images of mixed size, 0.2-1 MP, RGB/RGBA/grayscale JPEG/PNG) and
`full_resolution` (the real 2373 x 2373 JPEG, the 1955 x 1841 16-bit CR DICOM and the 1036 x 885 JPEG of
misc_cxr_images, each repeated as `--repeat` studies: MIMIC-CXR's JPEGs are about 2500 x 3000). The cache is built
once per set (its time is printed: one decode of every image); each DataLoader figure is the best of `--epochs`
full passes, in images per second.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch
from bench_common import machine
from torch.utils.data import DataLoader

from hf_rrg.data import load_builder
from hf_rrg.data.collators import IndexedStudies, ReportGenerationCollator
from hf_rrg.modeling.image_processing_rrg import RRGImageProcessor

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FULL_RESOLUTION = ["covid-19-pneumonia-58-prior.jpg", "pydicom-data_RG1_UNCR_chest_CR.dcm", "16747_3_1.jpg"]


def image_paths(name: str, data: Path, repeat: int) -> list[Path]:
    if name == "covid_cxr_notes":
        return sorted((data / "covid_cxr_notes" / "images").iterdir())
    return [data / "misc_cxr_images" / file for file in FULL_RESOLUTION] * repeat


def write_table(paths: list[Path], folder: Path) -> Path:
    """A report_folder table: one single-view training study per image."""
    folder.mkdir(parents=True)
    with (folder / "table.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "image", "report", "split"])
        writer.writeheader()
        for index, path in enumerate(paths):
            writer.writerow({"id": str(index), "image": str(path), "report": "lungs are clear .", "split": "train"})
    return folder


def images_per_second(dataset, workers: int, epochs: int, batch_size: int) -> float:
    collator = ReportGenerationCollator(RRGImageProcessor(), augment=True, seed=0)
    studies = IndexedStudies(dataset)
    loader = DataLoader(studies, batch_size=batch_size, num_workers=workers, collate_fn=collator,
                        persistent_workers=workers > 0)  # fmt: skip
    best = float("inf")
    for epoch in range(epochs):
        collator.epoch = epoch
        start = time.perf_counter()
        views = sum(int(batch["view_mask"].sum()) for batch in loader)
        best = min(best, time.perf_counter() - start)
    return views / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["covid_cxr_notes", "full_resolution"])
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=16, help="studies per full-resolution image")
    parser.add_argument("--data", type=Path, default=SHARED, help="the shared data folder")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the workers are the parallelism, as in training
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.sets:
            paths = image_paths(name, args.data, args.repeat)
            data_dir = write_table(paths, Path(scratch) / name)
            cache_dir = Path(scratch) / "cache"
            plain = load_builder("report_folder", data_dir, cache_dir=cache_dir, split="train", check_images=False)
            start = time.perf_counter()
            cached = load_builder("report_folder", data_dir, cache_dir=cache_dir, split="train", check_images=False,
                                  image_cache_size=256, image_cache_num_proc=max(args.workers))  # fmt: skip
            build = time.perf_counter() - start
            for workers in args.workers:
                uncached_rate = images_per_second(plain, workers, args.epochs, args.batch_size)
                cached_rate = images_per_second(cached, workers, args.epochs, args.batch_size)
                rows.append((name, len(paths), workers, uncached_rate, cached_rate, build))
    print(f"\nMachine: {machine(torch.device('cpu'))}; train transform, batch {args.batch_size}, "
          f"best of {args.epochs} epochs\n")
    print("| images | count | DataLoader workers | uncached images/s | cached images/s | speed-up | cache build s |")
    print("|---|---|---|---|---|---|---|")
    for name, count, workers, uncached_rate, cached_rate, build in rows:
        print(f"| {name} | {count} | {workers} | {uncached_rate:.1f} | {cached_rate:.1f} | "
              f"{cached_rate / uncached_rate:.1f}x | {build:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
