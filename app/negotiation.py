"""Content negotiation: of the media types a route can answer in, the one the client's Accept prefers.

The matching is python-mimeparse's (the Falcon project's): q-values, ``type/*`` and ``*/*``
wildcards, the most specific range setting a type's q (``*/*, image/png;q=0`` refuses PNG), and
``q=0`` meaning "not acceptable". Where the client likes two types equally, the route's default
wins; a missing or empty Accept means anything, so the default too. A parameter's quoted value
(RFC 9110's quoted-string, which may hold commas and semicolons) is read as one value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import mimeparse

from app.errors import ApiError

JSON = "application/json"
PNG = "image/png"
# RFC 9110's qvalue: 0 to 1 with at most three decimals (mimeparse reads anything else as 1)
_QVALUE = re.compile(r"0(\.\d{0,3})?|1(\.0{0,3})?")
# a quoted-string, backslash escapes included; one left open runs to the end of the header (a
# pattern that insisted on the closing quote would rescan the rest of the header from every quote)
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)')


def negotiate(accept: str | Sequence[str] | None, offered: Sequence[str], why: str = "") -> str:
    """The media type to answer in: one of ``offered`` (the route's default first). ``accept`` is the
    header's value, or its values when it came on several lines (one list, as HTTP reads them).

    406 ``not_acceptable`` naming the types on offer when ``accept`` accepts none of them (``why``,
    when given, says why the others are not on offer); 400 ``bad_request`` for an Accept header
    that is not a list of media ranges.
    """
    if accept is not None and not isinstance(accept, str):
        accept = ", ".join(accept)
    if accept is None or not accept.replace(",", "").strip():  # no media range: anything goes
        return offered[0]
    accept = _QUOTED.sub('""', accept)  # no media type is matched on a parameter's value
    try:
        _check_qvalues(accept)
        # media types are case-insensitive; mimeparse gives a tie to the last type of its list
        best = mimeparse.best_match(list(reversed(offered)), accept.lower())
    except ValueError as exc:  # a range that is not type/subtype, or a q that is not 0..1
        raise ApiError(400, "bad_request",
                       f"malformed Accept header: {str(exc)[:200]}; send media ranges such as "
                       f"'{offered[0]}' or '*/*', comma-separated, each with an optional ';q=0..1'"
                       ) from None
    if not best:
        raise ApiError(406, "not_acceptable",
                       f"the Accept header accepts none of the media types this request can be "
                       f"answered in: {', '.join(offered)}{f' ({why})' if why else ''}")
    return str(best)


def _check_qvalues(accept: str) -> None:
    """ValueError for a ``q`` that is not a number from 0 to 1 with at most three decimals."""
    for media_range in accept.split(","):
        for param in media_range.split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q" and not _QVALUE.fullmatch(value.strip()):
                raise ValueError(f"q={value.strip()!r} in {media_range.strip()!r} is not a number "
                                 "from 0 to 1 with at most three decimals")
