"""The benchmark's Markdown: machine, limits, and one row per operation and connection count."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch


def machine(workers: int) -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    training = subprocess.run(["pgrep", "-fc", "model.train"], capture_output=True, text=True,
                              check=False).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "workers": workers,
        "trainings_running": int(training or 0),
    }


BASES = ("bare_upload", "bare")  # the UploadFile endpoint (the bar), the request.form() one


def render(results: list[dict[str, Any]], limits: dict[str, float], info: dict[str, Any]) -> str:
    base = {op: {r["connections"]: r for r in results if r["op"] == op} for op in BASES}
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['os']}, torch {info['torch']}, "
        f"{info['workers']} uvicorn worker(s); model training processes running meanwhile: "
        f"{info['trainings_running']}.",
        "",
        f"In-process limit (device {limits.get('device', 'cpu')}, "
        f"runtime {limits.get('runtime', 'torch')}, torch threads "
        f"{limits['torch_threads']}, batch {limits['batch']}): "
        f"denoise {limits['denoise']:.0f} img/s (batch 1: {limits['denoise_batch1']:.0f}/s), "
        f"encode {limits['encode']:.0f} img/s, sample n=16 {limits['sample']:.0f} req/s.",
        "",
        "bare_upload: `async def` with an `UploadFile` parameter; bare: `async def` reading "
        "`request.form()` itself. Both decode and re-encode the PNG, no model.",
        "",
        "| op | conns | req/s | p50 ms | p99 ms | p99/p50 | vs bare_upload | vs bare | vs in-process "
        "| non-200 | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        p50, p99 = r["p50_us"] / 1000, r["p99_us"] / 1000
        others = {k: v for k, v in r["statuses"].items() if k != "200"}
        if r["socket_errors"]:
            others["socket errors"] = r["socket_errors"]
        same_work = r["op"] in ("denoise", "encode")  # the bare endpoints' work: one PNG in and out
        ratios = []
        for op in BASES:
            ref = base[op].get(r["connections"])
            ratios.append(f"{r['rps'] / ref['rps']:.2f}" if same_work and ref else "-")
        limit = limits.get(r["op"])
        vs_limit = f"{r['rps'] / limit:.2f}" if limit else "-"
        non_200 = ", ".join(f"{k}: {v}" for k, v in others.items()) or "-"
        lines.append(
            f"| {r['op']} | {r['connections']} | {r['rps']:.0f} | {p50:.2f} | {p99:.2f} | "
            f"{p99 / p50 if p50 else 0:.1f} | {ratios[0]} | {ratios[1]} | {vs_limit} | "
            f"{non_200} | {r['peak_rss_mib']:.0f} |"
        )
    lines += ["", *targets(results)]
    return "\n".join(lines)


def targets(results: list[dict[str, Any]]) -> list[str]:
    """The throughput bar, checked against this run."""
    by = {(r["op"], r["connections"]): r for r in results}
    out = []
    d32 = by.get(("denoise", 32))
    for op in BASES:
        b32 = by.get((op, 32))
        if d32 is None or b32 is None:
            continue
        ratio = d32["rps"] / b32["rps"]
        mark = f" (target ≥ 0.85): {'met' if ratio >= 0.85 else 'NOT met'}" if op == BASES[0] else ""
        out.append(f"- denoise at 32 connections: {ratio:.2f} × {op}{mark}")
        if "rounds_rps" in d32 and "rounds_rps" in b32:  # side by side, round by round
            pairs = zip(d32["rounds_rps"], b32["rounds_rps"], strict=False)
            out.append(f"  - rounds (denoise / {op} req/s): " + ", ".join(
                f"{d:.0f} / {b:.0f} = {d / b:.2f}" for d, b in pairs))
    d1, b1 = by.get(("denoise", 1)), by.get((BASES[0], 1))
    if d1 is not None and b1 is not None and b1["p50_us"]:
        ratio = d1["p50_us"] / b1["p50_us"]
        out.append(f"- denoise p50 at 1 connection: {ratio:.1f} × {BASES[0]}'s "
                   f"({d1['p50_us'] / 1000:.2f} vs {b1['p50_us'] / 1000:.2f} ms; target ≤ 3): "
                   f"{'met' if ratio <= 3 else 'NOT met'}")
    if d32 is not None and d32["p50_us"]:
        out.append(f"- denoise p99/p50 at 32 connections: {d32['p99_us'] / d32['p50_us']:.1f}")
    at128 = [r for r in results if r["connections"] == 128 and r["op"] not in BASES]
    if at128:
        bad = {k: v for r in at128 for k, v in r["statuses"].items() if k not in ("200", "503")}
        errors = sum(r["socket_errors"] for r in at128)
        rss = max(r["peak_rss_mib"] for r in at128)
        ok = not bad and not errors
        out.append(f"- 128 connections: statuses other than 200/503: {bad or 'none'}, socket errors: "
                   f"{errors}, peak RSS {rss:.0f} MiB: {'met' if ok else 'NOT met'}")
    return out


def save(out: Path, name: str, table: str, rows: Any) -> Path:
    """Write one run's table (``<stamp>-<name>.md``) and raw rows (``.json``) under ``out``; returns
    the Markdown file."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    markdown = stem.with_suffix(".md")
    markdown.write_text(table + "\n")
    return markdown
