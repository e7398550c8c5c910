"""``python -m app``: ``--help`` lists the settings and loads nothing; mistakes are one line; a
SIGTERM before the server starts ends the process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def run_app(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m app`` on port 0, the system's pick (it binds before it reads the checkpoints: a
    run that stops at them must not depend on port 8000, or a port picked beforehand, being free)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AESERVE_")}
    env = {**clean, "AESERVE_PORT": "0", **env}
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_help_lists_every_setting_with_default_and_meaning() -> None:
    result = run_app("--help")
    assert result.returncode == 0, result.stderr
    for name, field in Settings.model_fields.items():
        line = next(x for x in result.stdout.splitlines()
                    if x.strip().startswith(f"AESERVE_{name.upper()} "))
        assert field.description and field.description in line
    assert "AESERVE_MAX_WORK                 8.0" in result.stdout
    assert "Traceback" not in result.stderr


def test_help_loads_nothing() -> None:
    """No torch, no model, no server: the help comes before any of them is imported."""
    code = ("import runpy, sys\nsys.argv = ['app', '--help']\n"
            "try:\n    runpy.run_module('app', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert e.code == 0\nprint(sorted(m for m in ('torch', 'uvicorn', 'app.main') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_bad_setting_is_one_line_and_exit_2() -> None:
    result = run_app(AESERVE_MAX_WORK="lots")
    assert result.returncode == 2
    assert result.stderr.strip() == ("aeserve: invalid setting: AESERVE_MAX_WORK: Input should be a "
                                     "valid number, unable to parse string as a number")


def test_a_rule_between_settings_names_the_variables() -> None:
    result = run_app(AESERVE_MAX_WORK="40")
    assert result.returncode == 2
    assert result.stderr.strip() == ("aeserve: invalid setting: AESERVE_MAX_WORK (40) must not exceed "
                                     "AESERVE_QUEUE_WORK (32): a request that big could never be queued")


@pytest.mark.parametrize("name", ["AESERVE_LOG_FORMAT", "aeserve_log_format"])  # read in any case
def test_a_bad_setting_is_one_json_record_when_json_logs_are_asked_for(name: str) -> None:
    """The log format is itself a setting, but it is read on its own first: a collector parsing
    JSON lines gets the one stop it most needs to see as a record, not a line it cannot parse."""
    result = run_app(**{name: "json"}, AESERVE_MAX_WORK="lots")
    assert result.returncode == 2
    record = json.loads(result.stderr)  # one line, one object
    assert record["level"] == "CRITICAL" and record["logger"] == "aeserve"
    assert record["message"] == ("cannot start: invalid setting: AESERVE_MAX_WORK: Input should be "
                                 "a valid number, unable to parse string as a number")


def test_a_missing_checkpoint_dir_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = run_app(AESERVE_CHECKPOINT_DIR=str(tmp_path / "nope"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "does not exist (AESERVE_CHECKPOINT_DIR)" in result.stderr


def test_the_startup_lines_are_in_the_log_format(tmp_path: Path) -> None:
    """JSON logs are JSON from the first line: a collector parsing them loses nothing."""
    result = run_app(AESERVE_CHECKPOINT_DIR=str(tmp_path / "nope"), AESERVE_LOG_FORMAT="json")
    assert result.returncode == 1
    record = json.loads(result.stderr)  # one line, one object
    assert record["level"] == "CRITICAL" and record["logger"] == "aeserve"
    assert record["message"].startswith("cannot start: ") and "does not exist" in record["message"]


def test_a_failed_start_is_said_at_the_quietest_log_level(tmp_path: Path) -> None:
    result = run_app(AESERVE_CHECKPOINT_DIR=str(tmp_path / "nope"), AESERVE_LOG_LEVEL="critical")
    assert result.returncode == 1 and "cannot start: " in result.stderr


def test_a_device_this_machine_lacks_is_one_line_and_exit_1() -> None:
    import torch

    device = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU: none on a CPU machine
    result = run_app(AESERVE_DEVICE=device)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"AESERVE_DEVICE={device}: torch sees" in result.stderr


def test_an_unknown_flag_is_refused_without_starting() -> None:
    result = run_app("--port", "1")
    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr


def test_an_unknown_flag_is_one_json_record_when_json_logs_are_asked_for() -> None:
    result = run_app("--port", "1", AESERVE_LOG_FORMAT="json")
    assert result.returncode == 2
    record = json.loads(result.stderr)
    assert record["level"] == "CRITICAL"
    assert record["message"] == ("cannot start: unrecognized arguments: --port 1 "
                                 "(usage: python -m app [-h])")


def test_a_misspelt_setting_is_named_with_the_closest_one_before_the_start(tmp_path: Path) -> None:
    """A typo would otherwise leave the default in force without a word; the client's own
    variable is not warned about."""
    result = run_app(AESERVE_MAX_BATCH="4", AESERVE_URL="http://x", AESERVE_LOG_FORMAT="json",
                     AESERVE_CHECKPOINT_DIR=str(tmp_path / "nope"))
    assert result.returncode == 1
    warning, failure = (json.loads(line) for line in result.stderr.splitlines())
    assert warning["level"] == "WARNING"
    assert warning["message"] == ("AESERVE_MAX_BATCH is not a setting and is ignored; "
                                  "did you mean AESERVE_MAX_BATCH_SIZE?")
    assert failure["message"].startswith("cannot start: ")


def test_sigterm_before_the_server_starts_ends_the_process_at_once() -> None:
    """The first process of a container ignores a signal it has no handler for: without one,
    ``docker stop`` during the checkpoint checks would wait out its grace period. (What the
    handler does, in a real process: test___main___startup_signals.py.)"""
    from app.__main__ import main
    from app.stopping import stop_while_starting

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with pytest.raises(SystemExit):  # --help: main has put its handler in place by then
            main(["--help"])
        assert signal.getsignal(signal.SIGTERM) is stop_while_starting
        assert signal.getsignal(signal.SIGINT) is stop_while_starting
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
