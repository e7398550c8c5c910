"""``python -m app``: validate settings and checkpoints, then serve (``--help`` lists the settings).

Any startup problem (a bad setting, a missing or corrupt checkpoint) prints one line naming it and
exits non-zero before the server starts. With ``AESERVE_LOG_FORMAT=json`` every line is a JSON
object, from the first: that variable is read on its own before the others, so a stop before the
settings are read (a bad setting among them, an unknown argument, a stop signal) is one too.
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import signal
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, NoReturn

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
    return "invalid setting: " + "; ".join(parts)


def _asks_for_json_logs(environ: Mapping[str, str]) -> bool:
    """Whether ``AESERVE_LOG_FORMAT`` is ``json``, read before the settings (whose names are read
    in any case, as here): a stop before they are read can then be a JSON line too."""
    names = {name.upper(): value for name, value in environ.items()}
    return names.get("AESERVE_LOG_FORMAT") == "json"


def _early_stop(reason: str, json_logs: bool) -> None:
    """The one line of a stop before the settings are read (a JSON record when JSON logs were
    asked for), said at every log level."""
    if json_logs:
        logging.getLogger("aeserve").critical("cannot start: %s", reason)
    else:
        print(f"aeserve: {reason}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """``argparse``'s parser, whose refusal of an argument is a JSON record when JSON logs were
    asked for."""

    json_logs = False

    def error(self, message: str) -> NoReturn:
        if not self.json_logs:
            super().error(message)  # usage and message, in text, then exit status 2
        _early_stop(f"{message} ({self.format_usage().strip()})", json_logs=True)
        sys.exit(2)


def _parser(json_logs: bool = False) -> argparse.ArgumentParser:
    from app.settings import describe_settings

    parser = _Parser(
        prog="python -m app",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the checkpoints in AESERVE_CHECKPOINT_DIR over HTTP. Every setting is "
                    "an environment variable:",
        epilog=describe_settings(),
    )
    parser.json_logs = json_logs
    return parser


def main(argv: list[str] | None = None) -> int:
    # first, before any import that takes time (pydantic, torch: seconds); this module imports
    # only the standard library and app.stopping, which imports only that too.
    # ``app.server.Server`` puts its own in place later, which does the same until it serves
    for sig in STOP_SIGNALS:
        signal.signal(sig, stop_while_starting)
    from app.logs import log_config  # quick: the standard library and Starlette's types

    json_logs = _asks_for_json_logs(os.environ)
    if json_logs:  # JSON from the first line; the settings' level replaces this one once read
        logging.config.dictConfig(log_config("info", "json"))
    _parser(json_logs).parse_args(argv)  # --help prints the settings and exits before anything loads
    from pydantic import ValidationError

    from app.settings import Settings, unknown_names

    try:
        settings = Settings()
    except ValidationError as exc:
        _early_stop(_settings_error(exc), json_logs)
        return 2
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
