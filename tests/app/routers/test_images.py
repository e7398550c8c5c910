"""POST /v1/models/{name}/denoise: formats, modes, sizes, several images, errors."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.app.helpers import (
    FLOAT,
    STRIP_OFFSETS,
    assert_error,
    decode_png,
    files,
    image_bytes,
    post_without_accept,
    tiff_with_entry,
)

URL = "/v1/models/mnist-dae/denoise"


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_one_png_answers_a_png_of_the_same_size_and_mode(client: TestClient, mode: str) -> None:
    response = client.post(URL, files=files(image_bytes(mode=mode)))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    out = decode_png(response.content)
    assert (out.size, out.mode) == ((28, 28), mode)


def test_alpha_is_kept_unchanged(client: TestClient) -> None:
    data = image_bytes(mode="RGBA", seed=3)
    out = decode_png(client.post(URL, files=files(data)).content)
    original = Image.open(io.BytesIO(data))
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(original.getchannel("A")))


def test_output_is_the_models_denoising_not_the_input(client: TestClient) -> None:
    data = image_bytes(seed=5)
    out = np.asarray(decode_png(client.post(URL, files=files(data)).content))
    assert not np.array_equal(out, np.asarray(Image.open(io.BytesIO(data))))


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "BMP", "TIFF"])
def test_other_formats_are_accepted(client: TestClient, fmt: str) -> None:
    mode = "RGB" if fmt == "JPEG" else "L"
    data = image_bytes(mode=mode, fmt=fmt)
    response = client.post(URL, files=[("image", ("x", data, f"image/{fmt.lower()}"))])
    assert response.status_code == 200, response.text
    assert decode_png(response.content).size == (28, 28)


def test_raw_body_with_an_image_content_type(client: TestClient) -> None:
    response = client.post(URL, content=image_bytes(), headers={"content-type": "image/png"})
    assert response.status_code == 200
    assert decode_png(response.content).mode == "L"


def test_several_images_answer_json_with_base64_pngs(client: TestClient) -> None:
    response = client.post(URL, files=files(image_bytes(seed=1), image_bytes(mode="RGB", seed=2)))
    assert response.status_code == 200
    images = response.json()["images"]
    assert [(i["width"], i["height"], i["mode"]) for i in images] == [(28, 28, "L"), (28, 28, "RGB")]
    assert decode_png(base64.b64decode(images[1]["png"])).mode == "RGB"


def test_accept_json_gives_json_for_one_image(client: TestClient) -> None:
    response = client.post(URL, files=files(image_bytes()), headers={"accept": "application/json"})
    assert response.status_code == 200
    assert len(response.json()["images"]) == 1


@pytest.mark.parametrize(("accept", "answer"), [
    ("image/png;q=0, application/json", "application/json"),
    ("application/json;q=0.1, image/png", "image/png"),
    ("image/png, application/json", "image/png"),  # liked equally: the default
    ("application/json, */*", "application/json"),  # named beats the wildcard
    ("*/*, image/png;q=0", "application/json"),
    ("*/*", "image/png"),
    ("image/*", "image/png"),
    ("application/*", "application/json"),
    ("", "image/png"),
])
def test_one_image_answers_the_type_accept_prefers_by_q_value(
    client: TestClient, accept: str, answer: str
) -> None:
    response = client.post(URL, files=files(image_bytes()), headers={"accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == answer
    if answer == "image/png":
        assert decode_png(response.content).size == (28, 28)
    else:
        assert len(response.json()["images"]) == 1


def test_accept_on_several_lines_is_read_as_one_list(client: TestClient) -> None:
    """HTTP reads repeated header lines as one comma-joined list: PNG refused on the first line,
    JSON accepted on the second, gives JSON."""
    for lines in ([("accept", "image/png;q=0"), ("accept", "application/json")],
                  [("accept", "application/json"), ("accept", "image/png;q=0")]):
        response = client.post(URL, files=files(image_bytes()), headers=lines)
        assert response.status_code == 200, lines
        assert response.headers["content-type"] == "application/json"


def test_one_image_without_an_accept_header_answers_png(client: TestClient) -> None:
    response = post_without_accept(client, URL, files=files(image_bytes()))
    assert response.status_code == 200
    assert decode_png(response.content).size == (28, 28)


@pytest.mark.parametrize("accept", ["text/html", "image/png;q=0", "image/jpeg, application/xml"])
def test_one_image_accepting_neither_png_nor_json_is_406_naming_both(
    client: TestClient, accept: str
) -> None:
    response = client.post(URL, files=files(image_bytes()), headers={"accept": accept})
    error = assert_error(response, 406, "not_acceptable")
    assert "image/png" in error["message"] and "application/json" in error["message"]


def test_several_images_answer_json_even_when_png_is_preferred(client: TestClient) -> None:
    two = files(image_bytes(seed=1), image_bytes(seed=2))
    response = client.post(URL, files=two, headers={"accept": "image/png, application/json;q=0.5"})
    assert response.status_code == 200
    assert len(response.json()["images"]) == 2


@pytest.mark.parametrize("accept", ["image/png", "application/json;q=0, */*"])
def test_several_images_refusing_json_are_406_saying_json_is_the_only_answer(
    client: TestClient, accept: str
) -> None:
    two = files(image_bytes(seed=1), image_bytes(seed=2))
    error = assert_error(client.post(URL, files=two, headers={"accept": accept}), 406, "not_acceptable")
    assert "application/json" in error["message"] and "several images" in error["message"]
    assert "image/png" not in error["message"]


@pytest.mark.parametrize("operation", ["mnist-vae/encode", "mnist-vae/score"])
def test_json_only_operations_refuse_an_accept_without_json_with_406(
    client: TestClient, operation: str
) -> None:
    url = f"/v1/models/{operation}"
    for accept in ("image/png", "application/json;q=0, */*"):
        response = client.post(url, files=files(image_bytes()), headers={"accept": accept})
        error = assert_error(response, 406, "not_acceptable")
        assert error["message"].endswith(": application/json")
    for accept in ("application/json", "*/*", "image/png, application/json;q=0.1"):
        response = client.post(url, files=files(image_bytes()), headers={"accept": accept})
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"


def test_a_malformed_accept_header_is_400(client: TestClient) -> None:
    response = client.post(URL, files=files(image_bytes()), headers={"accept": "json"})
    error = assert_error(response, 400, "bad_request")
    assert "Accept" in error["message"] and '"json"' in error["message"]


def test_a_vae_denoises_through_its_posterior_mean(client: TestClient) -> None:
    response = client.post("/v1/models/mnist-vae/denoise", files=files(image_bytes()))
    assert response.status_code == 200
    assert decode_png(response.content).size == (28, 28)


def test_other_size_needs_resize_and_comes_back_in_its_own_size(client: TestClient) -> None:
    data = image_bytes(size=(60, 44), mode="RGBA")
    error = assert_error(client.post(URL, files=files(data)), 422, "wrong_size")
    assert "28x28" in error["message"] and "resize=true" in error["message"]
    response = client.post(URL, params={"resize": "true"}, files=files(data))
    assert response.status_code == 200
    out = decode_png(response.content)
    assert (out.size, out.mode) == ((60, 44), "RGBA")


def test_undecodable_bytes_are_415(client: TestClient) -> None:
    assert_error(client.post(URL, files=files(b"not an image at all")), 415, "unsupported_media_type")


def test_unsupported_format_is_415(client: TestClient) -> None:
    buf = io.BytesIO()
    Image.new("L", (28, 28)).save(buf, format="GIF")
    assert_error(client.post(URL, files=files(buf.getvalue())), 415, "unsupported_media_type")


def test_truncated_image_is_415(client: TestClient) -> None:
    data = image_bytes(size=(28, 28), fmt="PNG")
    assert_error(client.post(URL, files=files(data[: len(data) // 2])), 415)


def test_non_image_content_type_is_415(client: TestClient) -> None:
    response = client.post(URL, content=b"{}", headers={"content-type": "application/json"})
    error = assert_error(response, 415, "unsupported_media_type")
    assert "multipart" in error["message"]


def test_multipart_without_image_field_is_422(client: TestClient) -> None:
    response = client.post(URL, files=[("picture", ("a.png", image_bytes(), "image/png"))])
    assert_error(response, 422, "missing_image")


def test_photo_only_sigma_is_refused_for_a_digit_model(client: TestClient) -> None:
    response = client.post(URL, params={"sigma": 25}, files=files(image_bytes()))
    assert_error(response, 422)


def test_multipart_keeps_image_order_and_ignores_other_fields(client: TestClient) -> None:
    a, b = image_bytes(seed=1), image_bytes(seed=2)
    parts = [
        ("note", (None, "ignored text")),
        ("image", ('x "quoted".png', a, "image/png")),
        ("other", ("o.png", b, "image/png")),
        ("image", ("b.png", b, "application/octet-stream")),
    ]
    both = client.post(URL, files=parts).json()["images"]
    alone = [client.post(URL, files=files(d)).content for d in (a, b)]
    assert [base64.b64decode(i["png"]) for i in both] == alone


@pytest.mark.parametrize(("url", "field"), [(URL, "resize"), ("/v1/models/mnist-vae/score", "k"),
                                            ("/v1/models/mnist-vae/encode", "seed")])
def test_a_parameter_sent_as_a_form_field_is_422_pointing_to_the_query(
    client: TestClient, url: str, field: str
) -> None:
    # -F resize=true beside the image was ignored without a word, the default left in force
    parts = [("image", ("a.png", image_bytes(size=(32, 32)), "image/png")), (field, (None, "true"))]
    error = assert_error(client.post(url, files=parts), 422, "invalid_request")
    assert f"'{field}' came as a form field" in error["message"]
    assert f"{url}?{field}=" in error["message"]


def test_malformed_multipart_is_400(client: TestClient) -> None:
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    body = b"--xyz\r\nContent-Disposition: form-data; name=image; filename=a.png\r\n\r\nabc\r\n--bad"
    error = assert_error(client.post(URL, content=body, headers=headers), 400, "bad_request")
    assert "multipart" in error["message"]
    no_boundary = {"content-type": "multipart/form-data"}
    assert_error(client.post(URL, content=b"x", headers=no_boundary), 400, "bad_request")


def test_a_text_field_named_image_is_422(client: TestClient) -> None:
    error = assert_error(client.post(URL, files=[("image", (None, "not a file"))]), 422)
    assert "file upload" in error["message"]


@pytest.mark.parametrize("params", [{"resize": "maybe"}, {"sample": "2"}, {"seed": "-1"}])
def test_flags_and_seeds_are_validated(client: TestClient, params: dict[str, str]) -> None:
    response = client.post("/v1/models/mnist-vae/encode", params=params, files=files(image_bytes()))
    assert_error(response, 422, "invalid_request")


def test_a_tiff_that_breaks_pillows_reader_is_415(client: TestClient) -> None:
    data = tiff_with_entry(Image.new("L", (28, 28), 7), STRIP_OFFSETS, FLOAT)  # Pillow: TypeError
    assert_error(client.post(URL, files=files(data)), 415, "unsupported_media_type")
