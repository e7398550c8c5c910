"""The client's core, without I/O: a call as data (``Call``: the request, how to read its answer),
the checks of an answer, and when to send a call again (``Retry``). ``Client`` and ``AsyncClient``
(``app.client``) only send what this builds, and sleep the waits it decides."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from app.bearer import is_bearer_token

T = TypeVar("T")

log = logging.getLogger("app.client")
"""Each retry is a warning here (what was answered, the wait, which retry of how many)."""

ANSWERED_IN = ("application/json", "image/png")
"""The media types of the service's successful answers."""

GONE = (httpx.ConnectError, httpx.RemoteProtocolError)
"""No answer at all: nothing listens (a service restarting), or the connection closed before an
answer came. Every call computes its answer from what is sent, and changes nothing on the service
(a look-up reads, an operation computes), so sending it again is safe."""

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


def connection(url: str, token: str | None) -> dict[str, Any]:
    """The httpx client's ``base_url`` and ``headers`` for a service: a ``ValueError`` for a URL
    that is not http(s) with a host (else every request fails as a transport error, and ``ready()``
    is False for ever) and for a token no header can carry."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host, such as "
                         "http://127.0.0.1:8000")
    return {"base_url": url, "headers": bearer_headers(token)}


def retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def error_of(response: httpx.Response) -> tuple[str, str]:
    """The code and message of an error answer; ``http_error`` for one that is not the service's."""
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):  # not the service's answer: a proxy's, say
        return "http_error", foreign(response)


def foreign(response: httpx.Response) -> str:
    """An answer that is not the service's (a proxy's HTML page, say) on one line: its reason,
    what it was and where it came from; a short plain-text body too."""
    kind = response.headers.get("Content-Type", "no Content-Type").split(";")[0]
    text = " ".join(response.text.split())[:200] if kind == "text/plain" else ""
    return (f"{response.reason_phrase or 'error'}{': ' + text if text else ''} (not the service's "
            f"answer: {kind} from {response.url}; is the URL the service's, and the proxy in "
            "between up?)")


def check(response: httpx.Response) -> httpx.Response:
    """The answer, if it is a success in a type the service answers in; else an ``AeserveError``
    (a 200 HTML page is some other server's, a sign-in page say, and was saved as the clean PNG)."""
    kind = response.headers.get("Content-Type", "").split(";")[0].strip()
    if response.is_success and kind in ANSWERED_IN:
        return response
    if response.is_success:
        raise AeserveError(response.status_code, "http_error", foreign(response))
    raise AeserveError(response.status_code, *error_of(response), retry_after(response))


def refuse_non_finite(value: Any, where: str = "") -> None:
    """A ``ValueError`` naming the first NaN or infinity in a JSON payload (``z[0][3]``), as JSON
    has no such numbers: the client says so before anything is sent."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}: JSON carries finite numbers only (no NaN or "
                         "Infinity); nothing was sent")
    if isinstance(value, dict):
        for key, item in value.items():
            refuse_non_finite(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            refuse_non_finite(item, f"{where}[{i}]")


def image_parts(images: Sequence[ImageIn]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """The multipart ``image`` parts: a file under its own name, bytes as ``image1``, ``image2``..."""
    return [("image", (image.name, image.read_bytes(), "application/octet-stream")
                       if isinstance(image, Path) else (f"image{i}", image, "application/octet-stream"))
            for i, image in enumerate(images, 1)]


def model_path(name: str, op: str | None = None) -> str:
    """A model's path, its name percent-encoded (a folder may be called ``digits #2``)."""
    path = f"/v1/models/{quote(name, safe='')}"
    return path if op is None else f"{path}/{op}"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One call to the service, as data: its request, and how to read its checked answer into what
    the method returns. A JSON payload holding a NaN or an infinity is a ``ValueError`` naming it
    when the call is made, so nothing is sent."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    json: Any = None
    accept: str | None = None

    def __post_init__(self) -> None:
        refuse_non_finite(self.json)

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The request, built afresh for each try by the client that sends it."""
        return http.build_request(self.method, self.path, params=self.params, files=self.files,
                                  json=self.json,
                                  headers=None if self.accept is None else {"Accept": self.accept})

    def answer(self, outcome: httpx.Response | httpx.TransportError) -> T:
        """What the call returns for its last try: its answer read, once checked; the error raised
        when it got no answer."""
        if isinstance(outcome, httpx.TransportError):
            raise outcome
        return self.read(check(outcome))


class Retry:
    """When a call is sent again, and after what wait: up to ``retries`` times, after a 503 with
    ``Retry-After`` or a proxy's 502, or when no answer came at all (``GONE``). The first wait is the
    one the service asks for (1 s when it did not answer), each further one twice the last, each plus
    up to a quarter at random so that clients refused together do not all come back together, none
    over ``max_wait_s`` (an answer that asks for more is the answer). Each retry is logged as a
    warning (logger ``app.client``)."""

    _random = random.Random()

    def __init__(self, retries: int = 0, max_wait_s: float = 30.0) -> None:
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        self.retries = retries
        self.max_wait_s = max_wait_s

    def wait_before(self, attempt: int, outcome: httpx.Response | httpx.TransportError,
                    url: httpx.URL) -> float | None:
        """The wait before sending a call again after try ``attempt`` (1, 2, ...) came to
        ``outcome`` (sent to ``url``), logged; None when the outcome is the call's answer."""
        if attempt > self.retries:
            return None
        if isinstance(outcome, httpx.Response):
            asked = retry_after(outcome)
            if not self.retried(outcome, asked):
                return None
            code = error_of(outcome)[0]
            why = f"{outcome.status_code} {outcome.reason_phrase if code == 'http_error' else code}"
        else:  # one of GONE: the only errors a client sends again after
            why, asked = f"no answer from {url} ({outcome})", None
        wait = self.wait(attempt, asked)
        log.warning("%s: sending it again in %.1f s (retry %d of %d)", why, wait, attempt,
                    self.retries)
        return wait

    def retried(self, response: httpx.Response, asked: float | None) -> bool:
        """Whether an answer is one to send the operation again after: a 503 with ``Retry-After``,
        or a proxy's 502 (the service behind it is not answering: restarting, say; the service
        itself never answers 502); neither when it asks for a wait over ``max_wait_s``."""
        if asked is not None and asked > self.max_wait_s:
            return False
        if response.status_code == 503:
            return asked is not None
        return response.status_code == 502

    def wait(self, attempt: int, asked: float | None) -> float:
        """The wait before retry ``attempt`` (1, 2, ...): what the service asked for (1 s when it
        did not answer) doubled on each retry after the first, plus up to a quarter at random;
        never over ``max_wait_s`` (an answer that asks for more is not retried)."""
        first = 1.0 if asked is None else asked
        return min(first * 2 ** (attempt - 1) * (1 + self._random.random() / 4), self.max_wait_s)
