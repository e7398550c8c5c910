"""``python -m app.client denoise`` with several images: a folder in, a folder out, against the real
service; an image it refuses is named and the others go on."""

from __future__ import annotations

import asyncio
import functools
import gc
import re
from pathlib import Path

import httpx
import pytest

import app.client.__main__ as cli
from app.client import AsyncClient
from app.client.__main__ import main, parse_args
from tests.app.helpers import decode_png, image_bytes
from tests.app.live import LiveServer

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens


def test_a_folder_of_mixed_images_is_denoised_into_a_folder_naming_each_one_refused(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PNG, JPEG and TIFF, gray, RGB and RGBA, and a few the service refuses (truncated, empty,
    not an image, the wrong size): each clean PNG is written, each refused image is named on one
    line with the service's error, and the exit status is 1. (Denoise took one image: a folder
    needed a shell loop, one process per image, that stopped at the first broken file with
    ``set -e``.)"""
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    good = {"gray.png": image_bytes(mode="L"), "rgb.jpg": image_bytes(mode="RGB", fmt="JPEG"),
            "rgba.tiff": image_bytes(mode="RGBA", fmt="TIFF", seed=1)}
    bad = {"truncated.png": image_bytes()[:40], "empty.jpg": b"", "notes.txt": b"hello",
           "big.png": image_bytes((40, 30))}
    for name, data in {**good, **bad}.items():
        (noisy / name).write_bytes(data)
    out = tmp_path / "clean"  # made
    images = sorted(str(path) for path in noisy.iterdir())
    assert main(["denoise", *images, "-o", str(out), "--url", server.url]) == 1
    written = {path.name: decode_png(path.read_bytes()) for path in out.iterdir()}
    assert sorted(written) == ["gray.png", "rgb.png", "rgba.png"]
    assert [(written[n].mode, written[n].size) for n in sorted(written)] == [
        ("L", (28, 28)), ("RGB", (28, 28)), ("RGBA", (28, 28))]
    lines = capsys.readouterr().err.splitlines()
    refused = {line.split(": ")[1]: line for line in lines[:-1]}
    assert sorted(refused) == sorted(str(noisy / name) for name in bad)
    assert "415 unsupported_media_type" in refused[str(noisy / "empty.jpg")]
    assert "422 wrong_size" in refused[str(noisy / "big.png")]
    assert lines[-1] == f"aeserve client: 3 of 7 images denoised into {out}; 4 refused (above)"


def test_one_image_into_a_folder_is_named_after_it(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    noisy = tmp_path / "digit.jpg"
    noisy.write_bytes(image_bytes(fmt="JPEG"))
    assert main(["denoise", str(noisy), "-o", f"{tmp_path / 'new'}/", "--url", server.url]) == 0
    assert decode_png((tmp_path / "new" / "digit.png").read_bytes()).size == (28, 28)
    assert main(["denoise", str(noisy), "-o", str(tmp_path / "clean.png"), "--url", server.url]) == 0
    assert (tmp_path / "clean.png").is_file()  # one image, a file name: that file
    assert capsys.readouterr().err.splitlines() == [
        f"aeserve client: 1 of 1 images denoised into {tmp_path / 'new'}"]


@pytest.mark.parametrize(("names", "out", "why"), [
    (["a.png", "a.jpg"], "clean", "{d}/a.png and {d}/a.jpg would both be written to clean/a.png"),
    (["a.png", "b.png"], "{d}", "{d}/a.png would be written over the image itself"),
    (["a.png", "missing.png"], "clean", "{d}/missing.png: no such file"),
    (["a.png", "b.png"], "{d}/a.png", "{d}/a.png (-o) is a file: give the folder"),
    (["a.png"], "a.png", "a.png would be written over the image itself"),
])
def test_images_that_would_overwrite_each_other_or_themselves_are_refused_before_sending(
    names: list[str], out: str, why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in names:
        if not name.startswith("missing"):
            (tmp_path / name).write_bytes(image_bytes())
    images = [str(tmp_path / name) for name in names]
    assert main(["denoise", *images, "-o", out.format(d=tmp_path), "--url", NOWHERE]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"aeserve client: {why.format(d=tmp_path)}")
    assert not (tmp_path / "clean").exists()


def test_a_run_stopped_by_an_error_says_how_far_it_came(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = [tmp_path / "a.png", tmp_path / "b.png"]
    for image in images:
        image.write_bytes(image_bytes())
    assert main(["denoise", *map(str, images), "-o", str(tmp_path / "out"), "--url", NOWHERE]) == 2
    said, error = capsys.readouterr().err.splitlines()
    assert said == f"aeserve client: 0 of 2 images denoised into {tmp_path / 'out'}, then stopped by this:"
    assert error.startswith("aeserve client: ")


GUARD_S = 60.0  # only a run that never sends the images together waits this long, and fails


class Gate(httpx.AsyncBaseTransport):
    """The service, for the CLI's denoise: every answer is held until ``together`` images are in
    flight at once (a run that sends one image at a time never gets there, and fails after
    ``GUARD_S``), and ``a.png``'s until ``b.png``'s has come. It records the most images in flight
    and the order answered; it refuses ``refused`` as no image."""

    def __init__(self, together: int, refused: str) -> None:
        self.together, self.refused = together, refused
        self.in_flight = self.most = 0
        self.answered: list[str] = []
        self.full, self.b_answered = asyncio.Event(), asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        named = re.search(rb'filename="([^"]+)"', await request.aread())
        assert named is not None
        name = named[1].decode()
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight == self.together:
            self.full.set()
        try:
            await asyncio.wait_for(self.full.wait(), GUARD_S)
            if name == "a.png":
                await asyncio.wait_for(self.b_answered.wait(), GUARD_S)
        finally:
            self.in_flight -= 1
        self.answered.append(name)
        if name == "b.png":
            self.b_answered.set()
        if name == self.refused:
            return httpx.Response(415, json={"error": {"code": "unsupported_media_type",
                                                       "message": "not an image"}})
        return httpx.Response(200, content=f"clean {name}".encode(),
                              headers={"Content-Type": "image/png", "X-Noise-Sigma": "20"})


def five_images(folder: Path) -> list[str]:
    folder.mkdir()
    for name in "abcde":
        (folder / f"{name}.png").write_bytes(image_bytes())
    return [str(folder / f"{name}.png") for name in "abcde"]


def test_jobs_images_are_in_flight_at_once_and_written_in_order_past_a_refused_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--jobs 3: three images are in flight at once, never more; the answers come out of order
    (b before a) and one is refused, yet each clean PNG is written, the lines name the images in
    the order given and the refused one stops nothing (exit status 1). (Denoise sent one image,
    waited for its answer, then sent the next: the service never had two to batch.)"""
    gate = Gate(together=3, refused="c.png")
    monkeypatch.setattr(cli, "AsyncClient", functools.partial(AsyncClient, transport=gate))
    images, out = five_images(tmp_path / "noisy"), tmp_path / "clean"
    assert main(["denoise", *images, "-o", str(out), "--jobs", "3", "--url", NOWHERE]) == 1
    assert gate.most == 3 and gate.answered[:3] == ["b.png", "c.png", "a.png"]
    assert {path.name: path.read_bytes() for path in out.iterdir()} == {
        f"{name}.png": f"clean {name}.png".encode() for name in "abde"}
    a, b, c, d, e = images
    assert capsys.readouterr().err.splitlines() == [
        f"{a}: noise sigma: 20 (estimated)", f"{b}: noise sigma: 20 (estimated)",
        f"aeserve: {c}: 415 unsupported_media_type: not an image",
        f"{d}: noise sigma: 20 (estimated)", f"{e}: noise sigma: 20 (estimated)",
        f"aeserve client: 4 of 5 images denoised into {out}; 1 refused (above)"]


