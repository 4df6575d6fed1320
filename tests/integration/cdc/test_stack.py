"""The real local stack: PostgreSQL, Kafka (KRaft) and Kafka Connect with the Debezium plugin.

Brings the stack up if it is down and leaves it running (other integration tests use it).
"""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from cdc import stack
from cdc.pg import admin_dsn, cdc_dsn
from cdc.stack import connect
from core.settings import Settings, load_settings
from flows.cli import app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings() -> Settings:
    s = load_settings()
    stack.load_secrets(s)
    stack.up(s)
    return s


def test_up_is_idempotent_on_a_running_stack(settings: Settings) -> None:
    before = {row.component: row.pid for row in stack.status(settings)}
    again = stack.up(settings)
    assert [r.component for r in again] == ["postgres", "kafka", "connect", "crm-api", "erp-api"]
    assert all(r.already_running for r in again)
    assert {r.component: r.pid for r in again} == before
    # Nothing is restarted: only fetch stamps, role/grants/publication and readiness are re-checked.
    assert sum(r.seconds for r in again) < 15


def test_every_component_is_up(settings: Settings) -> None:
    rows = stack.status(settings)
    assert [row.component for row in rows] == ["postgres", "kafka", "connect", "crm-api", "erp-api"]
    for row in rows:
        assert row.up, row
        assert row.pid is not None and row.log.is_file()


def test_debezium_plugin_is_listed(settings: Settings) -> None:
    assert connect.POSTGRES_CONNECTOR_CLASS in (connect.plugin_classes(settings) or [])


def test_cdc_user_can_read_and_replicate(settings: Settings) -> None:
    for db in settings.postgres.databases:
        with psycopg.connect(cdc_dsn(settings, db)) as conn:
            # Debezium's heartbeat.action.query
            conn.execute(
                "INSERT INTO goldstream.heartbeat (id, ts) VALUES (1, now()) "
                "ON CONFLICT (id) DO UPDATE SET ts = now()"
            )
            conn.execute("SELECT count(*) FROM goldstream.sentinel").fetchone()
        with psycopg.connect(cdc_dsn(settings, db), replication="database", autocommit=True) as repl:
            system = repl.execute("IDENTIFY_SYSTEM").fetchone()
            assert system is not None and system[3] == db


def test_publication_covers_every_schema(settings: Settings) -> None:
    for db in settings.postgres.databases:
        with psycopg.connect(admin_dsn(settings, db)) as conn:
            schemas = {
                row[0]
                for row in conn.execute(
                    "SELECT nspname FROM pg_namespace "
                    "WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%'"
                )
            }
            published = {
                row[0]
                for row in conn.execute(
                    "SELECT n.nspname FROM pg_publication_namespace pn "
                    "JOIN pg_publication p ON p.oid = pn.pnpubid JOIN pg_namespace n ON n.oid = pn.pnnspid "
                    "WHERE p.pubname = %s",
                    (stack.PUBLICATION,),
                )
            }
            assert "goldstream" in published
            assert schemas <= published, (db, schemas - published)
            wal_level = conn.execute("SHOW wal_level").fetchone()
            assert wal_level == ("logical",)


def test_ensure_publication_picks_up_a_new_schema(settings: Settings) -> None:
    db = settings.postgres.databases[0]
    with psycopg.connect(admin_dsn(settings, db), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS zz_stack_test")
        conn.execute("CREATE TABLE IF NOT EXISTS zz_stack_test.t (id int PRIMARY KEY)")
        try:
            stack.ensure_publication(settings, db)
            stack.ensure_publication(settings, db)  # idempotent
            row = conn.execute(
                "SELECT count(*) FROM pg_publication_tables "
                "WHERE pubname = %s AND schemaname = 'zz_stack_test'",
                (stack.PUBLICATION,),
            ).fetchone()
            assert row == (1,)
            readable = conn.execute(
                "SELECT has_table_privilege(%s, 'zz_stack_test.t', 'SELECT')", (settings.postgres.cdc_user,)
            ).fetchone()
            assert readable == (True,)
        finally:
            conn.execute("DROP SCHEMA zz_stack_test CASCADE")


def test_cli_status_exit_code(settings: Settings) -> None:
    result = CliRunner().invoke(app, ["stack", "status"])
    assert result.exit_code == 0, result.output
    assert "connect" in result.output
