"""A thin httpx client for aeserve, for scripts. ``python -m app.client --help`` for the CLI.

    from app.client import Client
    with Client("http://127.0.0.1:8000", token=None) as ae:
        clean_png = ae.denoise("mnist-dae", open("noisy.png", "rb").read())
        pngs = ae.sample("mnist-vae", n=16, seed=0)
"""

from __future__ import annotations

import base64
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from app.bearer import is_bearer_token

__all__ = ["AeserveError", "Client", "Grid", "ImageIn"]

log = logging.getLogger(__name__)
"""Each retry is a warning here (what was answered, the wait, which retry of how many)."""

ANSWERED_IN = ("application/json", "image/png")
"""The media types of the service's successful answers."""

GONE = (httpx.ConnectError, httpx.RemoteProtocolError)
"""No answer at all: nothing listens (a service restarting), or the connection closed before an
answer came. Every operation computes its answer from what is sent, so sending it again is safe."""

ImageIn = bytes | Path
"""An image to send: its bytes, or a file, read and sent under its own name (which the service's
errors about one image of several name)."""


class AeserveError(Exception):
    """An error answer from the service: HTTP status, error code, message, and for a 503 the
    seconds it asks to wait before a retry (``Retry-After``)."""

    def __init__(self, status: int, code: str, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Grid:
    """One PNG grid, and what its headers said: the seed of a sample, the steps of a path."""

    png: bytes
    seed: int | None = None
    steps: int | None = None


def bearer_headers(token: str | None) -> dict[str, str]:
    """The Authorization header for ``token``: whitespace around it dropped (a secret file's last
    newline), none when empty. A ``ValueError`` that never shows the token when it holds
    characters a bearer token cannot (RFC 6750), as the service refuses such a token too."""
    token = (token or "").strip()
    if not token:
        return {}
    if not is_bearer_token(token):
        raise ValueError("the API token holds characters a bearer token cannot carry (letters, "
                         "digits and - . _ ~ + / only, then = at the end)")
    return {"Authorization": f"Bearer {token}"}


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _retried(response: httpx.Response, asked: float | None, max_wait_s: float) -> bool:
    """Whether an answer is one to send the operation again after: a 503 with ``Retry-After``, or
    a proxy's 502 (the service behind it is not answering: restarting, say; the service itself
    never answers 502); neither when it asks for a wait over ``max_wait_s``."""
    if asked is not None and asked > max_wait_s:
        return False
    if response.status_code == 503:
        return asked is not None
    return response.status_code == 502


def _error(response: httpx.Response) -> tuple[str, str]:
    """The code and message of an error answer; ``http_error`` for one that is not the service's."""
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):  # not the service's answer: a proxy's, say
        return "http_error", _foreign(response)


def _foreign(response: httpx.Response) -> str:
    """An answer that is not the service's (a proxy's HTML page, say) on one line: its reason,
    what it was and where it came from; a short plain-text body too."""
    kind = response.headers.get("Content-Type", "no Content-Type").split(";")[0]
    text = " ".join(response.text.split())[:200] if kind == "text/plain" else ""
    return (f"{response.reason_phrase or 'error'}{': ' + text if text else ''} (not the service's "
            f"answer: {kind} from {response.url}; is the URL the service's, and the proxy in "
            "between up?)")


def _grid(response: httpx.Response) -> Grid:
    """A PNG grid answer, with the seed and steps its headers carry."""
    seed, steps = response.headers.get("X-Seed"), response.headers.get("X-Steps")
    return Grid(response.content, None if seed is None else int(seed),
                None if steps is None else int(steps))


def _refuse_non_finite(value: Any, where: str) -> None:
    """A ``ValueError`` naming the first NaN or infinity in a JSON payload (``z[0][3]``), as JSON
    has no such numbers: the client says so before anything is sent."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}: JSON carries finite numbers only (no NaN or "
                         "Infinity); nothing was sent")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_non_finite(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _refuse_non_finite(item, f"{where}[{i}]")


def _files(images: Sequence[ImageIn]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """The multipart ``image`` parts: a file under its own name, bytes as ``image1``, ``image2``..."""
    return [("image", (image.name, image.read_bytes(), "application/octet-stream")
                       if isinstance(image, Path) else (f"image{i}", image, "application/octet-stream"))
            for i, image in enumerate(images, 1)]


def _path(name: str, op: str | None = None) -> str:
    """A model's path, its name percent-encoded (a folder may be called ``digits #2``)."""
    path = f"/v1/models/{quote(name, safe='')}"
    return path if op is None else f"{path}/{op}"


