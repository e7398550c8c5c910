"""``python -m app.client denoise`` with several images: a folder in, a folder out, against the real
service; an image it refuses is named and the others go on."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.client.__main__ import main
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
