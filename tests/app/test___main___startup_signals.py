"""A SIGTERM before ``python -m app`` serves ends it at once with status 143 and no traceback,
wherever it lands (an import, the checkpoint checks, uvicorn's start, a model loading); once it
serves, a SIGTERM drains and the exit status is 0. Each test waits for a line of the process's
output (or an import it pauses on), then signals: no timing decides the phase."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.live import ROOT, WAIT_TIMEOUT_S, Output, server_env, start_server, stop_server

STOPPED = "stopped by SIGTERM while starting"

# ``python -m app`` as a container's first process (SIGTERM ignored while nothing handles it),
# paused when it first imports ``module`` (from inside an import under way: the signal lands with
# that import half done). It says so on stdout, and goes on once a line arrives on stdin; the
# signal is handled during that wait, so the pause is where it lands.
PAUSED_AT_IMPORT = """
import importlib.abc, runpy, signal, sys

signal.signal(signal.SIGTERM, signal.SIG_IGN)

module = sys.argv.pop(1)  # not for ``python -m app``'s own arguments

class Pause(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == module:
            sys.meta_path.remove(self)
            print("importing", flush=True)
            sys.stdin.readline()
        return None

sys.meta_path.insert(0, Pause())
runpy.run_module("app", run_name="__main__", alter_sys=True)
"""


# ``python -m app`` where the batch worker of the model loaded first (idle: nothing is served yet)
# dies of a bug when the next model starts loading
DIES_WHILE_STARTING = """
import runpy
from app.registry import Registry

load = Registry.add

async def add(self, served):
    for model in self.models.values():
        for waiter in list(model.batcher._wakeup._waiters):
            waiter.set_exception(RuntimeError("a bug in the batch worker"))
    await load(self, served)

Registry.add = add
runpy.run_module("app", run_name="__main__", alter_sys=True)
"""


def _app(checkpoints: Path, *args: str, stdin: int | None = None,
         **settings: str) -> subprocess.Popen[bytes]:
    env = server_env(checkpoints, 0, AESERVE_LOG_LEVEL="info", **settings)  # port 0: the system's pick
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _ended(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(timeout=WAIT_TIMEOUT_S)  # only a hung process waits this long
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _stopped_at_import(checkpoints: Path, module: str, **settings: str) -> tuple[int, str]:
    """SIGTERM to ``python -m app`` paused at ``module``'s first import: its status and output."""
    proc = _app(checkpoints, "-c", PAUSED_AT_IMPORT, module, stdin=subprocess.PIPE, **settings)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline() == b"importing\n"
        proc.send_signal(signal.SIGTERM)
        proc.stdin.write(b"go on\n")
        proc.stdin.close()
    except BrokenPipeError:  # it stopped before reading the line: as it should
        pass
    finally:
        code = _ended(proc)
    return code, proc.stdout.read().decode(errors="replace")


@pytest.mark.parametrize("module", ["pydantic", "torch.nn", "google.protobuf"])
def test_sigterm_during_an_import_ends_the_process_with_143(
        tiny_checkpoints: Path, tmp_path: Path, module: str) -> None:
    """pydantic: the first third-party import, where the imports of seconds start (a container's
    first process would ignore the signal without the handler installed before it);
    torch.nn: while ``app.registry`` imports torch (before the logs are set up);
    google.protobuf: while the checkpoint checks import onnx (after). An exception raised by the
    handler would unwind through the half-done import (a module left half initialised, a
    traceback at exit) or be caught there (the signal lost)."""
    code, output = _stopped_at_import(tiny_checkpoints, module)
    assert code == 128 + signal.SIGTERM, output
    assert "Traceback" not in output, output
    assert "Started server process" not in output


@pytest.mark.parametrize("module", ["pydantic", "torch.nn"])
def test_a_stop_while_starting_logs_in_the_format_asked_for(tiny_checkpoints: Path,
                                                            module: str) -> None:
    """pydantic: before the settings are read (``AESERVE_LOG_FORMAT`` is read on its own first);
    torch.nn: while ``app.registry`` imports torch, the settings read (the log set up before the
    imports of seconds)."""
    code, output = _stopped_at_import(tiny_checkpoints, module, AESERVE_LOG_FORMAT="json")
    assert code == 128 + signal.SIGTERM, output
    line = json.loads(output.splitlines()[-1])
    assert line["level"] == "WARNING" and line["message"].startswith(STOPPED), output


@pytest.mark.parametrize("gate", [
    "serving mnist-dae",  # the checkpoints are checked; uvicorn is not yet running
    "Started server process",  # uvicorn runs; the app's lifespan has not started
    "Waiting for application startup",  # the lifespan starts loading the models
    "loaded mnist-dae",  # the first model is loaded and warm, the second is loading
])
def test_sigterm_while_starting_ends_the_process_with_143_before_it_serves(
        tiny_checkpoints: Path, tmp_path: Path, gate: str) -> None:
    proc = _app(tiny_checkpoints, "-m", "app")
    watched = Output(proc, tmp_path / "server.log")
    try:
        assert watched.wait_for(gate), watched.text()
        proc.send_signal(signal.SIGTERM)
    finally:
        code = _ended(proc)
    watched.read_rest()
    output = watched.text()
    assert code == 128 + signal.SIGTERM, output
    assert STOPPED in output, output
    assert "Traceback" not in output, output
    # it stopped there: the last model never loaded, the port never opened
    assert "loaded mnist-vae" not in output, output
    assert "Uvicorn running on" not in output, output


def test_sigterm_once_serving_drains_and_exits_0(tiny_checkpoints: Path, tmp_path: Path) -> None:
    server = start_server(tiny_checkpoints, tmp_path / "server.log")  # /readyz has answered 200
    code = stop_server(server)
    output = server.output()
    assert code == 0, output
    assert "draining:" in output and STOPPED not in output, output
    assert "Traceback" not in output, output


def test_a_batch_worker_dying_while_starting_fails_the_start_with_status_1(
        tiny_checkpoints: Path) -> None:
    """Not a stop signal, as it was logged (its drain raised SIGTERM): a failed start. The death
    is handled on the event loop while the next model's warm-up waits on its thread, before
    that model could be loaded."""
    proc = _app(tiny_checkpoints, "-c", DIES_WHILE_STARTING)
    assert proc.stdout is not None
    code = _ended(proc)
    output = proc.stdout.read().decode(errors="replace")
    assert code == 1, output
    assert "cannot start: the batch worker of mnist-dae died while the models load" in output
    assert "RuntimeError: a bug in the batch worker" in output, output  # its error, logged before
    assert STOPPED not in output, output
    assert "loaded mnist-vae" not in output and "Uvicorn running on" not in output, output
