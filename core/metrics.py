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
STAGE_SECONDS = Histogram(
    "goldstream_stage_batch_seconds",
    "Wall time one batch spends in a step of a dataflow. Ingest flow: bronze (raw log commit),"
    " mapping (canonical mapping), silver (the current rows of the touched keys; the MERGEs run"
    " beside the flow), silver_merge (one background MERGE), silver_read_back (reading rows back"
    " after the queued MERGEs, for the keys that need it), gold (gold"
    " Delta tables), golden_publish (golden.<entity> topic, delivery confirmed). Propagation flow,"
    " per delivery unit: sync_intent (the pushed intents' commit), sync_send (the API calls),"
    " sync_record (sync_log, pushed and ledger commits).",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
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
SILVER_ROWS_PATH = Counter(
    "goldstream_silver_rows_resolved_total",
    "Current silver rows handed to entity resolution, by how the ingest flow knew them: fast (the"
    " batch's own newest change, newer than silver's: no read needed) or read_back (read from silver"
    " after the queued MERGEs: late or replayed changes, unchanged-TOAST fields, truncates).",
    ["path"],
)
SCHEMA_DRIFT = Counter(
    "goldstream_schema_drift_rows_total",
    "Rows of source tables whose columns differ from their mapping, by change and policy action.",
    ["system", "table", "column", "change", "action"],
)
GOLD_ROWS = Counter(
    "goldstream_gold_rows_total",
    "Rows handled by a gold writer per table, by outcome: written (inserted, replaced, closed or"
    " deleted) or stale (older than the stored row, or superseded within the batch).",
    ["entity", "table", "outcome"],
)
GOLDEN_PUBLISHED = Counter(
    "goldstream_golden_published_total",
    "Golden-record changes acknowledged by Kafka on golden.<entity>.",
    ["entity"],
)
DLQ_REPLAYED = Counter(
    "goldstream_dlq_replayed_total",
    "Quarantined messages re-published to their source topic by `goldstream dlq replay`.",
    ["topic"],
)
DELTA_MAINTENANCE_SECONDS = Histogram(
    "goldstream_delta_maintenance_seconds",
    "Duration of one Delta maintenance step (compact, checkpoint, vacuum).",
    ["layer", "step"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


# --- propagation to target systems (labels: target, operation, outcome; never a record key) ---
TARGET_REQUESTS = Counter(
    "goldstream_target_requests_total",
    "HTTP requests to a target API, by target, operation and HTTP status class (2xx, 4xx, 5xx, error).",
    ["target", "operation", "status"],
)
TARGET_RETRIES = Counter(
    "goldstream_target_retries_total",
    "Target requests retried after a transient failure (429, 5xx, timeout), by reason.",
    ["target", "reason"],
)
TARGET_BREAKER_STATE = Gauge(
    "goldstream_target_breaker_state",
    "Circuit breaker of a target: 0 closed, 1 half-open, 2 open (consumption for it paused).",
    ["target"],
)
SYNC_OPERATIONS = Counter(
    "goldstream_sync_operations_total",
    "Planned operations on target records by outcome: ok, failed (terminal, to the retry ledger),"
    " skipped (nothing to send, stale version or missing required fields).",
    ["target", "operation", "outcome"],
)
SYNC_LATENCY_SECONDS = Histogram(
    "goldstream_sync_latency_seconds",
    "From the golden change's emission to the target acknowledging the write.",
    ["target"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300),
)
ECHO_SUPPRESSED = Counter(
    "goldstream_echo_suppressed_total",
    "Inbound changes of a target system recognised as the echo of our own push and dropped.",
    ["system"],
)
ECHO_PASSED = Counter(
    "goldstream_echo_passed_total",
    "Inbound changes of a target system checked by the echo filter and let through, by reason:"
    " unknown (never pushed), differs (content changed after our push: a user edit).",
    ["system", "reason"],
)
RESOLVE_RECORDS = Counter(
    "goldstream_resolve_records_total",
    "Record changes reaching the resolve stage, by outcome: resolved, or no_config (the entity has no"
    " matching + survivorship config and is passed over).",
    ["entity", "outcome"],
)
GOLDEN_CHANGES = Counter(
    "goldstream_golden_changes_total",
    "Golden-record versions emitted, by kind: created (version 1), updated, retired.",
    ["entity", "kind"],
)
GOLDEN_LINEAGE = Counter(
    "goldstream_golden_lineage_total", "MERGED and SPLIT events of golden ids.", ["entity", "kind"]
)
RESOLVE_STATE = Gauge(
    "goldstream_resolve_state_size",
    "Size of one entity type's resolve state on this worker: records (live), golden (ids),"
    " oversized_blocks (block key values past max_block_size: they generate no pairs).",
    ["entity", "what"],
)
RESOLVE_SECONDS = Histogram(
    "goldstream_resolve_batch_seconds",
    "Duration of one resolve step (matching, clustering and golden-record assembly of a batch).",
    ["entity"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

RESOLVE_STAGE_SECONDS = Histogram(
    "goldstream_resolve_stage_seconds",
    "Duration of one activation of a staged-resolution step (records, blocks, pairs, cluster,"
    " values, golden) for one key group.",
    ["entity", "stage"],
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
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
