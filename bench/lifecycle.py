"""The request lifecycle under hostile clients, overload and restarts, measured on a real server.

    python -m bench.lifecycle [--checkpoints checkpoints] [--out bench/results]

1. Refusals before work: a 1-pixel-high strip and 64 images claiming 4096x4096 RGBA each, to the
   photo model: status, code and answer time.
2. Peak memory: the worst inputs within the limits at once (the largest photos the work cap admits,
   gray and colour, and 64-image DAE requests), with enough of them to fill the queue's work budget;
   the server's peak RSS (VmHWM), and its RSS once the burst is answered. ``--bursts N`` sends the
   burst N times in turn (what the allocator keeps between bursts shows there).
3. Overload: ``wrk`` on 28x28 denoise at 32 and at 512 connections; goodput (200s per second) at 512
   as a fraction of 32.
4. SIGTERM: photo requests in flight, SIGTERM; answered / 503 / lost, and the time from SIGTERM to
   exit, against ``AESERVE_DRAIN_TIMEOUT_S``.
5. Corrupt uploads: ``--corrupt`` truncated and damaged 8-bit PNGs, pipelined on one connection
   (every one a 415), then a good one; whether the server is still up, and its RSS before and after.

``--scenarios`` picks some (default: all). Writes the raw numbers to ``--out``. Needs ``wrk`` for
the overload. Not part of CI.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench.run import ROOT, free_port, start, wrk
from bench.workload import digit_png, multipart, snapshot_checkpoints

PHOTO = "/v1/models/photo-denoiser/denoise"
SCENARIOS = ("refusals", "memory", "overload", "corrupt", "sigterm")


def png(width: int, height: int, mode: str, seed: int = 0, noise: int = 256) -> bytes:
    """Random pixels; with ``noise`` < 256, a gradient plus that much noise (a smaller file)."""
    rng = np.random.default_rng(seed)
    bands = len(mode)
    arr = rng.integers(0, noise, size=(height, width, bands), dtype=np.uint8)
    if noise < 256:
        ramp = (np.arange(width)[None, :, None] * 200 // max(width, 1)).astype(np.uint8)
        arr = arr + ramp
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if bands == 1 else arr, mode).save(buf, format="PNG",
                                                                   compress_level=1)
    return buf.getvalue()


def claiming(width: int, height: int, color_type: int = 0) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (color type 6: RGBA)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def status_kib(pid: int, field: str) -> int | None:
    """A memory figure (``VmHWM``, ``VmRSS``) of /proc/PID/status in KiB; None once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def vm_hwm_mib(pid: int) -> float:
    return (status_kib(pid, "VmHWM") or 0) / 1024


def vm_rss_mib(pid: int) -> float | None:
    rss = status_kib(pid, "VmRSS")
    return None if rss is None else round(rss / 1024, 1)


def timed_post(http: httpx.Client, url: str, files: list[tuple[str, Any]]) -> dict[str, Any]:
    start_t = time.perf_counter()
    r = http.post(url, files=files)
    out: dict[str, Any] = {"status": r.status_code, "seconds": round(time.perf_counter() - start_t, 3)}
    if r.headers.get("content-type", "").startswith("application/json"):
        out["code"] = r.json().get("error", {}).get("code")
    return out


def refusals(base: str) -> dict[str, Any]:
    with httpx.Client(base_url=base, timeout=120) as http:
        strip = claiming(16_777_216, 1)
        many = [("image", (f"{i}.png", claiming(4096, 4096, 6), "image/png")) for i in range(64)]
        return {
            "thin_strip_1x16777216": {"bytes": len(strip), **timed_post(
                http, PHOTO, [("image", ("s.png", strip, "image/png"))])},
            "thin_strip_1x4000000_real": timed_post(
                http, PHOTO, [("image", ("s.png", png(4_000_000, 1, "L"), "image/png"))]),
            "many_64x4096x4096_rgba": {"bytes": sum(len(f[1][1]) for f in many),
                                       **timed_post(http, PHOTO, many)},
        }


