"""What ``goldstream sync plan`` and ``goldstream sync replay`` do (the CLI module only wires options).

* :func:`plan_operations` -- a dry run: every message of the golden topic (from the earliest offset),
  planned per target against the pushed state, without calling any API;
* :func:`replay_ledger` -- re-drive the open entries of the retry ledger through the real delivery
  path (later versions of a record may have been pushed since: those entries just resolve).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cdc.topics import read_to_end
from core.golden import golden_topic
from core.settings import Settings
from flows.propagate.config import TargetConfig, load_targets
from flows.propagate.delivery import Incoming, TargetSync, load_state
from flows.propagate.flow import make_sync, readback_for
from flows.propagate.plan import Position
from sinks.delta.sync_log import LedgerRow, PlanRow, SyncTables, open_ledger, write_plan


def _topic(settings: Settings, cfg: TargetConfig) -> str:
    return settings.propagation.topics.get(cfg.entity, golden_topic(cfg.entity))


def plan_operations(
    settings: Settings, *, targets: Sequence[str] | None = None, write: bool = True
) -> list[PlanRow]:
    """Plan every golden-topic message for ``targets`` against the pushed state; no API calls.

    With ``write`` the rows replace ``<delta_root>/sync/plan``.
    """
    rows: list[PlanRow] = []
    now = datetime.now(UTC)
    messages: dict[str, list[Incoming]] = {}
    for cfg in load_targets(settings, only=targets):
        topic = _topic(settings, cfg)
        if topic not in messages:
            raw = read_to_end(settings.kafka.bootstrap_servers, [topic])
            raw.sort(key=lambda m: (m[1], m[2]))
            messages[topic] = [Incoming(Position(t, p, o), v) for t, p, o, _k, v in raw]
        dry = TargetSync(
            cfg,
            readback_for(cfg, settings.config_dir),
            None,
            None,
            origin=cfg.origin_marker(settings),
            state=load_state(settings.delta_root, cfg.target),
        )
        ops, _bad = dry.plan(messages[topic])
        rows.extend(
            PlanRow(
                o.target,
                o.golden_id,
                o.version,
                o.operation,
                tuple(sorted(o.fields)),
                o.other,
                o.reason or None,
                o.idempotency_key,
                now,
                o.position.topic,
                o.position.partition,
                o.position.offset,
            )
            for o in ops
        )
    if write:
        write_plan(settings.delta_root, rows)
    return rows


@dataclass(frozen=True)
class ReplayResult:
    """What one replay did for one target."""

    target: str
    entries: int
    resolved: int
    still_failing: int
    undecodable: int


def replay_ledger(
    settings: Settings, *, targets: Sequence[str] | None = None, sync: TargetSync | None = None
) -> list[ReplayResult]:
    """Re-drive the open ledger entries of ``targets`` through the API (``sync``: tests inject one)."""
    results: list[ReplayResult] = []
    run = f"replay-{int(time.time())}-{uuid.uuid4().hex[:6]}"
    for cfg in load_targets(settings, only=targets):
        entries = open_ledger(settings.delta_root, cfg.target)
        if not entries:
            continue
        target_sync = sync or make_sync(cfg, settings, dlq=False)
        replayable = [e for e in entries if e["golden_id"] and e["change"] is not None]
        items = [
            Incoming(Position(e["topic"], e["partition"], e["offset"]), e["change"])
            for e in sorted(replayable, key=lambda e: (e["partition"], e["offset"]))
        ]
        version = max((e["offset"] for e in replayable), default=0)
        out = target_sync.process(items, stream=f"{run}:{cfg.target}", version=version)
        failing = {(r.golden_id, r.version) for r in out.ledger}
        now = datetime.now(UTC)
        resolved = [
            LedgerRow(
                cfg.target,
                e["golden_id"],
                e["version"],
                e["operation"],
                "resolved",
                None,
                None,
                now,
                e["topic"],
                e["partition"],
                e["offset"],
            )
            for e in replayable
            if (e["golden_id"], e["version"]) not in failing
        ]
        if resolved:
            SyncTables(settings.delta_root).append(
                "ledger", resolved, stream=f"{run}:resolved:{cfg.target}", version=version
            )
        results.append(
            ReplayResult(
                cfg.target,
                len(entries),
                len(resolved),
                len(replayable) - len(resolved),
                len(entries) - len(replayable),
            )
        )
        if sync is None and target_sync.client is not None:
            target_sync.client.close()
    return results
