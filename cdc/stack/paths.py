"""Where the local stack keeps things: templates in ``infra/``, everything generated in the state folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cdc.pg import socket_dir
from core.errors import ConfigError
from core.settings import Settings, project_root

# The PostgreSQL 15 server binaries of Debian's postgresql-15 package; GOLDSTREAM_PG_BIN overrides
# (e.g. another distribution's layout).
DEFAULT_PG_BIN = Path("/usr/lib/postgresql/15/bin")


def infra_dir() -> Path:
    """The checkout's ``infra/`` folder (templates, pom.xml, demo schemas)."""
    candidate = project_root() / "infra"
    if (candidate / "kafka" / "pom.xml").is_file():
        return candidate
    # Installed in editable mode from a checkout but run from elsewhere: next to the package.
    return Path(__file__).resolve().parents[2] / "infra"


def pg_bin() -> Path:
    """Folder holding initdb, pg_ctl, psql, pg_isready."""
    return Path(os.environ.get("GOLDSTREAM_PG_BIN", str(DEFAULT_PG_BIN)))


@dataclass(frozen=True)
class StackPaths:
    """Every file and folder the local stack reads or writes."""

    state: Path
    infra: Path
    pg_run: Path

    # --- inputs (checked in) ---
    @property
    def pom(self) -> Path:
        """Maven pom listing the Kafka / Connect runtime and the Debezium version."""
        return self.infra / "kafka" / "pom.xml"

    @property
    def log4j(self) -> Path:
        """log4j2 configuration shared by the broker, Connect and StorageTool."""
        return self.infra / "kafka" / "log4j2.properties"

    @property
    def server_template(self) -> Path:
        """Template of the broker's server.properties."""
        return self.infra / "kafka" / "server.properties"

    @property
    def connect_template(self) -> Path:
        """Template of the Connect worker's properties."""
        return self.infra / "kafka" / "connect-distributed.properties"

    @property
    def pg_conf_template(self) -> Path:
        """PostgreSQL settings fragment (logical decoding, listen address, socket dir)."""
        return self.infra / "postgres" / "postgresql.conf"

    @property
    def pg_hba_template(self) -> Path:
        """pg_hba.conf for the local cluster."""
        return self.infra / "postgres" / "pg_hba.conf"

    @property
    def goldstream_sql(self) -> Path:
        """Per-database goldstream schema, grants and publication (shared with Docker)."""
        return self.infra / "postgres" / "goldstream.sql"

    def demo_schema(self, db: str) -> Path:
        """Schema of one demo source system (may not exist)."""
        return self.infra / "demo" / db / "schema.sql"

    # --- PostgreSQL ---
    @property
    def pg_root(self) -> Path:
        """Owned by the ``postgres`` OS user: data dir, socket dir, log."""
        return self.state / "pg"

    @property
    def pg_data(self) -> Path:
        """The cluster's data directory."""
        return self.pg_root / "data"

    @property
    def pg_log(self) -> Path:
        """Server log (pg_ctl -l)."""
        return self.pg_root / "postgres.log"

    @property
    def pg_pidfile(self) -> Path:
        """PostgreSQL's own pid file; its first line is the postmaster pid."""
        return self.pg_data / "postmaster.pid"

    # --- Kafka ---
    @property
    def kafka_root(self) -> Path:
        """Broker folder."""
        return self.state / "kafka"

    @property
    def kafka_libs(self) -> Path:
        """Runtime classpath copied from Maven (broker and Connect share it)."""
        return self.kafka_root / "libs"

    @property
    def kafka_data(self) -> Path:
        """KRaft metadata and topic logs (``log.dirs``)."""
        return self.kafka_root / "data"

    @property
    def broker_properties(self) -> Path:
        """Rendered server.properties."""
        return self.kafka_root / "server.properties"

    @property
    def broker_log(self) -> Path:
        """Broker stdout+stderr."""
        return self.kafka_root / "broker.log"

    @property
    def broker_pidfile(self) -> Path:
        """Broker pid file."""
        return self.kafka_root / "broker.pid"

    # --- Connect ---
    @property
    def connect_root(self) -> Path:
        """Connect worker folder."""
        return self.state / "connect"

    @property
    def connect_properties(self) -> Path:
        """Rendered worker properties."""
        return self.connect_root / "connect-distributed.properties"

    @property
    def connect_log(self) -> Path:
        """Connect stdout+stderr."""
        return self.connect_root / "connect.log"

    @property
    def connect_pidfile(self) -> Path:
        """Connect pid file."""
        return self.connect_root / "connect.pid"

    @property
    def plugins(self) -> Path:
        """Connect ``plugin.path``: one sub-folder per plugin (debezium-connector-postgres/)."""
        return self.state / "connect-plugins"

    @property
    def downloads(self) -> Path:
        """Archives fetched from Maven before unpacking."""
        return self.state / "downloads"

    # --- demo CRM / ERP APIs ---
    @property
    def demo_api_root(self) -> Path:
        """Logs and pid files of the demo API services."""
        return self.state / "demo-api"

    def demo_api_log(self, system: str) -> Path:
        """One API's stdout+stderr (uvicorn access log included)."""
        return self.demo_api_root / f"{system}.log"

    def demo_api_pidfile(self, system: str) -> Path:
        """One API's pid file."""
        return self.demo_api_root / f"{system}.pid"

    # --- secrets ---
    @property
    def secrets(self) -> Path:
        """Generated credentials (``KEY=value`` lines, mode 0600)."""
        return self.state / "secrets.env"


def stack_paths(settings: Settings, infra: Path | None = None) -> StackPaths:
    """The paths for ``settings`` (``infra`` defaults to the checkout's ``infra/``)."""
    state = settings.state_dir.resolve()
    run = socket_dir(settings).resolve()
    # Unix socket paths are limited to 107 bytes; PostgreSQL fails with an obscure error otherwise.
    sock = run / f".s.PGSQL.{settings.postgres.port}"
    if len(str(sock).encode()) > 107:
        raise ConfigError(
            f"state_dir: the PostgreSQL socket path {sock} is longer than 107 bytes; use a shorter state_dir"
        )
    return StackPaths(state=state, infra=(infra or infra_dir()).resolve(), pg_run=run)
