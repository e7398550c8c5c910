"""Reading the request: image uploads (multipart ``image`` fields or a raw ``image/*`` body).

The body's size is bounded by ``AESERVE_MAX_BODY_BYTES`` before this runs (``app/limits.py``); the
time it may take to arrive, ``AESERVE_BODY_TIMEOUT_S``, is a protocol limit of the server
(``app/server.py``), which answers 408 ``body_timeout`` and closes the connection.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.routing import APIRoute
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from app.disconnects import BODY_TIMED_OUT, disconnect_extension
from app.errors import ApiError, body_timeout
from app.images import Upload
from app.route_query import declared_query
from app.settings import Settings

IMAGE_FIELD = "image"


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_images(request: Request, settings: Settings) -> list[bytes]:
    """The uploaded images' bytes, in order; 415 for other content types, 422 for none/too many."""
    media = media_type(request)
    fields: list[str] = []
    if media == "multipart/form-data":
        images, fields = _parse_multipart(request, await read_body(request, settings), settings)
        _no_parameters_in_the_form(request, fields)
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
        # a file sent as 'file' or 'upload', as other APIs name it, is named back
        names = [repr(name[:40]) for name in dict.fromkeys(fields)]
        more = ", ..." if len(names) > 5 else ""
        got = f" (the form has {', '.join(names[:5])}{more})" if names else ""
        raise ApiError(
            422, "missing_image",
            f"no image in the request: add a multipart field '{IMAGE_FIELD}'{got}"
        )
    if len(images) > settings.max_images:
        raise _too_many_images(len(images), settings.max_images)
    return images


def _no_parameters_in_the_form(request: Request, fields: list[str]) -> None:
    """422 for a form field named as one of the route's query parameters (``-F sigma=25``): other
    fields are ignored, and that one would be too, leaving the default in force without a word."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    takes = declared_query(route)
    for name in fields:
        if name in takes:
            raise ApiError(422, "invalid_request",
                           f"{name!r} came as a form field, where it would be ignored: send it in "
                           f"the query string ({request.url.path}?{name}=...); the form carries "
                           f"only the '{IMAGE_FIELD}' files")


def _named(parts: list[tuple[bytes, str]]) -> list[bytes]:
    """Several images: each named by its place and file name, for an error about one of them."""
    if len(parts) == 1:
        return [data for data, _ in parts]
    return [Upload(data, f"image {i} of {len(parts)} ({filename!r})")
            for i, (data, filename) in enumerate(parts, 1)]


MAX_OTHER_PARTS = 100  # parts that are not images: ignored, but not without end


def _too_many_images(count: int, limit: int) -> ApiError:
    return ApiError(
        422,
        "too_many_images",
        f"{count} images in one request; the limit is {limit} (AESERVE_MAX_IMAGES)",
    )


async def read_body(request: Request, settings: Settings) -> bytes:
    """The whole body. When the server closed the connection because the body was slower than
    ``AESERVE_BODY_TIMEOUT_S`` (it has answered 408 itself), the request ends as that 408.

    A compressed body (``Content-Encoding: gzip``) is 415 before it is read: read as it came, a
    gzipped JSON body was 'Invalid JSON' and a gzipped PNG 'not an image'."""
    coding = request.headers.get("content-encoding", "").strip().lower()
    if coding not in ("", "identity"):
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Encoding {coding} is not supported: send the body uncompressed "
                       "(PNG, JPEG and WebP are compressed already)", {"Accept-Encoding": "identity"})
    try:
        return await request.body()
    except ClientDisconnect:
        extension = disconnect_extension(request.scope)
        if extension is not None and extension.get(BODY_TIMED_OUT):
            raise body_timeout(settings.body_timeout_s) from None
        raise


def _parse_multipart(request: Request, body: bytes, settings: Settings
                     ) -> tuple[list[bytes], list[str]]:
    """The ``image`` file parts, parsed in memory by the ``multipart`` package's push parser, and
    the names of the other parts.

    Starlette's ``request.form()`` wraps every file in a spooled temporary file; with the body
    already bounded by ``AESERVE_MAX_BODY_BYTES`` the parts can stay in memory, and this reader
    keeps only what the routes use.
    """
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get("boundary")
    if not boundary:
        raise ApiError(400, "bad_request", "multipart/form-data without a boundary parameter")
    images: list[tuple[bytes, str]] = []
    others: list[str] = []
    part: MultipartSegment | None = None
    chunks: list[bytes] = []
    parser = PushMultipartParser(boundary, content_length=len(body),
                                 max_segment_count=settings.max_images + MAX_OTHER_PARTS + 1)
    try:
        for event in parser.parse(body):
            if isinstance(event, MultipartSegment):
                part, chunks = event, []
            elif event is not None:
                chunks.append(event)
            elif part is not None:  # the end of a part
                if part.name != IMAGE_FIELD:
                    others.append(part.name)
                    if len(others) > MAX_OTHER_PARTS:
                        raise ApiError(422, "invalid_request",
                                       f"over {MAX_OTHER_PARTS} non-image parts")
                    continue
                if part.filename is None:
                    raise ApiError(422, "invalid_request",
                                   f"field '{IMAGE_FIELD}' must be a file upload, not text")
                images.append((b"".join(chunks), part.filename))
                if len(images) > settings.max_images:
                    raise _too_many_images(len(images), settings.max_images)
        parser.close()  # a body that ends before its closing boundary raises here
    except MultipartError as exc:  # malformed, or over the parser's limits (part headers, parts)
        reason = ": ".join(map(str, exc.args))  # its message, then the cause when it names one
        raise ApiError(400, "bad_request", f"malformed multipart body: {reason}") from exc
    return _named(images), others
