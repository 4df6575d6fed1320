"""bench/silver pieces that need no stack: the generated Debezium messages and their expected state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bench.silver.generate import ChangeStream, Segment, customers_mapping, row_pool
from cdc.envelope import decode_batch, raw_batch
from core.canonical import record_schema
from flows.canonical import Mapping, map_batch, map_batch_reference
from sinks.delta.bronze import batch_to_arrow
from sinks.delta.silver import SilverWriter, read_current


@pytest.fixture(scope="module")
def mapping() -> Mapping:
    return customers_mapping()


@pytest.fixture(scope="module")
def pool(mapping: Mapping) -> list[tuple[str, str]]:
    return row_pool(mapping, people=300)


def bronze(
    stream: ChangeStream, keys: np.ndarray, delete_frac: float, first_offset: int
) -> tuple[pl.DataFrame, Segment, int]:
    segment = Segment("s", len(keys), 0)
    msgs = list(stream.messages(keys, delete_frac, segment))
    decoded = decode_batch(raw_batch("bench", 0, [(first_offset + i, k, v) for i, (k, v) in enumerate(msgs)]))
    assert decoded.rejected == ()
    assert decoded.tombstones == segment.deletes  # one tombstone after each delete
    frame = pl.from_arrow(batch_to_arrow(decoded))
    assert isinstance(frame, pl.DataFrame)
    return frame, segment, first_offset + len(msgs)


def test_messages_map_like_the_reference_and_land_as_expected(
    tmp_path: Path, mapping: Mapping, pool: list[tuple[str, str]]
) -> None:
    stream = ChangeStream(pool, key_space=1100, seed=3)
    writer = SilverWriter(tmp_path, "customer", schema=record_schema("customer"))
    load, seg, offset = bronze(stream, stream.rng.permutation(1100)[:1000], 0.0, 0)
    assert seg.deletes == 0 and set(load["op"]) == {"c"}
    deletes = 0
    for frame in [load] + [None] * 3:
        if frame is None:
            frame, seg, offset = bronze(stream, stream.rng.integers(0, 1100, 2000), 0.1, offset)
            deletes += seg.deletes
        mapped = map_batch(mapping, frame)
        reference = map_batch_reference(mapping, frame)
        assert mapped.records.equals(reference.records)
        assert mapped.rejects.height == 0
        writer.apply(mapped.records)
    assert 0.08 < deletes / 6000 < 0.12  # "10% deletes" of the changes
    state = read_current(writer.path, include_deleted=True)
    assert set(state.filter(~pl.col("deleted"))["source_key"]) == stream.expected_live()
    assert state["deleted"].sum() == stream.expected_deleted()
    # lsn order = production order, so every key's row holds its last change
    assert state["email"].drop_nulls().str.starts_with("c").all()


def test_key_and_lsn_shape(pool: list[tuple[str, str]]) -> None:
    stream = ChangeStream(pool, key_space=10, seed=1)
    seg = Segment("s", 3, 0)
    msgs = list(stream.messages(np.array([4, 4, 7]), 0.0, seg))
    assert [k for k, _ in msgs] == [b'{"customer_id":4}'] * 2 + [b'{"customer_id":7}']
    decoded = decode_batch(raw_batch("t", 0, [(i, k, v) for i, (k, v) in enumerate(msgs)]))
    assert decoded.op == ("c", "u", "c")
    lsns = [lsn for lsn in decoded.lsn if lsn is not None]
    assert lsns == sorted(lsns) and len(set(lsns)) == 3
