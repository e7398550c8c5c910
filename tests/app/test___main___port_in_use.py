"""``python -m app`` on an address it cannot listen on stops at once, before any model loads,
with one line naming the address and status 1, like any other startup problem."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.app.live import ROOT, WAIT_TIMEOUT_S, server_env


def test_a_port_in_use_stops_the_start_before_anything_loads(tiny_checkpoints: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, capture_output=True,
                                text=True, timeout=WAIT_TIMEOUT_S,  # only a hung start waits so long
                                env=server_env(tiny_checkpoints, port, AESERVE_LOG_LEVEL="info"))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # nothing checked, loaded or warmed before it
    assert lines[0].endswith(f"CRITICAL aeserve [-] cannot start: cannot listen on 127.0.0.1 port "
                             f"{port}: Address already in use"), lines[0]
