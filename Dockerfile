# oi-collector image. Build stage: install the project into a virtualenv. Final stage: copy only that venv
# onto a fresh slim image, so no source tree, build backend or pip cache ends up in what runs.
#   docker build -t oi-collector .
#   docker run --rm oi-collector check-config

FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY . .
# Every dependency ships binary wheels (psycopg[binary] included), so no compiler is needed here either.
# The wheel carries the Alembic migrations: pyproject maps migrations/ to the package collector.migrations.
RUN /opt/venv/bin/pip install --no-cache-dir .


FROM python:3.11-slim-bookworm

# Same base as the build stage, so the venv's interpreter path (/usr/local/bin/python) still resolves.
COPY --from=build /opt/venv /opt/venv
COPY config/collector.toml /etc/oi-collector/collector.toml

# PYTHONUNBUFFERED: log lines reach `docker logs` as they are written, not when a buffer fills.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OI_CONFIG=/etc/oi-collector/collector.toml \
    OI_SPOOL_DIR=/var/lib/oi-collector/spool

# An unprivileged user; it writes only the spool (batches waiting for the database, the exchange-ban state),
# which compose keeps on a named volume. Docker copies this directory's owner into a new, empty volume.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin collector \
    && install -d -o 10001 -g 10001 /var/lib/oi-collector/spool
USER 10001:10001

# `docker compose run --rm collector once` (or migrate, check-config) replaces only the subcommand.
ENTRYPOINT ["oi-collector"]
CMD ["run"]
