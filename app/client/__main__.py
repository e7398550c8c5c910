"""python -m app.client: denoise, sample, encode, decode, score, interpolate from the command line.

    python -m app.client denoise noisy.png -o clean.png --url http://127.0.0.1:8000
    python -m app.client denoise photos/* -o clean/ --model photo-denoiser --retries 5 --jobs 8
    python -m app.client sample --model mnist-vae -n 16 --seed 0 -o samples.png
    python -m app.client encode digit.png --model mnist-vae > latents.json
    python -m app.client decode latents.json --model mnist-vae -o decoded.png
    python -m app.client score digit.png cat.png --model mnist-vae -k 200 > scores.json
    python -m app.client interpolate three.png eight.png --steps 10 -o path.png

The token comes from --token or AESERVE_API_TOKEN. Exit status: 0 done, 1 the service
answered with an error (denoising several images: refused one or more of them, each named, the
others done), 2 anything else (arguments, files, connection, timeout), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import logging
import math
import os
import sys
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from app.client import AeserveError, AsyncClient, Client, log

IN_REQUESTS = ("as many as the service takes in one request (its max_images, asked first: "
               "AESERVE_MAX_IMAGES, 64 by default) go in each, the answers printed as one, in the "
               "order given")
SEEDED = ("; an image's {} depends on this seed and the image alone, so with several requests "
          "each is sent with it (without --seed, the one the service drew for the first) and the "
          "answer is what one request of them all would give")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("AESERVE_URL", "http://127.0.0.1:8000"),
                        help="the service (default: AESERVE_URL, else http://127.0.0.1:8000)")
    common.add_argument("--token", default=os.environ.get("AESERVE_API_TOKEN"),
                        help="bearer token (default: AESERVE_API_TOKEN)")
    common.add_argument("--timeout", type=seconds, default=60.0,
                        help="seconds to wait for each answer (default: %(default)s)")
    common.add_argument("--retries", type=retries, default=0,
                        help="send a request again, up to this many times, when the service "
                        "answers 503 with Retry-After (busy) or does not answer (restarting); "
                        "waits as asked, then twice as long each time, at most 30 s; says so on "
                        "stderr (default: %(default)s)")
    parser = argparse.ArgumentParser(prog="python -m app.client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("denoise", parents=[common], help="denoise images into PNGs")
    p.add_argument("images", type=Path, nargs="+", metavar="image",
                   help="PNG, JPEG, WebP, BMP or TIFF")
    p.add_argument("-o", "--output", required=True,
                   help="the clean PNG; with several images, or a folder that exists (or ends in "
                   "/), the folder that gets NAME.png for each image NAME.*, overwriting what is "
                   "there; an image the service refuses is named and the others go on")
    p.add_argument("--model", default="mnist-dae", help="default: %(default)s; photo-denoiser for "
                   "photos of any size")
    p.add_argument("--resize", action="store_true", help="resize to the model's size and back")
    p.add_argument("--sigma", type=finite, help="photo models: noise σ (0-255)")
    p.add_argument("--jobs", type=positive, default=4,
                   help="images sent at a time, each in its own request, the clean PNGs still "
                   "written (and named on stderr) in the order given; the service batches what "
                   "arrives together (default: %(default)s)")

    p = sub.add_parser("sample", parents=[common],
                       help="draw samples into one PNG grid; prints the seed")
    p.add_argument("--model", default="mnist-vae", help="default: %(default)s")
    p.add_argument("-n", type=int, default=16, help="samples (default: %(default)s)")
    p.add_argument("--seed", type=int, help="same seed, same samples (default: a fresh one)")
    p.add_argument("--temperature", type=finite, default=1.0,
                   help="scale of the prior's std (default: %(default)s)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the PNG grid (overwritten)")

    p = sub.add_parser("encode", parents=[common], help="print the latent codes as JSON")
    p.add_argument("images", type=Path, nargs="+", metavar="image", help=IN_REQUESTS)
    p.add_argument("--model", default="mnist-vae", help="default: %(default)s")
    p.add_argument("--resize", action="store_true", help="resize to the model's size")
    p.add_argument("--sample", action="store_true", help="VAE: add a reparameterized draw")
    p.add_argument("--seed", type=int, help="with --sample: the seed of that draw (default: a "
                   "fresh one, printed)" + SEEDED.format("z"))

    p = sub.add_parser("decode", parents=[common], help="decode latents (JSON) into a PNG grid")
    p.add_argument("latents", type=Path, help='JSON {"z": [[...]]} or the output of encode')
    p.add_argument("--model", default="mnist-vae", help="default: %(default)s")
    p.add_argument("-o", "--output", type=Path, required=True, help="the PNG grid (overwritten)")

    p = sub.add_parser("score", parents=[common], help="print anomaly scores (nats) as JSON")
    p.add_argument("images", type=Path, nargs="+", metavar="image", help=IN_REQUESTS)
    p.add_argument("--model", default="mnist-vae", help="default: %(default)s")
    p.add_argument("-k", type=int, help="importance samples (default: the service's)")
    p.add_argument("--seed", type=int, help="same seed, same scores (default: a fresh one, "
                   "printed)" + SEEDED.format("score"))
    p.add_argument("--resize", action="store_true", help="resize to the model's size")

    p = sub.add_parser("interpolate", parents=[common],
                       help="decode the path between two images into a PNG grid")
    p.add_argument("images", type=Path, nargs=2, metavar="image",
                   help="the two ends of the path")
    p.add_argument("--model", default="mnist-vae", help="default: %(default)s")
    p.add_argument("--steps", type=int, default=8, help="points on the path (default: %(default)s)")
    p.add_argument("--resize", action="store_true", help="resize to the model's size")
    p.add_argument("-o", "--output", type=Path, required=True, help="the PNG grid (overwritten)")
    args = parser.parse_args(argv)
    if args.command == "encode" and args.seed is not None and not args.sample:
        parser.error("--seed seeds the draw that --sample adds: give both, or leave --seed out")
    return args


def retries(text: str) -> int:
    """A number of retries: an integer of 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return int(text)


