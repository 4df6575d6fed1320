"""Property: whatever order, duplication and batching changes arrive in, silver equals the result of
applying them one by one in sequence order (a plain reference implementation, written here).

Kafka is modelled faithfully where the writer relies on it: each partition delivers its messages in
offset order, but partitions interleave arbitrarily, a partition may be re-delivered from an older
offset (a restart from an older recovery snapshot), and batches mix partitions. The source sequence
(LSN, streamed, txId, offset) is unrelated to the offsets: late events, snapshot reads after
streamed changes, truncates overtaking inserts on another partition all happen.

Profiles: CI (default, 50 examples, ~15 s) or ``HYPOTHESIS_PROFILE=dev`` (``SILVER_EXAMPLES``, default
200; 1,500 examples passed).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from sinks.delta.maintenance import MaintenancePolicy
from sinks.delta.silver import ENGINES, SilverWriter, read_current
from sinks.delta.silver_batch import INPUT_COLUMNS

settings.register_profile(
    "silver-ci",
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "silver-dev",
    max_examples=int(os.environ.get("SILVER_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile("silver-dev" if os.environ.get("HYPOTHESIS_PROFILE") == "dev" else "silver-ci")

TABLES = [("crm", "public.a"), ("crm", "public.b")]
KEYS = ["1", "2", "3"]
DATA = ("name", "age", "note")
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@dataclass
class Event:
    table: int
    key: str | None
    op: str
    lsn: int
    tx_id: int | None
    partition: int
    values: dict[str, Any]
    unavailable: list[str] = field(default_factory=list)
    offset: int = -1

    def seq(self) -> tuple[int, int, int, int]:
        streamed = 0 if self.op == "r" else 1
        return (self.lsn, streamed, 0 if self.tx_id is None else self.tx_id + 1, self.offset)

    def row(self) -> dict[str, Any]:
        system, table = TABLES[self.table]
        return {
            "source_system": system,
            "source_table": table,
            "source_key": self.key,
            "lsn": self.lsn,
            "tx_id": self.tx_id,
            "source_ts": T0 + dt.timedelta(seconds=self.lsn),
            "mapping_version": "v1",
            "op": self.op,
            "deleted": self.op == "d",
            "snapshot": self.op == "r",
            "topic": f"{system}.{table}",
            "partition": self.partition,
            "offset": self.offset,
            "unavailable": self.unavailable,
            **{c: self.values.get(c) for c in DATA},
        }


values = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["ann", "bob", None, "çé"]),
        "age": st.one_of(st.none(), st.integers(0, 99)),
        "note": st.sampled_from(["long text", "other", None]),
    }
)


@st.composite
def single(draw: st.DrawFn) -> list[Event]:
    op = draw(st.sampled_from(["c", "u", "u", "u", "d", "r", "t"]))
    key = None if op == "t" else draw(st.sampled_from(KEYS))
    unavailable = draw(st.lists(st.sampled_from(["note", "name"]), unique=True)) if op == "u" else []
    vals = {} if op in ("d", "t") else draw(values)
    for c in unavailable:
        vals[c] = None
    return [
        Event(
            table=draw(st.integers(0, len(TABLES) - 1)),
            key=key,
            op=op,
            lsn=draw(st.integers(1, 25)),
            tx_id=draw(st.one_of(st.none(), st.integers(1, 3))),
            partition=draw(st.integers(0, 1)),
            values=vals,
            unavailable=unavailable,
        )
    ]


@st.composite
def pk_change(draw: st.DrawFn) -> list[Event]:
    """A primary-key change: delete of the old key and create of the new one, same LSN region."""
    old, new = draw(st.lists(st.sampled_from(KEYS), min_size=2, max_size=2, unique=True))
    table, lsn, tx = draw(st.integers(0, len(TABLES) - 1)), draw(st.integers(1, 24)), draw(st.integers(1, 3))
    return [
        Event(table, old, "d", lsn, tx, draw(st.integers(0, 1)), {}),
        Event(table, new, "c", lsn + 1, tx, draw(st.integers(0, 1)), draw(values)),
    ]


histories = st.lists(st.one_of(single(), single(), single(), pk_change()), min_size=1, max_size=12).map(
    lambda groups: [e for g in groups for e in g]
)


def reference(events: list[Event]) -> dict[tuple[int, str], dict[str, Any]]:
    """Apply each distinct change once, in sequence order, to a dict of current rows."""
    state: dict[tuple[int, str], dict[str, Any]] = {}
    for e in sorted(events, key=Event.seq):
        lineage = {"op": e.op, "lsn": e.lsn, "tx_id": e.tx_id, "offset": e.offset, "seq": e.seq()}
        if e.op == "t":
            for (table, _key), row in state.items():
                if table == e.table and row["seq"] < e.seq():
                    row.update(lineage, deleted=True)
            continue
        assert e.key is not None
        cur = state.get((e.table, e.key))
        if cur is not None and cur["seq"] >= e.seq():
            continue  # late or duplicated
        new: dict[str, Any] = {}
        for c in DATA:
            carried = e.op != "d" and c not in e.unavailable
            new[c] = e.values.get(c) if carried else (cur[c] if cur is not None else None)
        new.update(lineage, deleted=e.op == "d")
        state[(e.table, e.key)] = new
    return state


def frame(events: list[Event]) -> pl.DataFrame:
    return pl.DataFrame(
        [e.row() for e in events],
        schema={
            **INPUT_COLUMNS,
            "name": pl.String,
            "age": pl.Int64,
            "note": pl.String,
        },
    )


@st.composite
def deliveries(draw: st.DrawFn, events: list[Event]) -> list[list[Event]]:
    """Kafka delivery of ``events`` (offsets assigned in list order per partition), with partitions
    interleaved, re-deliveries from older offsets, cut into batches."""
    for offset, e in enumerate(events):
        e.offset = offset  # globally unique, so increasing within each partition
    queues = {p: [e for e in events if e.partition == p] for p in (0, 1)}
    position = dict.fromkeys(queues, 0)
    delivered: list[Event] = []
    rewinds = 0
    while any(position[p] < len(q) for p, q in queues.items()):
        p = draw(st.sampled_from([p for p, q in queues.items() if position[p] < len(q)]))
        if rewinds < 3 and position[p] > 0 and draw(st.integers(0, 9)) == 0:
            position[p] = draw(st.integers(0, position[p] - 1))  # restart from an older offset
            rewinds += 1
        take = draw(st.integers(1, 3))
        delivered += queues[p][position[p] : position[p] + take]
        position[p] += take
    batches: list[list[Event]] = []
    i = 0
    while i < len(delivered):
        n = draw(st.integers(1, 8))
        batches.append(delivered[i : i + n])
        i += n
    return batches


def silver_rows(path: Path) -> dict[tuple[int, str], dict[str, Any]]:
    out = {}
    df = read_current(path, include_deleted=True)
    assert df.select("source_system", "source_table", "source_key").is_duplicated().sum() == 0
    for r in df.iter_rows(named=True):
        table = TABLES.index((r["source_system"], r["source_table"]))
        out[(table, r["source_key"])] = {
            **{c: r[c] for c in DATA},
            "op": r["op"],
            "lsn": r["lsn"],
            "tx_id": r["tx_id"],
            "offset": r["offset"],
            "deleted": r["deleted"],
        }
    return out


@settings(PROFILE)
@given(data=st.data(), events=histories)
def test_silver_equals_sequential_application(data: st.DataObject, events: list[Event]) -> None:
    batches = data.draw(deliveries(events))
    restarts = data.draw(st.lists(st.booleans(), min_size=len(batches), max_size=len(batches)))
    expected = {k: {c: v for c, v in row.items() if c != "seq"} for k, row in reference(events).items()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        writer = SilverWriter(root, "customer", maintenance=MaintenancePolicy(every_commits=7))
        for batch, restart in zip(batches, restarts, strict=True):
            if restart:  # a new process: no cached table object or watermarks
                writer = SilverWriter(root, "customer", maintenance=None)
            writer.apply(frame(batch))
        assert silver_rows(writer.path) == expected


def full_table(path: Path) -> pl.DataFrame:
    """Every stored column of every row (watermarks, provenance columns), in a stable order."""
    df = pl.scan_delta(str(path)).collect()
    return df.drop("applied_at").sort("source_system", "source_table", "source_key")


def change_feed(path: Path) -> pl.DataFrame:
    """The table's change data feed from version 0, in a stable order (timestamps left out)."""
    cdf = pl.DataFrame(DeltaTable(str(path)).load_cdf(starting_version=0).read_all())
    cdf = cdf.drop("applied_at", "_commit_timestamp")
    return cdf.sort(cdf.columns, nulls_last=True)


@settings(PROFILE)
@given(data=st.data(), events=histories)
def test_the_rewrite_engine_writes_what_the_delta_rs_merge_writes(
    data: st.DataObject, events: list[Event]
) -> None:
    """Same batches through both engines: the same stored rows, versions and change data feed."""
    batches = data.draw(deliveries(events))
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for engine in ENGINES:
            writer = SilverWriter(Path(tmp) / engine, "customer", maintenance=None, engine=engine)
            for batch in batches:
                writer.apply(frame(batch))
            paths.append(writer.path)
        rewrite, delta_rs = paths
        assert_frame_equal(full_table(rewrite), full_table(delta_rs), check_column_order=False)
        assert_frame_equal(change_feed(rewrite), change_feed(delta_rs), check_column_order=False)
