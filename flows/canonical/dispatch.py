"""Mapping a batch with whichever implementation is cheaper for its size.

The vectorised engine (:func:`flows.canonical.engine.map_batch`) has a fixed cost of 30-80 ms per
batch, whatever its size: each transform is a handful of small polars queries. The per-record
reference (:func:`flows.canonical.reference.map_batch_reference`) costs ~0.3-0.5 ms per row and
nothing per batch. Both give the same records, rejects and drift findings (property-tested in
``tests/unit/flows/canonical/test_engine_property.py``), so the choice is only about speed: when
the flow keeps up with a steady trickle of changes its batches hold a few rows each, and the fixed
cost would be most of the mapping's CPU and of its latency.

Measured (one core, demo mappings, CPU ms per batch, engine / reference): 1 row 30-83 / 2-3;
10 rows 33-77 / 4-9; 100 rows 41-82 / 35-72; 300 rows 50-91 / 85-153.
"""

from __future__ import annotations

import polars as pl

from flows.canonical.compile import Mapping
from flows.canonical.engine import MappedBatch, map_batch
from flows.canonical.reference import map_batch_reference

#: Batches up to this many rows go through the per-record path (below both curves' crossing,
#: ~100-150 rows, with room for mappings with more fields per row).
SMALL_BATCH_ROWS = 64


def map_rows(mapping: Mapping, events: pl.DataFrame) -> MappedBatch:
    """Map ``events`` (bronze rows with images) like :func:`~flows.canonical.engine.map_batch`."""
    if events.height <= SMALL_BATCH_ROWS:
        # No model check here: an invalid record must reach silver's validation and quarantine,
        # as the engine's records do.
        return map_batch_reference(mapping, events, validate=False)
    return map_batch(mapping, events)
