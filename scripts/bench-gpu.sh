#!/usr/bin/env bash
# Run the service benchmark (python -m bench.run) on a lent GPU machine that lacks the serving stack.
#
#   WHEELS=.whl TOOLS=.tools OUT=/path bash scripts/bench-gpu.sh [extra bench.run flags]
#
# The machine has Python and a CUDA torch but no FastAPI stack and no wrk, and no network. Prepare,
# on a machine with pip and apt (the wheels must match the GPU machine's Python, 3.12 here):
#
#   pip download -d .whl --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
#       fastapi 'uvicorn[standard]' python-multipart pydantic-settings prometheus-client httpx
#   rm .whl/numpy-*     # the GPU machine has its own; ONNX Runtime is not used on a GPU
#   apt-get download wrk libluajit-5.1-2 && mkdir -p .tools && mv ./*.deb .tools/
#
# and carry .whl and .tools (both git-ignored). The results land in bench/results/ and, when OUT is
# set, are copied there.
set -eu
WHEELS=${WHEELS:-.whl}
TOOLS=${TOOLS:-.tools}
PY=${PYTHON:-python3}
LIB=${LIB:-.pylib}
$PY -m pip install -q --no-index --find-links "$WHEELS" --target "$LIB" fastapi 'uvicorn[standard]' \
    python-multipart pydantic-settings prometheus-client httpx 2>&1 | grep -v WARNING || true
export PYTHONPATH="$PWD/$LIB:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! command -v wrk >/dev/null; then
    mkdir -p "$TOOLS/root"
    for deb in "$TOOLS"/*.deb; do dpkg -x "$deb" "$TOOLS/root"; done
    export PATH="$PWD/$TOOLS/root/usr/bin:$PATH"
    export LD_LIBRARY_PATH="$PWD/$TOOLS/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
{ nvidia-smi -L || true; nproc; $PY -c 'import torch; print("torch", torch.__version__)'; } >&2
$PY -m bench.run "$@"
if [ -n "${OUT:-}" ]; then
    cp "$(ls -t bench/results/*.md | head -1)" "$(ls -t bench/results/*.json | head -1)" "$OUT/"
fi
