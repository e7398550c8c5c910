"""The compose file's GPU service and network, as ``docker compose config`` reads them (the docker
CLI alone, no engine; run with the container test: ``pytest -m container``)."""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.test_container import MiB, compose_config

pytestmark = pytest.mark.container


GiB = 1024 * MiB


def test_the_gpu_service_has_the_gpu_overlays_work_caps_and_its_own_limits(tmp_path: Path) -> None:
    """api-gpu is not held to the CPU service's work caps and threads, sized for a CPU's memory
    and speed: it gets the Kubernetes gpu overlay's (deploy/compose-gpu.env), its own CPU and
    memory limits with room beside its torch threads, and the overlay's 5 minutes to start; a
    setting in .env still overrides them."""
    overlay = yaml.safe_load((ROOT / "deploy/k8s/overlays/gpu/kustomization.yaml").read_text())
    literals = dict(item.split("=", 1) for gen in overlay["configMapGenerator"] for item in gen["literals"])
    # a copy of the compose file, so that a .env of the checkout's own cannot change what is read
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    (tmp_path / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "compose-gpu.env", tmp_path / "deploy")
    config = compose_config("--profile", "gpu", file=tmp_path / "docker-compose.yml")
    gpu, cpu = config["services"]["api-gpu"], config["services"]["api"]
    for name in ("AESERVE_DEVICE", "AESERVE_MAX_WORK", "AESERVE_QUEUE_WORK", "AESERVE_TORCH_THREADS"):
        assert gpu["environment"].get(name) == literals[name], name
        assert name not in cpu["environment"], name  # the CPU service keeps the defaults
    limits = gpu["deploy"]["resources"]["limits"]
    assert (float(limits["cpus"]), int(limits["memory"])) == (4, 6 * GiB)
    assert int(gpu["environment"]["AESERVE_TORCH_THREADS"]) + 1 < float(limits["cpus"])
    assert (gpu["healthcheck"]["start_period"], cpu["healthcheck"]["start_period"]) == ("5m0s", "1m0s")
    # with a .env beside it: .env comes after the GPU defaults
    (tmp_path / ".env").write_text("AESERVE_MAX_WORK=24\n")
    mine = compose_config("--profile", "gpu", file=tmp_path / "docker-compose.yml")
    assert mine["services"]["api-gpu"]["environment"]["AESERVE_MAX_WORK"] == "24"
    assert mine["services"]["api-gpu"]["environment"]["AESERVE_QUEUE_WORK"] == literals["AESERVE_QUEUE_WORK"]


@pytest.mark.parametrize("prefix", [None, "10.123.45"])
def test_one_variable_places_the_network_and_the_address_the_api_trusts(prefix: str | None) -> None:
    """NETWORK_PREFIX alone picks the project's /24 (a fixed one could clash with a network of
    the host's, a VPN's say): the subnet, the containers' range, the gateway, the proxy's address
    and the one address the api believes X-Forwarded-For from follow it, and cannot disagree.
    The proxy test below runs on a prefix of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESERVE_") and k != "NETWORK_PREFIX"}
    config = compose_config("--profile", "proxy", env=env | ({"NETWORK_PREFIX": prefix} if prefix else {}))
    net = prefix or "172.16.80"
    (ipam,) = config["networks"]["default"]["ipam"]["config"]
    assert ipam == {"subnet": f"{net}.0/24", "ip_range": f"{net}.128/25", "gateway": f"{net}.1"}
    proxy_ip = config["services"]["proxy"]["networks"]["default"]["ipv4_address"]
    assert proxy_ip == f"{net}.10"
    assert ipaddress.ip_address(proxy_ip) not in ipaddress.ip_network(ipam["ip_range"])
    for service in ("api", "api-gpu"):
        if service in config["services"]:
            assert config["services"][service]["environment"]["FORWARDED_ALLOW_IPS"] == proxy_ip