def positive(text: str) -> int:
    """How many images at a time: a whole number of 1 or more."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


def finite(text: str) -> float:
    """A finite number: JSON has no NaN or infinity to send it as."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def seconds(text: str) -> float:
    """A timeout: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number of seconds above 0")
    return value


def latents_from(path: Path) -> list[list[float]]:
    """``{"z": [...]}``, a list of vectors, or ``encode``'s output (its ``z`` or ``mu``); a
    ``ValueError`` naming the file for anything else, a NaN or an infinity included."""
    shape = f"{path}: expected {{\"z\": [[...], ...]}}, a list of vectors or encode's output"
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if isinstance(data, dict) and "results" in data and isinstance(data["results"], list):
        data = [item.get("z", item.get("mu")) if isinstance(item, dict) else None
                for item in data["results"]]
    elif isinstance(data, dict):
        data = data.get("z")
    if not (isinstance(data, list) and data and all(_vector(row) for row in data)):
        raise ValueError(shape)
    for i, row in enumerate(data):
        for j, value in enumerate(row):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{path}: z[{i}][{j}] is {value}: latents must be finite numbers "
                                 "(no NaN or Infinity)")
    return data


def _vector(row: Any) -> bool:
    return isinstance(row, list) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                         for v in row)


IMAGE_REFUSED = {"unsupported_media_type", "too_many_pixels", "payload_too_large", "too_much_work",
                 "wrong_size"}
"""Error codes about one image of several: it is named and the others go on."""


def targets(images: list[Path], output: str) -> tuple[list[tuple[Path, Path]], Path | None]:
    """Each image and where its clean PNG goes, and the folder they go into (None: one image
    into the file ``output``). A ``ValueError`` before anything is sent for an image that is no
    file, a folder ``output`` that is a file, two images that would be written to one file, and
    a PNG that would overwrite an image."""
    for image in images:
        if not image.is_file():
            raise ValueError(f"{image}: {'not a file' if image.exists() else 'no such file'}")
    folder = Path(output)
    if len(images) == 1 and not (folder.is_dir() or output.endswith(("/", os.sep))):
        return [(images[0], output_file(folder, images[0]))], None
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} (-o) is a file: give the folder to write the PNGs into")
    written: dict[Path, Path] = {}
    for image in images:
        target = folder / f"{image.stem}.png"
        if target in written:
            raise ValueError(f"{written[target]} and {image} would both be written to {target}: "
                             "denoise them into different folders")
        written[target] = image
    sources = {image.resolve() for image in images}
    for target in written:
        if target.resolve() in sources:
            raise ValueError(f"{target} would be written over the image itself: choose another -o")
    return [(image, target) for target, image in written.items()], folder


def output_file(path: Path, image: Path | None = None) -> Path:
    """``-o``, checked before anything is sent, so that no answer is computed only to find that it
    cannot be saved: a ``ValueError`` for a folder that does not exist, a folder given as the
    file, or the ``image`` sent itself, which it would overwrite."""
    if path.is_dir():
        raise ValueError(f"{path} (-o) is a folder: give the file to write")
    if not path.parent.is_dir():
        raise ValueError(f"{path.parent} (-o {path}): no such folder")
    if image is not None and path.resolve() == image.resolve():
        raise ValueError(f"{path} would be written over the image itself: choose another -o")
    return path


async def denoise(args: argparse.Namespace) -> int:
    """Denoise each image into its PNG, ``--jobs`` images in flight at a time, each saved in the
    order given as soon as it and those before it have come; among several, an image the service
    refuses is named and the others go on (exit status 1). Returns the exit status."""
    async with AsyncClient(args.url, args.token, args.timeout, args.retries) as client:
        jobs, folder = targets(args.images, args.output)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        to_send = iter(jobs)
        sent: deque[asyncio.Task[tuple[bytes, float | None]]] = deque()  # in flight, or answered
        done = refused = 0
        try:
            for image, target in jobs:
                for later, _ in itertools.islice(to_send, args.jobs - len(sent)):
                    sent.append(asyncio.create_task(
                        client.denoise_with_sigma(args.model, later, args.resize, args.sigma)))
                try:
                    png, used = await sent.popleft()
                except AeserveError as exc:
                    if folder is None or exc.code not in IMAGE_REFUSED:
                        stopped(done, len(jobs), folder)
                        raise
                    print(f"aeserve: {image}: {exc}{hint(exc, args.token)}", file=sys.stderr)
                    refused += 1
                    continue
                except (httpx.HTTPError, asyncio.CancelledError):  # cancelled: Ctrl-C
                    stopped(done, len(jobs), folder)
                    raise
                target.write_bytes(png)
                done += 1
                if used is not None:
                    how = "given" if args.sigma is not None else "estimated"
                    named = "" if folder is None else f"{image}: "
                    print(f"{named}noise sigma: {used:g} ({how})", file=sys.stderr)
        finally:  # what is left was sent after the image whose error stopped the run: dropped
            for answer in sent:
                answer.cancel()  # in flight: stopped; come: its answer or error, unread
            await asyncio.gather(*sent, return_exceptions=True)  # each stopped before the client
    if folder is not None:
        print(f"aeserve client: {done} of {len(jobs)} images denoised into "
              f"{folder}{f'; {refused} refused (above)' if refused else ''}", file=sys.stderr)
    return 1 if refused else 0


def stopped(done: int, of: int, folder: Path | None) -> None:
    """Among several images, how far a run came before the error that stops it (said next)."""
    if folder is not None:
        print(f"aeserve client: {done} of {of} images denoised into {folder}, then stopped by "
              "this:", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """The command, done; its exit status."""
    if args.command == "denoise":
        return asyncio.run(denoise(args))
    if args.command in ("sample", "decode", "interpolate"):
        output_file(args.output)
    with Client(args.url, args.token, args.timeout, args.retries) as client:
        if args.command == "sample":
            payload = {"n": args.n, "seed": args.seed, "temperature": args.temperature}
            grid = client.grid_answer(args.model, "sample", payload)
            args.output.write_bytes(grid.png)
            print(f"seed: {grid.seed}", file=sys.stderr)  # the same seed draws the same samples
        elif args.command in ("encode", "score"):
            at_most = client.limits()["max_images"] if len(args.images) > 1 else 1
            answer = in_requests(functools.partial(answer_of, client, args), args.images, at_most,
                                 args.seed)
            json.dump({"model": args.model, **answer}, sys.stdout)
            sys.stdout.write("\n")
        elif args.command == "decode":
            args.output.write_bytes(client.grid(args.model, "decode", {"z": latents_from(args.latents)}))
        elif args.command == "interpolate":
            first, last = args.images  # sent under their file names
            path = client.interpolate_images(args.model, first, last, args.steps, args.resize)
            args.output.write_bytes(path.png)
    return 0


def answer_of(client: Client, args: argparse.Namespace, images: list[Path],
              seed: int | None) -> dict[str, Any]:
    """One request's answer for ``encode`` or ``score`` of ``images``, drawn with ``seed``."""
    if args.command == "encode":
        return client.encode_answer(args.model, images, args.resize, args.sample, seed)
    return client.score_answer(args.model, images, args.k, seed, args.resize)


