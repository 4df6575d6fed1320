"""Decoding Debezium change-event envelopes (JSON converter, ``schemas.enable=false``).

The decoder parses only what routing and ordering need (``op`` and ``source``); ``before`` and
``after`` stay raw JSON text (:class:`msgspec.Raw` slices of the message, no parse). Envelopes
written with ``schemas.enable=true`` (``{"schema": ..., "payload": ...}``) are unwrapped on a slower
path, so a misconfigured connector still works.

Classification, per message:

* a value of ``None`` is a tombstone (Debezium writes one after each delete for log compaction):
  counted, not stored;
* a heartbeat (``{"ts_ms": ...}`` only, or a ``__debezium-heartbeat`` topic): counted, not stored;
* anything else that is not a well-formed envelope is an :class:`~core.events.Rejected` with the
  reason and its Kafka position, bound for quarantine.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from core.events import OPS, ChangeBatch, ChangeEvent, RawBatch, Rejected

HEARTBEAT_TOPIC_PREFIX = "__debezium-heartbeat"
_NULL = b"null"


class _Source(msgspec.Struct):
    name: str
    db: str
    table: str
    ts_ms: int
    schema: str = ""
    ts_us: int | None = None
    # Debezium 1.x wrote a boolean; 2.x+ a string enum (true/first/last/false/incremental...).
    snapshot: str | bool = "false"
    txId: int | None = None  # noqa: N815 - Debezium's field name
    lsn: int | None = None


class _Envelope(msgspec.Struct):
    op: str
    source: _Source
    before: msgspec.Raw = msgspec.Raw(_NULL)
    after: msgspec.Raw = msgspec.Raw(_NULL)
    ts_ms: int | None = None
    ts_us: int | None = None


_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_any = msgspec.json.Decoder().decode
_encode = msgspec.json.encode


class EnvelopeError(Exception):
    """Raised inside the decoder for one bad message; turned into a :class:`Rejected`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _unwrap_schema_envelope(value: bytes) -> _Envelope:
    """Slow path: a ``{"schema":..., "payload":...}`` envelope, or a precise error for a bad one."""
    try:
        doc = _decode_any(value)
    except msgspec.DecodeError as exc:
        raise EnvelopeError("malformed_json", str(exc)) from exc
    if isinstance(doc, dict) and "payload" in doc and "schema" in doc:
        payload = doc["payload"]
        if payload is None:
            raise EnvelopeError("missing_payload", "schema envelope with a null payload")
        try:
            return _decode_envelope(_encode(payload))
        except msgspec.ValidationError as exc:
            raise EnvelopeError("invalid_envelope", str(exc)) from exc
    if not isinstance(doc, dict):
        raise EnvelopeError("invalid_envelope", f"expected a JSON object, got {type(doc).__name__}")
    missing = [f for f in ("op", "source") if f not in doc]
    if missing:
        raise EnvelopeError("invalid_envelope", f"missing field(s): {', '.join(missing)}")
    try:
        return _decode_envelope(value)
    except msgspec.ValidationError as exc:
        raise EnvelopeError("invalid_envelope", str(exc)) from exc


def is_heartbeat(topic: str, value: bytes) -> bool:
    """True for Debezium heartbeat messages (heartbeat topic, or a value holding only ``ts_ms``)."""
    if topic.startswith(HEARTBEAT_TOPIC_PREFIX):
        return True
    # Cheap pre-check before a parse: heartbeats are tiny.
    if len(value) > 64 or b'"ts_ms"' not in value:
        return False
    try:
        doc = _decode_any(value)
    except msgspec.DecodeError:
        return False
    return isinstance(doc, dict) and set(doc) == {"ts_ms"}


def _decode_one(topic: str, key: bytes | None, value: bytes) -> _Envelope:
    """Parse and validate one non-null value; raise EnvelopeError when it is not a usable change."""
    try:
        env = _decode_envelope(value)
    except (msgspec.ValidationError, msgspec.DecodeError):
        env = _unwrap_schema_envelope(value)
    op = env.op
    if op not in OPS:
        raise EnvelopeError("unknown_op", f"op={op!r}")
    if key is None and op not in ("t", "m"):
        raise EnvelopeError("missing_key", f"op={op} change without a message key")
    if op in ("c", "r", "u") and bytes(env.after) == _NULL:
        raise EnvelopeError("invalid_envelope", f"op={op} without an 'after' image")
    if key is not None:
        try:
            key.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EnvelopeError("invalid_utf8", f"message key: {exc}") from exc
    return env


