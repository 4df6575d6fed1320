"""Connection strings for the PostgreSQL cluster that holds the source systems.

Two roles exist: the superuser (schema, seeding, load generation, publications) and the CDC user
Debezium connects as (``REPLICATION LOGIN`` + ``SELECT``). Locally the superuser reaches the cluster
through the Unix socket in ``<state_dir>/pg/run`` (trust auth, no password); the CDC user always uses
TCP with the password from the environment, exactly as Debezium does.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.settings import Settings

SUPERUSER_PASSWORD_ENV = "GOLDSTREAM_PG_SUPERUSER_PASSWORD"


def socket_dir(settings: Settings) -> Path:
    """Where the local cluster puts its Unix socket."""
    return settings.state_dir / "pg" / "run"


def admin_dsn(settings: Settings, dbname: str) -> str:
    """Superuser DSN for ``dbname``: TCP with a password if one is set in the environment, else the socket."""
    pg = settings.postgres
    password = os.environ.get(SUPERUSER_PASSWORD_ENV)
    if password:
        return f"host={pg.host} port={pg.port} dbname={dbname} user={pg.superuser} password={password}"
    return f"host={socket_dir(settings)} port={pg.port} dbname={dbname} user={pg.superuser}"


def cdc_dsn(settings: Settings, dbname: str) -> str:
    """DSN of the CDC (Debezium) user over TCP; the password comes from the environment."""
    pg = settings.postgres
    return f"host={pg.host} port={pg.port} dbname={dbname} user={pg.cdc_user} password={pg.password()}"
