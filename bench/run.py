"""Drive the running service with wrk and compare it with its two limits.

    python -m bench.run [--checkpoints checkpoints] [--duration 10] [--repeats 3] [--workers 1]

1. In-process limit: the model alone, batches of ``AESERVE_MAX_BATCH_SIZE``, same torch threads.
2. Bare limit: ``bench.bare``, a FastAPI endpoint that decodes and re-encodes the same 28x28 PNG.
3. The service (``python -m app`` on a snapshot of the checkpoints): denoise (28x28 PNG), encode
   and sample (n = 16) at 1, 8, 32 and 128 connections, with the resident memory sampled. Per
   connection count the operations run ``--repeats`` rounds, interleaved, and each keeps its round
   with the median throughput: a ratio then compares numbers taken seconds apart, not minutes.

Prints a Markdown table and writes it with the raw numbers to ``bench/results/``. Needs ``wrk``
(``apt-get install -y wrk``). Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.limits import in_process_limits
from bench.report import machine, render
from bench.workload import digit_png, multipart

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "bench" / "post.lua"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def checkouts(baseline: str | None) -> Iterator[dict[str, Path]]:
    """``{"this tree": ROOT}``, and with ``baseline`` (a git revision) a worktree of it under
    ``"baseline <short hash>"``, removed on the way out: the trees a comparison starts servers in."""
    trees = {"this tree": ROOT}
    if baseline is None:
        yield trees
        return
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree),
                        baseline], check=True, capture_output=True)
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", baseline],
                                check=True, capture_output=True, text=True).stdout.strip()
        try:
            yield {**trees, f"baseline {commit}": worktree}
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                           check=False)


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children (uvicorn workers), MiB."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def start(cmd: list[str], env: dict[str, str], ready_url: str,
          cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, cwd=cwd, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}")
        try:
            if httpx.get(ready_url, timeout=2).status_code in (200, 405):
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"{' '.join(cmd)}: not ready in 180 s")


def wrk(url: str, body: Path, ctype: str, conns: int, seconds: float, pid: int,
        accept: str = "*/*") -> dict[str, Any]:
    env = {**os.environ, "BENCH_BODY": str(body), "BENCH_CTYPE": ctype, "BENCH_ACCEPT": accept}
    duration = f"-d{max(1, round(seconds))}s"
    cmd = ["wrk", "-t1", f"-c{conns}", duration, "--timeout", "10s", "-s", str(LUA), url]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    peak = rss_mib(pid)
    while proc.poll() is None:
        peak = max(peak, rss_mib(pid))
        time.sleep(0.2)
    out = proc.stdout.read() if proc.stdout else ""
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no result:\n{out}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["peak_rss_mib"] = round(peak, 1)
    return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput (its latencies with it), every round's rps, and the
    statuses, socket errors and peak memory of all rounds together (a 500 in any round shows)."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    statuses: dict[str, int] = {}
    for run in runs:
        for code, n in run["statuses"].items():
            statuses[code] = statuses.get(code, 0) + n
    return {**ordered[(len(ordered) - 1) // 2], "rounds_rps": [round(r["rps"], 1) for r in runs],
            "statuses": statuses, "socket_errors": sum(r["socket_errors"] for r in runs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", default="1,8,32,128")
    parser.add_argument("--ops", default="bare_upload,bare,denoise,encode,sample")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of the operations per connection count; the median is kept")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    conns = [int(c) for c in args.connections.split(",")]
    ops = args.ops.split(",")

    work = Path(tempfile.mkdtemp(prefix="aeserve-bench-"))
    snapshot = work / "checkpoints"  # a stable copy: training may rewrite the originals
    for name in ("mnist-dae", "mnist-vae"):
        shutil.copytree(args.checkpoints / name, snapshot / name, ignore=shutil.ignore_patterns(".*"))
    png = digit_png()
    ctype, body = multipart(png)
    (work / "image.multipart").write_bytes(body)
    (work / "sample.json").write_text(json.dumps({"n": 16, "seed": 0}))

    print("in-process limits ...", file=sys.stderr)
    limits = in_process_limits(snapshot)

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AESERVE_")}
    results: list[dict[str, Any]] = []
    port_app, port_bare = free_port(), free_port()
    env = {**base_env, "AESERVE_CHECKPOINT_DIR": str(snapshot), "AESERVE_PORT": str(port_app),
           "AESERVE_WORKERS": str(args.workers), "AESERVE_LOG_LEVEL": "warning"}
    targets = {
        "bare_upload": (f"http://127.0.0.1:{port_bare}/upload", work / "image.multipart", ctype,
                        "*/*"),
        "bare": (f"http://127.0.0.1:{port_bare}/echo", work / "image.multipart", ctype, "*/*"),
        "denoise": (f"http://127.0.0.1:{port_app}/v1/models/mnist-dae/denoise",
                    work / "image.multipart", ctype, "*/*"),
        "encode": (f"http://127.0.0.1:{port_app}/v1/models/mnist-vae/encode",
                   work / "image.multipart", ctype, "*/*"),
        "sample": (f"http://127.0.0.1:{port_app}/v1/models/mnist-vae/sample",
                   work / "sample.json", "application/json", "image/png"),
    }
    servers = {
        "bare": ([sys.executable, "-m", "bench.bare", "--port", str(port_bare),
                  "--workers", str(args.workers)], base_env, f"http://127.0.0.1:{port_bare}/echo"),
        "app": ([sys.executable, "-m", "app"], env, f"http://127.0.0.1:{port_app}/readyz"),
    }
    # both servers up at once, the operations interleaved per connection count: a ratio compares
    # numbers taken minutes apart at most, which matters on a shared machine
    procs = {}
    try:
        for server in ("bare", "app"):
            if server == "bare" and not any(op.startswith("bare") for op in ops):
                continue
            cmd, server_env, ready = servers[server]
            procs[server] = start(cmd, server_env, ready)
        for c in conns:
            rounds: dict[str, list[dict[str, Any]]] = {op: [] for op in ops}
            for r in range(args.repeats):
                for op in ops:
                    url, payload, content_type, accept = targets[op]
                    pid = procs["bare" if op.startswith("bare") else "app"].pid
                    print(f"{op} c={c} round {r + 1}/{args.repeats} ...", file=sys.stderr)
                    wrk(url, payload, content_type, c, args.warmup, pid, accept)
                    rounds[op].append(wrk(url, payload, content_type, c, args.duration, pid, accept))
            for op, runs in rounds.items():
                results.append({"op": op, "connections": c, **median_run(runs)})
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
    results.sort(key=lambda r: (ops.index(r["op"]), r["connections"]))

    info = machine(args.workers)
    table = render(results, limits, info)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"{stamp}.md").write_text(table + "\n")
    raw = {"machine": info, "limits": limits, "results": results, "python": platform.python_version()}
    (args.out / f"{stamp}.json").write_text(json.dumps(raw, indent=2) + "\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
