"""Decode one image source (path, bytes, PIL, numpy, torch, `datasets` dict; PNG, JPEG, DICOM) to 8-bit RGB.

Rules every source goes through (`load_image`):

- 8-bit data (PIL modes ``L``/``RGB``/``P``/``1``, ``uint8`` arrays and tensors) keep their values;
  grayscale is repeated into three channels.
- Anything of higher bit depth or floating point (16-bit PNG in PIL modes ``I;16``/``I``/``F``,
  ``uint16``/``int``/``float`` arrays, DICOM after its LUTs) is scaled to 0-255 by min-max scaling of its
  *actual* range, over all channels at once (so colour balance is kept).
- Alpha (``LA``, ``RGBA``, ``PA``, 2- or 4-channel arrays) is composited on black, i.e. multiplied in.
- DICOM: stored values -> modality LUT (rescale slope/intercept) -> VOI LUT or window centre/width when
  present -> min-max to 0-255 -> ``MONOCHROME1`` inverted. Only the first frame of multi-frame data is read.
- An image whose pixels all have one value carries no information and is refused, as are zero-size images.
- An image of more than `max_image_pixels()` pixels (default PIL's ``Image.MAX_IMAGE_PIXELS``, about 89.5 million;
  set ``HF_RRG_MAX_IMAGE_PIXELS`` to change it, ``none`` to lift it) is refused from its header, before its pixels
  are decoded, so a huge DICOM or PNG never fills the memory.

Every failure raises a subclass of `ImageLoadError` (a `ValueError`) whose message names the source and
says what to do.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

ImageSource = (
    str | os.PathLike | bytes | bytearray | Image.Image | np.ndarray | torch.Tensor | Mapping[str, Any]
)

_DICOM_MAGIC = b"DICM"
_DICOM_MAGIC_OFFSET = 128
# PIL modes holding more than 8 bits per sample; they are min-max scaled like other high bit-depth data.
_HIGH_DEPTH_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I;32", "I;32B", "I;32S", "I;32BS")
MAX_PIXELS_ENV = "HF_RRG_MAX_IMAGE_PIXELS"
# Where pydicom names a dependency differently from its pip package.
_PIP_NAMES = {"gdcm": "python-gdcm"}


class ImageLoadError(ValueError):
    """An image source could not be turned into an 8-bit RGB image; the message says which and what to do."""


class ImageNotFoundError(ImageLoadError, FileNotFoundError):
    """The image file does not exist."""


class CorruptImageError(ImageLoadError):
    """The file or bytes are not a readable PNG/JPEG/DICOM image (unknown format, truncated or corrupt)."""


class UnsupportedImageError(ImageLoadError):
    """The source has a type, shape, dtype or mode the loader does not handle."""


class ImageTooLargeError(ImageLoadError):
    """The image has more pixels than `max_image_pixels()`; refused before decoding."""


class EmptyImageError(ImageLoadError):
    """The image has zero height or width."""


class ConstantImageError(ImageLoadError):
    """Every pixel has the same value, so the image carries no information."""


class DicomNoPixelDataError(ImageLoadError):
    """The DICOM object has no pixel data (e.g. a structured report)."""


class DicomDecoderMissingError(ImageLoadError):
    """The DICOM pixel data is compressed with a transfer syntax whose decoder is not installed."""


class DicomSupportMissingError(ImageLoadError, ImportError):
    """pydicom, needed to read DICOM files, is not installed."""


def load_image(source: ImageSource) -> Image.Image:
    """Decode one image source into an 8-bit RGB `PIL.Image.Image`.

    Args:
        source: a path (`str`/`os.PathLike`) to a PNG, JPEG or DICOM file (DICOM is recognised by the ``DICM``
            magic at byte 128 or a ``.dcm`` suffix); the file's `bytes`; a `PIL.Image.Image`; a numpy array of
            shape (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4) (channels last) of any integer, bool or
            float dtype; a `torch.Tensor` of shape (C, H, W) (channels first) or (H, W); or the dict
            ``{"bytes": ..., "path": ...}`` that ``datasets.Image(decode=False)`` yields.

    Returns:
        A new image in mode ``"RGB"``.

    Raises:
        ImageLoadError: (a subclass of it) naming the source and what to do, when the source cannot
            be decoded.
    """
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source, "the PIL image passed in")
    if isinstance(source, np.ndarray):
        return _rgb_image(_array_to_rgb_uint8(source, f"the numpy array of shape {source.shape}"))
    if isinstance(source, torch.Tensor):
        return _rgb_image(_tensor_to_rgb_uint8(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(source), "the image bytes passed in", dicom_hint=False)
    if isinstance(source, Mapping):
        return _from_datasets_dict(source)
    if isinstance(source, (str, os.PathLike)):
        return _from_path(Path(source))
    raise UnsupportedImageError(
        f"Cannot load an image from a {type(source).__name__}; pass a file path, bytes, a PIL image, a numpy "
        "array, a torch tensor or a datasets Image dict {'bytes': ..., 'path': ...}."
    )


# --------------------------------------------------------------------------------------------------- sources


def _from_path(path: Path) -> Image.Image:
    text = str(path)
    if text.startswith(("http://", "https://")):
        raise UnsupportedImageError(
            f"{text} is a URL; download the image first and pass the local file path."
        )
    if not path.exists():
        raise ImageNotFoundError(
            f"Image file {path} does not exist; check the path (and the working directory)."
        )
    if not path.is_file():
        raise UnsupportedImageError(f"{path} is not a file (a directory?); pass the path of one image file.")
    name = f"image file {path}"
    try:
        with open(path, "rb") as handle:
            head = handle.read(_DICOM_MAGIC_OFFSET + len(_DICOM_MAGIC))
        if head and is_dicom(head, str(path)):  # pydicom reads the file itself: the header before the pixels
            return _decode_dicom(path, name, force=not is_dicom(head))
        data = path.read_bytes()
    except OSError as err:
        raise CorruptImageError(
            f"Image file {path} could not be read ({err}); check its permissions."
        ) from err
    return _from_bytes(data, name, dicom_hint=False)


def _from_datasets_dict(source: Mapping[str, Any]) -> Image.Image:
    if not set(source) & {"bytes", "path"}:
        raise UnsupportedImageError(
            f"Cannot load an image from a dict with keys {sorted(source)}; expected the datasets Image dict "
            "{'bytes': ..., 'path': ...}."
        )
    data, path = source.get("bytes"), source.get("path")
    if data is not None:
        name = f"image bytes of {path}" if path else "the image bytes in the datasets dict"
        hint = bool(path) and str(path).lower().endswith(".dcm")
        return _from_bytes(bytes(data), name, dicom_hint=hint)
    if path:
        return _from_path(Path(path))
    raise UnsupportedImageError("The datasets Image dict has neither 'bytes' nor 'path'; it holds no image.")


def _from_bytes(data: bytes, name: str, dicom_hint: bool) -> Image.Image:
    if not data:
        raise CorruptImageError(f"{_cap(name)} is empty (0 bytes); re-download or re-export the image.")
    has_magic = is_dicom(data)
    if has_magic or dicom_hint:
        return _decode_dicom(data, name, force=not has_magic)
    return _decode_pil(data, name)


def is_dicom(data: bytes, path: str | None = None) -> bool:
    """Whether `data` (the file's bytes, or at least its first 132) is DICOM: the ``DICM`` magic at byte 128, or a
    file name ending in ``.dcm`` (DICOM written without the preamble)."""
    has_magic = data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + len(_DICOM_MAGIC)] == _DICOM_MAGIC
    return has_magic or (path is not None and str(path).lower().endswith(".dcm"))


def max_image_pixels() -> int | None:
    """The largest image (height x width) `load_image` decodes: ``HF_RRG_MAX_IMAGE_PIXELS`` when set (``none`` or
    ``0``: no limit), else PIL's ``Image.MAX_IMAGE_PIXELS`` (None there means no limit too)."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return Image.MAX_IMAGE_PIXELS
    if text.lower() in ("none", "0", "off"):
        return None
    try:
        return int(float(text))
    except ValueError:
        raise UnsupportedImageError(
            f"{MAX_PIXELS_ENV}={text!r} is not a number of pixels; set e.g. {MAX_PIXELS_ENV}=200000000 (or none)."
        ) from None


def _check_pixel_count(width: int, height: int, name: str) -> None:
    limit = max_image_pixels()
    if limit is not None and width * height > limit:
        raise ImageTooLargeError(
            f"{_cap(name)} is {width}x{height} = {width * height} pixels, more than the limit of {limit} (decoding "
            f"it could take several GB of memory); downscale it first, or raise the limit with "
            f"{MAX_PIXELS_ENV}=<pixels> if this machine has the memory."
        )


def _decode_pil(data: bytes, name: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        _check_pixel_count(image.width, image.height, name)  # Image.open reads the header only
        image.load()
    except ImageTooLargeError:
        raise
    except UnidentifiedImageError as err:
        raise CorruptImageError(
            f"{_cap(name)} is not an image format that can be read (not PNG, JPEG or DICOM); check that the "
            "file is really an image and not, e.g., text or an HTML error page saved with an image suffix."
        ) from err
    except Image.DecompressionBombError as err:
        raise CorruptImageError(
            f"{_cap(name)} is too large for PIL's decompression-bomb guard ({err}); downscale it first."
        ) from err
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as err:
        raise CorruptImageError(
            f"{_cap(name)} is truncated or corrupt and could not be decoded ({err}); "
            "re-download or re-export it."
        ) from err
    return _pil_to_rgb(image, name)


# ------------------------------------------------------------------------------------------- PIL and arrays


def _pil_to_rgb(image: Image.Image, name: str) -> Image.Image:
    if image.width == 0 or image.height == 0:
        raise EmptyImageError(
            f"{_cap(name)} has zero size ({image.width}x{image.height}); it holds no pixels."
        )
    mode = image.mode
    if mode in ("L", "RGB", "LA", "RGBA") or mode in _HIGH_DEPTH_MODES:
        array = np.asarray(image)
    elif mode == "1":
        array = np.asarray(image.convert("L"))
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        array = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    elif mode in ("La", "RGBa"):
        array = np.asarray(image.convert("RGBA" if mode == "RGBa" else "LA"))
    else:  # CMYK, YCbCr, LAB, HSV, ...
        try:
            array = np.asarray(image.convert("RGB"))
        except (ValueError, OSError) as err:
            raise UnsupportedImageError(
                f"{_cap(name)} has PIL mode {mode!r}, which cannot be converted to RGB ({err}); "
                "convert it to RGB or grayscale first."
            ) from err
    return _rgb_image(_array_to_rgb_uint8(array, name))


def _tensor_to_rgb_uint8(tensor: torch.Tensor) -> np.ndarray:
    name = f"the torch tensor of shape {tuple(tensor.shape)}"
    tensor = tensor.detach().cpu()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    if tensor.ndim == 3:
        if tensor.shape[0] not in (1, 2, 3, 4):
            raise UnsupportedImageError(
                f"Cannot load {name}: a 3-D tensor must be channels-first (C, H, W) with C in 1..4; "
                "permute it."
            )
        tensor = tensor.permute(1, 2, 0)
    elif tensor.ndim != 2:
        raise UnsupportedImageError(
            f"Cannot load {name}: expected (C, H, W) or (H, W); pass one image at a time."
        )
    return _array_to_rgb_uint8(tensor.numpy(), name)


def _array_to_rgb_uint8(array: np.ndarray, name: str) -> np.ndarray:
    """(H, W[, C]) array of any real dtype -> (H, W, 3) uint8, per the module's rules."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (2, 3, 4)):
        raise UnsupportedImageError(
            f"Cannot load {name}: expected shape (H, W) or channels-last (H, W, C) with C in 1..4; for a "
            "channels-first array use array.transpose(1, 2, 0) or pass a torch tensor."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise EmptyImageError(
            f"{_cap(name)} has zero size ({array.shape[1]}x{array.shape[0]}); it holds no pixels."
        )
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise UnsupportedImageError(
            f"Cannot load {name}: dtype {array.dtype} is not an integer or float type."
        )
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise UnsupportedImageError(
            f"{_cap(name)} contains NaN or infinite values; clean the pixel data first."
        )

    eight_bit = array.dtype == np.uint8
    if array.ndim == 3 and array.shape[-1] in (2, 4):
        array = _composite_on_black(array)  # float64, same value range as the colour channels
    if eight_bit:
        if array.dtype != np.uint8:  # composited
            array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    else:
        array = _min_max_to_uint8(array, name)
    _refuse_constant(array, name)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    return np.ascontiguousarray(array)


def _composite_on_black(array: np.ndarray) -> np.ndarray:
    opaque = np.iinfo(array.dtype).max if np.issubdtype(array.dtype, np.integer) else 1.0
    if array[..., -1].min() >= opaque:  # fully opaque (the usual RGBA file): compositing multiplies by 1
        colour = array[..., :-1]
        return colour[..., 0] if colour.shape[-1] == 1 else colour
    colour, alpha = array[..., :-1].astype(np.float64), array[..., -1].astype(np.float64)
    if np.issubdtype(array.dtype, np.integer):
        alpha = alpha / float(np.iinfo(array.dtype).max)
    alpha = np.clip(alpha, 0.0, 1.0)
    out = colour * alpha[..., None]
    return out[..., 0] if out.shape[-1] == 1 else out


def _min_max_to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    values = array.astype(np.float64, copy=False)
    low, high = float(values.min()), float(values.max())
    if high == low:
        raise ConstantImageError(_constant_message(name, low))
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _refuse_constant(array: np.ndarray, name: str) -> None:
    channels = [array] if array.ndim == 2 else [array[..., c] for c in range(array.shape[-1])]
    if all(channel.min() == channel.max() for channel in channels):  # every channel constant: every pixel equal
        raise ConstantImageError(_constant_message(name, array.reshape(-1, *array.shape[2:])[0].tolist()))


def _constant_message(name: str, value: Any) -> str:
    return (
        f"{_cap(name)} is constant (every pixel is {value}); a constant image carries no information. "
        "Check that it was exported correctly (e.g. not blank, not fully windowed out) and leave it out."
    )


def _rgb_image(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array)


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


# --------------------------------------------------------------------------------------------------- DICOM


def _decode_dicom(source: bytes | Path, name: str, force: bool) -> Image.Image:
    """Decode DICOM `source` (its bytes, or a file path that pydicom reads itself). The header is read first and
    the size checked, so the pixel data of an image above the pixel limit is never read."""
    try:
        import pydicom
        from pydicom.pixels import (
            apply_color_lut,
            apply_modality_lut,
            apply_voi_lut,
            get_decoder,
            pixel_array,
        )
    except ImportError as err:
        raise DicomSupportMissingError(
            f"Reading {name} (DICOM) needs pydicom, which is not installed: pip install pydicom"
        ) from err

    def read(stop_before_pixels: bool) -> Any:
        handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
        try:
            return pydicom.dcmread(handle, force=force, stop_before_pixels=stop_before_pixels)
        except Exception as err:  # pydicom raises many types for malformed files
            raise CorruptImageError(
                f"{_cap(name)} could not be parsed as DICOM ({err}); check that it is a complete DICOM file."
            ) from err

    prefix = "image file "
    label = f"DICOM file {name[len(prefix) :]}" if name.startswith(prefix) else f"the DICOM data in {name}"
    header = read(stop_before_pixels=True)
    rows, columns = header.get("Rows"), header.get("Columns")
    if isinstance(rows, int) and isinstance(columns, int):
        _check_pixel_count(columns, rows, label)
    ds = read(stop_before_pixels=False)
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DicomNoPixelDataError(
            f"{_cap(label)} has no pixel data (it is probably a report, presentation state or other "
            "non-image object); pass a DICOM that holds an image, e.g. a CR/DX radiograph."
        )

    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if syntax is not None and syntax.is_compressed:
        _check_decoder(syntax, label, get_decoder)

    try:
        array = pixel_array(ds, index=0)
    except Exception as err:
        raise CorruptImageError(
            f"The pixel data of {label} could not be decoded ({err}); the file may be truncated or corrupt."
        ) from err

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        if photometric == "PALETTE COLOR":
            array = apply_color_lut(array, ds)
        elif int(ds.get("SamplesPerPixel", 1)) == 1:
            array = apply_modality_lut(array, ds)
            array = apply_voi_lut(array, ds, index=0)
    except Exception as err:
        raise CorruptImageError(
            f"The LUTs (rescale, window or VOI LUT) of {label} could not be applied ({err}); "
            "check its header."
        ) from err

    rgb = _array_to_rgb_uint8(np.asarray(array), label)
    if photometric == "MONOCHROME1":  # 0 means white: invert so that, as for MONOCHROME2, bone is bright
        rgb = 255 - rgb
    return _rgb_image(rgb)


def _check_decoder(syntax: Any, label: str, get_decoder: Any) -> None:
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as err:
        raise DicomDecoderMissingError(
            f"{_cap(label)} uses transfer syntax {syntax.name} ({syntax}), which pydicom cannot decode; "
            "convert it to an uncompressed DICOM (e.g. `gdcmconv --raw` or `dcmdjpeg`) first."
        ) from err
    if decoder.is_available:
        return
    options = []
    # each line reads e.g. "pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1"
    for line in decoder.missing_dependencies:
        _, _, requirement = line.partition(" - requires ")
        packages = [part.strip() for part in requirement.split(" and ")]
        packages = [_PIP_NAMES.get(_bare(p), _bare(p)) for p in packages if _bare(p) not in ("numpy", "")]
        if packages:
            options.append("pip install " + " ".join(packages))
    hint = " or ".join(f"`{option}`" for option in options) or "install a pydicom pixel-data plugin"
    raise DicomDecoderMissingError(
        f"{_cap(label)} uses transfer syntax {syntax.name} ({syntax}) and no installed package can "
        f"decode it; install a decoder: {hint}."
    )


def _bare(requirement: str) -> str:
    for separator in (">=", "==", "<=", ">", "<", "~="):
        requirement = requirement.split(separator)[0]
    return requirement.strip()


__all__ = [
    "ConstantImageError",
    "CorruptImageError",
    "DicomDecoderMissingError",
    "DicomNoPixelDataError",
    "DicomSupportMissingError",
    "EmptyImageError",
    "ImageLoadError",
    "ImageNotFoundError",
    "ImageSource",
    "ImageTooLargeError",
    "UnsupportedImageError",
    "is_dicom",
    "load_image",
    "max_image_pixels",
]
