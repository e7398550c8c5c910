# aeserve: CPU image by default; the CUDA image comes from the same file with build arguments:
#
#   docker build -t aeserve:cpu .
#   docker build -t aeserve:gpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#   docker build -t aeserve:gpu --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                               --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#   docker build -t aeserve:train --target train .     # the image the compose `train` profile runs
#   docker build -t aeserve:cpu --build-arg BASE_IMAGE=python:3.11-slim@sha256:<digest> .   # pinned base
#
# Every Python package installs from a hashed lock (pip install --require-hashes), so a file whose
# sha256 the lock does not name fails the build: requirements.lock for the service,
# requirements-train.lock for `train`, requirements-torch.lock for torch, the CPU build of
# TORCH_VERSION for CPython 3.11 on x86_64 (deploy/lock-requirements.sh writes all three). Elsewhere
# (a CUDA index such as …/cu128 with the nvidia-* and triton torch pins, another CPU or Python)
# torch==TORCH_VERSION comes from TORCH_INDEX_URL unhashed, and the build says so.
#
# Stages: `deps` (venv with torch and the runtime dependencies, cached until the locks or the torch
# arguments change), `build` (the package as a wheel), `train` (deps + the training extras + package
# + the shipped checkpoints, for --init-from) and `runtime` (the last stage, so the default target:
# venv + package + checkpoints, non-root, no compilers, no tests, no training data).

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# python:3.11-slim has Python; a bare CUDA base (Ubuntu 24.04: Python 3.12) gets it from apt
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --system --no-log-init --uid 10001 --user-group --home-dir /app aeserve

FROM base AS deps
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY requirements-torch.lock requirements.lock ./
# torch first, then the service's packages; nothing in the locks asks for torch, so nothing replaces
# it. From a CPU index on the lock's platform (CPython 3.11, x86_64) torch is the locked file, which
# must be TORCH_VERSION; elsewhere (another CPU or Python, a CUDA index with the nvidia-* and triton
# it pins) torch==TORCH_VERSION comes from the index after the locked packages, without a hash, and
# the build says so. Serving needs neither torch's C++ headers nor its test binaries
RUN python3 -m venv "$VIRTUAL_ENV" \
 && index=${TORCH_INDEX_URL%/} \
 && if [ "${index%/cpu}" != "$index" ] && python3 -c 'import platform, sys; \
sys.exit(sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64")'; then \
      { grep -q "^torch==$TORCH_VERSION+cpu " requirements-torch.lock \
        || { echo "requirements-torch.lock is not torch $TORCH_VERSION: run deploy/lock-requirements.sh" >&2; exit 1; }; } \
      && pip install --require-hashes --no-deps --index-url "$TORCH_INDEX_URL" -r requirements-torch.lock \
      && pip install --require-hashes -r requirements.lock; \
    else \
      echo "torch $TORCH_VERSION from $TORCH_INDEX_URL without a hash (requirements-torch.lock: CPython 3.11 on x86_64, a CPU index)" \
      && pip install --require-hashes -r requirements.lock \
      && pip install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"; \
    fi \
 && pip check \
 && site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && rm -rf "$site/torch/include" "$site/torch/test"

FROM deps AS build
COPY pyproject.toml README.md ./
COPY app/ app/
COPY model/ model/
RUN pip wheel --no-deps --wheel-dir /wheels .

# training: listed before `runtime` so that a plain `docker build .` gives the service image
FROM deps AS train
COPY requirements-train.lock ./
RUN pip install --require-hashes -r requirements-train.lock && pip check
COPY --from=build /wheels/ /tmp/wheels/
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels \
 && mkdir -p /app/trained && chown aeserve:aeserve /app/trained
# the shipped checkpoints, for --init-from (continue from the shipped weights)
COPY checkpoints/ /app/checkpoints/
WORKDIR /app
ENV MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/tmp
USER 10001:10001
ENTRYPOINT ["python", "-m", "model.train"]
CMD ["--help"]

FROM base AS runtime
WORKDIR /app
# mount point of the compose `trained` volume (a new volume takes this folder's owner)
RUN mkdir /app/trained && chown aeserve:aeserve /app/trained
# least often changed first, so that each layer stays cached as long as it can: the dependencies,
# the shipped checkpoints (.dockerignore drops training state; a volume on this path replaces
# them), the health check, then the package alone on top
COPY --from=deps /opt/venv /opt/venv
COPY checkpoints/ /app/checkpoints/
COPY deploy/healthcheck.py /usr/local/bin/aeserve-healthcheck
COPY --from=build /wheels/ /tmp/wheels/
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels
# HOME: a writable place under a read-only root (/tmp is a tmpfs there), for libraries that keep
# files in it: onnxruntime otherwise logs a plain-text warning at every start
ENV AESERVE_HOST=0.0.0.0 \
    AESERVE_PORT=8000 \
    AESERVE_CHECKPOINT_DIR=/app/checkpoints \
    HOME=/tmp
USER 10001:10001
EXPOSE 8000
# uvicorn drains open requests on SIGTERM; give it the time with `docker stop -t` / stop_grace_period
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/bin/aeserve-healthcheck"]
CMD ["python", "-m", "app"]