def test_an_error_that_stops_the_run_drops_the_images_sent_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture
) -> None:
    """b.png and every image after it are answered 401: the run stops at b, says how far it came
    and why, and the answers already come for the images after b are dropped unwritten and
    unsaid (asyncio logs no error of theirs that nobody read)."""
    def answer(request: httpx.Request) -> httpx.Response:
        if b'filename="a.png"' in request.content:
            return httpx.Response(200, content=b"clean", headers={"Content-Type": "image/png"})
        return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "no token"}})

    transport = httpx.MockTransport(answer)
    monkeypatch.delenv("AESERVE_API_TOKEN", raising=False)
    monkeypatch.setattr(cli, "AsyncClient", functools.partial(AsyncClient, transport=transport))
    images, out = five_images(tmp_path / "noisy"), tmp_path / "clean"
    assert main(["denoise", *images, "-o", str(out), "--jobs", "4", "--url", NOWHERE]) == 1
    assert [path.name for path in out.iterdir()] == ["a.png"]
    assert capsys.readouterr().err.splitlines() == [
        f"aeserve client: 1 of 5 images denoised into {out}, then stopped by this:",
        "aeserve: 401 unauthorized: no token (this service needs its token: give it with --token "
        "or AESERVE_API_TOKEN)"]
    gc.collect()  # an answer's error that nobody read is logged when its task goes
    assert [record.getMessage() for record in caplog.records] == []


@pytest.mark.parametrize("jobs", ["0", "-1", "two", "1.5"])
def test_jobs_is_a_whole_number_of_1_or_more(jobs: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        parse_args(["denoise", "a.png", "-o", "out", "--jobs", jobs])
    assert refused.value.code == 2 and "argument --jobs: " in capsys.readouterr().err
    assert parse_args(["denoise", "a.png", "-o", "out"]).jobs == 4
