"""The demo source systems against the real stack's PostgreSQL: seed, overlap, truth, load rate."""

from __future__ import annotations

import psycopg
import pytest

from cdc.demo import db as demo_db
from cdc.demo import load, read_truth, seed, status, truth_path
from cdc.demo.assign import plan
from cdc.demo.systems import SYSTEMS
from cdc.demo.world import build_world
from core.settings import Settings

pytestmark = pytest.mark.integration

# The suite's session fixture (tests/integration/conftest.py) seeds with these; seeding again is a no-op.
PEOPLE, SEED = 120, 7


@pytest.fixture(scope="module")
def settings(stack: Settings) -> Settings:
    try:
        for name in SYSTEMS:
            with demo_db.connect(stack, name):
                pass
    except psycopg.OperationalError as exc:
        pytest.fail(f"demo databases unreachable (is `goldstream stack up` running?): {exc}")
    return stack


def live_keys(settings: Settings) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for name, spec in SYSTEMS.items():
        with demo_db.connect(settings, name) as conn:
            for table in spec.truth_tables:
                out[(name, table.name)] = demo_db.keys_as_text(conn, table)
    return out


def assert_truth_file_is_live(settings: Settings) -> None:
    """Every row the truth file names exists. (Other tests insert rows of their own, so the
    converse only holds on a freshly seeded stack.)"""
    rows = read_truth(truth_path(settings))
    assert rows, "truth file missing or empty"
    live = live_keys(settings)
    stale = [r for r in rows if r.source_key not in live[(r.system, r.table)]]
    assert not stale, stale[:5]


def test_seed_writes_overlapping_people_once(settings: Settings) -> None:
    first = seed(settings, PEOPLE, SEED)
    markers = [s.marker for s in status(settings)]
    assert all(markers), "every demo database carries the seed marker"
    params = {(m["people"], m["seed"]) for m in markers if m}
    assert len(params) == 1, f"demo databases seeded with different parameters: {params}"
    ((people, seed_),) = params
    world = build_world(people, seed_)
    p = plan(world)
    expected = {name: SYSTEMS[name].seed_rows(world, p) for name in SYSTEMS}

    fresh = [r.system for r in first.systems if r.status == "seeded"]
    for name in fresh:  # seeded just now: exactly the generated rows, all mapped by the truth file
        result = next(r for r in first.systems if r.system == name)
        assert result.rows == {t: len(rows) for t, rows in expected[name].rows.items()}
    if fresh:
        live = live_keys(settings)
        truth = read_truth(truth_path(settings))
        for name in fresh:
            for table in SYSTEMS[name].truth_tables:
                mapped = {r.source_key for r in truth if (r.system, r.table) == (name, table.name)}
                assert mapped == live[(name, table.name)], table.qualified

    before = {s.system: s.rows for s in status(settings)}
    again = seed(settings, people, seed_)
    assert again.skipped
    assert {s.system: s.rows for s in status(settings)} == before, "a second seed must add nothing"

    # About 60% of people are known to two or more systems: by plan, and in the databases.
    assert 0.5 <= again.multi_system_share <= 0.75
    live = live_keys(settings)
    systems_of: dict[str, set[str]] = {}
    for name, data in expected.items():
        for r in data.truth:
            if r.person_id.startswith("P") and r.source_key in live[(name, r.table)]:
                systems_of.setdefault(r.person_id, set()).add(name)
    share = sum(len(s) >= 2 for s in systems_of.values()) / len(systems_of)
    # Load runs delete some seeded rows, so a stack that has seen load shows somewhat less overlap.
    assert share >= (0.5 if len(fresh) == len(SYSTEMS) else 0.3), share
    assert_truth_file_is_live(settings)


def test_load_reaches_the_requested_rate(settings: Settings) -> None:
    summary = load(settings, rate=200, duration=3, seed=7)
    assert summary.errors == 0, summary.first_error
    assert summary.target == 600
    assert abs(summary.total - 600) <= 30  # a final order may carry a few lines past the target
    assert summary.elapsed_s < 4.0
    assert {s for s, _ in summary.by_system_op} == set(SYSTEMS)
    assert {op for _, op in summary.by_system_op} == {"insert", "update", "delete"}
    assert_truth_file_is_live(settings)


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
