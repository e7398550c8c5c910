"""Settings from AESERVE_* environment variables, validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import Settings


def test_environment_sets_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AESERVE_PORT", "9123")
    monkeypatch.setenv("AESERVE_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("AESERVE_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("AESERVE_API_TOKEN", "tok-9f8e7d")
    settings = Settings()
    assert settings.port == 9123 and settings.max_batch_size == 8
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "tok-9f8e7d"
    assert "tok-9f8e7d" not in repr(settings)  # the token is never printed


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AESERVE_HOST", "AESERVE_PORT", "AESERVE_API_TOKEN", "AESERVE_CORS_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert settings.api_token is None and settings.cors_origins == []
    assert settings.checkpoint_dir.name == "checkpoints"


@pytest.mark.parametrize(
    ("name", "value"),
    [("AESERVE_PORT", "-1"), ("AESERVE_DEVICE", "tpu"), ("AESERVE_MAX_BATCH_SIZE", "0"),
     ("AESERVE_LOG_LEVEL", "loud"), ("AESERVE_DEFAULT_K", "5000")],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_empty_token_means_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AESERVE_API_TOKEN", "")
    assert Settings().api_token is None
