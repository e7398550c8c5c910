"""bench/report.py: the benchmark's table and the throughput bars it checks a run against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report import render, save, targets


def row(op: str, connections: int, rps: float, p50_ms: float, p99_ms: float,
        statuses: dict[str, int] | None = None, socket_errors: int = 0) -> dict[str, Any]:
    return {"op": op, "connections": connections, "rps": rps, "p50_us": p50_ms * 1000,
            "p99_us": p99_ms * 1000, "statuses": statuses or {"200": int(rps)},
            "socket_errors": socket_errors, "peak_rss_mib": 300.0}


INFO = {"cpu": "test cpu", "cores": 2, "os": "linux", "torch": "2", "workers": 1,
        "trainings_running": 0}
LIMITS = {"torch_threads": 1, "batch": 32, "denoise": 2000.0, "denoise_batch1": 900.0,
          "encode": 1800.0, "sample": 50.0}


def test_the_bars_are_met_or_not_by_this_runs_ratios() -> None:
    met = [row("bare_upload", 32, 1000, 20, 40), row("bare", 32, 1100, 18, 30),
           row("denoise", 32, 900, 30, 60), row("bare_upload", 1, 500, 1.0, 2.0),
           row("denoise", 1, 300, 2.5, 4.0)]
    lines = targets(met)
    assert "- denoise at 32 connections: 0.90 × bare_upload (target ≥ 0.85): met" in lines
    assert "- denoise at 32 connections: 0.82 × bare" in lines  # no bar against bare
    assert any(line.startswith("- denoise p50 at 1 connection: 2.5 ×") and line.endswith(": met")
               for line in lines)
    slow = [row("bare_upload", 32, 1000, 20, 40), row("denoise", 32, 800, 30, 60),
            row("bare_upload", 1, 500, 1.0, 2.0), row("denoise", 1, 300, 3.5, 4.0)]
    assert sum(line.endswith("NOT met") for line in targets(slow)) == 2


def test_128_connections_fail_the_bar_on_a_status_other_than_200_or_503() -> None:
    shed = [row("denoise", 128, 900, 100, 400, {"200": 800, "503": 100})]
    assert targets(shed)[-1].endswith(": met")
    broken = [row("denoise", 128, 900, 100, 400, {"200": 800, "500": 1}, socket_errors=2)]
    last = targets(broken)[-1]
    assert "{'500': 1}" in last and "socket errors: 2" in last and last.endswith("NOT met")


def test_the_table_compares_like_work_only_and_lists_non_200_answers() -> None:
    results = [row("bare_upload", 32, 1000, 20, 40), row("bare", 32, 800, 18, 30),
               row("denoise", 32, 900, 30, 60, {"200": 890, "503": 10}),
               row("sample", 32, 40, 500, 900)]
    table = render(results, LIMITS, INFO).splitlines()
    denoise = next(line for line in table if line.startswith("| denoise | 32 |"))
    assert "| 0.90 | 1.12 | 0.45 | 503: 10 |" in denoise  # vs bare_upload, vs bare, vs in-process
    sample = next(line for line in table if line.startswith("| sample | 32 |"))
    assert "| - | - | 0.80 | - |" in sample  # other work than the bare endpoints': no ratio


def test_save_writes_the_table_and_the_raw_rows_side_by_side(tmp_path: Path) -> None:
    rows = [row("denoise", 1, 300, 2.5, 4.0)]
    markdown = save(tmp_path / "results", "run", "| table |", rows)
    assert markdown.read_text() == "| table |\n" and markdown.name.endswith("-run.md")
    assert json.loads(markdown.with_suffix(".json").read_text()) == rows
