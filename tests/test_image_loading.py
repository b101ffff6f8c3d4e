"""`hf_rrg.modeling.image_loading.load_image` on the real images in ../shared/data and on files made of them.

The DICOM oracles are pydicom's stored values and the DICOM standard's linear window formula.
"""

from __future__ import annotations

import io
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_rrg.modeling.image_loading import (
    ConstantImageError,
    CorruptImageError,
    DicomDecoderMissingError,
    DicomNoPixelDataError,
    DicomSupportMissingError,
    EmptyImageError,
    ImageLoadError,
    ImageNotFoundError,
    UnsupportedImageError,
    load_image,
)

pydicom = pytest.importorskip("pydicom")

NEMA_DICOM = "pydicom-data_RG1_UNCR_chest_CR.dcm"  # 16-bit CR, MONOCHROME1, window 15000/30000
SIIM_DICOM = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"  # 8-bit JPEG baseline, MONOCHROME2
NIH_PNG = "00000001_000.png"  # 8-bit grayscale, 512x512
PADCHEST_JPEG = "16747_3_1.jpg"


@pytest.fixture(scope="module")
def misc(shared_data: Path) -> Path:
    folder = shared_data / "misc_cxr_images"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    return folder


def _array(source) -> np.ndarray:
    image = load_image(source)
    assert image.mode == "RGB"
    array = np.asarray(image)
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
    return array


def _min_max(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    return np.rint((values - values.min()) / (values.max() - values.min()) * 255.0).astype(np.uint8)


def _gray(array: np.ndarray) -> np.ndarray:
    """The one channel of a loaded grayscale image (all three channels must be equal)."""
    assert np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])
    return array[..., 0]


# ---------------------------------------------------------------------------------------------- real images


def test_every_real_misc_image_loads_as_rgb_with_source_size(misc: Path) -> None:
    files = sorted(misc.iterdir())
    assert len([f for f in files if f.suffix == ".dcm"]) == 2
    for path in files:
        array = _array(path)
        if path.suffix == ".dcm":
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            assert array.shape[:2] == (ds.Rows, ds.Columns), path.name
        else:
            with Image.open(path) as source:
                # 8-bit PNG/JPEG keep their values: identical to PIL's own RGB conversion
                assert np.array_equal(array, np.asarray(source.convert("RGB"))), path.name
        assert array.min() < array.max(), path.name


def test_nema_dicom_matches_window_then_minmax_then_monochrome1_inversion(misc: Path) -> None:
    ds = pydicom.dcmread(misc / NEMA_DICOM)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    raw = ds.pixel_array.astype(np.float64)
    # the window [c - 0.5 - (w-1)/2, c - 0.5 + (w-1)/2] = [0, 30000] holds every stored value: linear, so the
    # min-max of the windowed values is the min-max of the stored ones; MONOCHROME1 then inverts
    centre, width = float(ds.WindowCenter), float(ds.WindowWidth)
    assert centre - 0.5 - (width - 1) / 2 <= raw.min() and raw.max() <= centre - 0.5 + (width - 1) / 2
    expected = 255 - _min_max(raw)
    got = _gray(_array(misc / NEMA_DICOM)).astype(int)
    assert np.abs(got - expected).max() <= 1
    assert np.mean(got != expected) < 1e-3


def test_8bit_siim_dicom_keeps_its_values(misc: Path) -> None:
    ds = pydicom.dcmread(misc / SIIM_DICOM)
    assert np.array_equal(_gray(_array(misc / SIIM_DICOM)), ds.pixel_array)


def test_monochrome1_is_the_inverse_of_monochrome2(misc: Path, tmp_path: Path) -> None:
    original = _array(misc / NEMA_DICOM)
    ds = pydicom.dcmread(misc / NEMA_DICOM)
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.save_as(tmp_path / "mono2.dcm")
    assert np.array_equal(_array(tmp_path / "mono2.dcm"), 255 - original)