def in_requests(send: Callable[[list[Path], int | None], dict[str, Any]], images: list[Path],
                at_most: int, seed: int | None) -> dict[str, Any]:
    """The answers for ``images`` sent ``at_most`` at a time (the service's ``max_images``) as
    one: the first's, with every ``results`` in the order given. Every request is sent with
    ``seed`` (None: the seed the service drew for the first); as the service draws each image's
    noise from the seed and that image alone, the answer is the one a single request gives."""
    first = send(images[:at_most], seed)
    results, drawn = list(first["results"]), first.get("seed")
    for start in range(at_most, len(images), at_most):
        results.extend(send(images[start:start + at_most], drawn)["results"])
    return {**first, "results": results}



def hint(error: AeserveError, token: str | None) -> str:
    """What to do about an error from the command line, where the service's message speaks of
    HTTP: of its headers for a 401, of ``resize=true`` for an image of the wrong size."""
    if error.code == "wrong_size":
        return " (on the command line: --resize)"
    if error.status != 401:
        return ""
    if not (token or "").strip():
        return " (this service needs its token: give it with --token or AESERVE_API_TOKEN)"
    return " (the token given by --token or AESERVE_API_TOKEN is not this service's)"


def through(url: str) -> str:
    """The proxy that the environment routes ``url`` through, as httpx reads it (``HTTP_PROXY``,
    ``HTTPS_PROXY``, ``ALL_PROXY``, less the hosts in ``NO_PROXY``), said after the URL: a
    connection it refuses is the proxy's, not the service's."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.netloc):
        return ""
    name = f"{parts.scheme.upper()}_PROXY" if parts.scheme in proxies else "ALL_PROXY"
    return f" through the proxy {proxy} ({name}; NO_PROXY lists the hosts to reach directly)"


def socks_missing(error: ImportError) -> bool:
    """Whether ``error`` is httpx's for a SOCKS proxy (``ALL_PROXY=socks5://...``) without the
    ``socksio`` package: a setting to fix, said in one line; any other is a bug, raised."""
    return error.name == "socksio" or "'socksio'" in str(error)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    said = logging.StreamHandler(sys.stderr)  # each retry, as it happens
    said.setFormatter(logging.Formatter("aeserve client: %(message)s"))
    log.addHandler(said)
    try:
        return run(args)
    except AeserveError as exc:
        wait = f" (retry after {exc.retry_after:g} s)" if exc.retry_after is not None else ""
        print(f"aeserve: {exc}{wait}{hint(exc, args.token)}", file=sys.stderr)
        return 1
    except httpx.TimeoutException:
        print(f"aeserve client: no answer within {args.timeout:g} s (--timeout)", file=sys.stderr)
        return 2
    except httpx.ConnectError as exc:
        print(f"aeserve client: cannot connect to {args.url} (--url){through(args.url)}: {exc}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aeserve client: interrupted", file=sys.stderr)
        return 130
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
        print(f"aeserve client: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        if not socks_missing(exc):
            raise
        print(f"aeserve client: {exc}", file=sys.stderr)  # httpx's message says what to install
        return 2
    finally:
        log.removeHandler(said)


if __name__ == "__main__":
    sys.exit(main())
