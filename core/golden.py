"""Golden records and entity events: the frozen records the resolve stage hands to the gold sinks,
the ``golden.<entity>`` Kafka topic and the propagation flow.

Identifiers:

* a **record id** names one source record: ``<source_system>:<schema.table>:<source_key>``
  (:func:`record_id`, :func:`split_record_id`);
* a **golden id** names one real-world entity; it is minted by the resolver and stable (the older id
  survives a merge, the larger part keeps it on a split).

Values in :attr:`GoldenChange.values` are JSON-safe canonical values: text, numbers, booleans, null,
dates as ``YYYY-MM-DD`` and timestamps as ISO 8601 UTC text (:func:`json_value`), so the same
dictionary is the Kafka payload, the Delta row and the input of the content hash.

The wire format of ``golden.<entity>`` is :func:`encode_change` (JSON, ``schema_version`` 1), keyed
by the golden id so that one golden record's versions stay in order on one partition.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

import msgspec

GOLDEN_SCHEMA_VERSION = 1

#: ``UPSERT``: the golden record exists with these values; ``RETIRED``: it no longer exists (its
#: records left, or it was merged into ``merged_into``).
ChangeKind = Literal["UPSERT", "RETIRED"]
LineageKind = Literal["MERGED", "SPLIT"]


def record_id(source_system: str, source_table: str, source_key: str) -> str:
    """The record id of one source record (``source_table`` is ``schema.table``)."""
    return f"{source_system}:{source_table}:{source_key}"


def split_record_id(rid: str) -> tuple[str, str, str]:
    """``(source_system, source_table, source_key)`` of a record id (the key may contain ``:``)."""
    system, table, key = rid.split(":", 2)
    return system, table, key


def json_value(v: object) -> object:
    """A canonical value as JSON-safe data (dates and timestamps as ISO text, decimals as text)."""
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.UTC)
        return v.astimezone(dt.UTC).isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_value(x) for k, x in v.items()}
    return v


def content_hash(values: Mapping[str, object], fields: tuple[str, ...] | None = None) -> str:
    """A stable hash of canonical content (the loop-prevention fingerprint).

    Keys are sorted, values made JSON-safe, strings compared as stored (mappings already normalise
    them). ``fields`` restricts the hash to those names (missing ones count as null).
    """
    names = sorted(fields) if fields is not None else sorted(values)
    payload = {n: json_value(values.get(n)) for n in names}
    return hashlib.sha256(msgspec.json.encode(payload, order="sorted")).hexdigest()


class FieldProvenance(msgspec.Struct, frozen=True, gc=False):
    """Where one golden value came from and why it won."""

    source: str
    record_id: str
    source_ts_us: int
    rule: str
    group: str | None = None
    support: float = 1.0


class Cause(msgspec.Struct, frozen=True, gc=False):
    """The source change that triggered a golden change (for tracing and end-to-end latency)."""

    record_id: str
    lsn: int | None
    source_ts_us: int
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


class GoldenChange(msgspec.Struct, frozen=True, gc=False):
    """One new version of a golden record (only emitted when its content or membership changed)."""

    entity: str
    golden_id: str
    version: int
    """1 for the first version, +1 per change of this golden id."""
    kind: ChangeKind
    values: dict[str, Any]
    provenance: dict[str, FieldProvenance]
    changed: tuple[str, ...]
    """Fields whose value differs from the previous version (all non-null fields for version 1)."""
    members: tuple[str, ...]
    """Record ids of the cluster, sorted."""
    emitted_at_us: int
    cause: Cause | None = None
    merged_from: tuple[str, ...] = ()
    """Golden ids retired into this one by this change (MERGED)."""
    merged_into: str | None = None
    """For ``RETIRED`` by a merge: the surviving golden id."""
    split_from: str | None = None
    """Set on the first version of a golden id created by a SPLIT."""
    content_hash: str = ""
    """:func:`content_hash` of ``values``."""
    schema_version: int = GOLDEN_SCHEMA_VERSION


class CrosswalkEntry(msgspec.Struct, frozen=True, gc=False):
    """Which golden id a source record belongs to now (``golden_id`` None: the record was deleted)."""

    entity: str
    record_id: str
    golden_id: str | None
    score: float | None
    """Match probability of the record's strongest link inside its cluster (None: alone)."""
    since_us: int
    """When the record joined this golden id."""