def decode_batch(batch: RawBatch) -> ChangeBatch:
    """Decode every message of a batch into columns; nothing is dropped without being counted.

    Tombstones and heartbeats are counted, malformed messages become :class:`Rejected` entries.
    """
    topic, partition = batch.topic, batch.partition
    system: list[str] = []
    db: list[str] = []
    schema: list[str] = []
    table: list[str] = []
    ops: list[str] = []
    keys: list[bytes | None] = []
    befores: list[bytes | None] = []
    afters: list[bytes | None] = []
    lsns: list[int | None] = []
    tx_ids: list[int | None] = []
    source_us: list[int] = []
    conn_us: list[int] = []
    snapshots: list[str] = []
    offsets: list[int] = []
    kafka_ts: list[int] = []
    envelopes: list[bytes] = []
    rejected: list[Rejected] = []
    tombstones = heartbeats = 0
    heartbeat_topic = topic.startswith(HEARTBEAT_TOPIC_PREFIX)
    for offset, key, value, ts in zip(
        batch.offsets, batch.keys, batch.values, batch.timestamps_ms, strict=True
    ):
        if value is None:
            tombstones += 1
            continue
        if heartbeat_topic:
            heartbeats += 1
            continue
        try:
            env = _decode_one(topic, key, value)
        except EnvelopeError as exc:
            if is_heartbeat(topic, value):
                heartbeats += 1
            else:
                rejected.append(Rejected(exc.reason, exc.detail, topic, partition, offset, ts, key, value))
            continue
        src = env.source
        system.append(src.name)
        db.append(src.db)
        schema.append(src.schema)
        table.append(src.table)
        ops.append(env.op)
        keys.append(key)
        before = bytes(env.before)
        befores.append(None if before == _NULL else before)
        after = bytes(env.after)
        afters.append(None if after == _NULL else after)
        lsns.append(src.lsn)
        tx_ids.append(src.txId)
        source_us.append(src.ts_us if src.ts_us is not None else src.ts_ms * 1000)
        conn_us.append(env.ts_us if env.ts_us is not None else (env.ts_ms or 0) * 1000)
        snap = src.snapshot
        snapshots.append(snap if isinstance(snap, str) else ("true" if snap else "false"))
        offsets.append(offset)
        kafka_ts.append(ts)
        envelopes.append(value)
    return ChangeBatch(
        topic=topic,
        partition=partition,
        last_offset=batch.last_offset,
        system=tuple(system),
        db=tuple(db),
        schema=tuple(schema),
        table=tuple(table),
        op=tuple(ops),
        key=tuple(keys),
        before=tuple(befores),
        after=tuple(afters),
        lsn=tuple(lsns),
        tx_id=tuple(tx_ids),
        source_ts_us=tuple(source_us),
        connector_ts_us=tuple(conn_us),
        snapshot=tuple(snapshots),
        offset=tuple(offsets),
        kafka_ts_ms=tuple(kafka_ts),
        envelope=tuple(envelopes),
        rejected=tuple(rejected),
        tombstones=tombstones,
        heartbeats=heartbeats,
    )


def raw_batch(
    topic: str, partition: int, messages: Sequence[tuple[int, bytes | None, bytes | None]]
) -> RawBatch:
    """Build a :class:`RawBatch` from ``(offset, key, value)`` triples (tests, tools, replays)."""
    return RawBatch(
        topic=topic,
        partition=partition,
        offsets=tuple(o for o, _, _ in messages),
        keys=tuple(k for _, k, _ in messages),
        values=tuple(v for _, _, v in messages),
        timestamps_ms=tuple(0 for _ in messages),
    )


def decode_message(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
) -> ChangeEvent | Rejected | None:
    """Decode a single message: a :class:`ChangeEvent`, a :class:`Rejected`, or None if skipped.

    Same code path as :func:`decode_batch` (a batch of one), so the two can never disagree.
    """
    decoded = decode_batch(raw_batch(topic, partition, [(offset, key, value)]))
    if decoded.rejected:
        return decoded.rejected[0]
    events = decoded.events()
    return events[0] if events else None
