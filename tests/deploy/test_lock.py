"""The hashed locks the images install (deploy/lock-requirements.sh writes them): requirements.lock
(the service's dependencies and the otel extra), requirements-train.lock (and the train extra) and
requirements-torch.lock (torch, the CPU build of the Dockerfile's TORCH_VERSION). Every entry is
pinned with sha256 hashes, every dependency pyproject.toml declares is pinned at a version it
allows, the two package locks agree, and the Dockerfile installs each with ``--require-hashes``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
SERVICE, TRAIN, TORCH = (ROOT / f"requirements{s}.lock" for s in ("", "-train", "-torch"))
LOCKS = (SERVICE, TRAIN, TORCH)
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def entries(lock: Path) -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, its sha256 hashes), from pip's requirements-file syntax: one entry
    per line once the backslash continuations are joined, comments dropped."""
    text = re.sub(r"\\\n", " ", lock.read_text())
    pins: dict[str, tuple[Version, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if not line:
            continue
        spec, *options = line.split()
        name, sep, version = spec.partition("==")
        assert sep and version, f"{lock.name}: {spec!r} is not NAME==VERSION"
        hashes = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=sha256:")]
        assert len(hashes) == len(options), f"{lock.name}: {name} has options other than sha256 hashes"
        pins[canonicalize_name(name)] = (Version(version), hashes)
    return pins


def versions(lock: Path) -> dict[str, Version]:
    return {name: version for name, (version, _) in entries(lock).items()}


def declared(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    return [Requirement(r) for r in (*project["dependencies"], *(r for e in extras for r in optional[e]))]


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_entry_is_pinned_with_sha256_hashes(lock: Path) -> None:
    """``pip install --require-hashes`` refuses an entry without a hash; and a file whose sha256
    is not listed fails the build instead of installing."""
    pins = entries(lock)
    assert pins
    for name, (_, hashes) in pins.items():
        assert hashes, f"{lock.name}: {name} has no --hash: run deploy/lock-requirements.sh"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), (lock.name, name)


@pytest.mark.parametrize(("lock", "extras"), [(SERVICE, ("otel",)), (TRAIN, ("otel", "train"))],
                         ids=("service", "train"))
def test_every_declared_dependency_is_pinned_at_a_version_it_allows(
    lock: Path, extras: tuple[str, ...]
) -> None:
    pins = versions(lock) | versions(TORCH)
    for req in declared(*extras):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in {lock.name}: run deploy/lock-requirements.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{lock.name} pins {req.name}=={pins[name]}, outside pyproject.toml's {req}: "
            "run deploy/lock-requirements.sh")


def test_the_train_lock_holds_the_service_lock_at_the_same_versions() -> None:
    """The train image installs its lock over the service's packages: any difference would
    replace one of them."""
    service, train = versions(SERVICE), versions(TRAIN)
    assert {name: train.get(name) for name in service} == service


def test_torch_is_the_dockerfiles_cpu_release_alone() -> None:
    """torch is locked once, the CPU build of TORCH_VERSION, never a newer one; the package locks
    leave it (and the CUDA packages a CUDA torch pins itself) out, so a CUDA build can take its own."""
    (arg,) = re.findall(r"^ARG TORCH_VERSION=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert versions(TORCH) == {"torch": Version(f"{arg}+cpu")}
    for lock in (SERVICE, TRAIN):
        names = set(versions(lock))
        assert "torch" not in names, lock.name
        assert not {n for n in names if n.startswith("nvidia-") or n == "triton"}, lock.name


def test_the_dockerfile_installs_each_lock_with_require_hashes() -> None:
    installs = re.findall(r"pip install [^\n]*-r ([\w.-]+)", DOCKERFILE)
    assert set(installs) == {lock.name for lock in LOCKS}, installs  # the CPU and the CUDA branch
    for line in re.findall(r"pip install [^\n]*-r \S+", DOCKERFILE):
        assert "--require-hashes" in line, line
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    for lock in LOCKS:
        assert f"!{lock.name}" in allowed, lock.name
        assert re.search(rf"^COPY [^\n]*\b{re.escape(lock.name)}\b", DOCKERFILE, re.MULTILINE), lock.name
