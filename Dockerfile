# goldstream: the CLI and the Bytewax dataflows (docker-compose.yml service "goldstream").
# PostgreSQL, Kafka and Kafka Connect come from their official images, not from here.
#
#   docker build -t goldstream:dev .
#   docker run --rm --network host -e GOLDSTREAM_DB_PASSWORD=... goldstream:dev connectors status
#
# Build context: the checkout. Keep .state/ and .venv/ out of it with a .dockerignore (the local
# stack's PostgreSQL data directory is readable by the postgres user only).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GOLDSTREAM_HOME=/app

WORKDIR /app

# Python 3.11: bytewax 0.21.1 ships wheels up to CPython 3.12; every pinned dependency is a wheel,
# so no compiler is needed.
COPY pyproject.toml README.md* ./
COPY core ./core
COPY cdc ./cdc
COPY sinks ./sinks
COPY flows ./flows
RUN pip install .

# Data the CLI reads at run time from GOLDSTREAM_HOME: settings, connector configs and mappings,
# and infra/ (infra/postgres/goldstream.sql for ensure_publication; demo schemas).
COPY config ./config
COPY infra ./infra

RUN useradd --create-home --uid 10001 goldstream \
    && mkdir -p /app/.state \
    && chown goldstream:goldstream /app/.state
USER goldstream
VOLUME ["/app/.state"]

ENTRYPOINT ["goldstream"]
CMD ["run"]