def test_rescale_slope_and_intercept_are_applied_before_the_window(misc: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(misc / NEMA_DICOM)
    raw = ds.pixel_array.astype(np.float64)
    ds.RescaleSlope, ds.RescaleIntercept = 1, -10000
    ds.save_as(tmp_path / "rescaled.dcm")
    # values -9126..16479 against the window [0, 30000]: everything at or below 0 is clipped to its floor
    shifted = np.clip(raw - 10000, 0, None)
    expected = 255 - _min_max(shifted)
    got = _gray(_array(tmp_path / "rescaled.dcm")).astype(int)
    assert np.abs(got - expected).max() <= 1
    assert not np.array_equal(got, _gray(_array(misc / NEMA_DICOM)))  # the intercept changed the picture


def test_negative_rescale_slope_without_window_inverts(misc: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(misc / NEMA_DICOM)
    del ds.WindowCenter, ds.WindowWidth
    ds.save_as(tmp_path / "plain.dcm")
    ds.RescaleSlope, ds.RescaleIntercept = -2, 5
    ds.save_as(tmp_path / "negated.dcm")
    plain, negated = _array(tmp_path / "plain.dcm").astype(int), _array(tmp_path / "negated.dcm").astype(int)
    assert np.abs(negated - (255 - plain)).max() <= 1  # only rounding ties may differ
    assert np.mean(negated != 255 - plain) < 1e-3


def test_dicom_is_recognised_by_magic_without_suffix_and_by_suffix_without_preamble(
    misc: Path, tmp_path: Path
) -> None:
    expected = _array(misc / SIIM_DICOM)
    shutil.copy(misc / SIIM_DICOM, tmp_path / "scan.bin")
    assert np.array_equal(_array(tmp_path / "scan.bin"), expected)
    assert np.array_equal(_array((misc / SIIM_DICOM).read_bytes()), expected)

    ds = pydicom.dcmread(misc / SIIM_DICOM)
    ds.preamble = None
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=False)
    assert buffer.getvalue()[128:132] != b"DICM"
    (tmp_path / "no_preamble.dcm").write_bytes(buffer.getvalue())
    assert np.array_equal(_array(tmp_path / "no_preamble.dcm"), expected)


def test_dicom_without_pixel_data_names_the_file(misc: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(misc / SIIM_DICOM)
    del ds.PixelData
    ds.save_as(tmp_path / "report.dcm")
    with pytest.raises(DicomNoPixelDataError, match=r"DICOM file .*report\.dcm has no pixel data"):
        load_image(tmp_path / "report.dcm")


def test_dicom_with_missing_decoder_says_what_to_install(misc: Path, tmp_path: Path) -> None:
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here, so the missing-decoder error cannot be provoked")
    ds = pydicom.dcmread(misc / SIIM_DICOM)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7 not decoded \xff\xd9"])
    ds.save_as(tmp_path / "jpegls.dcm")
    with pytest.raises(DicomDecoderMissingError, match=r"jpegls\.dcm.*JPEG-LS.*pip install") as info:
        load_image(tmp_path / "jpegls.dcm")
    assert "pylibjpeg-libjpeg" in str(info.value) and "python-gdcm" in str(info.value)


def test_truncated_dicom_pixel_data_is_a_clear_error(misc: Path, tmp_path: Path) -> None:
    data = (misc / NEMA_DICOM).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError, match=r"cut\.dcm"):
        load_image(tmp_path / "cut.dcm")


def test_missing_pydicom_is_reported_with_the_install_command(
    misc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pydicom", None)  # makes `import pydicom` raise ImportError
    with pytest.raises(DicomSupportMissingError, match="pip install pydicom") as info:
        load_image(misc / SIIM_DICOM)
    assert isinstance(info.value, ImportError)


# ------------------------------------------------------------------------------------------- broken inputs


@pytest.mark.parametrize("name", [NIH_PNG, PADCHEST_JPEG])
def test_truncated_png_and_jpeg_name_the_file(misc: Path, tmp_path: Path, name: str) -> None:
    data = (misc / name).read_bytes()
    target = tmp_path / f"cut_{name}"
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError, match=re.escape(target.name) + ".*truncated or corrupt"):
        load_image(target)


def test_text_file_renamed_png_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "notes.png"
    target.write_text("FINDINGS: the lungs are clear.\n")
    with pytest.raises(CorruptImageError, match=r"notes\.png is not an image format"):
        load_image(target)


def test_missing_file_is_a_file_not_found_image_load_error(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match=r"nowhere\.png does not exist") as info:
        load_image(tmp_path / "nowhere.png")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(CorruptImageError, match=r"empty\.jpg is empty"):
        load_image(tmp_path / "empty.jpg")


def test_constant_images_are_refused(tmp_path: Path) -> None:
    Image.fromarray(np.full((32, 40), 7, np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(ConstantImageError, match=r"blank\.png is constant .*7.*no information"):
        load_image(tmp_path / "blank.png")
    with pytest.raises(ConstantImageError):
        load_image(np.full((8, 8), 0.25, np.float32))
    with pytest.raises(ConstantImageError):  # one colour everywhere is constant too
        load_image(np.broadcast_to(np.array([10, 20, 30], np.uint8), (8, 8, 3)).copy())


def _eight_bit(composited: np.ndarray, dtype: type) -> np.ndarray:
    """The module's rule after compositing: 8-bit data rounded, deeper data min-max scaled over its actual range."""
    if dtype == np.uint8:
        return np.clip(np.rint(composited), 0, 255).astype(np.uint8)
    low, high = composited.min(), composited.max()
    return np.rint((composited - low) * (255.0 / (high - low))).astype(np.uint8)


def test_constant_check_and_opaque_alpha_shortcuts_agree_with_the_full_computation() -> None:
    """The shortcuts of `load_image` (the constant check is a min/max per channel, stopping at the first channel
    that varies; fully opaque alpha skips the float compositing) against the straightforward rules: every pixel
    compared with the first; colour × alpha."""
    rng = np.random.default_rng(0)
    for shape in ((6, 5), (6, 5, 3)):
        flat_first_row = np.full(shape, 9, np.uint8)
        flat_first_row[-1, -1] = 10  # constant except the very last pixel: not constant
        assert _array(flat_first_row)[-1, -1].tolist() == [10, 10, 10] and _array(flat_first_row)[0, 0].tolist() == [9] * 3
    varied = np.full((4, 4, 3), 5, np.uint8)
    varied[2, 1, 2] = 6  # one channel of one pixel differs
    assert _array(varied)[2, 1].tolist() == [5, 5, 6]
    with pytest.raises(ConstantImageError):
        load_image(np.full((4, 4, 3), 5, np.uint8))
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        colour = rng.integers(0, top, (7, 9, 3), endpoint=True).astype(dtype)
        rgba = np.dstack([colour, np.full((7, 9), top, dtype)])
        composited = colour.astype(np.float64) * (rgba[..., 3:].astype(np.float64) / top)  # the full formula
        assert np.array_equal(_array(rgba), _eight_bit(composited, dtype))
        la = np.dstack([colour[..., 0], np.full((7, 9), top, dtype)])
        assert np.array_equal(_gray(_array(la)), _eight_bit(composited[..., 0], dtype))


def test_zero_size_images_are_refused() -> None:
    with pytest.raises(EmptyImageError, match="zero size"):
        load_image(np.zeros((0, 5), np.uint8))
    with pytest.raises(EmptyImageError, match="zero size"):
        load_image(Image.new("L", (0, 4)))


def test_unsupported_sources_say_what_is_accepted() -> None:
    with pytest.raises(UnsupportedImageError, match="pass a file path, bytes"):
        load_image(123)
    with pytest.raises(UnsupportedImageError, match=r"channels-last .*transpose"):
        load_image(np.zeros((3, 16, 16), np.uint8) + np.arange(16, dtype=np.uint8))
    with pytest.raises(UnsupportedImageError, match="NaN"):
        load_image(np.array([[0.0, np.nan], [1.0, 2.0]]))
    assert issubclass(UnsupportedImageError, ImageLoadError) and issubclass(ImageLoadError, ValueError)


# ------------------------------------------------------------------------------------- source types, modes


def test_bytes_datasets_dicts_pil_numpy_and_tensors_agree(misc: Path) -> None:
    path = misc / NIH_PNG
    expected = _array(path)
    gray = np.asarray(Image.open(path))
    assert gray.ndim == 2 and gray.min() == 0 and gray.max() == 255
    sources = {
        "str": str(path),
        "bytes": path.read_bytes(),
        "datasets bytes": {"bytes": path.read_bytes(), "path": NIH_PNG},
        "datasets path": {"bytes": None, "path": str(path)},
        "PIL": Image.open(path),
        "numpy HW": gray,
        "numpy HW1": gray[..., None],
        "numpy HW3": np.repeat(gray[..., None], 3, axis=-1),
        "numpy HW4 opaque": np.dstack([gray, gray, gray, np.full_like(gray, 255)]),
        "tensor HW": torch.from_numpy(gray.copy()),
        "tensor CHW": torch.from_numpy(np.repeat(gray[None], 3, axis=0)),
        # high bit depth and floats are min-max scaled; the real range 0..255 maps back onto itself
        "numpy uint16": gray.astype(np.uint16) * 257,
        "numpy int64 offset": gray.astype(np.int64) * 3 - 1000,
        "numpy float [0,1]": gray.astype(np.float32) / 255.0,
        "tensor float CHW": torch.from_numpy(gray.astype(np.float64) / 255.0)[None],
    }
    for label, source in sources.items():
        assert np.array_equal(_array(source), expected), label


def test_high_bit_depth_arrays_use_their_actual_range() -> None:
    values = np.array([[1000, 1500], [2000, 3000]], np.uint16)
    expected = np.rint((values - 1000) / 2000 * 255).astype(np.uint8)
    assert np.array_equal(_gray(_array(values)), expected)
    floats = np.array([[-1.0, 0.0], [0.5, 3.0]], np.float32)
    assert np.array_equal(_gray(_array(floats)), np.rint((floats + 1) / 4 * 255).astype(np.uint8))


def test_16bit_grayscale_png_from_real_pixels(misc: Path, tmp_path: Path) -> None:
    gray = np.asarray(Image.open(misc / NIH_PNG)).astype(np.uint16)
    sixteen = gray * 200 + 1000  # 1000..52000: a 16-bit range
    Image.fromarray(sixteen).save(tmp_path / "sixteen.png")
    with Image.open(tmp_path / "sixteen.png") as reread:
        assert reread.mode.startswith("I")
    expected = _min_max(sixteen.astype(np.float64))
    assert np.array_equal(_gray(_array(tmp_path / "sixteen.png")), expected)
    assert np.array_equal(expected, gray)  # 0..255 scaled up and back down is the original


def test_rgba_and_la_pngs_are_composited_on_black(misc: Path, tmp_path: Path) -> None:
    rgb = np.asarray(Image.open(misc / "h0001.png").convert("RGB"))
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    expected = np.rint(rgb * (alpha[..., None] / 255.0)).astype(np.uint8)
    assert np.array_equal(_array(tmp_path / "rgba.png"), expected)
    opaque = np.dstack([rgb, np.full_like(alpha, 255)])
    Image.fromarray(opaque).save(tmp_path / "opaque.png")
    assert np.array_equal(_array(tmp_path / "opaque.png"), rgb)

    gray = np.asarray(Image.open(misc / NIH_PNG))
    Image.fromarray(np.dstack([gray, alpha[: gray.shape[0], : gray.shape[1]]]), mode="LA").save(
        tmp_path / "la.png"
    )
    expected_gray = np.rint(gray * (alpha[: gray.shape[0], : gray.shape[1]] / 255.0)).astype(np.uint8)
    assert np.array_equal(_gray(_array(tmp_path / "la.png")), expected_gray)


def test_palette_png_becomes_its_rgb_colours(misc: Path, tmp_path: Path) -> None:
    image = Image.open(misc / "tb0005.png").convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    image.save(tmp_path / "palette.png")
    with Image.open(tmp_path / "palette.png") as reread:
        assert reread.mode == "P"
        expected = np.asarray(reread.convert("RGB"))
    assert np.array_equal(_array(tmp_path / "palette.png"), expected)
    bilevel = Image.open(misc / NIH_PNG).convert("1")
    assert set(np.unique(_array(bilevel))) == {0, 255}
