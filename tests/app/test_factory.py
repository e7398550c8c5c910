"""app/factory.py: the import string uvicorn's workers use builds the app from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.factory import build


def test_build_reads_its_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AESERVE_CHECKPOINT_DIR", str(tmp_path / "none-here"))
    monkeypatch.setenv("AESERVE_MAX_IMAGES", "3")
    app = build()
    assert app.state.settings.max_images == 3
    assert app.state.settings.checkpoint_dir == tmp_path / "none-here"
