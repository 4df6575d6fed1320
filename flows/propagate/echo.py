"""Loop prevention on the inbound side: recognise the echo of our own pushes and drop it.

When the propagation flow writes a golden record to the CRM, the CRM's database change comes back
through Debezium like any user edit. For every push the flow records, per (target, record), the
content hash of the canonical values the target will map the written row back to
(``<delta_root>/sync/pushed``; see :class:`flows.propagate.mapping.ReadBack`). The inbound flow asks
:meth:`EchoFilter.is_echo` about each canonical record of a target system before matching:

* the record's target key has a recent pushed hash equal to the hash of its canonical values over
  the same fields -> our echo (dropped, counted in ``goldstream_echo_suppressed_total``);
* a push that created the record has no target key yet when its intent row is written, so a record
  whose hash equals a recent *keyless* intent of that system is an echo too;
* otherwise (content differs: a user edited the record after our push; or never pushed) -> not an
  echo, it flows through (``goldstream_echo_passed_total``).

If the caller knows the row's origin marker (``last_modified_by``), a writer other than goldstream
is never an echo, even when the content happens to equal what we pushed.

Several recent hashes are kept per record, because the echo of version 1 may arrive after version 2
was pushed; an older echo must not pass as a user edit (that would flip the golden record back).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from core.golden import content_hash
from core.metrics import ECHO_PASSED, ECHO_SUPPRESSED
from sinks.delta.sync_log import pushed_path

log = logging.getLogger(__name__)

_COLUMNS = ["system", "target_key", "content_hash", "echo_fields", "origin", "phase"]


class EchoFilter:
    """Answers "is this inbound record our own echo?" from the pushed-hash table (thread-safe).

    ``refresh_s``: how often the table is re-read in the background of calls; a miss re-reads it at
    most every ``miss_refresh_s`` (a push committed a moment ago must be seen before its echo is let
    through). ``keep``: recent hashes remembered per record and keyless intents per system.
    """

    def __init__(
        self,
        delta_root: Path,
        *,
        refresh_s: float = 2.0,
        miss_refresh_s: float = 0.2,
        keep: int = 16,
        keyless_keep: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = pushed_path(delta_root)
        self._refresh_s = refresh_s
        self._miss_refresh_s = miss_refresh_s
        self._keep = keep
        self._clock = clock
        self._lock = threading.Lock()
        self._version: int | None = None
        self._table: DeltaTable | None = None
        self._loaded_at = float("-inf")
        self._by_key: dict[tuple[str, str], deque[str]] = {}
        self._keyless: dict[str, deque[str]] = {}
        self._keyless_set: dict[str, set[str]] = {}
        self._keyless_keep = keyless_keep
        self._fields: dict[str, tuple[str, ...]] = {}
        self._origin: dict[str, str] = {}

    # --- loading ---

    def refresh(self) -> int:
        """Read what was pushed since the last refresh; returns the number of new rows."""
        with self._lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> int:
        self._loaded_at = self._clock()
        try:
            if self._table is None:
                self._table = DeltaTable(str(self._path))
                data = self._table.to_pyarrow_table(columns=_COLUMNS)
                self._version = self._table.version()
            else:
                self._table.update_incremental()
                version = self._table.version()
                if version == self._version:
                    return 0
                assert self._version is not None
                reader = self._table.load_cdf(starting_version=self._version + 1, columns=_COLUMNS)
                data = pa.RecordBatchReader.from_stream(reader).read_all()
                if "_change_type" in data.column_names:
                    data = data.filter(pc.equal(data["_change_type"], "insert"))
                self._version = version
        except TableNotFoundError:
            self._table = None
            return 0
        except (DeltaError, OSError) as exc:
            log.warning("echo filter: reading %s failed (%s); keeping what is loaded", self._path, exc)
            self._table = None
            return 0
        self._ingest(data)
        return int(data.num_rows)

    def _ingest(self, data: pa.Table) -> None:
        for row in data.select(_COLUMNS).to_pylist():
            system, digest = row["system"], row["content_hash"]
            if digest is None:
                continue
            fields = tuple(row["echo_fields"] or ())
            self._fields.setdefault(system, fields)
            if row["origin"]:
                self._origin[system] = row["origin"]
            if row["target_key"] is not None:
                dq = self._by_key.setdefault((system, row["target_key"]), deque(maxlen=self._keep))
                if digest not in dq:
                    dq.append(digest)
            elif row["phase"] == "intent":
                dq = self._keyless.setdefault(system, deque())
                seen = self._keyless_set.setdefault(system, set())
                if digest not in seen:
                    dq.append(digest)
                    seen.add(digest)
                    if len(dq) > self._keyless_keep:
                        seen.discard(dq.popleft())

    def _maybe_refresh(self, *, miss: bool) -> None:
        age = self._clock() - self._loaded_at
        if age >= self._refresh_s or (miss and age >= self._miss_refresh_s):
            self._refresh_locked()

    # --- the question ---

    def fingerprint(self, system: str, values: Mapping[str, Any]) -> str | None:
        """The hash of ``values`` over ``system``'s echo fields (None: nothing pushed to it yet)."""
        fields = self._fields.get(system)
        return None if fields is None else content_hash(values, fields)

    def _match(self, system: str, source_key: str, values: Mapping[str, Any]) -> bool:
        digest = self.fingerprint(system, values)
        if digest is None:
            return False
        recent = self._by_key.get((system, source_key))
        if recent is not None and digest in recent:
            return True
        return digest in self._keyless_set.get(system, ())

    def is_echo(
        self,
        system: str,
        source_key: str,
        values: Mapping[str, Any],
        *,
        modified_by: str | None = None,
    ) -> bool:
        """True when the canonical record ``(system, source_key, values)`` is the echo of our push.

        ``values``: the record's canonical fields (Python or JSON-safe values; dates and timestamps
        hash the same either way). ``modified_by``: the row's origin marker if the caller has it; a
        writer other than ours is never an echo.
        """
        with self._lock:
            self._maybe_refresh(miss=False)
            origin = self._origin.get(system)
            if modified_by is not None and origin is not None and modified_by != origin:
                ECHO_PASSED.labels(system=system, reason="other_writer").inc()
                return False
            hit = self._match(system, source_key, values)
            if not hit:
                self._maybe_refresh(miss=True)
                hit = self._match(system, source_key, values)
        if hit:
            ECHO_SUPPRESSED.labels(system=system).inc()
            return True
        known = (system, source_key) in self._by_key
        ECHO_PASSED.labels(system=system, reason="differs" if known else "unknown").inc()
        return False

    def echo_mask(
        self,
        system: str,
        source_keys: Sequence[str],
        values: Sequence[Mapping[str, Any]],
        *,
        modified_by: Sequence[str | None] | None = None,
    ) -> list[bool]:
        """:meth:`is_echo` for a batch of one system's records (True: drop it)."""
        marks = modified_by if modified_by is not None else [None] * len(source_keys)
        return [
            self.is_echo(system, key, vals, modified_by=mark)
            for key, vals, mark in zip(source_keys, values, marks, strict=True)
        ]
