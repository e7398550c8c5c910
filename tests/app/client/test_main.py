"""``python -m app.client``: its help shows the defaults, never the token; a mistake is one line."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import httpx
import pytest

import app.client.__main__ as cli
from app.client import AeserveError, log
from app.client.__main__ import latents_from, main, parse_args


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


@pytest.mark.parametrize("text", ['{"z": 5}', '{"results": [1]}', '[[0.5, "a"]]', "[]", "{}", "nope"])
def test_a_latents_file_of_another_shape_is_a_one_line_error_naming_it(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latents = tmp_path / "z.json"
    latents.write_text(text)
    assert main(["decode", str(latents), "-o", str(tmp_path / "d.png"), "--url", "http://127.0.0.1:9"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"aeserve client: {latents}: ")


def test_encode_output_and_plain_vectors_are_latents(tmp_path: Path) -> None:
    latents = tmp_path / "z.json"
    latents.write_text(json.dumps({"results": [{"mu": [0.5, 1]}, {"z": [2, 3]}]}))
    assert latents_from(latents) == [[0.5, 1], [2, 3]]
    latents.write_text(json.dumps({"z": [[1.0]]}))
    assert latents_from(latents) == [[1.0]]


def test_a_url_that_is_no_url_is_one_line_and_exit_2(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", "-o", str(tmp_path / "s.png"), "--url", "http://[::1"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("aeserve client: ")


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "soon"])
def test_a_timeout_must_be_a_finite_number_of_seconds_above_0(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        parse_args(["sample", "-o", "s.png", "--timeout", timeout])
    assert refused.value.code == 2
    assert "argument --timeout: " in capsys.readouterr().err


@pytest.mark.parametrize(("given", "taken"), [([], 0), (["--retries", "3"], 3)])
def test_retries_default_to_none(given: list[str], taken: int) -> None:
    assert parse_args(["sample", "-o", "s.png", *given]).retries == taken


def test_retries_must_be_a_whole_number(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["sample", "-o", "s.png", "--retries", "-1"])
    assert "argument --retries: " in capsys.readouterr().err


def test_an_encode_seed_without_sample_is_refused_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        parse_args(["encode", "digit.png", "--seed", "7"])
    assert refused.value.code == 2
    assert "--seed seeds the draw that --sample adds" in capsys.readouterr().err
    assert parse_args(["encode", "digit.png", "--seed", "7", "--sample"]).seed == 7


@pytest.mark.parametrize(("command", "option"), [(["sample", "-o", "s.png"], "--temperature"),
                                                 (["denoise", "x.png", "-o", "c.png"], "--sigma")])
@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "warm"])
def test_a_temperature_or_sigma_must_be_a_finite_number(
    command: list[str], option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # JSON has no infinity: httpx refused to encode one, and the CLI printed its message alone
    with pytest.raises(SystemExit) as refused:
        parse_args([*command, option, value])
    assert refused.value.code == 2
    assert f"argument {option}: " in capsys.readouterr().err
    assert getattr(parse_args([*command, option, "0.5"]), option[2:]) == 0.5


@pytest.mark.parametrize(("token", "hint"), [
    (None, "(this service needs its token: give it with --token or AESERVE_API_TOKEN)"),
    ("wrong", "(the token given by --token or AESERVE_API_TOKEN is not this service's)"),
])
def test_a_401_says_how_to_give_the_token_on_the_command_line(
    token: str | None, hint: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    # the service's 401 says "send the header 'Authorization: Bearer <token>'", which a CLI user
    # does not write; the CLI's own way is --token
    def unauthorized(args: argparse.Namespace) -> None:
        raise AeserveError(401, "unauthorized", "missing or wrong API token")

    monkeypatch.delenv("AESERVE_API_TOKEN", raising=False)
    monkeypatch.setattr(cli, "run", unauthorized)
    given = [] if token is None else ["--token", token]
    assert cli.main(["sample", "-o", "s.png", *given]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"aeserve: 401 unauthorized: missing or wrong API token {hint}"


def test_each_retry_is_said_on_stderr_as_it_happens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The client logs each retry (app.client); the command line prints those lines, so that a
    run waiting on a busy or restarting service says why it waits (it waited silently)."""
    def busy_then_done(args: argparse.Namespace) -> int:
        log.warning("503 overloaded: sending it again in 1.1 s (retry 1 of 2)")
        return 0

    monkeypatch.setattr(cli, "run", busy_then_done)
    assert cli.main(["sample", "-o", "s.png", "--retries", "2"]) == 0
    assert capsys.readouterr().err == ("aeserve client: 503 overloaded: sending it again in 1.1 s "
                                       "(retry 1 of 2)\n")
    assert log.handlers == []  # the handler is gone with its run


