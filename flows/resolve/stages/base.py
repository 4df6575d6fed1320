"""What every keyed stage shares: its key, its compiled context, message ids and reports."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
import pyarrow as pa

from flows.resolve.stages.context import StageContext
from flows.resolve.stages.protocol import Report, Routed, Sent, Tokens, stage_key

STATE_FORMAT = 2
"""The layout of pickled stage state.

1. Plain attributes; feature tuples in the block stage, value tuples in the value and golden stages.
2. Features and value rows encoded once (:data:`~.protocol.FeatureBlob`,
   :data:`~.protocol.RowBlob`), and each stage's large tables (:attr:`Stage.TABLES`) msgpack-encoded
   in one piece under ``tables``: msgspec writes a table of millions of small tuples several times
   faster than pickle (no memo, no per-object dispatch), and recovery snapshots write every touched
   key group at every epoch. The encoded tables are LZ4-compressed.

A stage restored from an older layout converts itself (:meth:`Stage.upgrade`)."""

_TABLE_ENCODER = msgspec.msgpack.Encoder()
_TABLE_DECODERS: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


_CODEC = "lz4"
"""Encoded tables are LZ4-compressed (Arrow's codec, ~3x smaller at ~300 MB/s): the recovery store
writes every snapshot to SQLite, which costs more per byte than compressing it."""


def _pack(blob: bytes) -> tuple[str, int, bytes]:
    return _CODEC, len(blob), pa.compress(blob, codec=_CODEC, asbytes=True)


def _unpack(packed: bytes | tuple[str, int, bytes]) -> bytes:
    if isinstance(packed, bytes):
        return packed
    codec, size, data = packed
    out: bytes = pa.decompress(data, decompressed_size=size, codec=codec, asbytes=True)
    return out


def _decoder(kind: Any) -> msgspec.msgpack.Decoder[Any]:
    dec = _TABLE_DECODERS.get(kind)
    if dec is None:
        dec = _TABLE_DECODERS[kind] = msgspec.msgpack.Decoder(kind)
    return dec


class Stage:
    """A key group's state and logic. :meth:`apply` takes the messages of one activation and
    returns ``(destination key, message)`` pairs. The compiled context is not state: it is dropped
    when pickling and re-attached (:meth:`attach`) after a restore."""

    stage = "?"
    TABLES: ClassVar[dict[str, Any]] = {}
    """State attributes pickled as one msgpack blob each: name -> exact type (decoded back to it)."""

    def __init__(self, ctx: StageContext, key: str) -> None:
        self.ctx: StageContext | None = ctx
        self.key = key
        self.n = 0
        """Activations so far (message ids are unique per sender activation)."""

    @property
    def context(self) -> StageContext:
        """The attached context."""
        assert self.ctx is not None, "stage restored without attach()"
        return self.ctx

    def attach(self, ctx: StageContext) -> None:
        """Re-attach the compiled config after unpickling."""
        self.ctx = ctx

    def apply(self, messages: list[Any]) -> list[Routed]:
        """Process one activation's messages."""
        raise NotImplementedError

    def mid(self, dest: str) -> str:
        """The id of this activation's message to ``dest``."""
        return f"{self.key}#{self.n}>{dest}"

    def report(self, received: Sent, sent: Sent, **effects: Any) -> Routed:
        """The report of this activation to the cluster step."""
        cluster = stage_key(self.context.entity, "c")
        return cluster, Report(self.key, received, sent, **effects)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["ctx"] = None
        state["format"] = STATE_FORMAT
        tables = {}
        for name in self.TABLES:
            try:
                tables[name] = _pack(_TABLE_ENCODER.encode(state[name]))
            except (OverflowError, TypeError):
                continue  # (an int beyond 64 bits, say) pickled as it is
            del state[name]
        state["tables"] = tables
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        fmt = state.pop("format", 1)
        for name, blob in state.pop("tables", {}).items():
            state[name] = self.decode_table(name, _decoder(self.TABLES[name]).decode(_unpack(blob)))
        self.__dict__.update(state)
        if fmt < STATE_FORMAT:
            self.upgrade(fmt)

    def decode_table(self, name: str, table: Any) -> Any:
        """A decoded table as the stage holds it (the decoder gives exactly :attr:`TABLES`' type)."""
        return table

    def upgrade(self, fmt: int) -> None:
        """Convert state restored from layout ``fmt`` (older than :data:`STATE_FORMAT`)."""


def union(tokens: list[Tokens]) -> Tokens:
    """The tokens of several messages, once each, in a stable order."""
    if len(tokens) == 1:
        return tokens[0]
    return tuple(sorted({t for ts in tokens for t in ts}))
