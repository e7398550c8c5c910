"""``python -m app.client encode`` and ``score`` of more images than the service takes in one
request (``AESERVE_MAX_IMAGES``): they were sent in one request, and refused 422 whatever their
number over the limit; now they go in requests of at most the limit, printed as one answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.client import Client
from app.client.__main__ import main
from tests.app.helpers import image_bytes
from tests.app.live import LiveServer, running_server


@pytest.fixture(scope="module")
def limited(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real service that takes at most 3 images in one request."""
    log = tmp_path_factory.mktemp("limited") / "server.log"
    with running_server(tiny_checkpoints, log, AESERVE_MAX_IMAGES="3") as live:
        yield live


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Seven different digits' files, named out of their order."""
    paths = [tmp_path / f"{name}.png" for name in "gfedcba"]
    for i, path in enumerate(paths):
        path.write_bytes(image_bytes(seed=i))
    return paths


def printed(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """What the command prints on stdout (exit status 0), read as JSON."""
    assert main(list(argv)) == 0, capsys.readouterr().err
    answer: dict[str, Any] = json.loads(capsys.readouterr().out)
    return answer


def test_encode_of_more_images_than_one_request_takes_is_one_answer_in_their_order(
    limited: LiveServer, server: LiveServer, images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Seven images, three a request (3, 3, 1): the answer printed is the one a service that takes
    them all in one request gives, in the order given."""
    with Client(limited.url) as ae:
        assert ae.limits()["max_images"] == 3  # what the command asks first
    files = [str(image) for image in images]
    whole = printed(capsys, "encode", *files, "--url", server.url)
    assert printed(capsys, "encode", *files, "--url", limited.url) == whole
    assert len(whole["results"]) == 7 and "seed" not in whole


def test_an_encode_draw_in_several_requests_is_the_one_of_one_request(
    limited: LiveServer, server: LiveServer, images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Seven images three a request with ``--sample --seed 5``: the answer, z included, equals what
    a service that takes them all in one request gives, as each image's draw depends on the seed
    and the image alone; without ``--seed``, the seed printed (the one the service drew for the
    first request, sent with the others) gives the same answer again."""
    files = [str(image) for image in images]
    whole = printed(capsys, "encode", *files, "--sample", "--seed", "5", "--url", server.url)
    drawn = printed(capsys, "encode", *files, "--sample", "--seed", "5", "--url", limited.url)
    assert drawn == whole and drawn["seed"] == 5 and len(drawn["results"]) == 7
    assert len({tuple(result["z"]) for result in drawn["results"]}) == 7
    fresh = printed(capsys, "encode", *files, "--sample", "--url", limited.url)
    again = printed(capsys, "encode", *files, "--sample", "--seed", str(fresh["seed"]),
                    "--url", server.url)
    assert again == fresh


def test_scores_of_more_images_than_one_request_takes_are_the_ones_of_one_request(
    limited: LiveServer, server: LiveServer, images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Seven images scored three a request with ``--seed 11``: the answer equals the one a service
    that takes them all in one request gives (model, k, seed and every score), in their order;
    without ``--seed``, the seed printed gives the same scores again, in one request too."""
    files = [str(image) for image in images]
    whole = printed(capsys, "score", *files, "-k", "8", "--seed", "11", "--url", server.url)
    scored = printed(capsys, "score", *files, "-k", "8", "--seed", "11", "--url", limited.url)
    assert scored == whole and len(scored["results"]) == 7
    fresh = printed(capsys, "score", *files, "-k", "8", "--url", limited.url)
    again = printed(capsys, "score", *files, "-k", "8", "--seed", str(fresh["seed"]),
                    "--url", server.url)
    assert again == fresh
