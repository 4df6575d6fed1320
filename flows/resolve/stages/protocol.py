"""Messages between the resolution stages, key groups, and the completeness protocol.

Key groups
    A stage's Bytewax key is ``f"{entity}/{stage}{i}"`` with ``i = stable_hash(x) % shards``
    (:func:`shard_of`): ``x`` is the record id (records, values), the blocking key value (blocks),
    the pair (pairs) or the golden id (golden). Clustering has one key per entity. ``stable_hash`` is
    CRC-32, never the built-in ``hash()`` (salted per process by ``PYTHONHASHSEED``): the state of a
    key group is restored in other processes. The number of groups is fixed when a flow's state is
    created (like Bytewax's recovery partitions); the worker count may change between runs.

Ordering assumptions
    Messages from one sender key to one receiver key arrive in the order sent (Bytewax routes a key
    to one worker, and a Timely channel between two workers is FIFO). Nothing is assumed about
    messages from different senders: every stage is written so that any interleaving of its senders
    converges to the same state, and the simulator (:mod:`.simulate`) tests exactly that.

Completeness (why clustering never acts on half an update)
    One input batch fans out into many messages (record shards, block shards, pair shards), which
    reach the cluster step in any order. If it re-clustered after seeing an edge removed by a record
    update but before the edge that update adds elsewhere, it would emit a SPLIT and then a MERGED
    that a one-step application of the batch never shows. So every input batch gets a *token*, every
    message carries the tokens of the input it was computed from, and every stage activation sends
    the cluster step a :class:`Report` naming the messages it received and the messages it sent
    (ids unique per sender activation). A token is complete when its root report (from the split)
    arrived and every message id reported sent under it was reported received and vice versa (a
    per-token balance of +1 sent / -1 received per id, empty when complete). Matching ids, not
    counts, so a receiver's report that arrives before its sender's cannot cancel out a missing one.
    Effects in a report (record versions, edge changes) are applied at once, but the records they
    touch are *held* until all the report's tokens are complete; a region of the match graph is
    re-clustered only when none of its records is held.
"""

from __future__ import annotations

import pickle
import zlib
from typing import Any, Literal

import msgspec

from core.golden import Cause, RecordChange

Features = tuple[str | None, ...]

FeatureBlob = bytes
"""A record's feature tuple encoded once (msgpack, by the record stage): what the block stage holds
and ships to the pair stage. Pickling bytes is a copy, pickling a tuple of strings walks every
string, and recovery snapshots pickle the block stage's state at every epoch."""

_FEATURES_ENCODER = msgspec.msgpack.Encoder()
_FEATURES_DECODER = msgspec.msgpack.Decoder(tuple[str | None, ...])


def encode_features(features: Features) -> FeatureBlob:
    """A feature tuple as a blob (:data:`FeatureBlob`)."""
    return _FEATURES_ENCODER.encode(features)


def decode_features(blob: FeatureBlob) -> Features:
    """The feature tuple of a blob."""
    return _FEATURES_DECODER.decode(blob)


RowBlob = bytes
"""A record's canonical values in golden field order, pickled once by the record stage (any value
type round-trips exactly): what the value and golden stages hold and ship."""


def encode_row(row: tuple[object, ...]) -> RowBlob:
    """A values row as a blob (:data:`RowBlob`)."""
    return pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)


def decode_row(blob: RowBlob) -> tuple[Any, ...]:
    """The values row of a blob."""
    row: tuple[Any, ...] = pickle.loads(blob)
    return row


def stable_hash(text: str) -> int:
    """A hash of ``text`` that is the same in every process (CRC-32 of its UTF-8 bytes)."""
    return zlib.crc32(text.encode())


def shard_of(text: str, shards: int) -> int:
    """The key group of ``text`` among ``shards``."""
    return zlib.crc32(text.encode()) % shards


def stage_key(entity: str, stage: str, shard: int | None = None) -> str:
    """The Bytewax key of a stage's key group (``shard`` None: the entity-wide cluster key)."""
    return f"{entity}/{stage}" if shard is None else f"{entity}/{stage}{shard}"


def entity_of(key: str) -> str:
    """The entity of a stage key."""
    return key.rsplit("/", 1)[0]


def stage_of(key: str) -> str:
    """The stage letter of a stage key (``r``, ``b``, ``p``, ``c``, ``v``, ``g``)."""
    return key.rsplit("/", 1)[1][0]


def shard_index(key: str) -> int:
    """The key group number of a stage key."""
    return int(key.rsplit("/", 1)[1][1:])


Tokens = tuple[str, ...]
Sent = tuple[tuple[str, Tokens], ...]
"""(message id, tokens it carries) for each message."""

RecordKind = Literal["upsert", "same", "delete"]
"""``upsert``: matching features changed (or a new record); ``same``: only other values changed;
``delete``: the record is gone."""


class RecordsIn(msgspec.Struct, frozen=True, gc=False):
    """split -> records: the changes of one record shard from one input batch."""

    mid: str
    tokens: Tokens
    changes: tuple[RecordChange, ...]


class BlockEntry(msgspec.Struct, frozen=True, gc=False):
    """One record version for one block shard: its features (encoded) and its key values owned there
    (``features`` None: deleted; ``keys`` empty: it left every key of the shard)."""

    record_id: str
    seq: int
    features: FeatureBlob | None
    keys: tuple[str, ...]


