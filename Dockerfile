# syntax=docker/dockerfile:1
# guestkey's image: `docker build -t guestkey .`, then e.g.
#   docker run --rm -p 8000:8000 -e DATABASE_URL=postgresql://… guestkey
# The entrypoint is the `guestkey` CLI; the default command serves the API (+ a worker) on :8000.
# Without DATABASE_URL guestkey starts an embedded PostgreSQL under GUESTKEY_DATA_DIR: fine for a
# demo container, not for anything you keep (docker-compose.yml always sets DATABASE_URL).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# builder: the locked dependencies and the project, installed into /app/.venv by uv.
FROM ${PYTHON_IMAGE} AS builder

ARG UV_VERSION=0.13.8
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3

WORKDIR /app

# Dependencies first, from the lock file alone, so that code changes reuse this layer.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself. `uv sync` installs it editable, so `app` resolves to /app/app and
# app.migrate finds /app/alembic.ini and /app/migrations next to it (a wheel install would not).
COPY README.md alembic.ini ./
COPY migrations ./migrations
COPY app ./app
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev \
 && /app/.venv/bin/python -m compileall -q app migrations

# ---------------------------------------------------------------------------------------------
# runtime: the same slim Python, no uv and no build tools; runs as an unprivileged user.
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="guestkey" \
      org.opencontainers.image.description="Hands guests their door codes: booking-system reservations in, Seam access grants and PIN codes out." \
      org.opencontainers.image.version="0.1.0"

# A fixed uid/gid, so volumes and Kubernetes (runAsNonRoot) can rely on it.
RUN groupadd --system --gid 10001 guestkey \
 && useradd --system --uid 10001 --gid guestkey --home-dir /var/lib/guestkey \
        --no-create-home --shell /usr/sbin/nologin guestkey \
 && install -d -o guestkey -g guestkey -m 0750 /var/lib/guestkey

# Code and virtualenv stay root-owned: the service can read them, not change them.
COPY --from=builder /app /app

ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GUESTKEY_DATA_DIR=/var/lib/guestkey

WORKDIR /app
USER 10001:10001
EXPOSE 8000

# Liveness of `guestkey serve` (slim has no curl; urlopen raises on anything but 2xx).
# Compose overrides it for the worker (no HTTP port) and the fake Seam (:8090).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["guestkey"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
