# kdconcepts: the whole artifact in one image. Reproduce everything on a GPU host with
#   mkdir -p results && docker run --gpus all \
#     -v "$PWD/results:/home/kd/kdconcepts/results" IMAGE
# (docs/ARTIFACT_EVALUATION.md: build, run as another uid, the smoke config, expected times).
#
# Base image. PyTorch 2.14.1 + CUDA 13.0 come from the hash-pinned lock (envs/requirements.lock:
# torch 2.14.1+cu130 and the nvidia-* CUDA 13.0 runtime wheels it depends on), which was
# compiled for CPython 3.11, so the base must provide a working Python 3.11:
# - pytorch/pytorch:2.14.1-cuda13.0-cudnn9-* use the system Python 3.12 of Ubuntu 24.04, and
#   Ubuntu 24.04's archive (nvidia/cuda:13.0.x-*-ubuntu24.04) has no Python 3.11;
# - Ubuntu 22.04's archive (nvidia/cuda:13.0.x-*-ubuntu22.04) only has python3.11
#   3.11.0~rc1, a release candidate without sys.get_int_max_str_digits (used by torch._dynamo).
# So the base is the Docker Official python:3.11-slim-bookworm image, pinned by digest; the CUDA
# user-space libraries are the lock's wheels (what torch loads even on a CUDA base image), and
# only the NVIDIA driver comes from the host through the NVIDIA Container Toolkit (--gpus).
# The digest below was read from public Dockerfiles that pin this tag (two unrelated projects
# use it); it could not be checked against Docker Hub from the machine that wrote this file
# (no registry access). Verify or refresh it with
#   docker buildx imagetools inspect python:3.11-slim-bookworm
# BASE_IMAGE is an ARG so tests/test_docker.py can build on a local Debian bookworm base.
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${BASE_IMAGE}
# Re-declared so the label below can name the base this image was built from.
ARG BASE_IMAGE
# Versions the build asserts (must match envs/requirements.lock; the build checks that too).
ARG TORCH_VERSION=2.14.1
ARG TORCH_CUDA=13.0
ARG PYTHON=python3.11
# Non-root user; its primary group is 0 so `docker run --user <any uid>:0` can write too.
ARG KD_UID=1000

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV HOME=/home/kd \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DVC_NO_ANALYTICS=1 \
    XDG_CACHE_HOME=/home/kd/.cache \
    MPLCONFIGDIR=/home/kd/.cache/matplotlib \
    TORCH_HOME=/home/kd/.cache/torch \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_REQUIRE_CUDA="cuda>=13.0" \
    ATEN_CPU_CAPABILITY=avx2 \
    ONEDNN_MAX_CPU_ISA=AVX2 \
    MKL_CBWR=COMPATIBLE \
    MKL_DYNAMIC=FALSE
# (the last four: portable CPU numerics, kdconcepts.numerics; the Snakefile sets them too, and
# `numerics: native` in a config lifts them for its jobs)

# Fashion-MNIST for the photographs dataset (dvc stage `photos`, config/photos.yaml) from Debian's
# package, so the stage needs no download; kdconcepts.data.photos checks its pinned SHA-256.
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends dataset-fashion-mnist=0.0~git20200523.55506a9-1 >/dev/null \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --uid "${KD_UID}" --gid 0 --create-home --home-dir /home/kd --shell /bin/bash kd

# Dependencies first (their layer is reused while only the code changes). Every file is
# checked against the lock's sha256 hashes. PIP_INDEX_URL / PIP_FIND_LINKS / PIP_NO_INDEX may be
# passed as build args to install from a mirror or a local wheelhouse (the hashes still apply).
ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
COPY envs/requirements.lock /tmp/requirements.lock
RUN grep -q "^torch==${TORCH_VERSION} " /tmp/requirements.lock \
    || { echo "TORCH_VERSION=${TORCH_VERSION} is not the lock's torch" >&2; exit 1; } \
    && "${PYTHON}" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    && "${PYTHON}" -m venv "${VIRTUAL_ENV}" \
    && pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock \
    && python -c 'import sys, torch, torchvision; \
want_torch, want_cuda = sys.argv[1:3]; \
got = (torch.__version__.split("+")[0], torch.version.cuda); \
assert got == (want_torch, want_cuda), f"torch {torch.__version__} CUDA {torch.version.cuda}, expected {want_torch} CUDA {want_cuda}"; \
print("torch", torch.__version__, "CUDA", torch.version.cuda, "torchvision", torchvision.__version__)' \
    "${TORCH_VERSION}" "${TORCH_CUDA}"

WORKDIR /home/kd/kdconcepts
COPY --chown=kd:0 . .
# The package itself (its dependencies are all in the lock, hence --no-deps). DVC runs without
# git inside the image (.git is not copied). Group 0 gets the owner's rights for `--user uid:0`.
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm -rf build src/*.egg-info \
    && dvc config --local core.no_scm true \
    && mkdir -p results data "${MPLCONFIGDIR}" "${TORCH_HOME}" \
    && chown -R kd:0 /home/kd \
    && chmod -R g=u /home/kd \
    && python -c "import kdconcepts"

USER ${KD_UID}:0

# OCI labels last, so a new revision does not invalidate the cached layers above. Pass
#   --build-arg SOURCE_URL="$(git remote get-url origin)" --build-arg REVISION="$(git rev-parse HEAD)"
ARG SOURCE_URL=""
ARG REVISION=""
LABEL org.opencontainers.image.title="kdconcepts" \
      org.opencontainers.image.description="Explaining Knowledge Distillation by Quantifying the Knowledge (Cheng et al., CVPR 2020): reproducible artifact" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# `docker run IMAGE` alone does what `make reproduce` does: the default pipeline, then the
# report (results/default/report.html); any other command replaces it.
CMD ["sh", "-c", "snakemake --cores all --rerun-incomplete && snakemake --report results/default/report.html"]
