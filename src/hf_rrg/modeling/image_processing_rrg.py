"""`RRGImageProcessor`: chest X-ray studies (1+ views, PNG/JPEG/DICOM/arrays) -> `pixel_values` + `view_mask`.

The transforms re-implement R2Gen's torchvision pipelines (Chen et al., EMNLP 2020, official code
``modules/dataloaders.py``) with PIL and numpy only, so neither torchvision nor any other backend is needed:

- eval: ``Resize((224, 224))`` -> ``ToTensor()`` -> ``Normalize(ImageNet mean, std)``;
- train: ``Resize(256)`` -> ``RandomCrop(224)`` -> ``RandomHorizontalFlip()`` -> ``ToTensor()``
  -> ``Normalize``.
"""

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_base import BatchFeature
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling, SizeDict
from transformers.processing_utils import ImagesKwargs, Unpack

from .image_loading import ImageLoadError, ImageSource, load_image


class RRGImageProcessorKwargs(ImagesKwargs, total=False):
    """Fields of `RRGImageProcessor` beyond the standard `ImagesKwargs` (see the class docstring)."""

    eval_size: int | list[int] | tuple[int, ...] | None
    resize_shorter: int | None
    do_flip: bool | None
    max_views: int | None
    augment: bool | None
    generator: np.random.Generator | int | None


