"""The container as a user runs it: build the image, ``docker compose up``, call the API, tear down.

Needs a Docker engine with the compose plugin; skipped with the reason when none answers (set
AESERVE_REQUIRE_DOCKER=1 to fail instead, as ``.ci/run`` does). Build arguments and the engine come
from the environment (DOCKER_HOST, DOCKER_BUILDKIT, TORCH_INDEX_URL, BASE_IMAGE, ...), so nothing
specific to one machine lives here or in the Dockerfile.

The service sees only a read-only volume mounted over the baked-in checkpoints (copies of the
shipped MNIST ones under other names, or tiny ones trained for the test), which proves that a
volume replaces them; the baked-in ones are checked in the image.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from packaging.utils import canonicalize_name
from PIL import Image

from model.checkpoint import CheckpointError, load_checkpoint
from tests.conftest import ROOT, make_digits
from tests.deploy.test_lock import SERVICE, TORCH, versions

pytestmark = [pytest.mark.container, pytest.mark.timeout(1500)]

IMAGE = "aeserve:test"


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} -> {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def docker_missing() -> str | None:
    """Why the container test cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        return "no Docker engine answers (start one, or point DOCKER_HOST at one)"
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        return "the docker compose plugin is missing"
    return None


def needs_docker(reason: str | None) -> None:
    """Skip (or, with AESERVE_REQUIRE_DOCKER=1, fail) when ``reason`` says Docker is missing."""
    if reason:
        if os.environ.get("AESERVE_REQUIRE_DOCKER") == "1":
            pytest.fail(f"AESERVE_REQUIRE_DOCKER=1 but {reason}")
        pytest.skip(reason)


def compose_config(*args: str, env: dict[str, str] | None = None,
                   file: Path = ROOT / "docker-compose.yml") -> dict[str, Any]:
    """The compose file as ``docker compose config`` reads it, with the variables of ``env`` (the
    shell's without the AESERVE_* settings and NETWORK_PREFIX when None); needs the CLI alone."""
    if shutil.which("docker") is None:
        needs_docker("no docker CLI on PATH")
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        needs_docker("the docker compose plugin is missing")
    if env is None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AESERVE_") and k != "NETWORK_PREFIX"}
    out = run("docker", "compose", "-f", str(file), *args, "config", "--format", "json", env=env).stdout
    config: dict[str, Any] = json.loads(out)
    return config


MOUNTED = {"mounted-dae": "mnist-dae", "mounted-vae": "mnist-vae"}  # served name -> source


def usable(folder: Path) -> bool:
    try:
        load_checkpoint(folder)
    except (CheckpointError, OSError):
        return False
    return True


