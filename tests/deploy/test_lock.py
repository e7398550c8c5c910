"""requirements.lock, the versions the images install: it pins every dependency pyproject.toml
declares (the service's, the otel and train extras') at a version pyproject.toml allows, leaves
torch to the build argument, and every ``pip install`` of a requirements list in the Dockerfile
uses it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"


def locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"requirements.lock: {line!r} is not NAME==VERSION"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in (*project["dependencies"], *extras["otel"], *extras["train"])]


def test_every_declared_dependency_is_pinned_at_a_version_it_allows() -> None:
    pins = locked()
    for req in declared():
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        assert name in pins, f"{req.name} is not in requirements.lock: run deploy/lock-requirements.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={pins[name]}, outside pyproject.toml's {req}: "
            "run deploy/lock-requirements.sh")


def test_torch_and_the_cuda_packages_are_left_to_the_build() -> None:
    """torch comes from TORCH_INDEX_URL at TORCH_VERSION (CPU or CUDA); a CUDA torch pins its own
    nvidia-* and triton, which a CPU lock cannot know."""
    names = set(locked())
    assert "torch" not in names
    assert not {n for n in names if n.startswith("nvidia-") or n == "triton"}


def test_the_dockerfile_installs_every_requirements_list_with_the_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install [^\n]*-r \S+", dockerfile)
    assert len(installs) == 2, installs  # the service's (with the otel extra), the train extra's
    assert all("-c requirements.lock" in line for line in installs), installs
    assert "COPY requirements.lock" in dockerfile
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text().splitlines()
