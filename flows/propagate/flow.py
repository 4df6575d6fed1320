"""The propagation dataflow: ``golden.<entity>`` -> each target's API, without loops.

Per target, one branch of the dataflow::

    KafkaBatchSource(golden.<entity>)  own offsets per target (step ``golden_<target>``), paused while
      (PausableSource)                 the target is down or its queue is full; never snapshots past
                                       an undelivered message
      -> TargetSink                    hands each batch to the target's TargetRuntime (a thread):
                                       plan, diff, intents, API calls, sync_log / pushed / ledger

Why one source per target: a down ERP must not stop the CRM, and Kafka offsets are the only durable
progress. With one shared source, pausing it for the ERP would pause the CRM too; with a source per
target each branch keeps (and recovers) its own position, and the ERP branch simply stops reading
while the CRM branch carries on. Delivery runs on a thread per target so a blocked call never holds
the Bytewax worker that the other branch needs.

Per-golden-id order: the golden topic is keyed by golden id, so one record's versions sit on one
partition, read in offset order by one source partition; each target's thread works through its
queue first-in first-out and finishes a batch (waiting out outages) before the next. No re-keying
step is needed (it would only add a shuffle).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from cdc.topics import ensure_topics
from core.errors import ConfigError
from core.events import RawBatch
from core.golden import golden_topic
from core.settings import Settings
from flows.canonical import compile_mappings
from flows.engine.kafka_source import KafkaBatchPartition, KafkaBatchSource, parse_part_key
from flows.propagate.config import TargetConfig, load_targets
from flows.propagate.delivery import TargetRuntime, TargetSync, load_state
from flows.propagate.mapping import ReadBack
from sinks.delta.sync_log import SyncTables
from sinks.dlq import DeadLetterProducer
from sinks.targets.client import ClientSettings, TargetClient

log = logging.getLogger(__name__)

PAUSE_POLL = timedelta(milliseconds=100)


class _PausablePartition(StatefulSourcePartition[RawBatch, int]):
    def __init__(
        self, inner: KafkaBatchPartition, runtime: TargetRuntime, topic: str, partition: int
    ) -> None:
        self._inner = inner
        self._runtime = runtime
        self._topic = topic
        self._partition = partition

    def next_batch(self) -> list[RawBatch]:
        if self._runtime.paused():
            return []
        batches = self._inner.next_batch()
        for b in batches:
            self._runtime.emitted(b)
        return batches

    def next_awake(self) -> datetime | None:
        if self._runtime.paused():
            return datetime.now(UTC) + PAUSE_POLL
        return self._inner.next_awake()

    def snapshot(self) -> int:
        # Never past an undelivered message: after a crash those are read (and planned) again.
        return self._runtime.resume_offset(self._topic, self._partition, self._inner.snapshot())

    def close(self) -> None:
        self._inner.close()


class PausableSource(FixedPartitionedSource[RawBatch, int]):
    """A :class:`KafkaBatchSource` that stops reading while its target cannot take more."""

    def __init__(self, inner: KafkaBatchSource, runtime: TargetRuntime) -> None:
        self._inner = inner
        self._runtime = runtime

    def list_parts(self) -> list[str]:
        """The inner source's parts (one per Kafka partition)."""
        return self._inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PausablePartition:
        """Wrap the inner source's partition."""
        topic, partition = parse_part_key(for_part)
        inner = self._inner.build_part(step_id, for_part, resume_state)
        return _PausablePartition(inner, self._runtime, topic, partition)


class _SinkPartition(StatelessSinkPartition[RawBatch]):
    def __init__(self, runtime: TargetRuntime) -> None:
        self._runtime = runtime
        runtime.start()

    def write_batch(self, items: list[RawBatch]) -> None:
        for batch in items:
            self._runtime.submit(batch)

    def close(self) -> None:
        self._runtime.close()


class TargetSink(DynamicSink[RawBatch]):
    """Hands batches to the target's delivery thread (never blocks the worker)."""

    def __init__(self, runtime: TargetRuntime) -> None:
        self._runtime = runtime

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SinkPartition:
        """One partition per worker; all share the process's delivery thread for the target."""
        return _SinkPartition(self._runtime)


