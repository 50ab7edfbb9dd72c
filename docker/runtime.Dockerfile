# syntax=docker/dockerfile:1
# Klio runtime base image: Python, Apache Beam, the klio runtime and its audio stack. Job images build
# FROM it and add their run.py, transforms and klio-job.yaml (docker/README.md).
# Build from the repository root:  docker build -f docker/runtime.Dockerfile -t klio-runtime:0.1.0 .

# Pinned to a patch release; pin the digest too for reproducible builds (docker/README.md).
ARG PYTHON_BASE=python:3.11.13-slim-bookworm

FROM ${PYTHON_BASE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/klio
WORKDIR /src
COPY pyproject.toml README.md ./
COPY runtime/ runtime/
# The distribution also ships the operator package; the runtime image leaves it out.
RUN mkdir operator \
    && /opt/klio/bin/pip install ".[audio]"

FROM ${PYTHON_BASE}
# ffmpeg decodes what libsndfile cannot (librosa's fallback); build with --build-arg WITH_FFMPEG=0 to
# leave it out when a job reads only WAV/FLAC/OGG/MP3.
ARG WITH_FFMPEG=1
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 \
    && if [ "$WITH_FFMPEG" = 1 ]; then apt-get install -y --no-install-recommends ffmpeg; fi \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 klio \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin klio
COPY --from=build /opt/klio /opt/klio
# The root filesystem is read-only in pods: caches go to the /tmp emptyDir the operator mounts.
ENV PATH=/opt/klio/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/usr/src/app \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/tmp
WORKDIR /usr/src/app
USER 10001:10001
# Health (/healthz, /readyz) and Prometheus metrics (/metrics): operator/klio_operator/worker_contract.py
EXPOSE 8080 9090
ENTRYPOINT ["klio"]
CMD ["worker", "--config-file", "/etc/klio/klio-job.yaml"]
