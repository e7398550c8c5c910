"""Admission by deadline: a burst of photos that the model cannot finish before their deadline.

    python -m bench.deadline [--baseline REV] [--photos 10] [--side 640] [--timeout 20] [--rounds 3]

A real server (one process, one torch thread) per checkout: this tree and, with ``--baseline``, a
git worktree of REV (say, the commit before admission by deadline), started in turn, round by
round. Each round sends one photo alone (the model learns its pace from it), then ``--photos``
copies of it at once, each its own connection, with ``AESERVE_REQUEST_TIMEOUT_S=--timeout``. Per
request: the status, the error code and the seconds to the answer. Reported per checkout, over all
rounds: how many were answered 200, refused 503 ``overloaded``, or stopped 503 ``timeout``, the
median seconds a client waited for a 200 and for a 503, and the seconds of the burst. Writes the
raw numbers to ``--out``. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.lifecycle import PHOTO, png
from bench.run import ROOT, checkouts, free_port, start


def one(url: str, body: bytes, timeout_s: float) -> dict[str, Any]:
    tick = time.perf_counter()
    response = httpx.post(url, files={"image": ("p.png", body, "image/png")},
                          timeout=timeout_s + 30)
    code = response.json()["error"]["code"] if response.status_code != 200 else "ok"
    return {"status": response.status_code, "code": code, "s": time.perf_counter() - tick,
            "retry_after": response.headers.get("Retry-After")}


def burst(root: Path, body: bytes, photos: int, timeout_s: float) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "AESERVE_PORT": str(port), "AESERVE_TORCH_THREADS": "1",
           "AESERVE_REQUEST_TIMEOUT_S": str(timeout_s), "AESERVE_LOG_LEVEL": "warning",
           "AESERVE_CHECKPOINT_DIR": str(ROOT / "checkpoints"), "PYTHONPATH": str(root)}
    base = f"http://127.0.0.1:{port}"
    proc = start([sys.executable, "-m", "app"], env, f"{base}/readyz", cwd=root)
    try:
        alone = one(base + PHOTO, body, timeout_s)  # the pace comes from this one
        tick = time.perf_counter()
        with ThreadPoolExecutor(photos) as pool:
            answers = list(pool.map(lambda _: one(base + PHOTO, body, timeout_s), range(photos)))
        return {"alone": alone, "answers": answers, "burst_s": time.perf_counter() - tick}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    answers = [a for r in rounds for a in r["answers"]]
    waits = {kind: [a["s"] for a in answers if (a["status"] == 200) == (kind == "200")]
             for kind in ("200", "503")}
    return {
        "requests": len(answers),
        "codes": {c: sum(a["code"] == c for a in answers) for c in sorted({a["code"] for a in answers})},
        "median_wait_s": {k: round(statistics.median(v), 2) if v else None for k, v in waits.items()},
        "burst_s_median": round(statistics.median(r["burst_s"] for r in rounds), 1),
        "alone_s_median": round(statistics.median(r["alone"]["s"] for r in rounds), 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", help="a git revision to compare with (run from a worktree)")
    p.add_argument("--photos", type=int, default=10)
    p.add_argument("--side", type=int, default=640, help="the photo's side (RGB)")
    p.add_argument("--timeout", type=float, default=20.0, help="AESERVE_REQUEST_TIMEOUT_S")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    body = png(args.side, args.side, "RGB", noise=64)
    with checkouts(args.baseline) as trees:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for r in range(args.rounds):  # interleaved: the machine's drift hits both alike
            for name, root in trees.items():
                runs[name].append(burst(root, body, args.photos, args.timeout))
                print(f"round {r + 1} {name}: {summary(runs[name][-1:])}", file=sys.stderr)
    result = {"args": {k: str(v) for k, v in vars(args).items()},
              "summary": {name: summary(r) for name, r in runs.items()}, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / time.strftime("%Y%m%d-%H%M%S-deadline.json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
