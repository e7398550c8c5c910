"""``model.cli``: how the commands of ``model/`` answer ordinary mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.cli import UsageError, output_folder, run


def test_a_missing_training_extra_is_one_line_saying_what_to_install(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def needs_skimage(argv: list[str] | None) -> int:
        import skimage_that_is_not_installed  # type: ignore[import-not-found]  # noqa: F401
        return 0

    def needs_tqdm(argv: list[str] | None) -> int:
        raise ModuleNotFoundError("No module named 'tqdm'", name="tqdm")

    with pytest.raises(ModuleNotFoundError):  # not a training extra: a bug, with its traceback
        run("prog", needs_skimage, [])
    assert run("prog", needs_tqdm, []) == 2
    assert capsys.readouterr().err == ("prog: error: No module named 'tqdm': this command needs the "
                                       "training extras (pip install -e '.[train]')\n")


def test_an_output_folder_is_checked_before_any_work_and_not_made(tmp_path: Path) -> None:
    wanted = tmp_path / "a" / "b"
    assert output_folder(wanted) == wanted and not (tmp_path / "a").exists()
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(UsageError, match="a file, not a folder"):
        output_folder(afile)
    with pytest.raises(UsageError, match=r"a file, not a folder \(.*file is a file\)"):
        output_folder(afile / "below", "--out")
