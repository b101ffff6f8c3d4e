"""Image cache: every image of a dataset decoded once and stored at the sizes the image transforms start from.

Full-resolution chest X-rays (MIMIC-CXR JPEGs are about 2500 × 3000 px) cost far more to decode and resize than
the model costs to read at 224 px, and an uncached pipeline pays that at every epoch. The cache decodes each image
once, exactly as the uncached pipeline receives it (the dataset's own `datasets.Image` decoding, then
`hf_rrg.modeling.image_loading.load_image`), and stores two small PNGs per view, made by `RRGImageProcessor`'s
own resizes:

- `bytes`: the train transform's resize (shorter side = `size`, R2Gen's `Resize(256)`); the random crop and flip
  then run on it as usual;
- `eval_bytes`: the eval transform's resize (exactly `eval_size`, R2Gen's `Resize((224, 224))`).

`RRGImageProcessor` picks the variant its transform starts from (`cached_variant`), so a cached dataset gives
tensors identical to the uncached one, for both transforms; a cache made for other sizes is refused. Each cell also
keeps the image's file name (`path`; a DICOM's as `<stem>.png`) and the settings (`cache_key`); `load_image` on a cell reads the train
variant, so code that does not know about the cache still gets the image.

The cache is Arrow shards (`datasets.DatasetDict.save_to_disk`, memory-mapped when read) in the prepared builder's
own cache folder (`<builder cache>/hf_rrg_image_cache/<settings>/`), so it follows the builder's inputs; it is made
on first use and reused after. Use it with `hf-rrg data cache BUILDER --size 256` or the builder option
`image_cache_size` (e.g. `data.builder_kwargs.image_cache_size: 256` in a training config).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..modeling.image_loading import load_image
from ..modeling.image_processing_rrg import IMAGE_CACHE_EVAL_KEY, RRGImageProcessor, image_cache_key

if TYPE_CHECKING:  # pragma: no cover
    import datasets

__all__ = ["CACHE_FOLDER", "ImageCacheSettings", "cache_dataset", "cached_builder_dataset", "image_cache_folder",
           "write_image_cache"]

CACHE_FOLDER = "hf_rrg_image_cache"
SETTINGS_FILE = "hf_rrg_image_cache.json"
_BILINEAR = 2  # PIL's BILINEAR, RRGImageProcessor's default resample


@dataclass(frozen=True)
class ImageCacheSettings:
    """The resizes a cache stores: `size` = the processor's `resize_shorter` (train transform), `eval_size` = its
    `eval_size` (height, width), `resample` = its PIL resampling filter."""

    size: int = 256
    eval_size: tuple[int, int] = (224, 224)
    resample: int = _BILINEAR

    def __post_init__(self) -> None:
        eval_size = self.eval_size
        pair = (eval_size, eval_size) if isinstance(eval_size, int) else tuple(eval_size)
        if not (isinstance(self.size, int) and self.size > 0) or len(pair) != 2 or min(pair) < 1:
            raise ValueError(
                f"image cache sizes must be positive: size={self.size!r} (the shorter side of the train transform), "
                f"eval_size={eval_size!r} (an int or [height, width])"
            )
        object.__setattr__(self, "eval_size", (int(pair[0]), int(pair[1])))

    @property
    def key(self) -> str:
        return image_cache_key(self.size, self.eval_size, self.resample)


def _png(image: Image.Image) -> bytes:
    """PNG bytes of an RGB image, stored as grayscale when its three channels are equal (load_image repeats a
    grayscale image into the same three channels, so nothing changes)."""
    array = np.asarray(image)
    if (array[..., 0] == array[..., 1]).all() and (array[..., 0] == array[..., 2]).all():
        image = Image.fromarray(np.ascontiguousarray(array[..., 0]), mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def cache_cell(source: Any, settings: ImageCacheSettings, name: str | None) -> dict[str, Any]:
    """One view as a cache cell: its train-size and eval-size PNGs, its file name and the settings."""
    image = load_image(source)
    train = RRGImageProcessor.train_resize(image, settings.size, settings.resample)
    evaluation = Image.fromarray(RRGImageProcessor.eval_transform(image, settings.eval_size, settings.resample))
    return {"bytes": _png(train), "path": name, IMAGE_CACHE_EVAL_KEY: _png(evaluation), "cache_key": settings.key}


def _cell_features() -> datasets.Features:
    import datasets

    return {
        "bytes": datasets.Value("binary"),
        "path": datasets.Value("string"),
        IMAGE_CACHE_EVAL_KEY: datasets.Value("binary"),
        "cache_key": datasets.Value("string"),
    }


class _CacheImages:
    """The `datasets.map` function: the image column's raw cells, decoded as the dataset would decode them, turned
    into cache cells (picklable, for `num_proc` workers)."""

    def __init__(self, column: str, image_feature: Any, settings: ImageCacheSettings) -> None:
        self.column, self.image_feature, self.settings = column, image_feature, settings

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        return {self.column: [self._study(cell) for cell in batch[self.column]]}

    def _study(self, cell: Any) -> list[dict[str, Any]]:
        views = cell if isinstance(cell, list) else [cell]
        return [self._view(view) for view in views if view is not None]

    def _view(self, raw: dict[str, Any]) -> dict[str, Any]:
        decoded = self.image_feature.decode_example(raw) if self.image_feature.decode else raw
        path = raw.get("path")
        return cache_cell(decoded, self.settings, _png_name(path) if path else None)


def _png_name(path: str) -> str:
    """The file name a cell keeps; a DICOM's becomes `<stem>.png` (its pixels are a PNG now, and `load_image`
    reads a `.dcm` name as DICOM)."""
    name = Path(path).name
    return f"{Path(name).stem}.png" if name.lower().endswith(".dcm") else name


def _image_feature(feature: Any, column: str) -> Any:
    import datasets

    inner = getattr(feature, "feature", feature)  # List(Image()) / Sequence(Image()) -> Image()
    if not isinstance(inner, datasets.Image):
        raise ValueError(f"column {column!r} does not hold images ({feature!r}); pass the image column's name")
    return inner


def cache_dataset(
    dataset: datasets.Dataset, settings: ImageCacheSettings, image_column: str = "images", num_proc: int | None = None
) -> datasets.Dataset:
    """`dataset` with its image column replaced by cache cells (a list per study); other columns unchanged."""
    import datasets

    if image_column not in dataset.column_names:
        raise ValueError(f"the dataset has no column {image_column!r}; its columns are {dataset.column_names}")
    feature = dataset.features[image_column]
    image_feature = _image_feature(feature, image_column)
    raw = datasets.List(datasets.Image(decode=False)) if feature is not image_feature else datasets.Image(decode=False)
    features = dataset.features.copy()
    features[image_column] = datasets.List(_cell_features())
    return dataset.cast_column(image_column, raw).map(
        _CacheImages(image_column, image_feature, settings),
        batched=True,
        batch_size=16,
        features=features,
        num_proc=num_proc if num_proc and num_proc > 1 and len(dataset) > 1 else None,
        load_from_cache_file=False,
        desc=f"Caching images at {settings.key}",
    )


def write_image_cache(
    dataset_dict: datasets.DatasetDict,
    folder: str | Path,
    settings: ImageCacheSettings,
    image_column: str = "images",
    num_proc: int | None = None,
) -> Path:
    """Cache every split of `dataset_dict` into `folder` (written under a temporary name, then renamed, so a
    half-written cache is never read). Returns the folder."""
    import datasets

    folder = Path(folder)
    staging = folder.with_name(f".tmp_{folder.name}_{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    cached = datasets.DatasetDict(
        {split: cache_dataset(dataset, settings, image_column, num_proc) for split, dataset in dataset_dict.items()}
    )
    cached.save_to_disk(str(staging), max_shard_size="256MB")
    (staging / SETTINGS_FILE).write_text(json.dumps(asdict(settings)), encoding="utf-8")
    if folder.exists():  # another process finished the same cache first: keep theirs
        shutil.rmtree(staging, ignore_errors=True)
    else:
        os.replace(staging, folder)
    return folder


def image_cache_folder(builder: datasets.DatasetBuilder, settings: ImageCacheSettings) -> Path:
    """Where the cache of a prepared builder's dataset for `settings` lives (inside the builder's cache folder)."""
    return Path(builder.cache_dir) / CACHE_FOLDER / settings.key


def cached_builder_dataset(
    builder: datasets.DatasetBuilder,
    settings: ImageCacheSettings,
    split: str | None = None,
    num_proc: int | None = None,
) -> datasets.DatasetDict | datasets.Dataset:
    """The prepared `builder`'s dataset with cached images: made in the builder's cache folder on first use (every
    split), read from there after."""
    import datasets

    folder = image_cache_folder(builder, settings)
    if not (folder / SETTINGS_FILE).is_file():
        write_image_cache(builder.as_dataset(), folder, settings, num_proc=num_proc)
    cached = datasets.load_from_disk(str(folder))
    return cached[split] if split is not None else cached
