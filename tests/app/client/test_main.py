"""``python -m app.client``: its help shows the defaults, never the token."""

from __future__ import annotations

import pytest

from app.client.__main__ import parse_args


@pytest.mark.parametrize(("command", "model"), [("denoise", "mnist-dae"), ("sample", "mnist-vae"),
                                                ("encode", "mnist-vae"), ("decode", "mnist-vae")])
def test_each_commands_help_names_its_default_model_and_hides_the_token(
    command: str, model: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AESERVE_API_TOKEN", "tok-do-not-print")
    with pytest.raises(SystemExit) as shown:
        parse_args([command, "--help"])
    assert shown.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"default: {model}" in text and "default: AESERVE_API_TOKEN" in text
    assert "tok-do-not-print" not in text


def test_the_token_and_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AESERVE_API_TOKEN", "tok-1")
    monkeypatch.setenv("AESERVE_URL", "http://models.internal:9000")
    args = parse_args(["sample", "-o", "grid.png"])
    assert (args.token, args.url, args.model, args.n) == ("tok-1", "http://models.internal:9000",
                                                          "mnist-vae", 16)