class Client:
    """One connection pool to one service; every method maps to one endpoint.

    ``retries``: how many times an operation is sent again when it was answered 503 with
    ``Retry-After`` (overloaded, past its deadline, shutting down) or got no answer at all (nothing
    listens, as while the service restarts, the connection closed first, or a proxy in front of
    it answered 502 Bad Gateway). The first wait is
    the one the service asks for (1 s when it got no answer), each further one twice the last,
    each plus up to a quarter at random so that clients refused together do not all come back
    together, and none over ``max_wait_s`` (an answer that asks for more is raised at once). Each
    retry is logged as a warning (logger ``app.client``). 0: every error is raised."""

    _sleep = staticmethod(time.sleep)
    _random = random.Random()

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None,
                 timeout: float = 60.0, retries: int = 0, max_wait_s: float = 30.0) -> None:
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            # else every request fails as a transport error, and ready() is False for ever
            raise ValueError(f"{url!r} is not an http:// or https:// URL with a host, such as "
                             "http://127.0.0.1:8000")
        self.http = httpx.Client(base_url=url, headers=bearer_headers(token), timeout=timeout)
        self.retries = retries
        self.max_wait_s = max_wait_s

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        """The answer, if it is a success in a type the service answers in; else an
        ``AeserveError`` (a 200 HTML page is some other server's, a sign-in page say, and was
        saved as the clean PNG)."""
        kind = response.headers.get("Content-Type", "").split(";")[0].strip()
        if response.is_success and kind in ANSWERED_IN:
            return response
        if response.is_success:
            raise AeserveError(response.status_code, "http_error", _foreign(response))
        raise AeserveError(response.status_code, *_error(response), _retry_after(response))

    def _post(self, path: str, **request: Any) -> httpx.Response:
        """POST, sent again as ``retries`` says; the answer checked. A JSON payload with a NaN or
        an infinity is a ``ValueError`` naming it, and is not sent."""
        _refuse_non_finite(request.get("json"), "")
        attempt = 0
        while True:
            try:
                response = self.http.post(path, **request)
            except GONE as exc:
                if attempt == self.retries:
                    raise
                why, asked = f"no answer from {self.http.base_url} ({exc})", None
            else:
                asked = _retry_after(response)
                if attempt == self.retries or not _retried(response, asked, self.max_wait_s):
                    return self._check(response)
                code = _error(response)[0]
                why = f"{response.status_code} {response.reason_phrase if code == 'http_error' else code}"
            attempt += 1
            wait = self._wait(attempt, asked)
            log.warning("%s: sending it again in %.1f s (retry %d of %d)", why, wait, attempt,
                        self.retries)
            self._sleep(wait)

    def _wait(self, attempt: int, asked: float | None) -> float:
        """The wait before retry ``attempt`` (1, 2, ...): what the service asked for (1 s when it
        did not answer) doubled on each retry after the first, plus up to a quarter at random;
        never over ``max_wait_s`` (an answer that asks for more is not retried)."""
        first = 1.0 if asked is None else asked
        return min(first * 2 ** (attempt - 1) * (1 + self._random.random() / 4), self.max_wait_s)

    def _images_in(self, name: str, op: str, images: Sequence[ImageIn], params: dict[str, Any],
                   accept: str = "application/json") -> httpx.Response:
        query = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items()
                 if v is not None}
        return self._post(_path(name, op), params=query, files=_files(images),
                          headers={"Accept": accept})

    # ---- service -------------------------------------------------------------------------
    def ready(self) -> bool:
        """Whether the service answers and is ready; False too when it cannot be reached."""
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def models(self) -> list[dict[str, Any]]:
        return list(self._check(self.http.get("/v1/models")).json()["models"])

    def model(self, name: str) -> dict[str, Any]:
        return dict(self._check(self.http.get(_path(name))).json())

    # ---- operations ----------------------------------------------------------------------
    def denoise(self, name: str, image: ImageIn, resize: bool = False,
                sigma: float | None = None) -> bytes:
        """One image in (any accepted format), one PNG out."""
        return self.denoise_with_sigma(name, image, resize, sigma)[0]

    def denoise_with_sigma(self, name: str, image: ImageIn, resize: bool = False,
                           sigma: float | None = None) -> tuple[bytes, float | None]:
        """``denoise``, and the noise σ (0-255) a photo model used: the one given, else its
        estimate (``X-Noise-Sigma``); None for models that take no σ, and for an image too small
        to estimate it from."""
        response = self._images_in(name, "denoise", [image], {"resize": resize, "sigma": sigma},
                                   accept="image/png")
        used = response.headers.get("X-Noise-Sigma")
        return response.content, None if used is None else float(used)

    def denoise_many(self, name: str, images: Sequence[ImageIn], resize: bool = False,
                     sigma: float | None = None) -> list[bytes]:
        body = self._images_in(name, "denoise", images, {"resize": resize, "sigma": sigma}).json()
        return [base64.b64decode(item["png"]) for item in body["images"]]

    def encode(self, name: str, images: Sequence[ImageIn], resize: bool = False, sample: bool = False,
               seed: int | None = None) -> list[dict[str, list[float]]]:
        return list(self.encode_answer(name, images, resize, sample, seed)["results"])

    def encode_answer(self, name: str, images: Sequence[ImageIn], resize: bool = False,
                      sample: bool = False, seed: int | None = None) -> dict[str, Any]:
        """The whole answer: ``results``, and with ``sample`` the ``seed`` of the draw (the one
        given, or the one the service drew), so that the draw can be made again."""
        params = {"resize": resize, "sample": sample, "seed": seed}
        return dict(self._images_in(name, "encode", images, params).json())

    def score(self, name: str, images: Sequence[ImageIn], k: int | None = None,
              seed: int | None = None, resize: bool = False) -> list[dict[str, float]]:
        return list(self.score_answer(name, images, k, seed, resize)["results"])

    def score_answer(self, name: str, images: Sequence[ImageIn], k: int | None = None,
                     seed: int | None = None, resize: bool = False) -> dict[str, Any]:
        """The whole answer: ``results``, ``k``, ``unit`` and the ``seed`` of the importance
        samples (the one given, or the one the service drew), so that the score can be repeated."""
        params = {"k": k, "seed": seed, "resize": resize}
        return dict(self._images_in(name, "score", images, params).json())

    def decode(self, name: str, z: list[list[float]]) -> list[bytes]:
        body = self._post(_path(name, "decode"), json={"z": z}).json()
        return [base64.b64decode(png) for png in body["images"]]

    def sample(self, name: str, n: int = 16, seed: int | None = None,
               temperature: float = 1.0) -> list[bytes]:
        return self.sample_with_seed(name, n, seed, temperature)[0]

    def sample_with_seed(self, name: str, n: int = 16, seed: int | None = None,
                         temperature: float = 1.0) -> tuple[list[bytes], int]:
        """``sample``, and its seed: the one given, or the one the service drew, so that the same
        samples can be drawn again."""
        payload = {"n": n, "seed": seed, "temperature": temperature}
        body = self._post(_path(name, "sample"), json=payload).json()
        return [base64.b64decode(png) for png in body["images"]], int(body["seed"])

    def grid(self, name: str, op: str, payload: dict[str, Any]) -> bytes:
        """``decode``/``sample``/``interpolate`` answered as one PNG grid."""
        return self.grid_answer(name, op, payload).png

    def grid_answer(self, name: str, op: str, payload: dict[str, Any]) -> Grid:
        """``grid``, with the seed (``sample``) or the steps (``interpolate``) the service used."""
        return _grid(self._post(_path(name, op), json=payload,
                                headers={"Accept": "image/png"}))

    def interpolate_images(self, name: str, first: ImageIn, last: ImageIn, steps: int = 8,
                           resize: bool = False) -> Grid:
        """The decoded path between two images' codes, as one PNG grid."""
        return _grid(self._images_in(name, "interpolate", [first, last],
                                     {"steps": steps, "resize": resize}, accept="image/png"))

    def interpolate(self, name: str, z0: list[float], z1: list[float], steps: int = 8) -> list[bytes]:
        payload = {"z": [z0, z1], "steps": steps}
        body = self._post(_path(name, "interpolate"), json=payload).json()
        return [base64.b64decode(png) for png in body["images"]]
