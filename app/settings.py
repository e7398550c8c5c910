"""Service settings, read from ``AESERVE_*`` environment variables and validated at startup."""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.bearer import is_bearer_token

ROOT = Path(__file__).resolve().parents[1]

# bodies of the largest size the process reads and holds at once by default: uploads of 20 MiB
# arrive in parallel from a few slow clients while their bytes, in the server's buffer, the body and
# the multipart parts, stay a few hundred MiB at most (docs/kubernetes.md, "Resource sizing")
BODIES_PER_PROCESS = 4

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup"),
                     membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPUs a cgroup quota allows this process (a container's CPU limit), None without one.

    cgroup v2: ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD") of this process's cgroup (its path in
    ``membership``: "/" inside a container) and of every cgroup above it, the smallest; else v1
    (``cpu/cpu.cfs_quota_us``, -1 for none, over ``cpu/cpu.cfs_period_us``). Read by hand:
    neither ``os`` nor a small, kept library reports it, and ``os.cpu_count()`` sees every core of
    the node."""
    quotas = [q for folder in _v2_folders(root, membership)
              if (q := _v2_quota(folder / "cpu.max")) is not None]
    if quotas:
        return min(quotas)
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def _v2_folders(root: Path, membership: Path) -> list[Path]:
    """This process's cgroup v2 folder under ``root`` and every one above it, up to ``root``."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    path = next((line[3:] for line in lines if line.startswith("0::")), "/")
    folder = root / path.strip("/")
    return [folder, *[p for p in folder.parents if p.is_relative_to(root)]]


