"""A VAE's seeded draws (``encode?sample=true``, ``score``) are each image's own: an image's noise
comes from a generator seeded by the request's seed and the image's pixels, so its ``z`` and its
scores with a seed are the same alone, beside other images, and at any place in the request."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from tests.app.helpers import files, image_bytes, stored_pixels

VAE = "/v1/models/mnist-vae"
DIGIT = image_bytes(seed=1)
OTHERS = [image_bytes(seed=i) for i in range(2, 7)]
DRAWN = {"score": ("nll", "neg_elbo"), "encode": ("z",)}  # what the noise goes into


def results(client: TestClient, op: str, params: dict[str, Any], *datas: bytes) -> list[Any]:
    response = client.post(f"{VAE}/{op}", params=params, files=files(*datas))
    assert response.status_code == 200, response.text
    answer: list[Any] = response.json()["results"]
    return answer


@pytest.mark.parametrize(("op", "params"), [("score", {"k": 20}), ("encode", {"sample": "true"})])
def test_an_images_draws_with_a_seed_are_the_same_alone_beside_others_and_at_any_place(
    client: TestClient, op: str, params: dict[str, Any]
) -> None:
    seeded = {**params, "seed": 3}
    alone = results(client, op, seeded, DIGIT)[0]
    assert results(client, op, seeded, *OTHERS[:2], DIGIT, *OTHERS[2:])[2] == alone
    assert results(client, op, seeded, *OTHERS, DIGIT)[-1] == alone
    assert results(client, op, seeded, DIGIT, *OTHERS[:1])[0] == alone
    # the pixels decide, not the file: the same digit as a BMP, and twice in one request
    assert results(client, op, seeded, image_bytes(seed=1, fmt="BMP"))[0] == alone
    twice = results(client, op, seeded, DIGIT, OTHERS[0], DIGIT)
    assert twice[0] == twice[2] == alone
    # another seed draws other noise
    other = results(client, op, {**params, "seed": 4}, DIGIT)[0]
    assert all(other[key] != alone[key] for key in DRAWN[op])


def test_a_seeded_encode_draw_is_mu_plus_sigma_times_the_images_own_normal_draw(
    client: TestClient,
) -> None:
    """sample=true&seed=s: z = μ + σ·ε, with ε an image's first draw of a CPU generator seeded by
    the 64-bit BLAKE2b hash of its pixels keyed by s (8 bytes, little-endian), so the same image
    and seed give the same z on any device; σ is exp(logvar / 2)."""
    datas = (image_bytes(seed=1), image_bytes(seed=2))
    answer = client.post(f"{VAE}/encode", params={"sample": "true", "seed": 7},
                         files=files(*datas)).json()
    assert answer["seed"] == 7
    mu, sigma, logvar, z = (torch.tensor([r[k] for r in answer["results"]])
                            for k in ("mu", "sigma", "logvar", "z"))
    torch.testing.assert_close(sigma, torch.exp(0.5 * logvar))
    seeds = [int.from_bytes(hashlib.blake2b(stored_pixels(data).tobytes(), digest_size=8,
                                            key=(7).to_bytes(8, "little")).digest(), "little")
             for data in datas]
    eps = torch.cat([torch.randn(1, mu.shape[1], generator=torch.Generator().manual_seed(seed))
                     for seed in seeds])
    torch.testing.assert_close(z, mu + sigma * eps)
    again = client.post(f"{VAE}/encode", params={"sample": "true", "seed": 7}, files=files(*datas))
    assert again.json() == answer
    plain = client.post(f"{VAE}/encode", files=files(*datas)).json()
    assert "seed" not in plain and [{k: r[k] for k in ("mu", "sigma", "logvar")}
                                    for r in answer["results"]] == plain["results"]
