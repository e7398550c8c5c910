"""The PNG fast path: which files it takes, and that it reads and writes them as Pillow does."""

from __future__ import annotations

import gc
import io
import sys

import numpy as np
import pytest
from PIL import Image

from app import png
from tests.app.helpers import exif_rotated, image_bytes, png_claiming, upright_pattern

MODES = ["L", "RGB", "RGBA"]  # gray + alpha is Pillow's


def pillow_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def saved(img: Image.Image, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **options)
    return buf.getvalue()


@pytest.mark.parametrize("mode", MODES)
def test_an_8_bit_png_is_read_from_its_header(mode: str) -> None:
    head = png.header(image_bytes(size=(7, 5), mode=mode))
    assert head == png.Header(width=7, height=5, mode=mode)


@pytest.mark.parametrize(
    "data",
    [
        image_bytes(fmt="JPEG", mode="RGB"),
        saved(Image.new("I;16", (4, 4), 300)),  # 16 bits a sample
        saved(Image.new("P", (4, 4))),  # palette
        saved(Image.new("RGB", (4, 4)), transparency=(1, 2, 3)),  # a tRNS colour key
        exif_rotated(upright_pattern(6, 4), "PNG"),  # EXIF orientation: Pillow applies it
        b"\x89PNG\r\n\x1a\n",  # a signature and nothing else
        image_bytes(size=(4, 4), mode="LA"),  # gray + alpha: libspng does not decode it
    ],
    ids=["jpeg", "16-bit", "palette", "trns", "exif", "truncated-header", "gray-alpha"],
)
def test_other_files_are_left_to_pillow(data: bytes) -> None:
    assert png.header(data) is None


@pytest.mark.parametrize("interlace", [0, 1])
@pytest.mark.parametrize("mode", MODES)
def test_decoding_gives_pillows_pixels(mode: str, interlace: int) -> None:
    rng = np.random.default_rng(3)
    bands = len(mode)
    arr = rng.integers(0, 256, size=(9, 11, bands), dtype=np.uint8)
    data = saved(Image.fromarray(arr[..., 0] if bands == 1 else arr, mode), interlace=interlace)
    head = png.header(data)
    assert head is not None
    np.testing.assert_array_equal(png.decode(data, head), pillow_pixels(data))


def test_a_corrupt_or_lying_png_is_a_value_error() -> None:
    data = image_bytes(size=(16, 16))
    head = png.header(data)
    assert head is not None
    with pytest.raises(ValueError, match="libspng"):
        png.decode(data[: len(data) // 2], head)
    claimed = png_claiming(64, 64)  # its pixel data is far too short for its header
    head = png.header(claimed)
    assert head is not None
    with pytest.raises(ValueError):
        png.decode(claimed, head)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12 on")
def test_failed_decodes_leave_nothing_behind() -> None:
    # a decoder that drops a reference on its error path (imagecodecs' png_decode does) brings
    # None's count to zero after enough corrupt uploads, and the process aborts
    data = image_bytes(size=(32, 32), mode="RGB")
    head = png.header(data)
    assert head is not None
    corrupt = bytearray(data)
    corrupt[-20:-12] = b"\xff" * 8  # inside the compressed pixels and the IDAT CRC
    broken = [data[:n] for n in range(40, len(data) - 12, 9)] + [bytes(corrupt)]  # IEND: 12 bytes

    def fail_all() -> None:
        for bad in broken:
            with pytest.raises(ValueError):
                png.decode(bad, head)

    fail_all()  # first-call caches settle
    rounds = 20
    gc.collect()
    gc.disable()  # the count is the whole process's: nothing else may run meanwhile
    try:
        before = sys.getrefcount(None)
        for _ in range(rounds):
            fail_all()
        change = sys.getrefcount(None) - before
    finally:
        gc.enable()
    # a leak of one per failure is rounds * len(broken), several thousand; allow a little noise
    assert abs(change) < len(broken), change


@pytest.mark.parametrize("shape", [(6, 4), (6, 4, 1), (6, 4, 2), (6, 4, 3), (6, 4, 4)])
def test_encoding_round_trips_through_pillow(shape: tuple[int, ...]) -> None:
    pixels = np.random.default_rng(5).integers(0, 256, size=shape, dtype=np.uint8)
    data = png.encode(pixels, level=1)
    img = Image.open(io.BytesIO(data))
    want = pixels[..., 0] if len(shape) == 3 and shape[2] == 1 else pixels
    bands = want.shape[2] if want.ndim == 3 else 1
    assert img.mode == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[bands]
    np.testing.assert_array_equal(np.asarray(img), want)


def test_encoding_takes_any_strides() -> None:
    planes = np.random.default_rng(6).integers(0, 256, size=(3, 5, 7), dtype=np.uint8)
    pixels = planes.transpose(1, 2, 0)  # not contiguous
    np.testing.assert_array_equal(pillow_pixels(png.encode(pixels, level=6)), pixels)


@pytest.mark.parametrize("shape", [(3000, 1), (100, 1), (4096, 4), (64, 64, 3)])
def test_incompressible_images_with_short_rows_encode(shape: tuple[int, ...]) -> None:
    # noise does not compress, and each row adds a filter byte: more out than in
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for level in (0, 1, 6):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.encode(pixels, level)))), pixels)
