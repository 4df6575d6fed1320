"""The staged resolution (:mod:`flows.resolve.stages`) as Bytewax steps: batches of record changes
in, golden batches out, the same contract as :func:`flows.resolve.operator.resolve`.

    Stream[Sequence[RecordChange]]
      -> split          flat_map: per entity, one message per record key group, a token per batch
      -> records        stateful_batch keyed by "<entity>/r<i>"  (i = crc32(record id) % S)
      -> blocks         stateful_batch keyed by "<entity>/b<i>"  (i = crc32(block key value) % S)
      -> pairs          stateful_batch keyed by "<entity>/p<i>"  (i = crc32(pair) % S)
      -> cluster        stateful_batch keyed by "<entity>/c"     (reports of every step above)
      -> values         stateful_batch keyed by "<entity>/v<i>"  (values from records, assignments
                                                                  from cluster)
      -> golden         stateful_batch keyed by "<entity>/g<i>"  (i = crc32(golden id) % S)
      -> Stream[GoldBatch]                                        one per golden key group and
                                                                  activation, never empty

Every step emits ``(destination key, message)`` pairs, one message per destination key and
activation (not per record), and a filter per downstream step picks its own. ``S`` is
``dataflow.resolve_key_groups``: fixed when a flow's recovery store is created (the keys are in it),
while the worker count may change between runs (Bytewax reassigns keys to workers).

State and snapshots: each key group's state is one stage object, snapshotted like
:class:`~flows.resolve.operator.ResolveLogic`'s book: ``snapshot()`` hands Bytewax a holder that
pickles the stage only if asked (never without recovery), and the stage is frozen (pickled once)
before the next batch mutates it. The compiled config (features, scorer) is not state: it is rebuilt
per worker and re-attached after a resume. All stage logic is in :mod:`flows.resolve.stages`.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from core.golden import GoldBatch, RecordChange
from core.metrics import RESOLVE_RECORDS, RESOLVE_STAGE_SECONDS, RESOLVE_STATE
from flows.resolve.golden import is_resolvable, load_file_overrides, merge_overrides, overrides_path
from flows.resolve.operator import Clock, _count, _is_empty, _Snapshot, _stamp, wall_clock_us
from flows.resolve.stages.base import Stage
from flows.resolve.stages.blocks import BlockStage
from flows.resolve.stages.cluster import ClusterStage
from flows.resolve.stages.context import StageContext
from flows.resolve.stages.golden import GoldenStage
from flows.resolve.stages.protocol import Routed, entity_of, stage_of
from flows.resolve.stages.records import split_batch
from flows.resolve.stages.simulate import build_stage

_NAMES = {"r": "records", "b": "blocks", "p": "pairs", "c": "cluster", "v": "values", "g": "golden"}


class _Env:
    """What the steps of one flow share per worker thread: compiled contexts and token minting.

    Keyed by :func:`threading.get_ident`, not held in a :class:`threading.local`: Bytewax's worker
    threads are Rust threads that enter Python afresh for each call under ``cluster_main`` /
    ``cli_main``, and a ``threading.local`` starts empty at every entry (the compiled config was
    rebuilt for every input batch: ~0.1 s each).
    """

    def __init__(self, config_dir: Path, shards: int, clock: Clock, overrides_poll_s: float) -> None:
        self.config_dir = config_dir
        self.shards = shards
        self.clock = clock
        self.overrides_poll_s = overrides_poll_s
        self._contexts: dict[tuple[int, str], StageContext | None] = {}
        self._tokens: dict[int, list[Any]] = {}

    def context(self, entity: str) -> StageContext | None:
        """The compiled context of ``entity`` (None: it has no matching + survivorship config)."""
        key = (threading.get_ident(), entity)
        try:
            return self._contexts[key]
        except KeyError:
            pass
        ok = is_resolvable(self.config_dir, entity)
        ctx = StageContext.from_config_dir(self.config_dir, entity, self.shards) if ok else None
        self._contexts[key] = ctx
        return ctx

    def token(self) -> str:
        """A token for one input batch, unique across workers and restarts (random prefix)."""
        state = self._tokens.get(threading.get_ident())
        if state is None:
            state = self._tokens[threading.get_ident()] = [os.urandom(6).hex(), 0]
        state[1] += 1
        return f"{state[0]}.{state[1]}"

    def split(self, batch: Sequence[RecordChange]) -> list[Routed]:
        """The split step (counts what passes over unresolved entities)."""
        counts: dict[str, int] = {}
        for ch in batch:
            counts[ch.entity] = counts.get(ch.entity, 0) + 1
        for entity, n in counts.items():
            outcome = "resolved" if self.context(entity) is not None else "no_config"
            RESOLVE_RECORDS.labels(entity=entity, outcome=outcome).inc(n)
        return split_batch(batch, self.context, self.token)


_OVERSIZED: dict[tuple[str, str], int] = {}
"""(entity, block key) -> oversized block key values, for this process's gauge."""