@pytest.mark.parametrize(("raised", "code", "line"), [
    (AeserveError(422, "wrong_size", "model mnist-dae takes 28x28 images; this one is 64x48. Send "
                  "resize=true to have it resized to fit"), 1,
     "aeserve: 422 wrong_size: model mnist-dae takes 28x28 images; this one is 64x48. Send "
     "resize=true to have it resized to fit (on the command line: --resize)"),
    (httpx.ConnectError("[Errno 111] Connection refused"), 2,
     "aeserve client: cannot connect to http://127.0.0.1:9 (--url): [Errno 111] Connection refused"),
    (KeyboardInterrupt(), 130, "aeserve client: interrupted"),
])
def test_each_failure_is_one_line_saying_what_to_do_on_the_command_line(
    raised: BaseException, code: int, line: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong size named the service's resize=true, not --resize; a refused connection did not
    say which URL was tried ("[Errno 111] Connection refused"); Ctrl-C printed a traceback."""
    def fails(args: argparse.Namespace) -> int:
        raise raised

    monkeypatch.setattr(cli, "run", fails)
    assert cli.main(["sample", "-o", "s.png", "--url", "http://127.0.0.1:9"]) == code
    assert capsys.readouterr().err.splitlines() == [line]


def test_the_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "130 interrupted" in " ".join(text.split())


COMMANDS = [["sample"], ["decode", "{z}"], ["interpolate", "{a}", "{a}"], ["denoise", "{a}"]]


@pytest.mark.parametrize(("command", "folder"), [
    *((command, False) for command in COMMANDS),
    *((command, True) for command in COMMANDS[:-1]),  # denoise -o a folder writes into it
])
def test_an_output_that_cannot_be_written_is_refused_before_anything_is_sent(
    command: list[str], folder: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """-o in a folder that does not exist, or -o a folder: the answer was computed (seconds for
    a large photo) and then lost to 'No such file or directory' or 'Is a directory' when saved.
    Now it is refused before anything is sent."""
    sent: list[str] = []
    monkeypatch.setattr(cli.Client, "_send", lambda *args, **kw: sent.append("sent"))
    (tmp_path / "z.json").write_text('{"z": [[0.5]]}')
    (tmp_path / "a.png").write_bytes(b"an image")
    given = [part.format(z=tmp_path / "z.json", a=tmp_path / "a.png") for part in command]
    output = tmp_path if folder else tmp_path / "missing" / "out.png"
    assert main([*given, "-o", str(output), "--url", "http://127.0.0.1:9"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (f"aeserve client: {tmp_path} (-o) is a folder: give the file to write" if folder
                    else f"aeserve client: {output.parent} (-o {output}): no such folder")
    assert sent == []


@pytest.mark.parametrize(("environ", "said"), [
    ({"HTTP_PROXY": "http://127.0.0.1:1"}, " through the proxy http://127.0.0.1:1 (HTTP_PROXY; "
                                           "NO_PROXY lists the hosts to reach directly)"),
    ({"HTTP_PROXY": "http://127.0.0.1:1", "NO_PROXY": "127.0.0.1"}, ""),
    ({}, ""),
])
def test_a_refused_connection_names_the_proxy_it_went_through(
    environ: dict[str, str], said: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """httpx sends through the proxy in the environment: a proxy that is down said 'cannot
    connect to <the service's URL>', which was up."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        for variant in (name, name.lower()):
            monkeypatch.delenv(variant, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["sample", "-o", "s.png", "--url", "http://127.0.0.1:9"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"aeserve client: cannot connect to http://127.0.0.1:9 (--url){said}: ")


def test_a_socks_proxy_without_its_package_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if importlib.util.find_spec("socksio") is not None:
        pytest.skip("socksio is installed: httpx can use the SOCKS proxy")
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1")  # it was a traceback (ImportError)
    assert main(["sample", "-o", "s.png", "--url", "http://127.0.0.1:9"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("aeserve client: Using SOCKS proxy, but the 'socksio' package")


def test_an_import_error_other_than_socks_is_raised_not_one_line(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a SOCKS proxy without socksio is a one-line exit 2; any other ImportError is a bug,
    and was hidden as one line too."""
    def broken(args: argparse.Namespace) -> int:
        raise ImportError("cannot import name 'gone' from 'somewhere'", name="somewhere")

    monkeypatch.setattr(cli, "run", broken)
    with pytest.raises(ImportError, match="gone"):
        main(["sample", "-o", "s.png", "--url", "http://127.0.0.1:9"])


@pytest.mark.parametrize("command", ["denoise", "sample", "encode", "decode", "score", "interpolate"])
def test_every_argument_says_what_it_is_in_the_help(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """encode and score's images, -o of the grids, --resize and score's --seed had no help: the
    help listed them bare, and nothing said that encode takes at most 64 images at a time."""
    with pytest.raises(SystemExit):
        parse_args([command, "--help"])
    lines = capsys.readouterr().out.split("\n\n", 1)[1].splitlines()  # past the usage
    bare = [line.strip() for line, after in zip(lines, [*lines[1:], ""], strict=True)
            if line.startswith("  ") and not line.startswith("   ")  # an argument
            and "  " not in line.strip() and not after.startswith("   ")]  # no help beside or under
    assert bare == []
