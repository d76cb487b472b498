# syntax=docker/dockerfile:1
# One image for the four services and the `customer-focus` CLI (migrations, outbox, tokens, replay).
# It holds ops/ for the CLI but not the `ops` dependency group (embedded PostgreSQL, Tansu, psutil):
# `uv sync --no-dev` installs the project's dependencies only, and `customer-focus up` says what is missing.
# Build: docker build -t customer-focus .   (docker-compose.yml builds it too)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the locked dependencies, then the project, into /app/.venv -------------------
FROM ${PYTHON_IMAGE} AS build
# The same uv the Makefile installs, from PyPI.
RUN pip install --no-cache-dir "uv==0.13.9"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY shared ./shared
COPY services ./services
COPY ops ./ops
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# --- runtime: the virtual environment only, run by an unprivileged user -------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build --chown=root:root /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER app:app
EXPOSE 8001 8002 8003 8004
# docker-compose.yml gives each container its command: `customer-focus migrate`, or uvicorn for one service.
CMD ["customer-focus", "--help"]
