"""Reading the request: image uploads (multipart ``image`` fields or a raw ``image/*`` body)."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile

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
        images = await _read_multipart(request, settings)
    elif media.startswith("image/"):
        images = [await request.body()]
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
        raise ApiError(
            422,
            "too_many_images",
            f"{len(images)} images in one request; the limit is {settings.max_images} "
            "(AESERVE_MAX_IMAGES)",
        )
    return images


async def _read_multipart(request: Request, settings: Settings) -> list[bytes]:
    form = await request.form(max_files=settings.max_images + 1, max_fields=100)
    try:
        images = []
        for key, value in form.multi_items():
            if key != IMAGE_FIELD:
                continue
            if not isinstance(value, UploadFile):
                raise ApiError(
                    422, "invalid_request", f"field '{IMAGE_FIELD}' must be a file upload, not text"
                )
            images.append(await value.read())
        return images
    finally:
        await form.close()
