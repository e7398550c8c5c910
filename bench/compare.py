"""The service at another commit, side by side with this checkout and the bare endpoints.

    python -m bench.compare --ref 53d0fdc [--connections 1,32] [--duration 5] [--repeats 3]

Checks ``--ref`` out into a temporary git worktree, starts its ``python -m app`` and this
checkout's on the same snapshot of the MNIST checkpoints, plus ``bench.bare``, and drives 28x28
denoise on each with ``wrk``, the targets interleaved round by round. Prints req/s and p50 per
target (medians over the rounds) and writes them to ``--out``. Needs ``wrk`` and git. Not in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import ROOT, free_port, start, wrk
from bench.workload import digit_png, multipart, snapshot_checkpoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", required=True, help="the commit to compare with")
    parser.add_argument("--connections", default="1,32")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aeserve-compare-"))
    tree = work / "ref"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.ref], cwd=ROOT,
                   check=True, capture_output=True)
    try:
        report = compare(args, work, tree)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    text = json.dumps(report, indent=2)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{time.strftime('%Y%m%d-%H%M%S')}-compare.json").write_text(text + "\n")
    shutil.rmtree(work, ignore_errors=True)


def compare(args: argparse.Namespace, work: Path, tree: Path) -> dict[str, Any]:
    snapshot = snapshot_checkpoints(ROOT / "checkpoints", work / "checkpoints", ("mnist-dae", "mnist-vae"))
    ctype, body = multipart(digit_png())
    (work / "body").write_bytes(body)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AESERVE_", "PYTHONPATH"))}
    ports = {name: free_port() for name in ("ref", "head", "bare")}
    app_env = {**base, "AESERVE_CHECKPOINT_DIR": str(snapshot), "AESERVE_LOG_LEVEL": "warning"}
    servers = {
        "ref": ([sys.executable, "-m", "app"], {**app_env, "AESERVE_PORT": str(ports["ref"]),
                                                "PYTHONPATH": str(tree)}, tree),
        "head": ([sys.executable, "-m", "app"], {**app_env, "AESERVE_PORT": str(ports["head"])},
                 ROOT),
        "bare": ([sys.executable, "-m", "bench.bare", "--port", str(ports["bare"])], base, ROOT),
    }
    targets = {
        "bare_upload": ("bare", "/upload"),
        "bare": ("bare", "/echo"),
        f"service@{args.ref}": ("ref", "/v1/models/mnist-dae/denoise"),
        "service@head": ("head", "/v1/models/mnist-dae/denoise"),
    }
    procs = {}
    try:
        for name, (cmd, env, cwd) in servers.items():
            ready = "/upload" if name == "bare" else "/readyz"
            procs[name] = start(cmd, env, f"http://127.0.0.1:{ports[name]}{ready}", cwd)
        results: dict[str, dict[str, Any]] = {}
        for c in (int(x) for x in args.connections.split(",")):
            rounds: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
            for _ in range(args.repeats):
                for target, (server, path) in targets.items():
                    url = f"http://127.0.0.1:{ports[server]}{path}"
                    wrk(url, work / "body", ctype, c, 1, procs[server].pid)
                    rounds[target].append(wrk(url, work / "body", ctype, c, args.duration,
                                              procs[server].pid))
            for target, runs in rounds.items():
                rps = sorted(r["rps"] for r in runs)
                p50 = sorted(r["p50_us"] for r in runs)
                results[f"{target} c={c}"] = {
                    "rps_median": round(rps[len(rps) // 2], 1),
                    "p50_ms_median": round(p50[len(p50) // 2] / 1000, 3),
                    "rounds_rps": [round(r["rps"], 1) for r in runs],
                    "statuses": [r["statuses"] for r in runs],
                }
        return {"ref": args.ref, "results": results}
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
