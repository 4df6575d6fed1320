"""The demo source systems against the real stack's PostgreSQL: seed, overlap, truth, load rate."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from cdc.demo import db as demo_db
from cdc.demo import load, read_truth, seed, status, truth_path
from cdc.demo.assign import plan
from cdc.demo.systems import SYSTEMS
from cdc.demo.world import build_world
from core.settings import Settings, load_settings

pytestmark = pytest.mark.integration

PEOPLE, SEED = 60, 20251


@pytest.fixture(scope="module")
def settings() -> Iterator[Settings]:
    s = load_settings()
    try:
        for name in SYSTEMS:
            with demo_db.connect(s, name):
                pass
    except psycopg.OperationalError as exc:
        pytest.fail(f"demo databases unreachable (is `goldstream stack up` running?): {exc}")
    yield s


def assert_truth_matches_databases(settings: Settings) -> None:
    rows = read_truth(truth_path(settings))
    assert rows, "truth file missing or empty"
    by_table: dict[tuple[str, str, str], set[str]] = {}
    for r in rows:
        by_table.setdefault((r.system, r.schema, r.table), set()).add(r.source_key)
    for name, spec in SYSTEMS.items():
        with demo_db.connect(settings, name) as conn:
            for table in spec.truth_tables:
                live = demo_db.keys_as_text(conn, table)
                assert by_table.get((name, table.schema, table.name), set()) == live, table.qualified


def test_seed_writes_overlapping_people_once(settings: Settings) -> None:
    first = seed(settings, PEOPLE, SEED)
    world = build_world(PEOPLE, SEED)
    expected = {name: SYSTEMS[name].seed_rows(world, plan(world)) for name in SYSTEMS}
    for result in first.systems:
        if result.status == "seeded":  # a fresh database: exactly the generated rows
            assert result.rows == {t: len(rows) for t, rows in expected[result.system].rows.items()}
    before = {s.system: s.rows for s in status(settings)}
    assert all(s.marker for s in status(settings)), "every demo database carries the seed marker"

    again = seed(settings, PEOPLE, SEED)
    assert again.skipped
    assert {s.system: s.rows for s in status(settings)} == before, "a second seed must add nothing"

    # ~60% of people known to 2+ systems, per the plan and per the truth file.
    assert 0.5 <= first.multi_system_share <= 0.75
    # The truth file also holds people the load generator added later; judge the seeded ones.
    seeded = min(int(s.marker["people"]) for s in status(settings) if s.marker)
    systems_of: dict[str, set[str]] = {}
    for r in read_truth(truth_path(settings)):
        if r.person_id.startswith("P") and int(r.person_id[1:]) <= seeded:
            systems_of.setdefault(r.person_id, set()).add(r.system)
    assert sum(len(s) >= 2 for s in systems_of.values()) / len(systems_of) >= 0.45
    assert_truth_matches_databases(settings)


def test_load_reaches_the_requested_rate(settings: Settings) -> None:
    seed(settings, PEOPLE, SEED)  # no-op when already seeded
    summary = load(settings, rate=200, duration=3, seed=7)
    assert summary.errors == 0, summary.first_error
    assert summary.target == 600
    assert abs(summary.total - 600) <= 30  # a final order may carry a few lines past the target
    assert summary.elapsed_s < 4.0
    assert {s for s, _ in summary.by_system_op} == set(SYSTEMS)
    ops = {op for _, op in summary.by_system_op}
    assert ops == {"insert", "update", "delete"}
    assert_truth_matches_databases(settings)


@pytest.mark.parametrize(
    ("system", "full"),
    [
        ("crm", {"public.accounts"}),
        ("erp", {"erp.debtors"}),
        ("shop", {"public.orders"}),
        ("billing", {"billing.invoices"}),
    ],
)
def test_cdc_relevant_table_properties(settings: Settings, system: str, full: set[str]) -> None:
    """Primary keys everywhere; full before-images on some tables only; big text really TOASTed."""
    tables = {t.qualified for t in SYSTEMS[system].tables}
    with demo_db.connect(settings, system) as conn:
        rows = conn.execute(
            "SELECT n.nspname || '.' || c.relname, c.relreplident, c.reltoastrelid::regclass::text, "
            "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'goldstream')"
        ).fetchall()
        info = {name: (ident, toast, has_pk) for name, ident, toast, has_pk in rows}
        assert tables <= set(info)
        for name in tables:
            ident, _toast, has_pk = info[name]
            assert has_pk, name
            assert ident == ("f" if name in full else "d"), name
        toasted = 0
        for name in tables:
            toast = info[name][1]
            if toast and toast != "-":
                row = conn.execute(f"SELECT count(*) FROM {toast}").fetchone()
                toasted += row[0] if row else 0
        if system != "billing":  # billing has no big text columns
            assert toasted > 0, f"no TOASTed values in {system}"