def _v2_quota(cpu_max: Path) -> float | None:
    try:
        quota, period = cpu_max.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup quota (rounded up)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def _default_torch_threads(data: dict[str, Any]) -> int:
    """Each worker's share of the cores, less one for its event loop (HTTP, PNG codec) when there
    is more than one."""
    return max(1, available_cores() // data.get("workers", 1) - 1)


DEFAULT_PORTS = {"http": 80, "https": 443}  # the ports a browser's ``Origin`` leaves out


class Settings(BaseSettings):
    """Every knob of the service; ``AESERVE_<NAME>`` in the environment sets ``<name>``."""

    # errors name the setting, never its value: the API token is one
    model_config = SettingsConfigDict(env_prefix="AESERVE_", extra="ignore", frozen=True,
                                      hide_input_in_errors=True)

    host: str = Field(default="127.0.0.1", description="address to listen on (0.0.0.0: all)")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port")
    workers: int = Field(default=1, ge=1, le=64, description="server processes (metrics add up)")
    worker_start_timeout_s: int = Field(
        default=60, ge=1, description="with several workers: how long a new worker (at start or on "
        "reload) may take to load and warm its models before the supervisor gives up on it; also "
        "how long the supervisor waits on a worker that does not answer its liveness check")
    log_level: LogLevel = Field(default="info", description="critical|error|warning|info|debug|trace")
    log_format: Literal["text", "json"] = Field(default="text", description="text or json lines")
    checkpoint_dir: Path = Field(default=ROOT / "checkpoints",
                                 description="folder of model folders (config.json + safetensors)")
    device: str = Field(default="auto", description="auto|cpu|cuda|cuda:N|mps")
    runtime: Literal["auto", "torch", "onnxruntime"] = Field(
        default="auto", description="auto: ONNX Runtime for the autoencoders on a CPU, else torch")
    api_token: SecretStr | None = Field(default=None,
                                        description="bearer token required on /v1 (unset: open)")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins allowed to call the API")

    # limits: the body, then the work (docs/serving.md, "A request's lifecycle")
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, description="largest body (413)")
    max_json_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024,
        description="largest body that is not an image upload, JSON latents above all (413): "
                    "latents are small, and a JSON body is parsed whole before it is checked")
    max_bodies_bytes: int | None = Field(
        default=None, ge=1024,
        description="request bodies being read or held at once, in all, bytes (503 overloaded); "
                    "unset: 4 x max_body_bytes")
    max_pixels: int = Field(default=4096 * 4096, ge=1, description="largest image, pixels (413)")
    max_images: int = Field(default=64, ge=1, description="images per request (422)")
    max_n: int = Field(default=256, ge=1, description="samples or latents per request (422)")
    max_k: int = Field(default=1000, ge=1, description="largest score k (422)")
    default_k: int = Field(default=100, ge=1, description="score k when not given")
    max_steps: int = Field(default=64, ge=2, description="largest interpolation path (422)")
    max_work: float = Field(
        default=8.0, gt=0,
        description="work of one request, megapixel-equivalents: pixels decoded plus pixels the "
                    "network processes (413 too_much_work)")
    queue_work: float = Field(
        default=32.0, gt=0,
        description="work one model may hold queued and running, megapixel-equivalents "
                    "(503 overloaded)")
    request_timeout_s: float = Field(
        default=60.0, gt=0, description="deadline from arrival, queue included; the work stops (503)")
    max_header_bytes: int = Field(default=64 * 1024, ge=1024,
                                  description="request line and headers (431)")
    header_timeout_s: float = Field(default=20.0, gt=0,
                                    description="request line and headers must arrive within (408)")
    body_timeout_s: float = Field(default=30.0, gt=0,
                                  description="a body must arrive within, from the end of the headers (408)")
    drain_timeout_s: float = Field(
        default=30.0, ge=0, description="on SIGTERM, requests in flight get this long, then 503")

    # batching and compute (docs/serving.md, "Batching")
    max_batch_size: int = Field(default=16, ge=1, description="rows per model batch")
    max_batch_delay_ms: float = Field(default=2.0, ge=0,
                                      description="linger for a fuller batch, only under load")
    torch_threads: int = Field(default_factory=_default_torch_threads, ge=1,
                               description="model threads per worker (default: the cores the "
                               "process may use, container CPU limit included, divided among the "
                               "workers, less one each)")
    png_compress_level: int = Field(default=1, ge=0, le=9, description="zlib level of PNG answers")
    warmup: bool = Field(default=True, description="run every operation once before ready")
    gc_freeze: bool = Field(default=True,
                            description="move startup objects out of the cyclic GC's view")
    gc_gen0_threshold: int = Field(default=10_000, ge=0,
                                   description="allocations between young GCs (0: Python's 700)")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        """Each origin as a browser sends it (``scheme://host[:port]``, lower case, no path), or
        ``*``: a browser's ``Origin`` never equals ``https://app.example/`` or ``app.example``,
        and the service would refuse its calls with nothing to say why."""
        for origin in origins:
            if origin == "*":
                continue
            parts = urlsplit(origin)
            netloc = parts.netloc
            if parts.port is not None and DEFAULT_PORTS.get(parts.scheme.lower()) == parts.port:
                netloc = netloc.rsplit(":", 1)[0]  # a browser leaves the scheme's own port out
            meant = f"{parts.scheme}://{netloc}".lower()
            if not (parts.scheme and parts.netloc) or parts.username or parts.password:
                raise ValueError(f"{origin!r} is not an origin: give scheme://host[:port], such "
                                 "as https://app.example")
            if origin != meant:
                raise ValueError(f"{origin!r} is not an origin as a browser sends it (scheme://"
                                 f"host[:port], lower case, no path): did you mean {meant!r}?")
        return origins

    @field_validator("max_bodies_bytes", mode="before")
    @classmethod
    def _unset_bodies(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
        return value

    @field_validator("api_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        """Empty: no token. Whitespace around it (a secret file's last newline) is not part of it:
        a header's value is read without it. Otherwise only the characters a bearer token may
        have (RFC 6750), so that a token the service asks for can be sent."""
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if not token:
            return None
        if not is_bearer_token(token):
            raise ValueError("the API token may hold only letters, digits and - . _ ~ + / (then "
                             "= at the end), the characters of a bearer token (RFC 6750); "
                             "`openssl rand -hex 32` makes one")
        return SecretStr(token)

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.default_k > self.max_k:
            raise ValueError(f"AESERVE_DEFAULT_K ({self.default_k}) must not exceed AESERVE_MAX_K "
                             f"({self.max_k})")
        if self.max_work > self.queue_work:
            raise ValueError(
                f"AESERVE_MAX_WORK ({self.max_work:g}) must not exceed AESERVE_QUEUE_WORK "
                f"({self.queue_work:g}): a request that big could never be queued"
            )
        if self.max_bodies_bytes is not None and self.max_bodies_bytes < self.max_body_bytes:
            raise ValueError(
                f"AESERVE_MAX_BODIES_BYTES ({self.max_bodies_bytes}) must not be under "
                f"AESERVE_MAX_BODY_BYTES ({self.max_body_bytes}): the largest upload could never "
                "be read"
            )
        return self

    @property
    def bodies_limit(self) -> int:
        """Body bytes the process may read and hold at once (``AESERVE_MAX_BODIES_BYTES``)."""
        if self.max_bodies_bytes is not None:
            return self.max_bodies_bytes
        return BODIES_PER_PROCESS * self.max_body_bytes

    @property
    def max_work_units(self) -> int:
        return int(self.max_work * 1e6)

    @property
    def queue_work_units(self) -> int:
        return int(self.queue_work * 1e6)

    def resolve_runtime(self, device: str) -> str:
        """``auto`` becomes ``onnxruntime`` on a CPU with the package installed, else ``torch``."""
        from app.runtime import onnx_available as available

        if self.runtime == "torch" or (self.runtime == "auto" and (device != "cpu" or not available())):
            return "torch"
        if device != "cpu":
            raise ValueError(f"AESERVE_RUNTIME=onnxruntime runs on the CPU only; the device is {device}")
        if not available():
            raise ValueError("AESERVE_RUNTIME=onnxruntime needs the onnxruntime and onnx packages")
        return "onnxruntime"

    def resolve_device(self) -> str:
        """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``; a device this machine
        does not have is a ``ValueError`` that names the setting."""
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        head, _, index = self.device.partition(":")
        if head == "cuda" and int(index or 0) >= torch.cuda.device_count():
            seen = torch.cuda.device_count()
            raise ValueError(f"AESERVE_DEVICE={self.device}: torch sees {seen} CUDA device(s) here; "
                             "use auto or cpu")
        if head == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"AESERVE_DEVICE={self.device}: no MPS device here; use auto or cpu")
        return self.device


# names under the prefix that are no setting of the service: the client's address, Docker
# Compose's (which a shared .env file passes to the service too), and the tests'
OTHER_TOOLS = frozenset({
    "AESERVE_URL",
    "AESERVE_API_PORT", "AESERVE_BIND", "AESERVE_GPU_PORT", "AESERVE_PROXY_PORT",
    "AESERVE_IMAGE", "AESERVE_GPU_IMAGE", "AESERVE_TRAIN_IMAGE",
    "AESERVE_DATASETS", "AESERVE_SCREENSHOT_DIR", "AESERVE_REQUIRE_DOCKER", "AESERVE_REQUIRE_KUBECTL",
    "AESERVE_REQUIRE_NGINX",
})


def unknown_names(environ: Mapping[str, str]) -> list[str]:
    """One line for each ``AESERVE_*`` variable in ``environ`` that is no setting (a typo the
    service would otherwise ignore), with the closest setting when one is near."""
    known = {f"AESERVE_{name.upper()}" for name in Settings.model_fields}
    lines = []
    for name in sorted(environ):  # read whatever their case, as the settings are
        upper = name.upper()
        if not upper.startswith("AESERVE_") or upper in known or upper in OTHER_TOOLS:
            continue
        near = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
        hint = f"; did you mean {near[0]}?" if near else "; python -m app --help lists the settings"
        lines.append(f"{name} is not a setting and is ignored{hint}")
    return lines


def describe_settings() -> str:
    """Every setting as ``AESERVE_NAME (default): meaning``, for ``python -m app --help``."""
    lines = []
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True, validated_data={})
        if isinstance(default, Path):
            default = str(default)
        shown = "(unset)" if default is None or default == [] else repr(default)
        doc = field.description or ""
        lines.append(f"  AESERVE_{name.upper():<24} {shown:<28} {doc}".rstrip())
    return "settings (environment variables):\n" + "\n".join(lines)
