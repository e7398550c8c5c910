"""With several workers (uvicorn's supervisor), a SIGTERM while a worker loads its models ends that
worker at once with status 143 and no traceback, its models not loaded, whether the signal is sent
to the worker or to the supervisor; a supervisor none of whose workers served ends with 143 too.

Each worker pauses while it loads its first model (when it first imports ``onnx``, to build the
model's ONNX Runtime graphs), says so with its pid, and waits there until a signal is handled; a
worker that goes on loading after it would log ``loaded``. No timing decides the phase."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.live import ROOT, WAIT_TIMEOUT_S, Output, server_env

STOPPED = "stopped by SIGTERM while starting"

# sitecustomize.py for the server's processes: only the supervisor's workers (spawned) pause
PAUSE_WORKERS_LOADING = """
import os, signal, sys

if "--multiprocessing-fork" in sys.argv:
    class Pause:
        def find_spec(self, name, path, target=None):
            if name == "onnx":
                sys.meta_path.remove(self)
                print(f"worker {os.getpid()} loading", flush=True)
                signal.pause()
            return None

    sys.meta_path.insert(0, Pause())
"""
PAUSED = re.compile(r"^worker (\d+) loading$", re.MULTILINE)


@pytest.fixture
def supervisor(tiny_checkpoints: Path, tmp_path: Path) -> Output:
    """``python -m app`` with two workers, both paused while they load their first model."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(PAUSE_WORKERS_LOADING)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    env = server_env(tiny_checkpoints, 0, AESERVE_LOG_LEVEL="info", AESERVE_WORKERS="2",
                     AESERVE_RUNTIME="onnxruntime", PYTHONPATH=path)
    proc = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watched = Output(proc, tmp_path / "server.log")
    try:
        assert watched.wait_for(" loading\n", count=2), watched.text()
    except BaseException:
        _ended(watched)
        raise
    return watched


def _ended(watched: Output) -> str:
    """The supervisor's exit status, once it has exited, and all it wrote."""
    proc = watched.proc
    try:
        code = proc.wait(timeout=WAIT_TIMEOUT_S)  # only a hung process waits this long
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    watched.read_rest()
    return f"{code}\n{watched.text()}"


def test_sigterm_to_the_supervisor_while_its_workers_load_ends_them_and_it_with_143(
        supervisor: Output) -> None:
    supervisor.proc.send_signal(signal.SIGTERM)
    code, output = _ended(supervisor).split("\n", 1)
    assert code == str(128 + signal.SIGTERM), output
    assert output.count(STOPPED) == 2, output
    assert "Traceback" not in output, output
    assert "loaded mnist-" not in output, output
    assert "Application startup complete" not in output, output


def test_sigterm_to_a_worker_while_it_loads_ends_it_at_once(supervisor: Output) -> None:
    worker = int(PAUSED.findall(supervisor.text())[0])
    os.kill(worker, signal.SIGTERM)
    gone = supervisor.wait_for(f"Child process [{worker}] died")  # and the supervisor starts another
    text = supervisor.text()  # before the other worker is stopped: what the signal alone did
    supervisor.proc.send_signal(signal.SIGTERM)
    code, output = _ended(supervisor).split("\n", 1)
    assert gone, output
    assert text.count(STOPPED) == 1, output
    assert "loaded mnist-" not in text, output
    assert "Traceback" not in output, output
    assert code == str(128 + signal.SIGTERM), output  # no worker served