class BlocksIn(msgspec.Struct, frozen=True, gc=False):
    """records -> blocks."""

    mid: str
    tokens: Tokens
    entries: tuple[BlockEntry, ...]


Claim = tuple[str, str, int, int, bool]
"""(a, b, seq of a, seq of b, supported): whether the sending block shard holds an active (not
oversized) key value both records have, as of those versions (``a < b``)."""


class PairsIn(msgspec.Struct, frozen=True, gc=False):
    """blocks -> pairs: claims for one pair shard and the (encoded) features of the supported pairs'
    records."""

    mid: str
    tokens: Tokens
    shard: int
    """The sending block shard (support is counted per block shard)."""
    claims: tuple[Claim, ...]
    features: dict[str, tuple[int, FeatureBlob]]


class RecordEntry(msgspec.Struct, frozen=True, gc=False):
    """A record version as the cluster step learns it."""

    record_id: str
    seq: int
    kind: RecordKind
    cause: Cause


Edge = tuple[str, str, float | None, bytes]
"""(a, b, match weight or None when the edge is gone, comparison levels + packed tf adjustments)."""


class Report(msgspec.Struct, frozen=True, gc=False):
    """Any stage -> cluster: what one activation received and sent, and its effects."""

    sender: str
    received: Sent = ()
    sent: Sent = ()
    root: str | None = None
    """The token this report announces (from the split only)."""
    records: tuple[RecordEntry, ...] = ()
    edges: tuple[Edge, ...] = ()


class ValueEntry(msgspec.Struct, frozen=True, gc=False):
    """records -> values: one record version's canonical values (``row`` None: deleted)."""

    record_id: str
    seq: int
    source_system: str
    source_ts_us: int
    row: RowBlob | None


class Assignment(msgspec.Struct, frozen=True, gc=False):
    """cluster -> values: version ``seq`` of a record belongs to ``golden_id`` (None: deleted)."""

    record_id: str
    seq: int
    golden_id: str | None


class MemberValues(msgspec.Struct, frozen=True, gc=False):
    """values -> golden: a member's values at a version clustering assigned to ``golden_id``."""

    record_id: str
    seq: int
    golden_id: str
    source_system: str
    source_ts_us: int
    row: RowBlob


LinkEdge = tuple[str, str, float, bytes]
"""(a, b, match weight, levels + tf) of an edge inside a cluster."""


class GoldenUpdate(msgspec.Struct, frozen=True, gc=False):
    """cluster -> golden: the new state of one golden id after a re-clustering.

    ``members`` are (record id, version) pairs: the golden step waits until it holds every member's
    values at (at least) that version before it assembles the golden record.
    """

    golden_id: str
    members: tuple[tuple[str, int], ...]
    moved_in: tuple[str, ...] = ()
    moved_out: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    merged_from: tuple[str, ...] = ()
    merged_into: str | None = None
    split_from: str | None = None
    lineage: tuple[tuple[Literal["MERGED", "SPLIT"], tuple[str, ...]], ...] = ()
    relinked: bool = False
    links: tuple[LinkEdge, ...] = ()
    best: tuple[float | None, ...] = ()
    """Per member (in ``members`` order), the weight of its strongest link inside the cluster."""
    cause: Cause | None = None


Routed = tuple[str, object]
"""(destination key, message)."""


class Completeness:
    """The cluster step's view of which tokens are complete and which records they hold."""

    __slots__ = ("balance", "holds", "rooted", "touched")

    def __init__(self) -> None:
        self.rooted: set[str] = set()
        self.balance: dict[str, dict[str, int]] = {}
        self.holds: dict[str, set[str]] = {}
        """record id -> incomplete tokens whose effects touched it."""
        self.touched: dict[str, set[str]] = {}
        """token -> records its effects touched."""

    def note(self, report: Report) -> Tokens:
        """Count a report's messages; returns the tokens its effects belong to."""
        tokens: set[str] = set()
        balance = self.balance
        for mid, toks in report.received:
            for t in toks:
                b = balance.setdefault(t, {})
                n = b.get(mid, 0) - 1
                if n:
                    b[mid] = n
                else:
                    del b[mid]
            tokens.update(toks)
        for mid, toks in report.sent:
            for t in toks:
                b = balance.setdefault(t, {})
                n = b.get(mid, 0) + 1
                if n:
                    b[mid] = n
                else:
                    del b[mid]
        if report.root is not None:
            self.rooted.add(report.root)
            tokens.add(report.root)
            balance.setdefault(report.root, {})
        return tuple(tokens)

    def hold(self, tokens: Tokens, records: set[str]) -> None:
        """Hold ``records`` until every one of ``tokens`` is complete."""
        if not records:
            return
        for t in tokens:
            self.touched.setdefault(t, set()).update(records)
            for r in records:
                self.holds.setdefault(r, set()).add(t)

    def complete(self, tokens: set[str]) -> list[str]:
        """Retire the complete tokens among ``tokens``; returns the records they released."""
        released: list[str] = []
        for t in tokens:
            if t in self.rooted and not self.balance.get(t):
                self.rooted.discard(t)
                self.balance.pop(t, None)
                for r in self.touched.pop(t, ()):
                    h = self.holds.get(r)
                    if h is not None:
                        h.discard(t)
                        if not h:
                            del self.holds[r]
                            released.append(r)
        return released

    def pending(self) -> int:
        """Tokens seen and not complete."""
        return len(self.balance)
