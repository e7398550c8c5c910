#!/usr/bin/env bash
# What scripts/bench-gpu.sh needs on a GPU machine that has Python and a CUDA torch but no network:
# run this on a machine with pip and apt, then copy .whl and .tools with the checkout.
#
#   PYVER=3.12 bash scripts/bench-gpu-prep.sh        # PYVER: the GPU machine's Python (3.12)
#
# .whl: wheels of the service's dependencies and the bench extra from pyproject.toml for that Python on x86_64 Linux,
# less torch (the machine's own CUDA build) and ONNX (not used on a GPU), with .whl/requirements.txt
# naming them. The numpy wheel is kept: bench-gpu.sh installs it only where the machine's own numpy is
# too old for imagecodecs. Run it with the project's venv active to get the versions
# the project is tested with. .tools: Debian's wrk and the LuaJIT it links.
set -eu
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
mkdir -p .whl .tools
rm -f .whl/*.whl .tools/*.deb  # one version of each: bench-gpu.sh installs every wheel it finds
python3 - > .whl/requirements.txt <<'PYEOF'
import re
import tomllib

skip = {"torch", "numpy", "onnx", "onnxruntime"}
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
# the service's dependencies and the bench extra (the bare endpoints' form parser)
for dep in project["dependencies"] + project["optional-dependencies"]["bench"]:
    if re.match(r"[A-Za-z0-9_.-]+", dep)[0].lower() not in skip:
        print(dep)
PYEOF
# the versions the project is tested with, where a venv is active (pip freeze), else the newest
python3 -m pip freeze --exclude-editable 2>/dev/null | grep -v ' @ ' > .whl/constraints.txt || true
pip download -q -d .whl --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -r .whl/requirements.txt -c .whl/constraints.txt 2>&1 | grep -v '^WARNING: Location' || true
(cd .tools && apt-get download wrk && { apt-get download libluajit2-5.1-2 || apt-get download libluajit-5.1-2; })
du -sh .whl .tools