def served_checkpoints(request: pytest.FixtureRequest, dest: Path) -> Path:
    """World-readable copies (pytest's temp folders are private) of the shipped MNIST checkpoints,
    under other names so that the service can only find them through the volume; tiny ones trained
    for the test when the shipped ones are missing or being rewritten by a training run."""
    shipped = ROOT / "checkpoints"
    if all(usable(shipped / src) for src in MOUNTED.values()):
        source = shipped
    else:
        source = request.getfixturevalue("tiny_checkpoints")
    for name, src in MOUNTED.items():
        shutil.copytree(source / src, dest / name, ignore=shutil.ignore_patterns(".state"))
        assert usable(dest / name), f"{source / src} changed while it was copied"
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 that no Docker network here uses (the compose file's default one may be taken by
    another project, a concurrent test run's above all)."""
    ids = run("docker", "network", "ls", "-q").stdout.split()
    used = run("docker", "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
               *ids).stdout.split()
    taken = [ipaddress.ip_network(net) for net in used if "." in net]
    while True:
        subnet = ipaddress.IPv4Network(f"172.16.{random.randrange(1, 255)}.0/24")
        if not any(subnet.overlaps(net) for net in taken):
            return subnet


class Stack:
    """One compose project: the repository's docker-compose.yml plus a test override."""

    def __init__(self, override: Path) -> None:
        self.project = f"aeserve-test-{os.getpid()}"
        self.base = [
            "docker",
            "compose",
            "-p",
            self.project,
            "-f",
            str(ROOT / "docker-compose.yml"),
            "-f",
            str(override),
        ]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AESERVE_")}
        subnet = free_subnet()
        self.proxy_ip = str(subnet[10])  # what the compose file makes of NETWORK_PREFIX
        # host port 0: Docker's pick, free when it publishes it (a port picked here could be taken
        # before ``up``, an image build later); ``published`` says which
        self.env |= {"AESERVE_IMAGE": IMAGE, "AESERVE_API_PORT": "0", "AESERVE_PROXY_PORT": "0",
                     "NETWORK_PREFIX": str(subnet.network_address).rpartition(".")[0]}
        self.url = ""  # the api's, once it is up
        self.proxy_url = ""  # the proxy's, once it is up

    def compose(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(*self.base, *args, env=self.env, timeout=timeout, check=check)

    def published(self, service: str, port: int) -> str:
        """The URL at which the host reaches ``service``'s ``port``, as Docker published it."""
        address = self.compose("--profile", "proxy", "port", service, str(port)).stdout.strip()
        return f"http://{address}"

    def container(self, service: str = "api") -> str:
        return self.compose("--profile", "proxy", "ps", "-a", "-q", service).stdout.strip()

    def inspect(self, template: str, service: str = "api") -> str:
        return run("docker", "inspect", "-f", template, self.container(service)).stdout.strip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
    needs_docker(docker_missing())
    tmp = tmp_path_factory.mktemp("container")
    ckpts = served_checkpoints(request, tmp / "checkpoints")
    override = tmp / "compose.test.yml"
    override.write_text(
        json.dumps(
            {
                "services": {
                    "api": {
                        "environment": {"AESERVE_LOG_FORMAT": "json"},  # as the k8s pods log
                        "volumes": [
                            {
                                "type": "bind",
                                "source": str(ckpts),
                                "target": "/app/checkpoints",
                                "read_only": True,
                            },
                        ]
                    }
                }
            }
        )
    )
    stack = Stack(override)
    started = time.monotonic()
    stack.compose("build", "api", timeout=1200)
    print(f"image build: {time.monotonic() - started:.0f} s")
    try:
        started = time.monotonic()
        up = stack.compose("up", "-d", "--wait", "--wait-timeout", "240", "api", timeout=300, check=False)
        if up.returncode != 0:
            logs = stack.compose("logs", "--no-color", "api", check=False).stdout
            raise AssertionError(f"compose up failed:\n{up.stderr[-2000:]}\n{logs[-4000:]}")
        stack.url = stack.published("api", 8000)
        print(f"up and healthy: {time.monotonic() - started:.0f} s")
        yield stack
    finally:
        stack.compose("--profile", "proxy", "down", "-v", "--remove-orphans", "-t", "30", timeout=180,
                      check=False)


def noisy_digit_png() -> bytes:
    rng = np.random.default_rng(0)
    digit = make_digits(1, 7)[0].astype(np.float64)
    noisy = np.clip(digit + rng.normal(0, 0.3 * 255, digit.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def test_healthy_with_the_mounted_checkpoints(stack: Stack) -> None:
    assert stack.inspect("{{.State.Health.Status}}") == "healthy"
    ready = httpx.get(f"{stack.url}/readyz", timeout=10)
    assert ready.status_code == 200
    models = httpx.get(f"{stack.url}/v1/models", timeout=10)
    assert models.status_code == 200
    assert {m["name"] for m in models.json()["models"]} == set(MOUNTED)  # not the baked-in ones


def test_denoise_through_the_published_port(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.url}/v1/models/mounted-dae/denoise",
        files={"image": ("digit.png", noisy_digit_png(), "image/png")},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(response.content)) as img:
        assert img.size == (28, 28)


def test_sample_through_the_published_port(stack: Stack) -> None:
    response = httpx.post(f"{stack.url}/v1/models/mounted-vae/sample", json={"n": 4, "seed": 0}, timeout=30)
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert len(images) == 4
    for item in images:
        with Image.open(io.BytesIO(base64.b64decode(item))) as img:
            assert img.size == (28, 28)
    again = httpx.post(f"{stack.url}/v1/models/mounted-vae/sample", json={"n": 4, "seed": 0}, timeout=30)
    assert again.json()["images"] == images


def test_runs_as_non_root_on_a_read_only_root(stack: Stack) -> None:
    assert stack.compose("exec", "-T", "api", "id", "-u").stdout.strip() != "0"
    assert stack.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"
    for path in ("/app/probe", "/opt/venv/probe", "/app/checkpoints/probe"):
        denied = stack.compose("exec", "-T", "api", "touch", path, check=False)
        assert denied.returncode != 0, f"{path} is writable"
    assert stack.compose("exec", "-T", "api", "touch", "/tmp/probe", check=False).returncode == 0


def test_every_log_line_is_json(stack: Stack) -> None:
    """A log collector parsing JSON lines gets nothing else: no library's own plain-text warning
    (onnxruntime's, with a read-only home directory, was one)."""
    lines = stack.compose("logs", "--no-color", "--no-log-prefix", "api").stdout.splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert any("loaded" in str(r.get("message", r)) for r in records), lines[:5]


def test_image_bakes_the_shipped_checkpoints_only(stack: Stack) -> None:
    script = (
        "import json, os; print(json.dumps(sorted(os.path.relpath(os.path.join(d, f), '/app')"
        " for d, _, fs in os.walk('/app') for f in fs)))"
    )
    files = json.loads(run("docker", "run", "--rm", "--entrypoint", "python", IMAGE, "-c", script).stdout)
    shipped = {  # every file of every model folder (a photo model's colour/ network too)
        str(p.relative_to(ROOT)) for p in (ROOT / "checkpoints").rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
    }
    assert "checkpoints/photo-denoiser/colour/model.safetensors" in shipped
    assert set(files) == shipped
    tools = run(
        "docker", "run", "--rm", "--entrypoint", "sh", IMAGE, "-c", "command -v gcc cc make curl || true"
    ).stdout.strip()
    assert tools == ""


def test_image_config_health_check_user_and_stop_signal(stack: Stack) -> None:
    config = json.loads(run("docker", "image", "inspect", "-f", "{{json .Config}}", IMAGE).stdout)
    assert "aeserve-healthcheck" in " ".join(config["Healthcheck"]["Test"])
    assert config["User"] not in ("", "0", "root")
    assert config["StopSignal"] == "SIGTERM"
    assert "PYTHONUNBUFFERED=1" in config["Env"]


MiB = 1024 * 1024


def test_the_limits_are_applied_and_the_app_sizes_itself_to_them(stack: Stack) -> None:
    """Compose's CPU and memory limits reach the container (the denoise and sample tests above ran
    under them), without swap beyond them, and the app's default model threads follow the CPU
    limit: 2 CPUs, one thread for the model beside the event loop."""
    assert int(stack.inspect("{{.HostConfig.Memory}}")) == 2560 * MiB
    assert int(stack.inspect("{{.HostConfig.NanoCpus}}")) == 2 * 10**9
    assert int(stack.inspect("{{.HostConfig.MemorySwap}}")) == 2560 * MiB  # memory + swap: no swap
    threads = stack.compose("exec", "-T", "api", "python", "-c",
                            "from app.settings import Settings; print(Settings().torch_threads)")
    assert threads.stdout.strip() == "1"


def test_the_limits_follow_their_variables_and_no_setting_comes_from_the_shell(stack: Stack) -> None:
    env = stack.env | {"API_MEM_LIMIT": "3g", "API_CPUS": "1.5", "PROXY_MEM_LIMIT": "300m",
                       "AESERVE_WORKERS": "4", "AESERVE_API_TOKEN": "from-the-shell"}
    config = json.loads(run(*stack.base, "--profile", "proxy", "config", "--format", "json",
                            env=env).stdout)
    api, proxy = config["services"]["api"], config["services"]["proxy"]
    assert int(api["deploy"]["resources"]["limits"]["memory"]) == 3 * 1024 * MiB
    assert float(api["deploy"]["resources"]["limits"]["cpus"]) == 1.5
    assert int(proxy["deploy"]["resources"]["limits"]["memory"]) == 300 * MiB
    # a variable exported for a local run or the client does not configure the container
    assert "AESERVE_WORKERS" not in api["environment"]
    assert "AESERVE_API_TOKEN" not in api["environment"]


def test_the_image_holds_exactly_the_locked_packages(stack: Stack) -> None:
    """The deps stage installs requirements.lock and requirements-torch.lock with --require-hashes:
    every package in the image is one of theirs at the locked version, torch the CPU build, and
    nothing else (pip itself and the aeserve package aside)."""
    listed = run("docker", "run", "--rm", "--entrypoint", "pip", IMAGE, "list", "--format", "json").stdout
    installed = {str(canonicalize_name(p["name"])): p["version"] for p in json.loads(listed)}
    assert installed.pop("pip") and installed.pop("aeserve")
    locked = versions(SERVICE) | versions(TORCH)
    assert {name: str(version) for name, version in locked.items()} == installed


def test_the_train_service_runs_under_its_limits(stack: Stack, tmp_path: Path) -> None:
    """``docker compose run train`` gets a CPU and a memory limit without swap, by default and from
    TRAIN_CPUS / TRAIN_MEM_LIMIT, and torch as many threads as CPUs. The service image stands in
    for the train one (the limits are the container's, whatever it runs)."""
    env = stack.env | {"AESERVE_TRAIN_IMAGE": IMAGE, "DATA_DIR": str(tmp_path)}
    for extra, cpus, memory, threads in (({}, 2, 3 * 1024 * MiB, "2"),
                                         ({"TRAIN_CPUS": "1.5", "TRAIN_MEM_LIMIT": "1g",
                                           "TRAIN_THREADS": "1"}, 1.5, 1024 * MiB, "1")):
        config = json.loads(run(*stack.base, "--profile", "train", "config", "--format", "json",
                                env=env | extra).stdout)
        assert f"--threads={threads}" in config["services"]["train"]["command"]
        name = f"{stack.project}-train-{threads}"
        run(*stack.base, "--profile", "train", "run", "-d", "--no-deps", "--name", name,
            "--entrypoint", "sleep", "train", "60", env=env | extra)
        try:
            host = json.loads(run("docker", "inspect", "-f", "{{json .HostConfig}}", name).stdout)
        finally:
            run("docker", "rm", "-f", name, check=False)
        assert host["NanoCpus"] == int(cpus * 10**9)
        assert host["Memory"] == memory
        assert host["MemorySwap"] == memory  # memory + swap: no swap


def proxy_image(env: dict[str, str]) -> str:
    """The compose file's nginx image, pulled when missing; where no registry answers, Debian's
    nginx on the base image (the same nginx.conf, mounted the same way)."""
    image = env.get("PROXY_IMAGE", "nginx:1.27-alpine")
    if run("docker", "image", "inspect", image, check=False).returncode == 0:
        return image
    if run("docker", "pull", "-q", image, timeout=300, check=False).returncode == 0:
        return image
    base = env.get("BASE_IMAGE", "python:3.11-slim")
    dockerfile = (f"FROM {base}\nRUN apt-get update -qq && apt-get install -y -qq --no-install-recommends "
                  "nginx >/dev/null && rm -rf /var/lib/apt/lists/*\n"
                  'CMD ["nginx", "-g", "daemon off;"]\n')
    result = subprocess.run(["docker", "build", "-q", "-t", "aeserve-test-nginx", "-"], input=dockerfile,
                            env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return "aeserve-test-nginx"


def access_log_client(stack: Stack, path: str) -> str:
    """The client address (without its port) of the api's one access-log line for ``path``. The
    api writes it before it answers; Docker copies it to the container's log on its own time, so
    the log is read again until the line is there (each read a ``docker compose logs``, bounded)."""
    deadline = time.monotonic() + 60
    while True:
        lines = stack.compose("logs", "--no-color", "--no-log-prefix", "api").stdout.splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        clients = [r["client"] for r in records if r.get("path") == path]
        if clients or time.monotonic() > deadline:
            break
    assert len(clients) == 1, (path, records[-5:])
    return str(clients[0]).rpartition(":")[0]


def test_behind_the_proxy_the_api_logs_the_clients_address_and_no_forged_one(stack: Stack) -> None:
    stack.env["PROXY_IMAGE"] = proxy_image(stack.env)
    up = stack.compose("--profile", "proxy", "up", "-d", "--wait", "--wait-timeout", "120", "proxy",
                       timeout=300, check=False)
    assert up.returncode == 0, up.stderr[-3000:]
    stack.proxy_url = stack.published("proxy", 8080)
    assert int(stack.inspect("{{.HostConfig.Memory}}", "proxy")) == 256 * MiB
    assert int(stack.inspect("{{.HostConfig.NanoCpus}}", "proxy")) == 10**9
    address = stack.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "proxy")
    assert address == stack.proxy_ip
    forged = {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.8"}
    for url, via in ((stack.url, "direct"), (stack.proxy_url, "proxy")):
        for name, headers in (("plain", {}), ("forged", forged)):
            answer = httpx.get(f"{url}/v1/models?via={via}-{name}", headers=headers, timeout=30)
            assert answer.status_code == 200, answer.text
    # a client on the host reaches the containers from the network's gateway (Docker's port
    # forwarding): the api sees that address directly, and through the proxy it believes the
    # proxy's X-Forwarded-For, and nothing a client forged
    host = access_log_client(stack, "/v1/models?via=direct-plain")
    assert host != stack.proxy_ip
    assert access_log_client(stack, "/v1/models?via=proxy-plain") == host  # not the proxy's address
    assert access_log_client(stack, "/v1/models?via=proxy-forged") == host
    assert access_log_client(stack, "/v1/models?via=direct-forged") == host
    denoised = httpx.post(f"{stack.proxy_url}/v1/models/mounted-dae/denoise", timeout=30,
                          files={"image": ("digit.png", noisy_digit_png(), "image/png")})
    assert denoised.status_code == 200 and denoised.headers["content-type"] == "image/png"


def test_stops_gracefully_on_sigterm(stack: Stack) -> None:
    stack.compose("--profile", "proxy", "stop", "-t", "30", "proxy", "api", timeout=90)
    # 0: it drained and exited on SIGTERM; one that ignored it would be killed after 30 s (137)
    assert stack.inspect("{{.State.ExitCode}}") == "0"


def test_the_image_traces_requests_when_an_otlp_endpoint_is_set(stack: Stack) -> None:
    script = "from app.main import create_app; print(hasattr(create_app().state, 'tracer_provider'))"
    traced = run("docker", "run", "--rm", "-e", "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318",
                 "--entrypoint", "python", IMAGE, "-c", script).stdout.strip().splitlines()
    assert traced[-1] == "True"