class RRGImageProcessor(PilBackend):
    """Image processor of every hf-rrg report generator (PIL backend: no torchvision needed).

    Input structure (``images``): one image (anything `load_image` takes: path, bytes, PIL, numpy, torch,
    ``datasets`` dict), a list of images (a batch of single-view studies), or a list of lists (a batch of
    studies, each with one or more views). The output `BatchFeature` holds ``pixel_values`` of shape
    ``(batch, views, 3, H, W)`` (float32) and ``view_mask`` of shape ``(batch, views)`` (bool, True = real
    view); missing views are zeros. ``views`` is ``max_views`` when set, else the largest study in the batch.

    Args (saved in ``preprocessor_config.json``):
        eval_size: (height, width) every image is resized to, bilinear, at evaluation
            (R2Gen: ``Resize((224, 224))``). An int means a square.
        resize_shorter: at training, the shorter side is resized to this, keeping the aspect ratio; the longer
            side becomes ``int(resize_shorter * long / short)`` as in ``torchvision.transforms.Resize(256)``
            (R2Gen: 256).
        crop_size: size of the random crop taken at training (R2Gen: ``RandomCrop(224)``).
        do_flip: at training, flip horizontally with probability 0.5 (R2Gen: ``RandomHorizontalFlip()``, on
            by default). Note that a flip swaps the patient's left and right, so findings whose report names a
            side ("left pleural effusion") no longer match the image; set False for side-aware training.
        image_mean / image_std: per-channel normalisation after scaling to [0, 1] (R2Gen: ImageNet's).
        resample: PIL resampling filter of both resizes (R2Gen: bilinear, torchvision's default).
        max_views: fixed number of views per study (R2Gen on IU X-Ray: 2); a study with more views is an
            error. None: the largest study of each batch.
        do_rescale / rescale_factor / do_normalize: the standard switches of ``ToTensor`` (x / 255) and
            ``Normalize``; on by default.

    Call arguments beyond those: ``augment`` (False: the eval transform; True: the train transform),
    ``generator`` (a ``numpy.random.Generator`` or an int seed; the source of the crop offsets and flips, so a
    seed makes a run reproducible; default a fresh unseeded generator) and ``return_tensors`` ("pt" by
    default, or "np").
    """

    valid_kwargs = RRGImageProcessorKwargs
    model_input_names: ClassVar[list[str]] = ["pixel_values", "view_mask"]

    eval_size = (224, 224)
    resize_shorter = 256
    crop_size: ClassVar[dict[str, int]] = {"height": 224, "width": 224}
    do_flip = True
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    resample = PILImageResampling.BILINEAR
    max_views = None
    do_rescale = True
    do_normalize = True
    return_tensors = "pt"
    augment = False
    generator = None

    def __init__(self, **kwargs: Unpack[RRGImageProcessorKwargs]) -> None:
        super().__init__(**kwargs)
        self._check_train_sizes(self.resize_shorter, self.crop_size)

    # ------------------------------------------------------------------------------------------ kwargs

    def _standardize_kwargs(
        self,
        eval_size: int | Sequence[int] | None = None,
        resize_shorter: int | None = None,
        max_views: int | None = None,
        resample: PILImageResampling | int | None = None,
        **kwargs: Any,
    ) -> dict:
        kwargs = super()._standardize_kwargs(**kwargs)
        kwargs["eval_size"] = None if eval_size is None else _height_width(eval_size, "eval_size")
        if resize_shorter is not None and (not _is_int(resize_shorter) or resize_shorter < 1):
            raise ValueError(f"resize_shorter must be a positive int, got {resize_shorter!r}.")
        if max_views is not None and (not _is_int(max_views) or max_views < 1):
            raise ValueError(f"max_views must be a positive int or None, got {max_views!r}.")
        kwargs["resize_shorter"] = resize_shorter
        kwargs["max_views"] = max_views
        kwargs["resample"] = None if resample is None else PILImageResampling(int(resample))
        return kwargs

    @staticmethod
    def _check_train_sizes(resize_shorter: int, crop_size: SizeDict) -> None:
        if crop_size.height > resize_shorter or crop_size.width > resize_shorter:
            raise ValueError(
                f"crop_size ({crop_size.height}x{crop_size.width}) is larger than resize_shorter "
                f"({resize_shorter}): the random crop would not fit; make resize_shorter >= the crop."
            )

    def to_dict(self) -> dict[str, Any]:
        """The saved configuration (the call-time arguments ``augment`` and ``generator`` are left out)."""
        output = super().to_dict()
        output.pop("augment", None)
        output.pop("generator", None)
        output["max_views"] = self.max_views  # saved even when None (= the largest study of each batch)
        if output.get("eval_size") is not None:
            output["eval_size"] = list(output["eval_size"])
        if output.get("resample") is not None:
            output["resample"] = int(output["resample"])
        return output

    # ------------------------------------------------------------------------------------------ batching

    def _preprocess_image_like_inputs(self, images: Any, *args: Any, **kwargs: Any) -> BatchFeature:
        return self._preprocess(_as_studies(images), *args, **kwargs)

    def _preprocess(
        self,
        images: list[list[ImageSource]],
        *,
        eval_size: tuple[int, int],
        resize_shorter: int,
        crop_size: SizeDict,
        do_flip: bool,
        resample: PILImageResampling,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        max_views: int | None,
        augment: bool | None,
        generator: np.random.Generator | int | None,
        return_tensors: str | None,
        **kwargs: Any,
    ) -> BatchFeature:
        studies = images
        longest = max(len(study) for study in studies)
        if max_views is not None and longest > max_views:
            index = next(i for i, study in enumerate(studies) if len(study) > max_views)
            raise ValueError(
                f"Study {index} has {len(studies[index])} views but max_views is {max_views}; drop views or "
                "raise max_views."
            )
        views = max_views if max_views is not None else longest
        if augment:
            self._check_train_sizes(resize_shorter, crop_size)
            rng = (
                generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
            )
            height, width = crop_size.height, crop_size.width
        else:
            rng = None
            height, width = eval_size

        pixel_values = np.zeros((len(studies), views, 3, height, width), dtype=np.float32)
        view_mask = np.zeros((len(studies), views), dtype=bool)
        cache_key = image_cache_key(resize_shorter, eval_size, resample)
        for i, study in enumerate(studies):
            for j, source in enumerate(study):
                image = _load(cached_variant(source, bool(augment), cache_key), i, j)
                if rng is None:
                    array = self.eval_transform(image, eval_size, resample)
                else:
                    array = self.random_train_transform(
                        image, rng, resize_shorter, crop_size, do_flip, resample
                    )
                pixel_values[i, j] = self.to_normalized_chw(
                    array, do_rescale, rescale_factor, do_normalize, image_mean, image_std
                )
                view_mask[i, j] = True
        return BatchFeature(
            data={"pixel_values": pixel_values, "view_mask": view_mask}, tensor_type=return_tensors
        )

    # ------------------------------------------------------------------------------------------ transforms

    @staticmethod
    def eval_transform(
        image: Image.Image, eval_size: tuple[int, int], resample: PILImageResampling | int
    ) -> np.ndarray:
        """Resize an RGB image to exactly ``eval_size`` (height, width); returns (H, W, 3) uint8."""
        height, width = eval_size
        return np.asarray(image.resize((width, height), resample=PILImageResampling(int(resample))))

    @staticmethod
    def train_resize(
        image: Image.Image, resize_shorter: int, resample: PILImageResampling | int
    ) -> Image.Image:
        """Resize the shorter side to ``resize_shorter``, keeping the aspect ratio (``Resize(int)``)."""
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(resize_shorter * long / short)
        size = (resize_shorter, new_long) if width <= height else (new_long, resize_shorter)
        if size == image.size:
            return image
        return image.resize(size, resample=PILImageResampling(int(resample)))

    @classmethod
    def train_transform(
        cls,
        image: Image.Image,
        top: int,
        left: int,
        flip: bool,
        resize_shorter: int = 256,
        crop_size: SizeDict | dict[str, int] | None = None,
        resample: PILImageResampling | int = PILImageResampling.BILINEAR,
    ) -> np.ndarray:
        """The train transform with a fixed crop offset (``top``, ``left``, in the resized image) and flip.

        Returns (crop height, crop width, 3) uint8.
        """
        crop = SizeDict(**(crop_size or {"height": 224, "width": 224}))
        return _crop_and_flip(
            np.asarray(cls.train_resize(image, resize_shorter, resample)), top, left, crop, flip
        )

    @classmethod
    def random_train_transform(
        cls,
        image: Image.Image,
        rng: np.random.Generator,
        resize_shorter: int,
        crop_size: SizeDict,
        do_flip: bool,
        resample: PILImageResampling | int,
    ) -> np.ndarray:
        """The train transform, crop offset drawn uniformly and flip with probability 0.5 from ``rng``.

        Draws, in order: the top offset, the left offset, then (only when ``do_flip``) one uniform number.
        """
        array = np.asarray(cls.train_resize(image, resize_shorter, resample))
        height, width = array.shape[:2]
        top = int(rng.integers(0, height - crop_size.height + 1))
        left = int(rng.integers(0, width - crop_size.width + 1))
        flip = bool(do_flip and rng.random() < 0.5)
        return _crop_and_flip(array, top, left, crop_size, flip)

    @staticmethod
    def to_normalized_chw(
        array: np.ndarray,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean: Sequence[float],
        image_std: Sequence[float],
    ) -> np.ndarray:
        """(H, W, 3) uint8 -> (3, H, W) float32: ``ToTensor`` (x * rescale_factor) then ``Normalize``."""
        chw = np.ascontiguousarray(array.transpose(2, 0, 1))
        values = (chw * float(rescale_factor)).astype(np.float32) if do_rescale else chw.astype(np.float32)
        if do_normalize:
            mean = np.asarray(image_mean, dtype=np.float32).reshape(-1, 1, 1)
            std = np.asarray(image_std, dtype=np.float32).reshape(-1, 1, 1)
            values = (values - mean) / std
        return values


