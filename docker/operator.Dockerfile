# syntax=docker/dockerfile:1
# The Klio operator image (`klio-operator run`), deployed by helm/klio.
# Build from the repository root:  docker build -f docker/operator.Dockerfile -t klio-operator:0.1.0 .

# Pinned to a patch release; pin the digest too for reproducible builds (docker/README.md).
ARG PYTHON_BASE=python:3.11.13-slim-bookworm

FROM ${PYTHON_BASE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/klio
WORKDIR /src
COPY pyproject.toml README.md ./
# The operator imports the shared shapes (job config, KlioMessage) from klio_runtime.
COPY runtime/ runtime/
COPY operator/ operator/
RUN /opt/klio/bin/pip install ".[operator]"

FROM ${PYTHON_BASE}
RUN groupadd --gid 10001 klio \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin klio
COPY --from=build /opt/klio /opt/klio
ENV PATH=/opt/klio/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
USER 10001:10001
# Health (/healthz) and Prometheus metrics (/metrics), as helm/klio's values health.port/metrics.port.
EXPOSE 8080 9090
ENTRYPOINT ["klio-operator"]
CMD ["run", "--all-namespaces"]
