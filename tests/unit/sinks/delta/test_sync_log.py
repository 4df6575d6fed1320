"""``latest_pushed``: the diff base the propagation flow restarts from."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sinks.delta.sync_log import PushedRow, SyncTables, latest_pushed

T0 = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def _row(
    golden_id: str,
    version: int,
    *,
    phase: str = "done",
    target: str = "crm",
    at_s: int = 0,
    state: str = "{}",
    offset: int = 0,
) -> PushedRow:
    return PushedRow(
        target=target,
        system=target,
        golden_id=golden_id,
        version=version,
        phase=phase,
        target_key=f"k-{golden_id}",
        content_hash="h",
        echo_fields=("email",),
        origin="goldstream",
        state=state,
        status="active",
        merged_into=None,
        at=T0 + dt.timedelta(seconds=at_s),
        topic="golden.customer",
        partition=0,
        offset=offset,
    )


def test_newest_done_row_per_golden_id(tmp_path: Path) -> None:
    tables = SyncTables(tmp_path)
    tables.append(
        "pushed",
        [
            _row("g1", 1, at_s=1, state='{"v": 1}'),
            _row("g2", 3, at_s=2, state='{"v": "g2"}'),
            _row("g1", 3, phase="intent", at_s=9, state='{"v": "intent"}'),  # not done: ignored
            _row("g1", 2, at_s=3, state='{"v": 2}'),
            _row("g3", 1, target="erp", state='{"v": "erp"}'),  # another target
        ],
        stream="s",
        version=1,
    )
    # a later commit with an older version (a replayed batch) never wins over a newer version
    tables.append("pushed", [_row("g1", 1, at_s=20, state='{"v": "old"}')], stream="s", version=2)

    got = {r["golden_id"]: r for r in latest_pushed(tmp_path, "crm")}

    assert sorted(got) == ["g1", "g2"]
    assert (got["g1"]["version"], got["g1"]["state"]) == (2, '{"v": 2}')
    assert got["g2"]["state"] == '{"v": "g2"}'
    assert latest_pushed(tmp_path, "erp")[0]["state"] == '{"v": "erp"}'


def test_no_table_or_no_done_rows(tmp_path: Path) -> None:
    assert latest_pushed(tmp_path, "crm") == []
    SyncTables(tmp_path).append("pushed", [_row("g1", 1, phase="intent")], stream="s", version=1)
    assert latest_pushed(tmp_path, "crm") == []
