"""The photo evaluation's table: a row per set and sigma, published figures beside the papers' protocol."""

from __future__ import annotations

from typing import Any

from model.photo.report import markdown


def result(**extra: Any) -> dict[str, Any]:
    return {"images": 68, "model_blind": 29.123, "model_known_sigma": None, **extra}


def test_the_table_has_a_row_per_set_and_sigma_and_the_published_columns_once() -> None:
    metrics = {
        "sets": {"bsd68": {"15": result(bm3d=31.0, bm3d_images=10, model_blind_on_bm3d_subset=31.5,
                                        sigma_estimate_mean=15.2, sigma_estimate_max_rel_error=0.04)},
                 "cbsd68": {"50": result(model_known_sigma=27.5)}},
        "sets_8bit": {"bsd68": {"15": result()}},
        "speed_ms_per_mpx": {"size": 512, "threads": 2, "gray": 80.4, "rgb": 95.6},
        "speed_elsewhere": {"cuda": {"gray": 2.34, "rgb": 3.01}},
    }
    lines = markdown(metrics).splitlines()
    assert lines[0] == "Papers' protocol (noise not clipped):"
    eight_bit = lines.index("8-bit protocol (noisy input clipped and rounded to 8 bits, as users send):")
    assert ("| BSD68 (68) | 15 | 29.12 | – | 15.2 (4 %) | 31.50 | 31.00 (first 10) | 31.07 | 31.61 "
            "| 31.91 |") in lines
    assert "| CBSD68 (68) | 50 | 29.12 | 27.50 | – | – | – | 27.38 | 27.92 | – |" in lines
    assert lines[eight_bit + 4] == "| BSD68 (68) | 15 | 29.12 | – | – | – | – |"  # no published column
    assert "Speed, in-process (2 CPU threads, 512×512): gray 80 ms/MP, colour 96 ms/MP." in lines
    assert lines[-1] == "On cuda (the quality run): gray 2.3 ms/MP, colour 3.0 ms/MP."
