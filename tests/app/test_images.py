"""Image bytes <-> Pillow images <-> planes: the header probe, decoding upright, modes, planes, grid."""

from __future__ import annotations

import io
import struct

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from app import images
from app.errors import ApiError
from tests.app.helpers import (
    ASCII,
    EXTRA_SAMPLES,
    FLOAT,
    ORIENTATION,
    ROWS_PER_STRIP,
    STRIP_OFFSETS,
    exif_rotated,
    image_bytes,
    png_claiming,
    tiff_with_entry,
    upright_pattern,
)

LIMIT = 4096 * 4096


def test_the_probe_reads_the_size_from_the_header_without_decoding() -> None:
    claimed = png_claiming(4096, 4096)  # a 1 KB file whose pixels are not there
    probe = images.probe(claimed, LIMIT)
    assert (probe.width, probe.height, probe.pixels, probe.bands) == (4096, 4096, LIMIT, 1)
    with pytest.raises(ApiError) as err:  # decoding would find the truth
        images.decode(probe)
    assert err.value.status == 415


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])  # gray + alpha is Pillow's (app/png.py)
def test_a_plain_png_takes_the_fast_path_and_decodes_as_pillow_does(mode: str) -> None:
    data = image_bytes(size=(9, 7), mode=mode)
    probe = images.probe(data, LIMIT)
    assert probe.image is None and (probe.width, probe.height) == (9, 7)  # no Pillow reader
    decoded = images.decode(probe)
    assert decoded.mode == mode and decoded.pillow is None  # no Pillow image until one is asked for
    want = np.asarray(Image.open(io.BytesIO(data)))
    np.testing.assert_array_equal(np.asarray(decoded.image), want)
    if mode in ("L", "RGB"):  # the planes straight from the pixels equal Pillow's
        np.testing.assert_array_equal(decoded.planes(), images.to_planes(Image.fromarray(want)))


@pytest.mark.parametrize(("mode", "bands"), [("L", 1), ("LA", 1), ("RGB", 3), ("RGBA", 3)])
def test_the_probe_counts_colour_bands_without_alpha(mode: str, bands: int) -> None:
    assert images.probe(image_bytes(size=(5, 3), mode=mode), LIMIT).bands == bands


@pytest.mark.parametrize("side", [5000, 30000])  # over our limit; over Pillow's bomb guard too
def test_an_image_over_the_pixel_limit_is_413_before_decoding(side: int) -> None:
    with pytest.raises(ApiError) as err:
        images.probe(png_claiming(side, side), LIMIT)
    assert (err.value.status, err.value.code) == (413, "too_many_pixels")
    assert "pixels" in err.value.message


def test_a_header_past_pillows_own_guard_is_413_in_the_services_words() -> None:
    # gray + alpha goes through Pillow, which refuses 400 M pixels as it opens the file
    with pytest.raises(ApiError) as err:
        images.probe(png_claiming(20000, 20000, colour_type=4), LIMIT)
    assert (err.value.status, err.value.code) == (413, "too_many_pixels")
    assert "AESERVE_MAX_PIXELS" in err.value.message and "DOS" not in err.value.message


def test_the_pixel_limit_message_names_the_size_and_the_setting() -> None:
    with pytest.raises(ApiError) as err:
        images.probe(png_claiming(5000, 4000), LIMIT)
    assert "5000x4000" in err.value.message and "AESERVE_MAX_PIXELS" in err.value.message


@pytest.mark.parametrize("data", [b"", b"not an image at all", image_bytes(fmt="PNG")[:20]])
def test_what_is_not_an_accepted_image_is_415(data: bytes) -> None:
    with pytest.raises(ApiError) as err:
        images.probe(data, LIMIT)
    assert (err.value.status, err.value.code) == (415, "unsupported_media_type")


def test_a_gif_is_415() -> None:
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, format="GIF")
    with pytest.raises(ApiError) as err:
        images.probe(buf.getvalue(), LIMIT)
    assert err.value.status == 415


def test_a_tiff_of_a_layout_pillow_cannot_read_is_415_naming_tiff() -> None:
    # a float sample format on 8 bits: Pillow has no mode for it, and the service used to ask
    # for "PNG, JPEG, WebP, BMP or TIFF" of a client that had sent a TIFF
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, format="TIFF", tiffinfo={339: 3})  # SampleFormat: float
    with pytest.raises(ApiError) as err:
        images.probe(buf.getvalue(), LIMIT)
    assert (err.value.status, err.value.code) == (415, "unsupported_media_type")
    assert err.value.message.startswith("the upload is a TIFF file this service cannot read")


