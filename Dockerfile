# syntax=docker/dockerfile:1
# Build:   docker build -t portone-verifier .
# Migrate: docker run --rm -e DATABASE_URL=… portone-verifier alembic upgrade head
# Serve:   docker run -p 8000:8000 -e PORTONE_MODE=live -e DATABASE_URL=… … portone-verifier
# scripts/container_check.py runs these same steps outside Docker.

FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /venv
COPY requirements.lock /tmp/requirements.lock
# The lock and nothing else: every package pinned and hash-checked, none resolved here
# (requirements.lock is generated from pyproject.toml by scripts/lock.py).
RUN /venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements.lock

FROM python:3.11.11-slim-bookworm
# No FORWARDED_ALLOW_IPS here: the service trusts X-Forwarded-* from 127.0.0.1 only (its
# default). Behind a proxy, set FORWARDED_ALLOW_IPS to that proxy's address at run time.
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --uid 10001 --home-dir /srv verifier
COPY --from=build /venv /venv
WORKDIR /srv
# The code runs from /srv beside its migrations: `alembic upgrade head` is a one-off
# command, and /readyz reports not-ready while the database is behind the code.
COPY alembic.ini ./
COPY migrations ./migrations
COPY app ./app
USER verifier
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
# Migrations never run here.
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
