"""Reading uploads: multipart ``image`` parts in order, a raw image body, and every refusal."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from app.disconnects import BODY_TIMED_OUT, DISCONNECT_EXTENSION
from app.errors import ApiError
from app.settings import Settings
from app.uploads import MAX_OTHER_PARTS, media_type, read_images
from tests.app.helpers import image_bytes

BOUNDARY = "b0undary"
SETTINGS = Settings(max_images=3)


def request(body: bytes | None, content_type: str,
            extensions: dict[str, Any] | None = None, encoding: str | None = None) -> Request:
    """A request whose body arrives in one message; ``None``: the client went away instead."""
    headers = [(b"content-type", content_type.encode())]
    if encoding is not None:
        headers.append((b"content-encoding", encoding.encode()))
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b"",
             "extensions": extensions or {}}

    async def receive() -> dict[str, Any]:
        if body is None:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def multipart(*parts: tuple[str, str | None, bytes]) -> tuple[bytes, str]:
    """(name, filename or None for a text field, data) parts -> body and Content-Type."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"


def read(body: bytes | None, content_type: str, settings: Settings = SETTINGS) -> list[bytes]:
    return asyncio.run(read_images(request(body, content_type), settings))


def refused(body: bytes | None, content_type: str, settings: Settings = SETTINGS) -> ApiError:
    with pytest.raises(ApiError) as err:
        read(body, content_type, settings)
    return err.value


def test_image_parts_come_in_order_and_other_fields_are_ignored() -> None:
    a, b = image_bytes(seed=1), image_bytes(seed=2)
    body, ctype = multipart(("note", None, b"text"), ("image", 'x "q".png', a), ("other", "o.png", b),
                            ("image", "b.png", b))
    assert read(body, ctype) == [a, b]


def test_a_raw_image_body_is_one_image() -> None:
    data = image_bytes()
    assert read(data, "image/png") == [data]
    assert read(data, "Image/WEBP; q=1") == [data]  # any image/* type, case-insensitive


def test_other_content_types_are_415_naming_both_ways_to_send() -> None:
    error = refused(b"{}", "application/json")
    assert (error.status, error.code) == (415, "unsupported_media_type")
    assert "multipart/form-data" in error.message and "image/*" in error.message


def test_no_image_part_is_422_missing_image() -> None:
    body, ctype = multipart(("picture", "a.png", image_bytes()))
    assert (refused(body, ctype).status, refused(body, ctype).code) == (422, "missing_image")


def test_missing_image_names_the_fields_the_form_has() -> None:
    # -F file=@photo.png, as many APIs name it, was told only to add a field 'image'
    body, ctype = multipart(("file", "a.png", image_bytes()), ("note", None, b"x"),
                            ("file", "b.png", image_bytes()))
    error = refused(body, ctype)
    assert error.code == "missing_image"
    assert error.message.endswith("add a multipart field 'image' (the form has 'file', 'note')")


def test_more_images_than_the_limit_is_422_too_many_images() -> None:
    body, ctype = multipart(*[("image", f"{i}.png", image_bytes(seed=i)) for i in range(4)])
    error = refused(body, ctype)
    assert (error.status, error.code) == (422, "too_many_images") and "AESERVE_MAX_IMAGES" in error.message


def test_a_text_field_named_image_is_422() -> None:
    body, ctype = multipart(("image", None, b"not a file"))
    error = refused(body, ctype)
    assert error.status == 422 and "file upload" in error.message


def test_endless_other_parts_are_422() -> None:
    body, ctype = multipart(*[("x", None, b"1") for _ in range(MAX_OTHER_PARTS + 1)])
    assert refused(body, ctype).status == 422


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"--b0undary\r\nContent-Disposition: form-data; name=image; filename=a\r\n\r\nabc\r\n--bad",
         f"multipart/form-data; boundary={BOUNDARY}"),
        (b"--b0undary\r\nContent-Disposition: form-data; name=image; filename=a\r\n\r\nabc",
         f"multipart/form-data; boundary={BOUNDARY}"),
        (b"x", "multipart/form-data"),
        (b"--b0undary\r\nContent-Disposition: form-data; name=image; filename=" + b"a" * 5000
         + b"\r\n\r\nabc\r\n--b0undary--\r\n", f"multipart/form-data; boundary={BOUNDARY}"),
        (b"--b0undary\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(20))
         + b"Content-Disposition: form-data; name=image; filename=a\r\n\r\nabc\r\n--b0undary--\r\n",
         f"multipart/form-data; boundary={BOUNDARY}"),
    ],
    ids=["bad-closing", "no-closing", "no-boundary", "part-header-too-long", "too-many-part-headers"],
)
def test_malformed_multipart_is_400(body: bytes, ctype: str) -> None:
    error = refused(body, ctype)
    assert (error.status, error.code) == (400, "bad_request")


def test_a_part_header_that_is_not_utf8_is_400_in_plain_words() -> None:
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=image; filename=\xff\xfe.png\r\n"
            b"\r\nabc\r\n--b0undary--\r\n")
    error = refused(body, f"multipart/form-data; boundary={BOUNDARY}")
    assert (error.status, error.code) == (400, "bad_request")
    assert error.message.startswith("malformed multipart body: Segment header failed to decode: ")
    assert "can't decode byte 0xff" in error.message and "UnicodeDecodeError(" not in error.message


def test_a_body_the_server_timed_out_ends_as_408_body_timeout() -> None:
    # the server (app/protocol.py) answered 408 and closed; receive() reports the disconnect
    extensions = {DISCONNECT_EXTENSION: {"callbacks": [], BODY_TIMED_OUT: True}}
    req = request(None, "image/png", extensions=extensions)
    with pytest.raises(ApiError) as err:
        asyncio.run(read_images(req, Settings(body_timeout_s=7)))
    assert (err.value.status, err.value.code) == (408, "body_timeout")
    assert err.value.headers == {"Connection": "close"} and "7 s" in err.value.message


def test_a_client_that_leaves_mid_body_is_a_disconnect_not_an_error_answer() -> None:
    for extensions in ({}, {DISCONNECT_EXTENSION: {"callbacks": []}}):
        with pytest.raises(ClientDisconnect):
            asyncio.run(read_images(request(None, "image/png", extensions=extensions), SETTINGS))


def test_media_type_is_the_content_types_lowercase_type_without_parameters() -> None:
    assert media_type(request(b"", "Multipart/Form-Data; boundary=x")) == "multipart/form-data"


@pytest.mark.parametrize("encoding", ["gzip", "br", "GZIP", "deflate, gzip"])
def test_a_compressed_body_is_415_before_it_is_read(encoding: str) -> None:
    # read as it came, a gzipped PNG was "not an image" and gzipped JSON "Invalid JSON"
    data = gzip.compress(image_bytes())
    with pytest.raises(ApiError) as err:
        asyncio.run(read_images(request(data, "image/png", encoding=encoding), SETTINGS))
    assert (err.value.status, err.value.code) == (415, "unsupported_media_type")
    assert err.value.message.startswith(f"Content-Encoding {encoding.lower()} is not supported")
    assert err.value.headers == {"Accept-Encoding": "identity"}


def test_an_identity_coding_is_the_body_as_it_came() -> None:
    data = image_bytes()
    assert asyncio.run(read_images(request(data, "image/png", encoding="identity"), SETTINGS)) == [data]
