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
from typing import TYPE_CHECKING, NoReturn

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


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_before_serving(signum: int, frame: object) -> NoReturn:
    """SIGTERM (or SIGINT) before the server has its own handler (imports, checkpoint checks):
    stop now, with status 128 + the signal's number (143; 130). The first process of a container
    ignores a signal it has no handler for, so ``docker stop`` or a pod deleted while starting
    would otherwise wait for its grace period and kill it. ``os._exit``, not an exception: one
    raised here would unwind through whatever import is running (leaving a module half
    initialised) or be caught by it (the signal lost)."""
    try:
        logging.getLogger("aeserve").warning("stopped by %s while starting: nothing was served",
                                             signal.Signals(signum).name)
    finally:
        os._exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    # first, before any import that takes time (pydantic, torch: seconds); this module imports
    # only the standard library. ``app.server.Server`` puts its own in place later, which does the
    # same until the service serves
    for sig in STOP_SIGNALS:
        signal.signal(sig, stop_before_serving)
    _parser().parse_args(argv)  # --help prints the settings and exits before anything loads
    from pydantic import ValidationError

    from app.settings import Settings, unknown_names

    try:
        settings = Settings()
    except ValidationError as exc:
        print(_settings_error(exc), file=sys.stderr)
        return 2
    from app.metrics import prepare_multiprocess
    from app.observability import log_config
    from app.registry import StartupError, preflight
    from app.server import bind, serve
    from model.checkpoint import CheckpointError

    logs = log_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(logs)
    log = logging.getLogger("aeserve")
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
