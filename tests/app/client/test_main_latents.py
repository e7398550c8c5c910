"""``python -m app.client decode``: a latents file holding NaN or an infinity is refused locally."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.client.__main__ import main


@pytest.mark.parametrize(("text", "where"), [
    ('{"z": [[0.5, NaN]]}', "z[0][1] is nan"),
    ('[[1, 2], [Infinity, 0]]', "z[1][0] is inf"),
    ('{"results": [{"mu": [-Infinity]}]}', "z[0][0] is -inf"),
    ('[[1e999]]', "z[0][0] is inf"),
])
def test_a_latent_that_is_not_finite_is_one_line_naming_the_file(
    text: str, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latents = tmp_path / "z.json"
    latents.write_text(text)
    # no service at this address: the file is refused before any request
    code = main(["decode", str(latents), "-o", str(tmp_path / "d.png"), "--url", "http://127.0.0.1:9"])
    assert code == 2  # as the CLI's other input errors
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (f"aeserve client: {latents}: {where}: latents must be finite numbers "
                    "(no NaN or Infinity)")
