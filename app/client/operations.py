"""Each method of ``Client`` and ``AsyncClient``, once: the ``Call`` it makes of its arguments, and
how it reads the answer. Both clients send these (``app.client``), one waiting, one awaiting."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import httpx

from app.client.calls import Call, Grid, ImageIn, image_parts, model_path

T = TypeVar("T")


def _pngs(key: str) -> Callable[[httpx.Response], list[bytes]]:
    """A reader of the base64 PNGs a JSON answer lists under ``key``."""
    def read(response: httpx.Response) -> list[bytes]:
        return [base64.b64decode(png) for png in response.json()[key]]
    return read


def _json(response: httpx.Response) -> dict[str, Any]:
    return dict(response.json())


def _grid(response: httpx.Response) -> Grid:
    """A PNG grid answer, with the seed and steps its headers carry."""
    seed, steps = response.headers.get("X-Seed"), response.headers.get("X-Steps")
    return Grid(response.content, None if seed is None else int(seed),
                None if steps is None else int(steps))


def _images_in(name: str, op: str, images: Sequence[ImageIn], params: dict[str, Any],
               read: Callable[[httpx.Response], T], accept: str = "application/json") -> Call[T]:
    query = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items()
             if v is not None}
    return Call("POST", model_path(name, op), read, params=query, files=image_parts(images),
                accept=accept)


# ---- service -------------------------------------------------------------------------------
def models() -> Call[list[dict[str, Any]]]:
    """The models the service serves, each as ``GET /v1/models`` describes it."""
    return Call("GET", "/v1/models", lambda response: list(response.json()["models"]))


def limits() -> Call[dict[str, int]]:
    """The limits every request is held to, as ``GET /v1/models`` lists them: ``max_images`` (in
    one request), ``max_pixels``, ``max_side``, ``max_upload_bytes``, ``max_work_pixels``."""
    return Call("GET", "/v1/models", lambda response: dict(response.json()["limits"]))


def model(name: str) -> Call[dict[str, Any]]:
    """One model, as ``GET /v1/models/{name}`` describes it."""
    return Call("GET", model_path(name), _json)


# ---- operations ----------------------------------------------------------------------------
def denoise(name: str, image: ImageIn, resize: bool = False,
            sigma: float | None = None) -> Call[bytes]:
    """One image in (any accepted format), one PNG out."""
    return _images_in(name, "denoise", [image], {"resize": resize, "sigma": sigma},
                      lambda response: response.content, accept="image/png")


def denoise_with_sigma(name: str, image: ImageIn, resize: bool = False,
                       sigma: float | None = None) -> Call[tuple[bytes, float | None]]:
    """``denoise``, and the noise σ (0-255) a photo model used: the one given, else its estimate
    (``X-Noise-Sigma``); None for models that take no σ, and for an image too small to estimate
    it from."""
    def read(response: httpx.Response) -> tuple[bytes, float | None]:
        used = response.headers.get("X-Noise-Sigma")
        return response.content, None if used is None else float(used)
    return _images_in(name, "denoise", [image], {"resize": resize, "sigma": sigma}, read,
                      accept="image/png")


def denoise_many(name: str, images: Sequence[ImageIn], resize: bool = False,
                 sigma: float | None = None) -> Call[list[bytes]]:
    """Several images in, one clean PNG for each, in order, in one request."""
    def read(response: httpx.Response) -> list[bytes]:
        return [base64.b64decode(item["png"]) for item in response.json()["images"]]
    return _images_in(name, "denoise", images, {"resize": resize, "sigma": sigma}, read)


def encode(name: str, images: Sequence[ImageIn], resize: bool = False, sample: bool = False,
           seed: int | None = None) -> Call[list[dict[str, list[float]]]]:
    """The latent codes of each image (``mu``, with ``sample`` a draw ``z`` too)."""
    params = {"resize": resize, "sample": sample, "seed": seed}
    return _images_in(name, "encode", images, params,
                      lambda response: list(response.json()["results"]))


def encode_answer(name: str, images: Sequence[ImageIn], resize: bool = False,
                  sample: bool = False, seed: int | None = None) -> Call[dict[str, Any]]:
    """The whole answer: ``results``, and with ``sample`` the ``seed`` of the draw (the one given,
    or the one the service drew), so that the draw can be made again."""
    params = {"resize": resize, "sample": sample, "seed": seed}
    return _images_in(name, "encode", images, params, _json)


def score(name: str, images: Sequence[ImageIn], k: int | None = None, seed: int | None = None,
          resize: bool = False) -> Call[list[dict[str, float]]]:
    """Each image's anomaly score (nats)."""
    return _images_in(name, "score", images, {"k": k, "seed": seed, "resize": resize},
                      lambda response: list(response.json()["results"]))


def score_answer(name: str, images: Sequence[ImageIn], k: int | None = None,
                 seed: int | None = None, resize: bool = False) -> Call[dict[str, Any]]:
    """The whole answer: ``results``, ``k``, ``unit`` and the ``seed`` of the importance samples
    (the one given, or the one the service drew), so that the score can be repeated."""
    return _images_in(name, "score", images, {"k": k, "seed": seed, "resize": resize}, _json)


def decode(name: str, z: list[list[float]]) -> Call[list[bytes]]:
    """One PNG for each latent vector."""
    return Call("POST", model_path(name, "decode"), _pngs("images"), json={"z": z})


def sample(name: str, n: int = 16, seed: int | None = None,
           temperature: float = 1.0) -> Call[list[bytes]]:
    """``n`` samples from the prior, as PNGs."""
    payload = {"n": n, "seed": seed, "temperature": temperature}
    return Call("POST", model_path(name, "sample"), _pngs("images"), json=payload)


def sample_with_seed(name: str, n: int = 16, seed: int | None = None,
                     temperature: float = 1.0) -> Call[tuple[list[bytes], int]]:
    """``sample``, and its seed: the one given, or the one the service drew, so that the same
    samples can be drawn again."""
    def read(response: httpx.Response) -> tuple[list[bytes], int]:
        return _pngs("images")(response), int(response.json()["seed"])
    payload = {"n": n, "seed": seed, "temperature": temperature}
    return Call("POST", model_path(name, "sample"), read, json=payload)


def grid(name: str, op: str, payload: dict[str, Any]) -> Call[bytes]:
    """``decode``/``sample``/``interpolate`` answered as one PNG grid."""
    return Call("POST", model_path(name, op), lambda response: response.content, json=payload,
                accept="image/png")


def grid_answer(name: str, op: str, payload: dict[str, Any]) -> Call[Grid]:
    """``grid``, with the seed (``sample``) or the steps (``interpolate``) the service used."""
    return Call("POST", model_path(name, op), _grid, json=payload, accept="image/png")


def interpolate_images(name: str, first: ImageIn, last: ImageIn, steps: int = 8,
                       resize: bool = False) -> Call[Grid]:
    """The decoded path between two images' codes, as one PNG grid."""
    return _images_in(name, "interpolate", [first, last], {"steps": steps, "resize": resize},
                      _grid, accept="image/png")


def interpolate(name: str, z0: list[float], z1: list[float], steps: int = 8) -> Call[list[bytes]]:
    """The decoded path between two latent vectors, one PNG a step."""
    return Call("POST", model_path(name, "interpolate"), _pngs("images"),
                json={"z": [z0, z1], "steps": steps})