class LinkRecord(msgspec.Struct, frozen=True, gc=False):
    """One scored pair inside a cluster, with its per-comparison breakdown (for ``explain``)."""

    entity: str
    golden_id: str
    a: str
    b: str
    weight: float
    probability: float
    comparisons: tuple[tuple[str, str, float], ...]
    """(comparison name, level label, weight contribution)."""


class LineageEvent(msgspec.Struct, frozen=True, gc=False):
    """A MERGED or SPLIT of golden ids."""

    entity: str
    kind: LineageKind
    golden_id: str
    """MERGED: the survivor; SPLIT: the id that kept the larger part."""
    others: tuple[str, ...]
    """MERGED: the retired ids; SPLIT: the new ids."""
    at_us: int
    cause: Cause | None = None

    @property
    def event_id(self) -> str:
        """Deterministic id (a replay produces the same one)."""
        return f"{self.kind}:{self.golden_id}:{','.join(sorted(self.others))}:{self.at_us}"


class RecordChange(msgspec.Struct, frozen=True, gc=False):
    """One source record's new current state, as silver applied it: the resolve stage's input.

    ``values`` holds the canonical attributes of the entity (JSON-safe, see :func:`json_value`);
    None means the record was deleted (or truncated away).
    """

    entity: str
    record_id: str
    source_system: str
    values: dict[str, Any] | None
    source_ts_us: int
    cause: Cause


class GoldBatch(msgspec.Struct, frozen=True, gc=False):
    """Everything one resolve step produced for one entity type, in order."""

    entity: str
    changes: tuple[GoldenChange, ...] = ()
    crosswalk: tuple[CrosswalkEntry, ...] = ()
    links: tuple[LinkRecord, ...] = ()
    lineage: tuple[LineageEvent, ...] = ()
    relinked: tuple[str, ...] = ()
    """Golden ids whose link set this batch replaces: their current links are all in ``links`` (none
    there: the cluster has no scored pair left). Links of a ``RETIRED`` golden id are dropped."""


def combine_batches(batches: Sequence[GoldBatch]) -> GoldBatch:
    """One batch with the effect of applying ``batches`` (one entity) in order.

    Changes, crosswalk entries and lineage events are concatenated in order: the gold writer keeps
    the latest per golden id / record itself. Links are a whole set per golden id, so each id keeps
    the set of the last batch that replaced it (listed it in ``relinked``, carried links for it, or
    retired it); an earlier batch's links for it would otherwise come back.
    """
    if not batches:
        raise ValueError("combine_batches needs at least one batch")
    if len(batches) == 1:
        return batches[0]
    entity = batches[0].entity
    links_of: dict[str, list[LinkRecord]] = {}
    for b in batches:
        if b.entity != entity:
            raise ValueError(f"cannot combine batches of {entity!r} and {b.entity!r}")
        own: dict[str, list[LinkRecord]] = {}
        for link in b.links:
            own.setdefault(link.golden_id, []).append(link)
        retired = (c.golden_id for c in b.changes if c.kind == "RETIRED")
        for gid in (*b.relinked, *own, *retired):
            links_of.pop(gid, None)  # re-inserted last: the relinked order follows the batches
            links_of[gid] = own.get(gid, [])
    return GoldBatch(
        entity,
        changes=tuple(c for b in batches for c in b.changes),
        crosswalk=tuple(e for b in batches for e in b.crosswalk),
        links=tuple(link for links in links_of.values() for link in links),
        lineage=tuple(e for b in batches for e in b.lineage),
        relinked=tuple(links_of),
    )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(GoldenChange)


def encode_change(change: GoldenChange) -> bytes:
    """The ``golden.<entity>`` message value for ``change``."""
    return _encoder.encode(change)


def decode_change(data: bytes) -> GoldenChange:
    """Parse a ``golden.<entity>`` message value (raises ``msgspec.ValidationError`` if malformed)."""
    return _decoder.decode(data)


def golden_topic(entity: str) -> str:
    """The Kafka topic of one entity's golden-record changes."""
    return f"golden.{entity}"