def client_settings(cfg: TargetConfig, settings: Settings) -> ClientSettings:
    """The plain values the sinks-layer client takes, from a target file and the app settings."""
    auth = cfg.api.auth
    return ClientSettings(
        name=cfg.target,
        kind=cfg.api.kind,
        base_url=cfg.base_url(settings),
        resource=cfg.api.resource,
        auth_kind=auth.kind,
        secret_env=auth.secret_env,
        client_id=cfg.client_id(settings),
        token_url=getattr(auth, "token_url", "/oauth/token"),
        api_key_header=getattr(auth, "header", "X-API-Key"),
        timeout_s=cfg.api.timeout_s,
        rate_per_s=cfg.rate_limit.requests_per_s,
        burst=cfg.rate_limit.burst,
        retry_initial_s=cfg.retry.initial_s,
        retry_max_delay_s=cfg.retry.max_delay_s,
        max_attempts=cfg.retry.max_attempts,
        batch_max=min(cfg.batch_size, settings.demo_apis.batch_max),
        concurrency=cfg.concurrency,
        breaker_failures=cfg.breaker.failure_threshold,
        breaker_reset_s=cfg.breaker.reset_timeout_s,
        breaker_max_reset_s=cfg.breaker.max_reset_timeout_s,
    )


def readback_for(cfg: TargetConfig, config_dir: Path) -> ReadBack:
    """The :class:`ReadBack` of a target (its inbound mapping from ``config/mappings``)."""
    system, table = cfg.inbound_mapping.split("/")
    mapping = next((m for m in compile_mappings(config_dir) if (m.system, m.table) == (system, table)), None)
    if mapping is None:
        raise ConfigError(f"target {cfg.target}: inbound_mapping {cfg.inbound_mapping} has no mapping file")
    return ReadBack(cfg, mapping)


def make_sync(
    cfg: TargetConfig,
    settings: Settings,
    *,
    dlq: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
) -> TargetSync:
    """A :class:`TargetSync` wired to the real API, the Delta tables and the sync DLQ topic."""
    return TargetSync(
        cfg,
        readback_for(cfg, settings.config_dir),
        TargetClient(client_settings(cfg, settings)),
        SyncTables(settings.delta_root),
        origin=cfg.origin_marker(settings),
        dlq=DeadLetterProducer(settings.kafka.bootstrap_servers, settings.propagation.dlq_topic)
        if dlq
        else None,
        state=load_state(settings.delta_root, cfg.target),
        should_stop=should_stop,
    )


def _sync_factory(cfg: TargetConfig, settings: Settings, dlq: bool, stop: Callable[[], bool]) -> TargetSync:
    return make_sync(cfg, settings, dlq=dlq, should_stop=stop)


def build_propagation_flow(
    settings: Settings,
    *,
    entities: Sequence[str] = ("customer",),
    targets: Sequence[str] | None = None,
    start: str = "earliest",
    dlq: bool = True,
) -> Dataflow:
    """The propagation dataflow for ``targets`` (default: every ``config/targets`` file).

    Each target reads the golden topic of its own entity: ``golden.<entity>``, or the one
    ``settings.propagation.topics`` names for it (tests use a unique topic).
    """
    if start not in ("earliest", "latest"):
        raise ValueError(f"start must be earliest or latest, not {start!r}")
    cfgs = [c for c in load_targets(settings, only=targets) if c.entity in entities]
    if not cfgs:
        raise ConfigError(f"no target in {settings.config_dir / 'targets'} for entities {list(entities)}")
    for cfg in cfgs:
        readback_for(cfg, settings.config_dir)  # fail at build time on a bad inverse mapping
    topic_of = {e: settings.propagation.topics.get(e, golden_topic(e)) for e in entities}
    names = sorted(set(topic_of.values()))
    # Probe the broker (the source hangs on a dead one) and create what is missing: the golden topic
    # may not exist before the resolve flow's first change, and the sync DLQ topic is ours.
    ensure_topics(
        settings.kafka.bootstrap_servers,
        [*names, settings.propagation.dlq_topic],
        partitions=settings.kafka.topic_partitions,
    )
    flow = Dataflow("goldstream_propagate")
    for cfg in cfgs:
        runtime = TargetRuntime(
            partial(_sync_factory, cfg, settings, dlq), max_pending=settings.propagation.max_pending
        )
        source = KafkaBatchSource(
            settings.kafka.bootstrap_servers,
            [topic_of[cfg.entity]],
            batch_size=min(settings.dataflow.batch_size, cfg.batch_size * 10),
            batch_timeout_ms=min(settings.dataflow.batch_timeout_ms, 200),
            start="earliest" if start == "earliest" else "latest",
        )
        stream = op.input(f"golden_{cfg.target}", flow, PausableSource(source, runtime))
        op.output(f"sync_{cfg.target}", stream, TargetSink(runtime))
    return flow


def build_from_args(settings: Settings, args: argparse.Namespace) -> Dataflow:
    """The :data:`flows.worker.FlowBuilder` of ``propagate``: ``--only`` names targets."""
    only = list(getattr(args, "only", None) or []) or None
    return build_propagation_flow(
        settings,
        targets=only,
        start=getattr(args, "start", "earliest"),
        dlq=not getattr(args, "no_dlq", False),
    )
