"""encode, decode, sample, score and interpolate."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.disconnects import BODY_TIMED_OUT, CLIENT_GONE, DISCONNECT_EXTENSION
from tests.app.helpers import assert_error, decode_png, files, image_bytes, post_without_accept

VAE = "/v1/models/mnist-vae"
DAE = "/v1/models/mnist-dae"


def test_encode_vae_gives_mu_sigma_logvar(client: TestClient) -> None:
    response = client.post(f"{VAE}/encode", files=files(image_bytes(seed=1), image_bytes(seed=2)))
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 2
    for item in results:
        assert set(item) == {"mu", "sigma", "logvar"}
        assert len(item["mu"]) == len(item["sigma"]) == len(item["logvar"]) == 32
        for s, lv in zip(item["sigma"], item["logvar"], strict=True):
            assert s == pytest.approx(math.exp(0.5 * lv), rel=1e-5)
    assert results[0]["mu"] != results[1]["mu"]


def test_encode_sample_is_a_seeded_reparameterized_draw(client: TestClient) -> None:
    data = files(image_bytes(seed=4))
    first = client.post(f"{VAE}/encode", params={"sample": "true", "seed": 7}, files=data).json()
    again = client.post(f"{VAE}/encode", params={"sample": "true", "seed": 7}, files=data).json()
    other = client.post(f"{VAE}/encode", params={"sample": "true", "seed": 8}, files=data).json()
    item = first["results"][0]
    assert len(item["z"]) == 32 and item["z"] != item["mu"]
    assert item["z"] == again["results"][0]["z"]
    assert item["z"] != other["results"][0]["z"]


def test_a_seed_without_sample_is_422_not_an_answer_that_looks_seeded(client: TestClient) -> None:
    response = client.post(f"{VAE}/encode", params={"seed": 7}, files=files(image_bytes(seed=4)))
    error = assert_error(response, 422)
    assert "sample=true" in error["message"]


def test_a_json_interpolate_with_resize_is_422(client: TestClient) -> None:
    """Latents have no size: resize belongs to the image uploads."""
    response = client.post(f"{VAE}/interpolate", params={"resize": "true"},
                           json={"z": [[0.0] * 32, [1.0] * 32]})
    error = assert_error(response, 422, "invalid_request")
    assert "resize" in error["message"]


def test_encode_dae_gives_z(client: TestClient) -> None:
    response = client.post(f"{DAE}/encode", files=files(image_bytes()))
    assert [list(r) for r in response.json()["results"]] == [["z"]]
    assert len(response.json()["results"][0]["z"]) == 128
    assert_error(client.post(f"{DAE}/encode", params={"sample": "true"}, files=files(image_bytes())), 422)


def test_decode_answers_base64_pngs_or_a_grid(client: TestClient) -> None:
    z = [[0.0] * 32, [0.5] * 32, [-0.5] * 32]
    images = client.post(f"{VAE}/decode", json={"z": z}).json()["images"]
    assert len(images) == 3
    assert decode_png(base64.b64decode(images[0])).size == (28, 28)
    grid = client.post(f"{VAE}/decode", json={"z": z}, headers={"accept": "image/png"})
    assert grid.headers["content-type"] == "image/png"
    assert decode_png(grid.content).size == (2 * 28 + 2, 2 * 28 + 2)


@pytest.mark.parametrize(("accept", "answer"), [
    ("application/json;q=0.1, image/png", "image/png"),
    ("image/png;q=0, application/json", "application/json"),
    ("image/png, application/json", "application/json"),  # liked equally: the default
    ("image/*", "image/png"),
    ("*/*", "application/json"),
    ("", "application/json"),
])
def test_decode_answers_the_type_accept_prefers_by_q_value(
    client: TestClient, accept: str, answer: str
) -> None:
    response = client.post(f"{VAE}/decode", json={"z": [[0.0] * 32] * 2}, headers={"accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == answer
    if answer == "image/png":
        assert decode_png(response.content).size == (2 * 28 + 2, 28)
    else:
        assert len(response.json()["images"]) == 2


def test_no_accept_header_answers_json(client: TestClient) -> None:
    response = post_without_accept(client, f"{VAE}/sample", json={"n": 2, "seed": 0})
    assert response.status_code == 200 and len(response.json()["images"]) == 2


@pytest.mark.parametrize(("op", "body"), [
    ("decode", {"z": [[0.0] * 32]}),
    ("sample", {"n": 2}),
    ("interpolate", {"z": [[0.0] * 32, [1.0] * 32]}),
])
@pytest.mark.parametrize("accept", ["text/html", "image/png;q=0", "image/jpeg, text/*"])
def test_accepting_neither_json_nor_png_is_406_naming_both(
    client: TestClient, op: str, body: dict[str, Any], accept: str
) -> None:
    response = client.post(f"{VAE}/{op}", json=body, headers={"accept": accept})
    error = assert_error(response, 406, "not_acceptable")
    assert "application/json" in error["message"] and "image/png" in error["message"]


def test_an_unacceptable_accept_is_answered_before_the_body_is_read(client: TestClient) -> None:
    response = client.post(f"{VAE}/decode", content=b"not json", headers={
        "accept": "text/html", "content-type": "application/json"})
    assert_error(response, 406, "not_acceptable")


def test_decode_works_for_a_plain_autoencoder(client: TestClient) -> None:
    assert len(client.post(f"{DAE}/decode", json={"z": [[0.1] * 128]}).json()["images"]) == 1


@pytest.mark.parametrize(
    "body",
    [
        '{"z": [[1, 2, 3]]}',
        '{"z": [[NaN' + ", 0" * 31 + "]]}",
        '{"z": [[Infinity' + ", 0" * 31 + "]]}",
        '{"z": [[1e999' + ", 0" * 31 + "]]}",
        '{"z": []}',
        '{"z": "zero"}',
        '{"z": [["1.5"' + ", 0" * 31 + "]]}",  # a string is not a number
        '{"z": [[true' + ", 0" * 31 + "]]}",
        "not json",
    ],
)
def test_decode_refuses_bad_latents_with_422(client: TestClient, body: str) -> None:
    response = client.post(f"{VAE}/decode", content=body, headers={"content-type": "application/json"})
    assert_error(response, 422)


def test_decode_wrong_size_names_the_latent_size(client: TestClient) -> None:
    error = assert_error(client.post(f"{VAE}/decode", json={"z": [[0.0] * 31]}), 422, "invalid_latent")
    assert "32" in error["message"]


def test_sample_same_seed_same_bytes_no_seed_fresh(client: TestClient) -> None:
    body = {"n": 16, "seed": 0, "temperature": 1.0}
    first = client.post(f"{VAE}/sample", json=body).json()
    again = client.post(f"{VAE}/sample", json=body).json()
    assert len(first["images"]) == 16 and first["images"] == again["images"] and first["seed"] == 0
    fresh = [client.post(f"{VAE}/sample", json={"n": 4}).json() for _ in range(2)]
    assert fresh[0]["seed"] != fresh[1]["seed"]
    assert fresh[0]["images"] != fresh[1]["images"]


def test_sample_png_grid_carries_the_seed(client: TestClient) -> None:
    response = client.post(f"{VAE}/sample", json={"n": 4, "seed": 3}, headers={"accept": "image/png"})
    assert response.headers["x-seed"] == "3"
    assert decode_png(response.content).size == (58, 58)
    again = client.post(f"{VAE}/sample", json={"n": 4, "seed": 3}, headers={"accept": "image/png"})
    assert again.content == response.content


def test_sample_temperature_changes_the_samples(client: TestClient) -> None:
    cold = client.post(f"{VAE}/sample", json={"n": 2, "seed": 1, "temperature": 0.1}).json()
    warm = client.post(f"{VAE}/sample", json={"n": 2, "seed": 1, "temperature": 1.0}).json()
    assert cold["images"] != warm["images"]
    assert_error(client.post(f"{VAE}/sample", json={"n": 2, "temperature": 0}), 422)


def test_sample_on_a_plain_autoencoder_is_422_saying_so(client: TestClient) -> None:
    error = assert_error(client.post(f"{DAE}/sample", json={"n": 2}), 422, "unsupported_operation")
    assert "sample" in error["message"] and "denoise" in error["message"]


def test_score_gives_nll_and_neg_elbo_in_nats(client: TestClient) -> None:
    data = files(image_bytes(seed=1), image_bytes(seed=2))
    body = client.post(f"{VAE}/score", params={"k": 20, "seed": 1}, files=data).json()
    assert body["k"] == 20 and body["unit"] == "nats" and len(body["results"]) == 2
    for item in body["results"]:
        assert math.isfinite(item["nll"]) and item["nll"] > 0
        assert item["nll"] <= item["neg_elbo"] + 1e-3  # the IWAE bound is tighter than the ELBO
    again = client.post(f"{VAE}/score", params={"k": 20, "seed": 1}, files=data)
    assert again.json()["results"] == body["results"]


def test_score_on_a_plain_autoencoder_is_422(client: TestClient) -> None:
    assert_error(client.post(f"{DAE}/score", files=files(image_bytes())), 422, "unsupported_operation")


def test_interpolate_between_two_latents(client: TestClient) -> None:
    body = {"z": [[0.0] * 32, [1.0] * 32], "steps": 5}
    images = client.post(f"{VAE}/interpolate", json=body).json()["images"]
    assert len(images) == 5
    ends = client.post(f"{VAE}/decode", json={"z": body["z"]}).json()["images"]
    assert [images[0], images[-1]] == ends


def test_interpolate_between_two_images(client: TestClient) -> None:
    data = files(image_bytes(seed=1), image_bytes(seed=2))
    response = client.post(f"{DAE}/interpolate", params={"steps": 4}, files=data)
    assert len(response.json()["images"]) == 4
    grid = client.post(f"{DAE}/interpolate", params={"steps": 4}, files=data, headers={"accept": "image/png"})
    assert decode_png(grid.content).size == (58, 58)


def test_interpolate_needs_exactly_two_ends(client: TestClient) -> None:
    assert_error(client.post(f"{VAE}/interpolate", files=files(image_bytes())), 422)
    assert_error(client.post(f"{VAE}/interpolate", json={"z": [[0.0] * 32] * 3}), 422)
    assert_error(client.post(f"{VAE}/interpolate", json={"z": [[0.0] * 32] * 2, "steps": 1000}), 422)


@pytest.mark.parametrize("value", ["1e300", "-1e300", "3.5e38", "NaN", "-Infinity"])
def test_a_latent_outside_float32_is_422_invalid_latent(client: TestClient, value: str) -> None:
    """1e300 is finite in float64 but infinite in float32: it would decode to NaN garbage."""
    body = '{"z": [[' + value + ", 0" * 31 + "]]}"
    for path in ("decode", "interpolate"):
        sent = body if path == "decode" else body.replace("]]}", "], [0" + ", 0" * 31 + "]]}")
        response = client.post(f"{VAE}/{path}", content=sent,
                               headers={"content-type": "application/json"})
        error = assert_error(response, 422, "invalid_latent")
        assert "float32" in error["message"] and "z[0][0]" in error["message"]


def test_the_largest_float32_latent_is_accepted(client: TestClient) -> None:
    response = client.post(f"{VAE}/decode", json={"z": [[3.4e38] + [0.0] * 31]})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "temperature", ["NaN", "Infinity", "-Infinity", "0", "-1", "10.5", "1e300", '"warm"', '"0.5"',
                    "true"]
)
def test_sample_temperature_must_be_finite_and_in_range(client: TestClient, temperature: str) -> None:
    response = client.post(f"{VAE}/sample", content='{"n": 1, "temperature": ' + temperature + "}",
                           headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_request")


@pytest.mark.parametrize("body", ['{"n": 0}', '{"n": -3}', '{"n": 1.5}', '{"seed": -1}',
                                  '{"seed": 1e300}', '{"seed": 9223372036854775808}',
                                  '{"n": true}', '{"n": "5"}', '{"seed": false}', '{"seed": "7"}'])
def test_sample_n_and_seed_are_checked(client: TestClient, body: str) -> None:
    response = client.post(f"{VAE}/sample", content=body, headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_request")


@pytest.mark.parametrize("params", [{"k": "0"}, {"k": "-5"}, {"k": "inf"}, {"k": "NaN"}, {"k": "1e3"},
                                    {"seed": "-1"}, {"seed": "nan"}])
def test_score_k_and_seed_must_be_in_range(client: TestClient, params: dict[str, str]) -> None:
    response = client.post(f"{VAE}/score", params=params, files=files(image_bytes()))
    assert_error(response, 422, "invalid_request")


@pytest.mark.parametrize("steps", ["1", "0", "inf", "2.5"])
def test_interpolate_steps_must_be_an_integer_of_at_least_two(client: TestClient, steps: str) -> None:
    body = {"z": [[0.0] * 32, [1.0] * 32]}
    assert_error(client.post(f"{VAE}/interpolate", params={"steps": steps}, json=body), 422)


@pytest.mark.parametrize("body", ['{"z": ' + "[" * 100_000 + "]" * 100_000 + "}",
                                  '{"z": [[0], [1]], "steps": "4"}', '{"z": [[0], [1]], "steps": true}',
                                  '{"z": [["0"], [1]]}',
                                  "not json"])
def test_interpolate_refuses_a_body_it_cannot_read_with_422(client: TestClient, body: str) -> None:
    response = client.post(f"{VAE}/interpolate", content=body,
                           headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_request")


# ---- the JSON body: how it is read -------------------------------------------------------------
JSON_ROUTES = {"decode": {"z": [[0.0] * 32]}, "sample": {"n": 1, "seed": 0},
               "interpolate": {"z": [[0.0] * 32, [1.0] * 32], "steps": 2}}


def answered(client: TestClient, route: str, status: int) -> float:
    """How many requests to ``route`` the metrics have counted with ``status``."""
    text = client.get("/metrics").text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "aeserve_requests_total"
               and s.labels.get("route") == f"/v1/models/{{name}}/{route}"
               and s.labels.get("status") == str(status))


def cut_short(client: TestClient, route: str, why: str) -> list[dict[str, Any]]:
    """POST a JSON body to ``route`` through the whole app, as the server (app/server.py) hands
    it over when the connection closes after its first part: ``receive`` reports a disconnect,
    and the disconnect extension says why (``why``). Returns what the app sent."""
    body = json.dumps(JSON_ROUTES[route]).encode()
    path = f"{VAE}/{route}"
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "state": {},
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "extensions": {DISCONNECT_EXTENSION: {"callbacks": [], why: True}},
    }
    parts = [{"type": "http.request", "body": body[:5], "more_body": True},
             {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return parts.pop(0) if parts else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    client.portal.call(client.app, scope, receive, send)  # type: ignore[union-attr]
    return sent


@pytest.mark.parametrize("route", list(JSON_ROUTES))
def test_a_json_body_cut_short_by_the_client_leaving_counts_as_499(
    client: TestClient, route: str
) -> None:
    before = {status: answered(client, route, status) for status in (400, 499)}
    assert cut_short(client, route, CLIENT_GONE) == []  # nothing is sent to a client that is gone
    assert answered(client, route, 499) - before[499] == 1
    assert answered(client, route, 400) == before[400]


@pytest.mark.parametrize("route", list(JSON_ROUTES))
def test_a_json_body_slower_than_the_body_timeout_ends_as_408(client: TestClient, route: str) -> None:
    before = {status: answered(client, route, status) for status in (400, 408, 499)}
    start, body = cut_short(client, route, BODY_TIMED_OUT)
    assert start["status"] == 408
    assert json.loads(body["body"])["error"]["code"] == "body_timeout"
    assert answered(client, route, 408) - before[408] == 1
    assert [answered(client, route, s) for s in (400, 499)] == [before[400], before[499]]


@pytest.mark.parametrize("route", list(JSON_ROUTES))
@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
def test_a_json_body_without_a_json_content_type_is_415_saying_to_send_one(
    client: TestClient, route: str, content_type: str | None
) -> None:
    # x-www-form-urlencoded is what `curl -d @latents.json` sends
    headers = {} if content_type is None else {"content-type": content_type}
    response = client.post(f"{VAE}/{route}", content=json.dumps(JSON_ROUTES[route]), headers=headers)
    error = assert_error(response, 415, "unsupported_media_type")
    assert "Content-Type: application/json" in error["message"]
    assert (content_type or "(none)") in error["message"]


@pytest.mark.parametrize("route", list(JSON_ROUTES))
def test_json_and_json_suffixed_content_types_are_read(client: TestClient, route: str) -> None:
    body = json.dumps(JSON_ROUTES[route])
    for content_type in ("Application/JSON; charset=utf-8", "application/vnd.latents+json"):
        response = client.post(f"{VAE}/{route}", content=body, headers={"content-type": content_type})
        assert response.status_code == 200, (content_type, response.text)


def test_an_empty_body_is_sample_defaults_and_422_where_a_body_is_needed(client: TestClient) -> None:
    assert len(client.post(f"{VAE}/sample").json()["images"]) == 16
    for route in ("decode", "interpolate"):
        response = client.post(f"{VAE}/{route}", headers={"content-type": "application/json"})
        assert "body: Field required" in assert_error(response, 422, "invalid_request")["message"]


def test_a_json_error_names_the_field(client: TestClient) -> None:
    error = assert_error(client.post(f"{VAE}/decode", json={"z": "zero"}), 422, "invalid_request")
    assert error["message"].startswith("invalid request: z: ")
    error = assert_error(client.post(f"{VAE}/sample", json={"n": 2, "seed": "7"}), 422)
    assert error["message"].startswith("invalid request: seed: ")


@pytest.mark.parametrize(("route", "body", "field"), [
    ("sample", {"n": 1, "temprature": 5}, "temprature"),
    ("decode", {"z": [[0.0] * 32], "n": 2}, "n"),
    ("interpolate", {"z": [[0.0] * 32] * 2, "step": 3}, "step"),
])
def test_a_field_the_operation_does_not_take_is_422_naming_it(
    client: TestClient, route: str, body: dict[str, object], field: str,
) -> None:
    """A misspelt field would leave its default in force without a word."""
    error = assert_error(client.post(f"{VAE}/{route}", json=body), 422, "invalid_request")
    assert error["message"] == f"invalid request: {field}: Extra inputs are not permitted"


def test_interpolate_steps_in_the_query_and_the_body_must_agree(client: TestClient) -> None:
    ends = [[0.0] * 32, [1.0] * 32]
    error = assert_error(client.post(f"{VAE}/interpolate", params={"steps": 3},
                                     json={"z": ends, "steps": 10}), 422, "invalid_request")
    assert error["message"] == "steps is 3 in the query and 10 in the body: give it once"
    for body in ({"z": ends}, {"z": ends, "steps": 3}):  # given once, or twice the same
        answer = client.post(f"{VAE}/interpolate", params={"steps": 3}, json=body)
        assert answer.status_code == 200 and answer.json()["steps"] == 3
