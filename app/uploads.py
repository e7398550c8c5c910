"""Reading the request: image uploads (multipart ``image`` fields or a raw ``image/*`` body).

The body must arrive within ``AESERVE_BODY_TIMEOUT_S`` (408 ``body_timeout`` otherwise); its size is
bounded by ``AESERVE_MAX_BODY_BYTES`` before this runs (``app/limits.py``).
"""

from __future__ import annotations

import asyncio

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from app.errors import ApiError
from app.settings import Settings

IMAGE_FIELD = "image"


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def wants(request: Request, media: str) -> bool:
    """Whether the Accept header names ``media`` (no q-value arithmetic: named means wanted)."""
    return media in request.headers.get("accept", "")


async def read_images(request: Request, settings: Settings) -> list[bytes]:
    """The uploaded images' bytes, in order; 415 for other content types, 422 for none/too many."""
    media = media_type(request)
    if media == "multipart/form-data":
        images = _parse_multipart(request, await read_body(request, settings), settings)
    elif media.startswith("image/"):
        images = [await read_body(request, settings)]
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {media or '(none)'} is not an image upload: send multipart/form-data "
            f"with field '{IMAGE_FIELD}' (repeatable) or the raw bytes with Content-Type image/*",
        )
    if not images:
        raise ApiError(
            422, "missing_image", f"no image in the request: add a multipart field '{IMAGE_FIELD}'"
        )
    if len(images) > settings.max_images:
        raise _too_many_images(len(images), settings.max_images)
    return images


MAX_OTHER_PARTS = 100  # parts that are not images: ignored, but not without end


def _too_many_images(count: int, limit: int) -> ApiError:
    return ApiError(
        422,
        "too_many_images",
        f"{count} images in one request; the limit is {limit} (AESERVE_MAX_IMAGES)",
    )


async def read_body(request: Request, settings: Settings) -> bytes:
    """The whole body, or 408 when it does not arrive within the body timeout."""
    try:
        async with asyncio.timeout(settings.body_timeout_s):
            return await request.body()
    except TimeoutError:
        raise ApiError(
            408,
            "body_timeout",
            f"the request body did not arrive within {settings.body_timeout_s:g} s "
            "(AESERVE_BODY_TIMEOUT_S)",
            {"Connection": "close"},
        ) from None


def _parse_multipart(request: Request, body: bytes, settings: Settings) -> list[bytes]:
    """The ``image`` file parts, parsed in memory with python-multipart's streaming parser.

    Starlette's ``request.form()`` wraps every file in a spooled temporary file and parses each
    part's headers into a dict; with the body already bounded by ``AESERVE_MAX_BODY_BYTES`` the
    parts can stay in memory, and this reader keeps only what the routes use.
    """
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_request", "multipart/form-data without a boundary parameter")
    images: list[bytes] = []
    chunks: list[bytes] = []
    field: list[bytes] = []  # the current header's name and value, as the parser hands them over
    value: list[bytes] = []
    disposition = b""
    others = 0

    def on_part_begin() -> None:
        nonlocal disposition
        chunks.clear()
        disposition = b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunks.append(data[start:end])

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.append(data[start:end])

    def on_header_end() -> None:
        nonlocal disposition
        if b"".join(field).lower() == b"content-disposition":
            disposition = b"".join(value)
        field.clear()
        value.clear()

    def on_part_end() -> None:
        nonlocal others
        _, options = parse_options_header(disposition)
        if options.get(b"name") != IMAGE_FIELD.encode():
            others += 1
            if others > MAX_OTHER_PARTS:
                raise ApiError(422, "invalid_request", f"over {MAX_OTHER_PARTS} non-image parts")
            return
        if b"filename" not in options:
            raise ApiError(
                422, "invalid_request", f"field '{IMAGE_FIELD}' must be a file upload, not text"
            )
        images.append(b"".join(chunks))
        if len(images) > settings.max_images:
            raise _too_many_images(len(images), settings.max_images)

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_end": on_part_end,
    })
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise ApiError(400, "bad_request", f"malformed multipart body: {exc}") from exc
    if parser.state != MultipartState.END:
        raise ApiError(400, "bad_request", "multipart body ends before its closing boundary")
    return images