@pytest.mark.parametrize(("tag", "field_type", "value"), [
    (STRIP_OFFSETS, FLOAT, None),  # Pillow: TypeError
    (STRIP_OFFSETS, ASCII, None),  # Pillow: TypeError
    (STRIP_OFFSETS, None, 0xFFFFFFF0),  # past the end of the file
    (ROWS_PER_STRIP, None, 0),
])
def test_a_tiff_with_a_malformed_tag_is_415(tag: int, field_type: int | None, value: int | None
                                            ) -> None:
    data = tiff_with_entry(Image.new("L", (28, 28), 7), tag, field_type, value)
    with pytest.raises(ApiError) as err:
        images.decode(images.probe(data, LIMIT))
    assert (err.value.status, err.value.code) == (415, "unsupported_media_type")
    assert "TIFF image is truncated or corrupt" in err.value.message


def test_a_16_bit_gray_alpha_png_stays_gray_alpha() -> None:
    # Pillow opens it as RGBA; the probe counts one band and the answer keeps its mode
    pixels = np.zeros((3, 4, 2), dtype=np.uint16)
    pixels[..., 0] = [0, 1000, 40000, 65535]
    pixels[..., 1] = 65535
    data = bytes(imagecodecs.png_encode(pixels))
    probe = images.probe(data, LIMIT)
    assert probe.bands == 1
    decoded = images.decode(probe)
    assert decoded.mode == "LA"
    assert np.asarray(decoded.image)[0].tolist() == [[0, 255], [3, 255], [156, 255], [255, 255]]


def test_a_tiff_with_premultiplied_alpha_keeps_its_alpha() -> None:
    data = tiff_with_entry(Image.new("LA", (4, 3), (50, 128)), EXTRA_SAMPLES, value=1)  # associated
    probe = images.probe(data, LIMIT)
    assert probe.bands == 1  # gray: the work is counted for one band
    decoded = images.decode(probe)
    assert decoded.mode == "LA"
    gray, alpha = np.asarray(decoded.image)[0, 0].tolist()
    assert alpha == 128 and abs(gray - 50 * 255 / 128) <= 1  # no longer premultiplied


def test_a_truncated_image_is_415_when_decoded() -> None:
    data = image_bytes(size=(64, 64))
    probe = images.probe(data[: len(data) // 2], LIMIT)
    with pytest.raises(ApiError) as err:
        images.decode(probe)
    assert (err.value.status, err.value.code) == (415, "unsupported_media_type")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_the_probe_knows_the_upright_size_before_decoding(fmt: str) -> None:
    upright = upright_pattern(24, 40)  # 24 wide, 40 high; stored 40 wide, 24 high
    probe = images.probe(exif_rotated(upright, fmt), LIMIT)
    assert (probe.width, probe.height) == (24, 40)  # the cost is known upright, before decoding


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_turns_the_pixels_upright(fmt: str) -> None:
    upright = upright_pattern(24, 40)
    probe = images.probe(exif_rotated(upright, fmt), LIMIT)
    out = np.asarray(images.decode(probe).image.convert("L"), dtype=np.int16)
    assert out.shape == (40, 24)
    tolerance = 8 if fmt == "JPEG" else 0  # lossy
    assert int(np.abs(out - upright).max()) <= tolerance
    wrong_way = np.rot90(np.rot90(upright))  # turned the other way: would be far off
    assert int(np.abs(out - wrong_way).max()) > 100


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("P", "RGB"), ("PA", "RGBA"), ("1", "L"), ("I;16", "L"), ("I", "L"), ("F", "L"),
     ("CMYK", "RGB"), ("YCbCr", "RGB"), ("L", "L"), ("LA", "LA"), ("RGB", "RGB"), ("RGBA", "RGBA"),
     ("La", "LA"), ("RGBa", "RGBA")],  # premultiplied alpha
)
def test_every_mode_becomes_l_la_rgb_or_rgba(mode: str, expected: str) -> None:
    assert images.normalize_mode(Image.new(mode, (3, 2))).mode == expected


def test_a_palette_with_transparency_keeps_it_as_alpha() -> None:
    img = Image.new("P", (2, 2))
    img.info["transparency"] = 0
    assert images.normalize_mode(img).mode == "RGBA"


def test_sixteen_bit_gray_is_scaled_to_eight_bits() -> None:
    arr = np.array([[0, 65535], [32768, 257]], dtype=np.uint16)
    img = Image.new("I;16", (2, 2))
    img.frombytes(arr.astype("<u2").tobytes())
    out = np.asarray(images.normalize_mode(img))
    assert out.tolist() == [[0, 255], [128, 1]]


