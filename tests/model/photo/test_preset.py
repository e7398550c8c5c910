"""The photo recipes: photo-gray and photo-color are photo-denoiser with only their stated changes."""

from __future__ import annotations

from typing import Any

from model.photo.preset import PHOTO_PRESETS, photo_color_preset, photo_gray_preset, photo_preset


def changes(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """``section.field: value`` for every field where ``other`` differs from ``base``."""
    return {f"{section}.{key}": value for section, fields in other.items()
            for key, value in fields.items() if base[section][key] != value}


def test_each_recipe_changes_only_what_it_says() -> None:
    gray, colour = photo_gray_preset().to_dict(), photo_color_preset().to_dict()
    assert changes(photo_preset().to_dict(), gray) == {
        "noise.eight_bit_fraction": 0.5, "train.preset": "photo-gray"}
    assert changes(gray, colour) == {
        "model.channels": 3, "train.preset": "photo-color", "train.gray_fraction": 0.25}
    assert {name: make().train.preset for name, make in PHOTO_PRESETS.items()} == {
        name: name for name in PHOTO_PRESETS}
