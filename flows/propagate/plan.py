"""Operation planning (pure): a golden change + what we last pushed -> the operations to send.

* ``UPSERT`` of a golden id never pushed -> ``create`` with the whole payload (by external id = golden
  id); pushed before -> ``update`` with only the fields whose value differs from the pushed state;
  nothing at all when nothing differs. ``merged_from`` adds a ``merge`` per retired id when the target
  has a merge endpoint (after the survivor's upsert, so the survivor exists).
* ``RETIRED`` -> ``deactivate`` (merged, or records left with policy ``deactivate``), ``delete`` or
  nothing, per the target's policies; nothing if it was never pushed.
* A version at or below the pushed one is a replay or out of order: nothing (per-golden-id order is
  kept by the topic's keying; this guards redeliveries after a restart).

Idempotency key of every operation: ``<target>:<golden_id>:<version>:<operation>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from core.golden import GoldenChange
from flows.propagate.config import TargetConfig
from flows.propagate.mapping import Payload, outbound

Operation = Literal["create", "update", "merge", "deactivate", "delete", "skip"]
RecordStatus = Literal["live", "retired"]


@dataclass(frozen=True)
class PushedState:
    """What one target record holds from us: the diff base of its next change."""

    golden_id: str
    version: int
    fields: dict[str, Any]
    """Every mapped target field as we left it."""
    target_key: str | None = None
    """The target's own id of the record (None until the target told us)."""
    status: RecordStatus = "live"
    merged_into: str | None = None


@dataclass(frozen=True)
class Position:
    """Where the golden change came from (for sync_log, the ledger and exactly-once appends)."""

    topic: str = ""
    partition: int = 0
    offset: int = 0


@dataclass(frozen=True)
class PlannedOp:
    """One operation on one target record."""

    target: str
    golden_id: str
    version: int
    operation: Operation
    fields: dict[str, Any]
    """What to send (create: everything; update: the changed fields only)."""
    state: dict[str, Any]
    """Every mapped field after the operation (the next diff base)."""
    position: Position = Position()
    other: str | None = None
    """merge: the retired golden id; deactivate after a merge: the survivor."""
    reason: str = ""
    emitted_at_us: int = 0
    change: bytes | None = field(default=None, compare=False, repr=False)
    """The encoded golden change (kept for the retry ledger)."""

    @property
    def idempotency_key(self) -> str:
        """``target:golden_id:version:operation``: the same change always carries the same key."""
        suffix = f":{self.other}" if self.operation == "merge" and self.other else ""
        return f"{self.target}:{self.golden_id}:{self.version}:{self.operation}{suffix}"


def diff(payload: Mapping[str, Any], pushed: Mapping[str, Any]) -> dict[str, Any]:
    """Fields of ``payload`` whose value differs from ``pushed`` (missing counts as different)."""
    return {k: v for k, v in payload.items() if k not in pushed or pushed[k] != v}


def deactivated(cfg: TargetConfig, state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` after the target's deactivate action."""
    return {**state, cfg.deactivate.field: cfg.deactivate.value}


def plan_change(
    cfg: TargetConfig,
    change: GoldenChange,
    pushed: PushedState | None,
    *,
    position: Position = Position(),
    raw: bytes | None = None,
) -> list[PlannedOp]:
    """The operations that bring ``cfg.target`` in line with ``change`` (see the module docstring)."""
    if pushed is not None and change.version <= pushed.version:
        return []

    def op(operation: Operation, fields: dict[str, Any], state: dict[str, Any], **kw: Any) -> PlannedOp:
        return PlannedOp(
            cfg.target,
            change.golden_id,
            change.version,
            operation,
            fields,
            state,
            position=position,
            emitted_at_us=change.emitted_at_us,
            change=raw,
            **kw,
        )

    if change.kind == "RETIRED":
        if pushed is None or pushed.status == "retired":
            return []
        if change.merged_into is not None:
            return [
                op(
                    "deactivate",
                    {},
                    deactivated(cfg, pushed.fields),
                    other=change.merged_into,
                    reason="merged",
                )
            ]
        if cfg.delete_policy == "ignore":
            return []
        return [op(cfg.delete_policy, {}, deactivated(cfg, pushed.fields), reason="retired")]

    payload: Payload = outbound(cfg, change.values)
    ops: list[PlannedOp] = []
    if pushed is None or pushed.status == "retired":
        missing = [f for f in cfg.required if payload.get(f) is None]
        if pushed is None and missing:
            return [op("skip", {}, {}, reason=f"required target fields without a value: {missing}")]
        base = {} if pushed is None else pushed.fields
        state = {**base, **payload}
        ops.append(op("create" if pushed is None else "update", dict(payload), state))
    else:
        changed = diff(payload, pushed.fields)
        if changed:
            ops.append(op("update", changed, {**pushed.fields, **payload}))
    if cfg.merge_policy == "merge":
        state = ops[-1].state if ops else (pushed.fields if pushed else {})
        ops.extend(op("merge", {}, state, other=retired, reason="merged") for retired in change.merged_from)
    return ops


def coalesce(ops: Iterable[PlannedOp]) -> list[PlannedOp]:
    """Fold consecutive creates/updates of one golden id into one (the later version's key wins).

    A delivery chunk sends at most one upsert per record: the batch endpoint applies items
    independently, so two versions of one record in one batch could land in either order.
    """
    out: list[PlannedOp] = []
    index: dict[str, int] = {}
    for o in ops:
        i = index.get(o.golden_id)
        if o.operation in ("create", "update") and i is not None and out[i].operation in ("create", "update"):
            prev = out[i]
            out[i] = replace(
                o,
                operation=prev.operation,
                fields={**prev.fields, **o.fields},
                emitted_at_us=prev.emitted_at_us or o.emitted_at_us,
            )
            continue
        # Anything else (merge, deactivate) is an ordering barrier for its golden id.
        index.pop(o.golden_id, None)
        out.append(o)
        if o.operation in ("create", "update"):
            index[o.golden_id] = len(out) - 1
    return out


def apply(state: PushedState | None, o: PlannedOp, *, target_key: str | None) -> PushedState | None:
    """The pushed state after ``o`` succeeded."""
    key = target_key or (state.target_key if state else None)
    if o.operation in ("create", "update"):
        return PushedState(o.golden_id, o.version, dict(o.state), key, "live")
    if o.operation in ("deactivate", "delete"):
        return PushedState(o.golden_id, o.version, dict(o.state), key, "retired", o.other)
    if state is not None and o.operation == "merge":
        return state
    return state