def worst_inputs(base: str, pid: int) -> dict[str, Any]:
    """The largest admitted inputs, concurrently, until the work budget refuses more."""
    # the largest within AESERVE_MAX_WORK (8 Mpx-eq.) with the shipped photo model: gray 1700^2
    # costs 7.0, RGBA 950^2 (five colour passes) about 7.5; 64 RGBA digits of 340^2, 7.6
    gray, colour = png(1700, 1700, "L"), png(950, 950, "RGBA", 1)
    digits = [("image", (f"{i}.png", png(340, 340, "RGBA", i, noise=8), "image/png"))
              for i in range(64)]
    jobs: list[tuple[str, list[tuple[str, Any]]]] = []
    for i in range(6):
        jobs.append((PHOTO, [("image", ("g.png", gray, "image/png"))]))
        jobs.append((PHOTO, [("image", ("c.png", colour, "image/png"))]))
        jobs.append((f"/v1/models/mnist-dae/denoise?resize=true&i={i}", digits))
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def send(url: str, files: list[tuple[str, Any]]) -> None:
        with httpx.Client(base_url=base, timeout=600) as http:
            out = timed_post(http, url, files)
        with lock:
            results.append({"url": url.split("?")[0], **out})

    before = vm_hwm_mib(pid)
    threads = [threading.Thread(target=send, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses: dict[str, int] = {}
    for r in results:
        key = f"{r['status']} {r.get('code') or ''}".strip()
        statuses[key] = statuses.get(key, 0) + 1
    return {"requests": len(jobs), "statuses": statuses, "rss_before_mib": round(before),
            "peak_rss_mib": round(vm_hwm_mib(pid)), "rss_after_mib": vm_rss_mib(pid)}


def overload(base: str, work: Path, pid: int, seconds: float) -> dict[str, Any]:
    ctype, body = multipart(digit_png())
    (work / "digit.multipart").write_bytes(body)
    url = f"{base}/v1/models/mnist-dae/denoise"
    out: dict[str, list[dict[str, Any]]] = {}
    for conns in (32, 512, 32, 512):
        r = wrk(url, work / "digit.multipart", ctype, conns, seconds, pid)
        ok = r["statuses"].get("200", 0) / (r["duration_us"] / 1e6)
        out.setdefault(str(conns), []).append({"goodput": round(ok), "statuses": r["statuses"],
                                               "socket_errors": r["socket_errors"],
                                               "p99_ms": r["p99_us"] / 1000})
    g32 = np.median([x["goodput"] for x in out["32"]])
    g512 = np.median([x["goodput"] for x in out["512"]])
    return {"rounds": out, "goodput_32": float(g32), "goodput_512": float(g512),
            "ratio": round(float(g512 / g32), 3)}


def sigterm(checkpoints: Path, env: dict[str, str], in_flight: int, drain_s: float) -> dict[str, Any]:
    port = free_port()
    env = {**env, "AESERVE_PORT": str(port), "AESERVE_DRAIN_TIMEOUT_S": str(drain_s)}
    proc = start([sys.executable, "-m", "app"], env, f"http://127.0.0.1:{port}/readyz")
    base = f"http://127.0.0.1:{port}"
    photo = png(256, 256, "L", 3)  # 0.15 Mpx-eq. each: all of them fit the queue's budget
    answers: list[str] = []
    lock = threading.Lock()
    sent = threading.Semaphore(0)

    def send() -> None:
        try:
            with httpx.Client(base_url=base, timeout=120) as http:
                sent.release()
                r = http.post(PHOTO, files=[("image", ("p.png", photo, "image/png"))])
            if r.status_code == 200:
                kind = "200"
            elif r.headers.get("content-type", "").startswith("application/json"):
                kind = f"{r.status_code} {r.json()['error']['code']}"
            else:
                kind = f"{r.status_code} not JSON"
        except httpx.HTTPError as exc:
            kind = f"lost ({type(exc).__name__})"
        with lock:
            answers.append(kind)

    threads = [threading.Thread(target=send) for _ in range(in_flight)]
    for t in threads:
        t.start()
    for _ in threads:
        sent.acquire()
    time.sleep(1.0)  # let the requests reach the server and queue up
    term = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=drain_s + 60)
    exit_s = time.monotonic() - term
    for t in threads:
        t.join()
    counts: dict[str, int] = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    return {"in_flight": in_flight, "drain_timeout_s": drain_s, "answers": counts,
            "exit_after_sigterm_s": round(exit_s, 2), "returncode": proc.returncode}


def corrupt_uploads(port: int, pid: int, n: int, batch: int = 50) -> dict[str, Any]:
    """``n`` corrupt PNGs (rounded up to whole batches) on one keep-alive connection, ``batch``
    requests written at a time."""
    good = digit_png(0)
    broken = [good[: len(good) // 2], good[:-20] + bytes(20)]  # cut short; pixels and CRCs zeroed
    head = (b"POST /v1/models/mnist-dae/denoise HTTP/1.1\r\nHost: bench\r\n"
            b"Content-Type: image/png\r\nContent-Length: %d\r\n\r\n")
    burst = b"".join(head % len(b) + b for b in broken) * (batch // len(broken))
    rss_before = vm_rss_mib(pid)
    answers: dict[str, int] = {}
    sent, start_s, gone = 0, time.perf_counter(), False
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        reader = conn.makefile("rb")
        while sent < n and not gone:
            try:
                conn.sendall(burst)
            except OSError:
                break
            for _ in range(batch // len(broken) * len(broken)):
                status_line = reader.readline().split()
                if len(status_line) < 2:  # the connection closed: the server is gone
                    gone = True
                    break
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                reader.read(length)
                status = status_line[1].decode()
                answers[status] = answers.get(status, 0) + 1
                sent += 1
    seconds = time.perf_counter() - start_s
    try:
        alive: int | str = httpx.post(f"http://127.0.0.1:{port}/v1/models/mnist-dae/denoise",
                                      files=[("image", ("d.png", good, "image/png"))],
                                      timeout=30).status_code
    except httpx.TransportError as exc:
        alive = f"no answer ({type(exc).__name__})"
    rss_after = vm_rss_mib(pid)
    return {"requests": sent, "answers": answers, "seconds": round(seconds, 1),
            "good_upload_after": alive, "rss_mib_before": rss_before, "rss_mib_after": rss_after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk round")
    parser.add_argument("--in-flight", type=int, default=29)
    parser.add_argument("--drain", type=float, default=10.0)
    parser.add_argument("--corrupt", type=int, default=150_000, help="corrupt PNGs to send")
    parser.add_argument("--bursts", type=int, default=1,
                        help="times the memory scenario's burst is sent, one after the other")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    scenarios = set(args.scenarios.split(","))
    if scenarios - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(scenarios - set(SCENARIOS))}; known: {SCENARIOS}")
    work = Path(tempfile.mkdtemp(prefix="aeserve-lifecycle-"))
    snapshot = snapshot_checkpoints(args.checkpoints, work / "checkpoints")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESERVE_")}
    env.update(AESERVE_CHECKPOINT_DIR=str(snapshot), AESERVE_LOG_LEVEL="warning")
    report: dict[str, Any] = {}
    port = free_port()
    proc = start([sys.executable, "-m", "app"], {**env, "AESERVE_PORT": str(port)},
                 f"http://127.0.0.1:{port}/readyz")
    base = f"http://127.0.0.1:{port}"
    try:
        if "refusals" in scenarios:
            print("refusals ...", file=sys.stderr)
            report["refusals"] = refusals(base)
        if "memory" in scenarios:
            print("worst inputs ...", file=sys.stderr)
            report["memory"] = [worst_inputs(base, proc.pid) for _ in range(args.bursts)]
        if "overload" in scenarios:
            print("overload ...", file=sys.stderr)
            report["overload"] = overload(base, work, proc.pid, args.duration)
        if "corrupt" in scenarios:
            print("corrupt uploads ...", file=sys.stderr)
            report["corrupt"] = corrupt_uploads(port, proc.pid, args.corrupt)
            report["corrupt"]["server_exit_status"] = proc.poll()  # None: still running
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    if "sigterm" in scenarios:
        print("sigterm ...", file=sys.stderr)
        report["sigterm"] = sigterm(snapshot, env, args.in_flight, args.drain)
    text = json.dumps(report, indent=2)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"{stamp}-lifecycle.json").write_text(text + "\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
