"""Every Prometheus metric goldstream exports, declared in one place.

Names follow ``goldstream_<area>_<what>_<unit>``. Labels stay low-cardinality: stage, table, topic
and partition, never a record key.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("goldstream_stage_events_in_total", "Items entering a dataflow stage.", ["stage"])
EVENTS_OUT = Counter(
    "goldstream_stage_events_out_total", "Items leaving a dataflow stage (written, for sinks).", ["stage"]
)
SKIPPED = Counter(
    "goldstream_skipped_total",
    "Messages skipped on purpose: Debezium tombstones, heartbeats, replays already committed.",
    ["reason"],
)
QUARANTINED = Counter(
    "goldstream_quarantined_total", "Records sent to quarantine and the DLQ topic.", ["stage", "reason"]
)
COMMIT_SECONDS = Histogram(
    "goldstream_delta_commit_seconds",
    "Duration of one Delta commit (transaction check + write).",
    ["layer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "goldstream_consumer_lag_messages",
    "Messages in a Kafka partition not yet read by the dataflow (high watermark - next offset).",
    ["topic", "partition"],
)
SOURCE_TO_DELTA_SECONDS = Histogram(
    "goldstream_source_commit_to_delta_seconds",
    "Latency from the source database commit to the change being committed to Delta.",
    ["layer"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600),
)
RETRIES = Counter(
    "goldstream_transient_retries_total", "Transient failures retried with backoff.", ["operation"]
)
SILVER_ROWS = Counter(
    "goldstream_silver_rows_total",
    "Canonical changes handled by a silver writer, by outcome: applied (changed a row), stale (older"
    " than the row), superseded (a later change of the same key in the batch won), already_committed.",
    ["entity", "outcome"],
)
DELTA_MAINTENANCE_SECONDS = Histogram(
    "goldstream_delta_maintenance_seconds",
    "Duration of one Delta maintenance step (compact, checkpoint, vacuum).",
    ["layer", "step"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def observe_many(histogram: Histogram, values: npt.ArrayLike, **labels: str) -> None:
    """Observe many values at once.

    A batch of 20k events would cost 20k ``observe`` calls on the hot path; instead the values are
    bucketed with numpy and each bucket counter is incremented once. The result is identical to
    calling ``observe`` per value (a unit test checks this against the exposition output).
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return
    child = histogram.labels(**labels) if labels else histogram
    bounds = np.asarray(child._upper_bounds, dtype=np.float64)  # ends with +Inf
    # side="left": a value equal to a bound belongs to that bucket (Prometheus "le" semantics).
    counts = np.bincount(np.searchsorted(bounds, arr, side="left"), minlength=len(bounds))
    for i, c in enumerate(counts.tolist()):
        if c:
            child._buckets[i].inc(c)
    child._sum.inc(float(arr.sum()))