IMAGE_CACHE_EVAL_KEY = "eval_bytes"


def image_cache_key(resize_shorter: int, eval_size: tuple[int, int], resample: PILImageResampling | int) -> str:
    """The resize settings an image cache (`hf-rrg data cache`) was made for, as stored in its cells."""
    return f"shorter{resize_shorter}-eval{eval_size[0]}x{eval_size[1]}-resample{int(resample)}"


def cached_variant(source: ImageSource, augment: bool, cache_key: str) -> ImageSource:
    """The image a transform starts from. A cell of an image cache holds the image already resized for the train
    transform (`bytes`: shorter side `resize_shorter`, so `train_resize` leaves it alone) and for the eval transform
    (`eval_bytes`: exactly `eval_size`), made by these same transforms from the full image; other sources pass
    through. A cache made for other settings is refused (it would give other pixels)."""
    if not isinstance(source, Mapping) or IMAGE_CACHE_EVAL_KEY not in source:
        return source
    if source.get("cache_key") != cache_key:
        raise ValueError(
            f"image {source.get('path')!r} comes from an image cache made for {source.get('cache_key')!r}, but this "
            f"processor's settings are {cache_key!r}; rebuild the cache for them (`hf-rrg data cache ... --size`)."
        )
    return {"bytes": source["bytes" if augment else IMAGE_CACHE_EVAL_KEY], "path": source.get("path")}


def _crop_and_flip(array: np.ndarray, top: int, left: int, crop: SizeDict, flip: bool) -> np.ndarray:
    rows, cols = array.shape[:2]
    if not (0 <= top <= rows - crop.height and 0 <= left <= cols - crop.width):
        raise ValueError(
            f"Crop at (top={top}, left={left}) of size {crop.height}x{crop.width} does not fit the resized "
            f"{rows}x{cols} image."
        )
    array = array[top : top + crop.height, left : left + crop.width]
    return array[:, ::-1] if flip else array


def _as_studies(images: Any) -> list[list[ImageSource]]:
    """One image, a list of images (single-view studies) or a list of lists (studies) -> list of studies."""
    if not isinstance(images, (list, tuple)):
        return [[images]]
    if len(images) == 0:
        raise ValueError(
            "No images were given; pass one image, a list of images or a list of studies (lists)."
        )
    studies = [list(item) if isinstance(item, (list, tuple)) else [item] for item in images]
    for index, study in enumerate(studies):
        if not study:
            raise ValueError(
                f"Study {index} has no views (an empty list); every study needs at least one image."
            )
    return studies


def _load(source: ImageSource, study: int, view: int) -> Image.Image:
    try:
        return load_image(source)
    except ImageLoadError as err:
        raise type(err)(f"Study {study}, view {view}: {err}") from err


def _height_width(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, dict):
        value = (value.get("height"), value.get("width"))
    pair = (value, value) if _is_int(value) else tuple(value)
    if len(pair) != 2 or not all(_is_int(v) and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive int or (height, width) of positive ints, got {value!r}.")
    return int(pair[0]), int(pair[1])


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


__all__ = ["IMAGE_CACHE_EVAL_KEY", "RRGImageProcessor", "RRGImageProcessorKwargs", "cached_variant", "image_cache_key"]