@pytest.mark.parametrize("white", [1.0, 255.0])
def test_a_float_tiff_is_read_on_0_to_1_or_0_to_255(white: float) -> None:
    # numpy, GIMP and Photoshop write float images on 0-1: read on 0-255, they came out black
    arr = np.array([[0.0, 1.0, 0.5], [0.25, 0.75, 1 / 255]], dtype=np.float32)
    buffer = io.BytesIO()
    Image.fromarray(arr * white, "F").save(buffer, "TIFF")
    decoded = images.decode(images.probe(buffer.getvalue(), LIMIT)).image
    assert decoded.mode == "L" and np.asarray(decoded).tolist() == [[0, 255, 128], [64, 191, 1]]


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_planes_and_alpha_round_trip(mode: str) -> None:
    img = Image.open(io.BytesIO(image_bytes(size=(7, 5), mode=mode, seed=2)))
    base, alpha = images.split_alpha(img)
    planes = images.to_planes(base)
    assert planes.shape == (len(base.getbands()), 5, 7) and planes.flags.c_contiguous
    back = images.with_alpha(images.from_planes(planes), alpha)
    assert back.mode == mode and np.array_equal(np.asarray(back), np.asarray(img))


def test_png_out_decodes_to_the_same_pixels() -> None:
    img = Image.open(io.BytesIO(image_bytes(size=(9, 4), mode="RGB", seed=1)))
    again = Image.open(io.BytesIO(images.encode_png(img)))
    assert again.format == "PNG" and np.array_equal(np.asarray(again), np.asarray(img))


def test_grid_tiles_images_row_major_with_padding() -> None:
    tiles = [Image.new("L", (3, 2), color=c) for c in (10, 20, 30)]
    sheet = images.grid(tiles, pad=1)
    assert sheet.size == (2 * 3 + 1, 2 * 2 + 1)
    px = np.asarray(sheet)
    assert (px[0, 0], px[0, 4], px[3, 0], px[3, 4]) == (10, 20, 30, 0)
    with pytest.raises(ValueError):
        images.grid([])


@pytest.mark.parametrize(("width", "height"), [(1, 65536), (2_000_000, 1)])
def test_a_side_over_65535_is_413_before_decoding(width: int, height: int) -> None:
    with pytest.raises(ApiError) as err:
        images.probe(png_claiming(width, height), LIMIT)
    assert (err.value.status, err.value.code) == (413, "too_many_pixels")
    assert "65535" in err.value.message


@pytest.mark.parametrize(("width", "height"), [(0, 0), (28, 0), (0, 28)])
def test_an_image_without_pixels_is_415(width: int, height: int) -> None:
    with pytest.raises(ApiError) as err:
        images.probe(png_claiming(width, height), LIMIT)
    assert (err.value.status, err.value.code) == (415, "unsupported_media_type")
    assert "no pixels" in err.value.message


def exif_with_orientation(kind: int, count: int, value: bytes, data: bytes = b"") -> bytes:
    """EXIF (little-endian TIFF, one entry) whose orientation tag has any type: what a broken
    writer may store, and Pillow will not write."""
    entry = struct.pack("<HHI", ORIENTATION, kind, count) + value
    return b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0) + data


@pytest.mark.parametrize("exif", [
    exif_with_orientation(2, 4, b"abc\x00"),  # text
    exif_with_orientation(5, 1, struct.pack("<I", 26), struct.pack("<II", 1, 0)),  # 1/0
    exif_with_orientation(3, 1, struct.pack("<HH", 9, 0)),  # a number past 8
], ids=["text", "zero-denominator", "nine"])
def test_an_orientation_that_means_nothing_leaves_the_pixels_as_stored(exif: bytes) -> None:
    stored = upright_pattern(6, 4)
    buf = io.BytesIO()
    Image.fromarray(stored, "L").save(buf, format="PNG", exif=exif)
    probe = images.probe(buf.getvalue(), LIMIT)
    assert (probe.width, probe.height) == (6, 4)
    assert np.array_equal(images.decode(probe).planes()[0], stored)


@pytest.mark.parametrize(("mode", "key", "expected"), [("L", 0, "LA"), ("RGB", (0, 0, 0), "RGBA")])
def test_a_png_colour_key_becomes_alpha(mode: str, key: object, expected: str) -> None:
    pixels = upright_pattern(5, 3)
    pixels[0, 0] = 0  # the transparent colour
    img = Image.fromarray(pixels, "L").convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=key)
    decoded = images.decode(images.probe(buf.getvalue(), LIMIT))
    assert decoded.mode == expected
    alpha = np.asarray(decoded.image.getchannel("A"))
    assert alpha[0, 0] == 0 and (alpha[1:] == 255).all()
