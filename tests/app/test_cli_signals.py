"""``python -m app`` stops on SIGTERM from its first imports on, even as the first process of a
container, which ignores a signal it has no handler for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 120.0  # the longest the process is waited for: a hang fails the test, it never times it

# ``python -m app`` as a container's first process: SIGTERM ignored while nothing handles it. The
# run pauses when it first imports a third-party module (pydantic: the imports of seconds start
# there), says so on stdout, and goes on once a line arrives on stdin.
AS_PID_1 = """
import importlib.abc, runpy, signal, sys

signal.signal(signal.SIGTERM, signal.SIG_IGN)

class Pause(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "pydantic":
            sys.meta_path.remove(self)
            print("importing", flush=True)
            sys.stdin.readline()
        return None

sys.meta_path.insert(0, Pause())
runpy.run_module("app", run_name="__main__", alter_sys=True)
"""


def test_sigterm_while_importing_stops_the_process() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESERVE_")}
    env["AESERVE_PORT"] = "not a port"  # a run the signal did not stop ends with status 2 at once
    proc = subprocess.Popen([sys.executable, "-c", AS_PID_1], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "importing\n"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate("go on\n", timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
