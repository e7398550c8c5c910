"""Log formats: :func:`log_config` is the logging setup for uvicorn's ``log_config=``: every line
of the ``aeserve`` and ``uvicorn`` loggers carries the request id (``-`` outside a request), as
text or as one JSON object per line.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

from app.request_ids import current_request_id


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` on every record (the current request's id, or ``-``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class QuietProbes(logging.Filter):
    """Drops uvicorn's access line of a probe or scrape that succeeded (``/healthz``, ``/readyz``,
    ``/metrics``): an orchestrator asks every few seconds, tens of thousands of lines a day per
    replica that say nothing. A failed one is kept; at ``debug`` level every one is."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:  # client, method, path, version, status
            path, status = args[2], args[4]
            return not (path in PROBE_PATHS and isinstance(status, int) and status < 400)
        return True


_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "color_message",  # uvicorn's colored copy of the message
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, pid, then any extras.

    uvicorn's access lines also get ``client``, ``method``, ``path`` and ``status`` fields.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "pid": record.process,  # which worker, with several
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _version, status = record.args
            entry.update(client=client, method=method, path=path, status=status)
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
_LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10, "trace": 5}


def log_config(level: str = "info", fmt: Literal["text", "json"] = "text") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn's ``log_config=``.

    The ``aeserve`` and ``uvicorn`` loggers (and their children) write to stderr at ``level``,
    every line with its request id; other libraries' warnings go the same way through the root
    logger. Probes that succeed are left out of the access log above ``debug`` (``QuietProbes``).
    uvicorn still applies its own ``log_level`` and ``access_log`` on top of this.
    """
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be text or json, got {fmt!r}")
    numeric = _LEVELS[level.lower()]
    formatter: dict[str, Any] = (
        {"()": "app.logs.JsonFormatter"} if fmt == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "app.logs.RequestIdFilter"},
                    "quiet_probes": {"()": "app.logs.QuietProbes"}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "aeserve": {"handlers": ["default"], "level": numeric, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": numeric, "propagate": False},
            "uvicorn.error": {"level": numeric},
            "uvicorn.access": {"handlers": ["default"], "level": numeric, "propagate": False,
                               "filters": ["quiet_probes"] if numeric > logging.DEBUG else []},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }
