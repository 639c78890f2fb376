# syntax=docker/dockerfile:1
# Build stage: wheels for the app and its dependencies (compilers stay here).
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: no build tools, a non-root user, the service on port 8000.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CHAT_HOST=0.0.0.0 \
    CHAT_PORT=8000 \
    CHAT_DATA_DIR=/data
RUN useradd --system --create-home --uid 10001 chat && mkdir -p /data && chown chat /data
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels chat-backend && rm -rf /wheels
WORKDIR /srv
# Migrations are read from the working tree by `chat serve` / `chat migrate`.
COPY --chown=chat alembic.ini ./
COPY --chown=chat migrations ./migrations
USER chat
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
# Set CHAT_DATABASE_URL, CHAT_REDIS_URL and CHAT_JWT_SECRET (or a public key) in production;
# without the URLs the container runs its own embedded PostgreSQL and Redis under /data.
CMD ["chat", "serve"]