class StageLogic(StatefulBatchLogic[Routed, Any, object]):
    """One key group of one stage: owns its stage object (built on the first batch, since Bytewax
    does not tell a builder its key; every message arrives as ``(key, message)``)."""

    def __init__(self, env: _Env, stage: Stage | None) -> None:
        self.env = env
        self.stage = stage
        self._snap: weakref.ref[_Snapshot] | None = None
        self._overrides_seen: tuple[int, int] | str | None = "unknown"
        self._overrides_checked = time.monotonic()

    def _detach(self) -> None:
        snap = self._snap() if self._snap is not None else None
        if snap is not None:
            snap.freeze()
        self._snap = None

    def on_batch(self, values: list[Routed]) -> tuple[Iterable[Any], bool]:
        """Run the stage on everything queued for this key."""
        if not values:
            return [], StatefulBatchLogic.RETAIN
        key = values[0][0]
        entity = entity_of(key)
        stage = self.stage
        if stage is None or stage.ctx is None:
            ctx = self.env.context(entity)
            assert ctx is not None, f"{key}: no config for {entity!r}"
            if stage is None:
                stage = self.stage = build_stage(ctx, key)
            else:
                stage.attach(ctx)
        self._detach()
        started = time.perf_counter()
        msgs = [m for _, m in values]
        out: list[Any]
        if isinstance(stage, GoldenStage):
            batch = stage.step(msgs, now_us=self.env.clock())
            out = []
            if batch is not None and not _is_empty(batch):
                _count(batch)
                out.append(batch)
        elif isinstance(stage, ClusterStage):
            out = self._check_overrides(stage)
            out.extend(stage.apply(msgs))
            RESOLVE_STATE.labels(entity=entity, what="records").set(len(stage.live))
            RESOLVE_STATE.labels(entity=entity, what="golden").set(len(stage.golden_members))
        else:
            out = stage.apply(msgs)
            if isinstance(stage, BlockStage):
                _OVERSIZED[(entity, key)] = stage.oversized
                total = sum(v for (e, _), v in _OVERSIZED.items() if e == entity)
                RESOLVE_STATE.labels(entity=entity, what="oversized_blocks").set(total)
        RESOLVE_STAGE_SECONDS.labels(entity=entity, stage=_NAMES[stage_of(key)]).observe(
            time.perf_counter() - started
        )
        return out, StatefulBatchLogic.RETAIN

    def _check_overrides(self, stage: ClusterStage) -> list[Any]:
        """Re-apply the steward overrides file when it changed (checked every ``overrides_poll_s``)."""
        now = time.monotonic()
        if self._overrides_seen != "unknown" and now - self._overrides_checked < self.env.overrides_poll_s:
            return []
        self._overrides_checked = now
        entity = stage.context.entity
        path = overrides_path(self.env.config_dir, entity)
        stamp = _stamp(path)
        if stamp == self._overrides_seen:
            return []
        first = self._overrides_seen == "unknown" and stage.n == 0 and not stage.live
        self._overrides_seen = stamp
        if first:
            return []  # a new stage was built with this very file
        overrides = merge_overrides(
            stage.context.matching.overrides, load_file_overrides(self.env.config_dir, entity)
        )
        return list(stage.set_overrides(overrides))

    def snapshot(self) -> object:
        """A holder of the live stage (pickled only if Bytewax keeps it)."""
        if self.stage is None:
            return None
        snap = self._snap() if self._snap is not None else None
        if snap is None:
            snap = _Snapshot(self.stage)
            self._snap = weakref.ref(snap)
        return snap


def _pick(stage: str) -> Callable[[Routed], bool]:
    return lambda item: stage_of(item[0]) == stage


def _keyed(item: Routed) -> tuple[str, Routed]:
    return item[0], item


@operator
def resolve_staged(
    step_id: str,
    up: Stream[Sequence[RecordChange]],
    *,
    config_dir: Path,
    key_groups: int,
    clock: Clock = wall_clock_us,
    overrides_poll_s: float = 30.0,
) -> Stream[GoldBatch]:
    """Entity resolution and golden records in parallel stages, for every entity with a matching and
    a survivorship config: a drop-in for :func:`flows.resolve.operator.resolve` (same input, same
    :class:`~core.golden.GoldBatch` output), with ``key_groups`` key groups per keyed stage.

    The steward overrides file is re-read by the cluster step when it changes (checked at most every
    ``overrides_poll_s`` seconds, when the step next runs).
    """
    env = _Env(config_dir, key_groups, clock, overrides_poll_s)

    def builder(resume: object | None) -> StageLogic:
        return StageLogic(env, resume if isinstance(resume, Stage) else None)

    def step(name: str, inputs: list[Stream[Routed]], letter: str) -> Stream[Any]:
        picked = [op.filter(f"{name}_from_{i}", s, _pick(letter)) for i, s in enumerate(inputs)]
        merged = picked[0] if len(picked) == 1 else op.merge(f"{name}_in", *picked)
        keyed = op.map(f"{name}_key", merged, _keyed)
        out = op.stateful_batch(name, keyed, builder)
        return op.map(f"{name}_out", out, lambda kv: kv[1])

    split = op.flat_map("split", up, env.split)
    records = step("records", [split], "r")
    blocks = step("blocks", [records], "b")
    pairs = step("pairs", [blocks], "p")
    cluster = step("cluster", [split, records, blocks, pairs], "c")
    values = step("values", [records, cluster], "v")
    return step("golden", [cluster, values], "g")
