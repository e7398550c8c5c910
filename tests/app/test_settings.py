"""Settings from AESERVE_* environment variables, validated."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from app import settings as settings_module
from app.settings import Settings, cgroup_cpu_quota, unknown_names


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


@pytest.mark.parametrize(("value", "meant"), [
    ("https://app.example/", "'https://app.example'"),
    ("https://App.Example:8443", "'https://app.example:8443'"),
    ("https://app.example:443", "'https://app.example'"),
    ("http://[::1]:80", "'http://[::1]'"),
    ("https://app.example/page?x=1", "'https://app.example'"),
    ("app.example", "give scheme://host[:port]"),
    ("https://user:pw@app.example", "give scheme://host[:port]"),
])
def test_an_origin_no_browser_sends_is_refused_naming_the_one_meant(
    monkeypatch: pytest.MonkeyPatch, value: str, meant: str
) -> None:
    # a browser's Origin never has a path or capitals: such an origin was accepted, and every
    # call from that page refused by CORS with nothing in the service to say why
    monkeypatch.setenv("AESERVE_CORS_ORIGINS", f"https://ok.example, {value}")
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert repr(value) in str(refused.value) and meant in str(refused.value)


@pytest.mark.parametrize("value", ["*", "http://localhost:5173", "https://app.example",
                                   "chrome-extension://abcdef", "http://[::1]:8080",
                                   "https://app.example:80"])
def test_origins_as_browsers_send_them_are_taken(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AESERVE_CORS_ORIGINS", value)
    assert Settings().cors_origins == [value]


def test_empty_token_means_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AESERVE_API_TOKEN", "")
    assert Settings().api_token is None


def test_a_token_loses_the_whitespace_around_it_and_may_hold_only_bearer_characters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AESERVE_API_TOKEN", "  abc-DEF_0.9~+/x==\n")  # a secret file's newline
    token = Settings().api_token
    assert token is not None and token.get_secret_value() == "abc-DEF_0.9~+/x=="
    for bad in ("s3cr3t-tök", "two words", "a=b", "tok\x7f"):
        monkeypatch.setenv("AESERVE_API_TOKEN", bad)
        with pytest.raises(ValidationError, match="RFC 6750") as refused:
            Settings()
        assert bad not in str(refused.value)  # the refusal does not print the secret


def test_the_lifecycle_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AESERVE_MAX_WORK": "2.5", "AESERVE_QUEUE_WORK": "10",
                        "AESERVE_REQUEST_TIMEOUT_S": "7", "AESERVE_HEADER_TIMEOUT_S": "0.5",
                        "AESERVE_BODY_TIMEOUT_S": "3", "AESERVE_DRAIN_TIMEOUT_S": "0",
                        "AESERVE_MAX_HEADER_BYTES": "8192"}.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.max_work_units, settings.queue_work_units) == (2_500_000, 10_000_000)
    assert (settings.request_timeout_s, settings.header_timeout_s, settings.body_timeout_s,
            settings.drain_timeout_s, settings.max_header_bytes) == (7.0, 0.5, 3.0, 0.0, 8192)


@pytest.mark.parametrize(
    "values",
    [{"max_work": 40.0, "queue_work": 32.0}, {"max_work": 0.0}, {"request_timeout_s": 0.0},
     {"header_timeout_s": -1.0}, {"body_timeout_s": 0.0}, {"drain_timeout_s": -1.0},
     {"max_header_bytes": 100}],
)
def test_lifecycle_limits_that_cannot_work_are_refused(values: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        Settings(**values)


def test_the_default_cap_fits_in_the_default_queue_budget() -> None:
    settings = Settings()
    assert 0 < settings.max_work_units <= settings.queue_work_units


def test_the_runtime_choice_is_resolved_for_the_device() -> None:
    from app.runtime import onnx_available

    assert Settings(runtime="torch").resolve_runtime("cpu") == "torch"
    assert Settings(runtime="auto").resolve_runtime("cuda") == "torch"
    assert Settings(runtime="auto").resolve_runtime("cpu") == (
        "onnxruntime" if onnx_available() else "torch")
    with pytest.raises(ValueError, match="CPU only"):
        Settings(runtime="onnxruntime").resolve_runtime("cuda")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "cuda:0:1", "mps:0"])
def test_a_device_that_is_no_device_name_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="device must be"):
        Settings(device=bad)


def test_a_device_this_machine_does_not_have_is_named_at_startup() -> None:
    import torch

    count = torch.cuda.device_count()
    with pytest.raises(ValueError, match=rf"AESERVE_DEVICE=cuda:{count}: torch sees {count} CUDA"):
        Settings(device=f"cuda:{count}").resolve_device()
    assert Settings(device="cpu").resolve_device() == "cpu"
    assert Settings(device="auto").resolve_device() == ("cuda" if count else "cpu")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="no MPS device"):
            Settings(device="mps").resolve_device()


def test_bodies_held_at_once_default_to_four_of_the_largest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AESERVE_MAX_BODY_BYTES", raising=False)
    monkeypatch.delenv("AESERVE_MAX_BODIES_BYTES", raising=False)
    assert Settings().bodies_limit == 4 * 20 * 1024 * 1024  # 80 MiB
    monkeypatch.setenv("AESERVE_MAX_BODY_BYTES", "1000000")
    assert Settings().bodies_limit == 4_000_000  # it follows the largest body
    monkeypatch.setenv("AESERVE_MAX_BODIES_BYTES", "3000000")
    assert Settings().bodies_limit == 3_000_000
    monkeypatch.setenv("AESERVE_MAX_BODIES_BYTES", "")
    assert Settings().bodies_limit == 4_000_000  # empty: unset
    monkeypatch.setenv("AESERVE_MAX_BODIES_BYTES", "999999")
    with pytest.raises(ValidationError, match="largest upload could never be read"):
        Settings()


@pytest.mark.parametrize(("files", "quota"), [
    ({"cpu.max": "200000 100000\n"}, 2.0),  # cgroup v2: a limit of 2 CPUs
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),  # no limit
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),  # no cgroup files at all
])
def test_the_cgroup_cpu_quota_is_read_from_v2_or_v1(
    tmp_path: Path, files: dict[str, str], quota: float | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path, tmp_path / "no-membership-file") == quota


def test_a_cgroup_v2_quota_above_the_process_cgroup_counts_too(tmp_path: Path) -> None:
    """On a host without a cgroup namespace the process sits deep in the tree (a systemd unit, a
    pod's container) and the limit may be set on a folder above it: the smallest one wins."""
    root = tmp_path / "cgroup"
    own = root / "kubepods" / "pod1" / "ctr"
    own.mkdir(parents=True)
    (own / "cpu.max").write_text("max 100000\n")
    (root / "kubepods" / "pod1" / "cpu.max").write_text("250000 100000\n")
    (root / "kubepods" / "cpu.max").write_text("800000 100000\n")
    (root / "cpu.max").write_text("max 100000\n")
    membership = tmp_path / "cgroup-of-self"
    membership.write_text("0::/kubepods/pod1/ctr\n")
    assert cgroup_cpu_quota(root, membership) == 2.5
    membership.write_text("0::/\n")  # inside a container's own namespace: the root is its own
    assert cgroup_cpu_quota(root, membership) is None


@pytest.mark.parametrize(("cores", "workers", "threads"), [(16, 1, 15), (16, 4, 3), (2, 1, 1),
                                                           (1, 1, 1), (3, 4, 1)])
def test_default_torch_threads_share_the_cores_among_the_workers(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int, threads: int
) -> None:
    monkeypatch.delenv("AESERVE_TORCH_THREADS", raising=False)
    monkeypatch.setattr(settings_module, "available_cores", lambda: cores)
    assert Settings(workers=workers).torch_threads == threads


def test_only_names_that_are_no_setting_are_reported() -> None:
    environ = {"AESERVE_PORT": "1", "AESERVE_URL": "http://x", "AESERVE_TORCH_THREAD": "2",
               "AESERVE_ZZZ": "1", "PATH": "/bin", "aeserve_port": "2", "aeserve_max_batch": "4"}
    assert unknown_names(environ) == [  # the settings are read whatever the case of the name
        "AESERVE_TORCH_THREAD is not a setting and is ignored; did you mean AESERVE_TORCH_THREADS?",
        "AESERVE_ZZZ is not a setting and is ignored; python -m app --help lists the settings",
        "aeserve_max_batch is not a setting and is ignored; did you mean AESERVE_MAX_BATCH_SIZE?",
    ]


def test_every_prefixed_name_the_project_uses_is_a_setting_or_another_tools() -> None:
    """The warning about unknown names stays quiet for every name that compose, the client and the
    tests read: a new one of those goes into ``OTHER_TOOLS``."""
    root = Path(__file__).resolve().parents[2]
    listed = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=False)
    if listed.returncode:
        pytest.skip("not a git checkout: its files cannot be listed")
    files = listed.stdout.split()
    typos = {"AESERVE_MAX_BATCH", "AESERVE_TORCH_THREAD", "AESERVE_ZZZ", "AESERVE_NAME"}  # examples
    used: dict[str, str] = {}
    for name in files:
        path = root / name
        if path.suffix in {".png", ".safetensors", ".json", ".gz", ".ico"} or not path.is_file():
            continue
        for found in re.findall(r"(?<![A-Za-z0-9_])AESERVE_[A-Z0-9_]*[A-Z0-9]", path.read_text()):
            used.setdefault(found, name)
    environ = {found: "1" for found in used if found not in typos}
    assert unknown_names(environ) == [], {n: used[n] for n in environ if n in str(unknown_names(environ))}
