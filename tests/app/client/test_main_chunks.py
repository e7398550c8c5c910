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


def test_an_encode_draw_in_several_requests_draws_new_noise_in_each(
    limited: LiveServer, server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One image seven times with ``--sample --seed 5``: seven different draws of its code, as one
    request gives, not the first request's three again (request i is drawn with seed 5 + i); the
    same seed and limit give the same answer again, and the seed printed is the one given."""
    digit = tmp_path / "digit.png"
    digit.write_bytes(image_bytes())
    argv = ["encode", *[str(digit)] * 7, "--sample", "--seed", "5"]
    drawn = printed(capsys, *argv, "--url", limited.url)
    assert drawn["seed"] == 5 and len(drawn["results"]) == 7
    assert len({tuple(result["z"]) for result in drawn["results"]}) == 7
    assert printed(capsys, *argv, "--url", limited.url) == drawn
    with Client(server.url) as ae:
        one = ae.encode_answer("mnist-vae", [digit], sample=True, seed=5)["results"]
    assert [result["mu"] for result in drawn["results"]] == [one[0]["mu"]] * 7


def test_scores_of_more_images_than_one_request_takes_are_one_answer_seeded_request_by_request(
    limited: LiveServer, server: LiveServer, images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Seven images scored three a request with ``--seed 11``: one answer, shaped as one request's,
    holding the scores of request i (from 0) drawn with seed 11 + i; without ``--seed``, the seed
    printed (the one the service drew) gives the same scores again."""
    files = [str(image) for image in images]
    whole = printed(capsys, "score", *files, "-k", "8", "--seed", "11", "--url", server.url)
    scored = printed(capsys, "score", *files, "-k", "8", "--seed", "11", "--url", limited.url)
    assert {**scored, "results": None} == {**whole, "results": None}  # model, k, seed, unit, input
    # the draws of a request depend on the images sent together: not the scores of one request
    assert scored["results"] != whole["results"]
    with Client(limited.url) as ae:
        each = [ae.score_answer("mnist-vae", images[start:start + 3], k=8, seed=11 + i)["results"]
                for i, start in enumerate(range(0, 7, 3))]
    assert scored["results"] == [result for results in each for result in results]
    fresh = printed(capsys, "score", *files, "-k", "8", "--url", limited.url)
    again = printed(capsys, "score", *files, "-k", "8", "--seed", str(fresh["seed"]),
                    "--url", limited.url)
    assert again == fresh and len(fresh["results"]) == 7
