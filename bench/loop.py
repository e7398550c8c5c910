"""Event-loop CPU per request, in-process: the service's 28x28 denoise against the bare endpoints.

    python -m bench.loop [--requests 2000] [--concurrency 32] [--rounds 7]

Both apps (``app.main.create_app`` on a snapshot of the MNIST checkpoints, and ``bench.bare``) run
in this process on one uvloop event loop and are called through ASGI directly: no sockets, no
server, no load generator competing for the CPU. For each app, ``--concurrency`` tasks send
``--requests`` requests; the figure is the event-loop thread's CPU time per request
(``time.thread_time``; the model runs on its own thread and is not counted). The apps alternate
round by round; each reports its median round, and its least (other work on the machine only
ever adds to a round's time, so the least is the least disturbed). With no load generator sharing
the cores, this is a steadier measure of the request path's cost than ``bench.run``'s req/s, and
the one to read a change of a few per cent with. Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
from starlette.types import ASGIApp, Message

from bench.bare import create_app as create_bare
from bench.run import ROOT
from bench.workload import digit_png, multipart, snapshot_checkpoints


def scope(path: str, ctype: str, length: int) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
        "headers": [(b"host", b"bench"), (b"content-type", ctype.encode()),
                    (b"content-length", str(length).encode()), (b"accept", b"*/*")],
    }


async def call(app: ASGIApp, base: dict[str, Any], body: bytes) -> int:
    """One request through the app, the way ``python -m app``'s server offers it."""
    sent = False
    done = asyncio.Event()
    status = 0

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif not message.get("more_body"):
            done.set()

    extensions: dict[str, Any] = {"aeserve.disconnect": {"callbacks": []}}
    await app({**base, "state": {}, "extensions": extensions}, receive, send)
    return status


async def loop_cpu(app: ASGIApp, base: dict[str, Any], body: bytes, requests: int,
                   concurrency: int) -> float:
    """Event-loop CPU per request, µs."""
    async def client(n: int) -> None:
        for _ in range(n):
            status = await call(app, base, body)
            if status != 200:
                raise SystemExit(f"{base['path']} answered {status}")

    start = time.thread_time()
    await asyncio.gather(*(client(requests // concurrency) for _ in range(concurrency)))
    return (time.thread_time() - start) / (requests // concurrency * concurrency) * 1e6


async def lifespan(app: ASGIApp) -> Callable[[], Awaitable[None]]:
    """Start the app's lifespan; the returned coroutine function ends it."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    async def run() -> None:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)

    task = asyncio.create_task(run())
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"the app did not start: {started}")

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await task

    return stop


async def measure(args: argparse.Namespace, checkpoints: Path) -> dict[str, Any]:
    from app.main import create_app
    from app.settings import Settings

    service = create_app(Settings(checkpoint_dir=checkpoints, log_level="warning"))
    stop = await lifespan(service)
    ctype, body = multipart(digit_png())
    targets: dict[str, tuple[ASGIApp, dict[str, Any]]] = {
        "denoise": (service, scope("/v1/models/mnist-dae/denoise", ctype, len(body))),
        "bare_upload": (create_bare(), scope("/upload", ctype, len(body))),
        "bare": (create_bare(), scope("/echo", ctype, len(body))),
    }
    rounds: dict[str, list[float]] = {name: [] for name in targets}
    for app, base in targets.values():  # warm-up
        await loop_cpu(app, base, body, 300, args.concurrency)
    for _ in range(args.rounds):
        for name, (app, base) in targets.items():
            rounds[name].append(await loop_cpu(app, base, body, args.requests, args.concurrency))
    await stop()
    medians = {name: statistics.median(r) for name, r in rounds.items()}
    least = {name: min(r) for name, r in rounds.items()}
    return {
        "concurrency": args.concurrency, "requests": args.requests,
        "loop_cpu_us": {name: round(m, 1) for name, m in medians.items()},
        "loop_cpu_us_min": {name: round(m, 1) for name, m in least.items()},
        "rounds_us": {name: [round(x, 1) for x in r] for name, r in rounds.items()},
        "denoise_vs_bare_upload": round(medians["bare_upload"] / medians["denoise"], 3),
        "denoise_vs_bare_upload_min": round(least["bare_upload"] / least["denoise"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aeserve-loop-"))
    try:
        report = uvloop.run(measure(args, snapshot_checkpoints(args.checkpoints, work, ("mnist-dae",))))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{time.strftime('%Y%m%d-%H%M%S')}-loop.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
