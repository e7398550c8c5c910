"""The one answer to a stop signal (SIGTERM, SIGINT) before the service serves: log it and end the
process at once with status 128 + the signal's number (143; 130 for Ctrl-C). Standard library
only, so that ``python -m app`` can put it in place before any import that takes time. A start
that fails on its way (a model's batch worker dying while the models load) ends the same way, with
a failed start's status, 1.

Nothing was served, so there is nothing to drain. ``os._exit``, not an exception: one raised in a
signal handler would unwind through whatever runs (an import, left half initialised; a model
loading) or be caught by it (the signal lost). The first process of a container ignores a signal
it has no handler for, so ``docker stop`` or a pod deleted while starting would otherwise wait
for its grace period and kill it."""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType
from typing import NoReturn

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_while_starting(signum: int, frame: FrameType | None = None) -> NoReturn:
    try:
        logging.getLogger("aeserve").warning("stopped by %s while starting: nothing was served",
                                             signal.Signals(signum).name)
    finally:
        os._exit(128 + signum)


def fail_start(reason: str) -> NoReturn:
    try:
        logging.getLogger("aeserve").critical("cannot start: %s", reason)
    finally:
        os._exit(1)
