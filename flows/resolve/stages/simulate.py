"""All stages of one entity in one process: the test bench for any message interleaving.

:class:`StagedResolver` owns one stage object per key and a FIFO queue per (sender, receiver) pair,
as Bytewax delivers them (in order per pair, in no particular order across senders). ``run``
delivers until nothing is queued: with ``rng`` None stage by stage in dataflow order, each key
taking everything queued for it (the shape of a busy dataflow, used by the benchmark); with an
``rng``, a random key takes a random prefix of each of its queues, any number of times, so the
stages see every interleaving the ordering assumptions allow (the property tests).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from core.golden import GoldBatch, RecordChange
from flows.resolve.config import Overrides
from flows.resolve.stages.base import Stage
from flows.resolve.stages.blocks import BlockStage
from flows.resolve.stages.cluster import ClusterStage
from flows.resolve.stages.context import StageContext
from flows.resolve.stages.golden import GoldenStage
from flows.resolve.stages.pairs import PairStage
from flows.resolve.stages.protocol import stage_key, stage_of
from flows.resolve.stages.records import RecordStage, ValueStage, split_batch

STAGES: dict[str, type[Stage]] = {
    "r": RecordStage,
    "b": BlockStage,
    "p": PairStage,
    "c": ClusterStage,
    "v": ValueStage,
    "g": GoldenStage,
}
ORDER = "rbpcvg"


def build_stage(ctx: StageContext, key: str) -> Stage:
    """A fresh stage object for ``key``."""
    return STAGES[stage_of(key)](ctx, key)


class StagedResolver:
    """The staged resolution of one entity, driven in process."""

    def __init__(
        self, ctx: StageContext, *, rng: random.Random | None = None, clock: Callable[[], int] = lambda: 0
    ) -> None:
        self.ctx = ctx
        self.rng = rng
        self.clock = clock
        self.stages: dict[str, Stage] = {}
        self.queues: dict[str, dict[str, deque[Any]]] = {}
        self.batches: list[GoldBatch] = []
        self._tokens = 0
        self.activations = 0

    def stage(self, key: str) -> Stage:
        """The stage of ``key`` (built on first use)."""
        st = self.stages.get(key)
        if st is None:
            st = self.stages[key] = build_stage(self.ctx, key)
        return st

    @property
    def cluster(self) -> ClusterStage:
        """The entity's cluster stage."""
        st = self.stage(stage_key(self.ctx.entity, "c"))
        assert isinstance(st, ClusterStage)
        return st

    def _token(self) -> str:
        self._tokens += 1
        return f"t{self._tokens}"

    def _send(self, sender: str, routed: Sequence[tuple[str, Any]]) -> None:
        for dest, msg in routed:
            self.queues.setdefault(dest, {}).setdefault(sender, deque()).append(msg)

    def submit(self, changes: Sequence[RecordChange], *, source: int = 0) -> None:
        """Queue one input batch as the upstream worker ``source`` would send it."""
        ctx = self.ctx
        routed = split_batch(changes, lambda e: ctx if e == ctx.entity else None, self._token)
        self._send(f"split{source}", routed)

    def set_overrides(self, overrides: Overrides) -> None:
        """Steward overrides changed (the cluster step re-reads them)."""
        self._send(self.cluster.key, self.cluster.set_overrides(overrides))

    def _activate(self, key: str, messages: list[Any]) -> None:
        self.activations += 1
        st = self.stage(key)
        if isinstance(st, GoldenStage):
            batch = st.step(messages, now_us=self.clock())
            if batch is not None:
                self.batches.append(batch)
            return
        self._send(key, st.apply(messages))

    def run(self) -> list[GoldBatch]:
        """Deliver until quiescent; returns the golden batches produced since the last call."""
        start = len(self.batches)
        if self.rng is None:
            while any(q for qs in self.queues.values() for q in qs.values()):
                for stage in ORDER:
                    for key in sorted(k for k in self.queues if stage_of(k) == stage):
                        qs = self.queues[key]
                        msgs = [m for q in qs.values() for m in q]
                        if msgs:
                            for q in qs.values():
                                q.clear()
                            self._activate(key, msgs)
        else:
            rng = self.rng
            while True:
                keys = [k for k, qs in self.queues.items() if any(qs.values())]
                if not keys:
                    break
                key = rng.choice(sorted(keys))
                # a random prefix of each sender's queue, interleaved at random (order kept per sender)
                takes = [q for sender in sorted(self.queues[key]) for q in [self.queues[key][sender]]]
                picks = [s for i, q in enumerate(takes) for s in [i] * rng.randint(0, len(q))]
                if not picks:
                    picks = [next(i for i, q in enumerate(takes) if q)]
                rng.shuffle(picks)
                self._activate(key, [takes[i].popleft() for i in picks])
        return self.batches[start:]
