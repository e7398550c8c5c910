"""``python -m app``: validate settings and checkpoints, then serve with uvicorn.

Any startup problem (a bad setting, a missing or corrupt checkpoint) prints one line naming it and
exits non-zero before the server starts.
"""

from __future__ import annotations

import sys

import uvicorn
from pydantic import ValidationError

from app.registry import StartupError, preflight
from app.settings import Settings
from model.checkpoint import CheckpointError


def _settings_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        parts.append(f"AESERVE_{field.upper()}: {err['msg']}")
    return "aeserve: invalid setting: " + "; ".join(parts)


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(_settings_error(exc), file=sys.stderr)
        return 2
    try:
        names = preflight(settings)
    except (CheckpointError, StartupError) as exc:
        print(f"aeserve: cannot start: {exc}", file=sys.stderr)
        return 1
    print(f"aeserve: serving {', '.join(names)} from {settings.checkpoint_dir}", file=sys.stderr)
    uvicorn.run(
        "app.factory:build",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        # uvicorn logs each request at info; above that level it would still format every line
        access_log=settings.log_level in ("info", "debug", "trace"),
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
