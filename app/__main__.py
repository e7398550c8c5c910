"""``python -m app``: validate settings and checkpoints, then serve (``--help`` lists the settings).

Any startup problem (a bad setting, a missing or corrupt checkpoint) prints one line naming it and
exits non-zero before the server starts. Once the settings are read, that line and the rest of the
log are in ``AESERVE_LOG_FORMAT`` (JSON lines: every line, from the first).
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import signal
import sys
from typing import TYPE_CHECKING

from app.stopping import STOP_SIGNALS, stop_while_starting

if TYPE_CHECKING:
    from pydantic import ValidationError


def _settings_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        if err["type"] == "default_factory_not_called":  # a default that needs a failed setting
            continue
        field = ".".join(str(p) for p in err["loc"])  # empty: a rule between several settings
        # a validator's own ValueError, without pydantic's "Value error, " in front
        msg = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
        parts.append(f"AESERVE_{field.upper()}: {msg}" if field else msg)
    return "aeserve: invalid setting: " + "; ".join(parts)


def _parser() -> argparse.ArgumentParser:
    from app.settings import describe_settings

    return argparse.ArgumentParser(
        prog="python -m app",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the checkpoints in AESERVE_CHECKPOINT_DIR over HTTP. Every setting is "
                    "an environment variable:",
        epilog=describe_settings(),
    )


def main(argv: list[str] | None = None) -> int:
    # first, before any import that takes time (pydantic, torch: seconds); this module imports
    # only the standard library and app.stopping, which imports only that too.
    # ``app.server.Server`` puts its own in place later, which does the same until it serves
    for sig in STOP_SIGNALS:
        signal.signal(sig, stop_while_starting)
    _parser().parse_args(argv)  # --help prints the settings and exits before anything loads
    from pydantic import ValidationError

    from app.settings import Settings, unknown_names

    try:
        settings = Settings()
    except ValidationError as exc:
        print(_settings_error(exc), file=sys.stderr)
        return 2
    from app.logs import log_config

    # the log's format, before the imports of seconds (torch): a stop meanwhile logs in it too
    logs = log_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(logs)
    log = logging.getLogger("aeserve")
    from app.metrics import prepare_multiprocess
    from app.registry import StartupError, preflight
    from app.server import bind, serve
    from model.checkpoint import CheckpointError

    for line in unknown_names(os.environ):
        log.warning("%s", line)
    try:
        sock = bind(settings)  # before anything loads: a port in use stops the start at once
    except OSError as exc:
        log.critical("cannot start: cannot listen on %s port %d: %s", settings.host,
                     settings.port, exc.strerror or exc)
        return 1
    try:
        names = preflight(settings)
    except (CheckpointError, StartupError) as exc:
        log.critical("cannot start: %s", exc)  # shown at every AESERVE_LOG_LEVEL
        return 1
    log.info("serving %s from %s", ", ".join(names), settings.checkpoint_dir)
    with prepare_multiprocess(settings.workers):
        return serve(settings, logs, sock)


if __name__ == "__main__":
    sys.exit(main())
