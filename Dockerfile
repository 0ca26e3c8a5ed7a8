# syntax=docker/dockerfile:1.7
# Lockgate's image. Build: docker build -t lockgate:dev .   (or buildah bud; see docs/deploy.md)
# BASE must be a Debian-family image with python3.11 at /usr/local/bin or /usr/bin and python3-venv;
# both stages use it so the virtualenv's interpreter path is the same.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first (the layer survives source edits), exactly as locked, every file hash-checked.
COPY requirements.lock ./
RUN python3 -m venv /opt/lockgate \
 && /opt/lockgate/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY lockgate ./lockgate
# The project itself, without dependencies (they are all above), then bytecode for a read-only root.
RUN /opt/lockgate/bin/pip install --no-deps . \
 && /opt/lockgate/bin/python -m compileall -q /opt/lockgate/lib

FROM ${BASE}
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="Lockgate" \
      org.opencontainers.image.description="An OpenAI-compatible LLM gateway: routing, virtual keys, limits, exact accounting." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/lockgate/lockgate"
SHELL ["/bin/sh", "-eu", "-c"]
# tini as PID 1 (-g: signals go to the whole worker group). A base made with tini already has it.
RUN if ! command -v tini >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends tini=0.19.0-1 && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system --gid 10001 lockgate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/lockgate --no-create-home lockgate \
 && mkdir -p /var/lib/lockgate /etc/lockgate \
 && chown 10001:10001 /var/lib/lockgate
COPY --from=build /opt/lockgate /opt/lockgate
# Everything the gateway writes goes to /var/lib/lockgate (SQLite file, usage spool: a volume) or /tmp
# (the Prometheus multiprocess directory): the root filesystem can be read-only.
ENV PATH=/opt/lockgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOCKGATE_DATABASE_URL=sqlite:////var/lib/lockgate/lockgate.db
WORKDIR /var/lib/lockgate
VOLUME ["/var/lib/lockgate"]
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/health/live', timeout=2)"]
ENTRYPOINT ["tini", "-g", "--", "lockgate", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8080"]
