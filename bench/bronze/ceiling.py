"""The raw ceiling: the bench topic read with confluent-kafka in one process, no Bytewax, no Delta.

Each variant runs in a fresh process (``python -m bench.bronze.ceiling``) so its numbers do not
depend on the orchestrator's state:

* ``parse`` (the ceiling the ``ratio`` uses): one consumer assigned every partition from the start,
  ``consume(num_messages=10000, timeout)`` in a loop; each poll's messages are grouped per partition
  into a :class:`~core.events.RawBatch` exactly as the bronze source builds them and decoded with
  :func:`cdc.envelope.decode_batch`. That is the least the bronze dataflow has to do.
* ``consume``: the same loop without the ``RawBatch`` and the decode (each value is touched only).
* ``parse-pp`` (context only): like ``parse`` but with one consumer per partition, polled in turn
  from the same thread, which is how the dataflow's source reads. A single librdkafka consumer can
  be fetch-bound (see the README), so this variant shows how much of the gap is fetching.

The timer starts before the first consumer is created and stops after the last message is
handled; the end is also reported as a wall-clock time (``ended_at``) so the orchestrator can time
the run from the process launch, like the dataflow's. The consumer configuration is the bronze
source's (no consumer group, librdkafka defaults otherwise), and so is the garbage collector's
setting (:func:`core.runtime.tune_gc`): the per-message allocations cost the ceiling as much as the
dataflow, so both get the same. The result is one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from cdc.envelope import decode_batch
from core.events import RawBatch
from core.runtime import tune_gc

MODES = ("parse", "consume", "parse-pp")
POLL_MESSAGES = 10_000


def parse_ends(text: str) -> dict[int, tuple[int, int]]:
    """``"0:0:512,1:0:498"`` (partition:low:high) to ``{0: (0, 512), 1: (0, 498)}``."""
    out: dict[int, tuple[int, int]] = {}
    for part in text.split(","):
        p, low, high = (int(x) for x in part.split(":"))
        out[p] = (low, high)
    return out


def format_ends(low: dict[int, int], high: dict[int, int]) -> str:
    """Inverse of :func:`parse_ends`."""
    return ",".join(f"{p}:{low[p]}:{high[p]}" for p in sorted(high))


def _consumer(bootstrap: str, suffix: str = "") -> Consumer:
    # Same settings as flows.engine.kafka_source.KafkaBatchSource.build_part.
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "goldstream-unused",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
            "enable.partition.eof": False,
            "client.id": f"bench-bronze-ceiling{suffix}",
        }
    )


def _vm_hwm_mb() -> float:
    with open("/proc/self/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Counter:
    """Handles polled messages for one variant and tracks which partitions are finished."""

    def __init__(self, topic: str, todo: dict[int, int], *, parse: bool) -> None:
        self.topic = topic
        self.todo = todo  # partition -> high watermark (exclusive end)
        self.parse = parse
        self.messages = self.events = self.tombstones = self.rejected = 0

    def handle(self, msgs: list[Message]) -> None:
        if self.parse:
            self._parse(msgs)
        else:
            self._consume(msgs)

    def _parse(self, msgs: list[Message]) -> None:
        todo = self.todo
        # Per partition columns, as KafkaBatchPartition._poll builds them.
        cols: dict[int, tuple[list[int], list[bytes | None], list[bytes | None], list[int]]] = {}
        for msg in msgs:
            if msg.error() is not None:
                continue
            p, off = msg.partition(), msg.offset()
            assert p is not None and off is not None
            if p not in todo or off >= todo[p]:
                continue
            c = cols.get(p)
            if c is None:
                c = cols[p] = ([], [], [], [])
            c[0].append(off)
            c[1].append(msg.key())
            c[2].append(msg.value())
            c[3].append(msg.timestamp()[1])
        for p, (offsets, keys, values, ts) in cols.items():
            decoded = decode_batch(
                RawBatch(
                    topic=self.topic,
                    partition=p,
                    offsets=tuple(offsets),
                    keys=tuple(keys),
                    values=tuple(values),
                    timestamps_ms=tuple(ts),
                )
            )
            self.messages += len(offsets)
            self.events += len(decoded)
            self.tombstones += decoded.tombstones
            self.rejected += len(decoded.rejected)
            if offsets[-1] >= todo[p] - 1:
                del todo[p]

    def _consume(self, msgs: list[Message]) -> None:
        todo = self.todo
        for msg in msgs:
            if msg.error() is not None:
                continue
            p, off = msg.partition(), msg.offset()
            assert p is not None and off is not None
            if p not in todo or off >= todo[p]:
                continue
            self.messages += 1
            if msg.value() is None:
                self.tombstones += 1
            else:
                self.events += 1
            if off >= todo[p] - 1:
                del todo[p]


def run(bootstrap: str, topic: str, ends: dict[int, tuple[int, int]], *, mode: str) -> dict[str, Any]:
    """Read ``topic`` from each partition's low to high watermark; returns counts and seconds."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    started = time.perf_counter()
    todo = {p: high for p, (low, high) in ends.items() if high > low}
    counter = _Counter(topic, todo, parse=mode != "consume")
    consumers: dict[int, Consumer] = {}
    try:
        if mode == "parse-pp":
            for p in todo:
                consumers[p] = _consumer(bootstrap, f"-{p}")
                consumers[p].assign([TopicPartition(topic, p, ends[p][0])])
            idle = False
            while todo:
                got = False
                for p in list(todo):
                    # Only what is already fetched, like the source; wait a little when all are dry.
                    msgs = consumers[p].consume(POLL_MESSAGES, 0.05 if idle else 0)
                    if msgs:
                        got = True
                        counter.handle(msgs)
                idle = not got
        else:
            consumers[-1] = _consumer(bootstrap)
            consumers[-1].assign([TopicPartition(topic, p, ends[p][0]) for p in todo])
            while todo:
                msgs = consumers[-1].consume(POLL_MESSAGES, 1.0)
                if msgs:
                    counter.handle(msgs)
    finally:
        seconds = time.perf_counter() - started
        ended_at = time.time()
        for c in consumers.values():
            c.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "mode": mode,
        "messages": counter.messages,
        "events": counter.events,
        "tombstones": counter.tombstones,
        "rejected": counter.rejected,
        "seconds": seconds,
        "ended_at": ended_at,
        # Not ru_maxrss: Linux carries the parent's high-water mark across fork+exec into it.
        "peak_rss_mb": _vm_hwm_mb(),
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.bronze.ceiling --bootstrap B --topic T --ends p:low:high,... --mode M``."""
    p = argparse.ArgumentParser(prog="python -m bench.bronze.ceiling")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--ends", required=True, help="partition:low:high,...")
    p.add_argument("--mode", choices=MODES, required=True)
    args = p.parse_args(argv)
    tune_gc()  # as run_in_process does for the dataflow
    result = run(args.bootstrap, args.topic, parse_ends(args.ends), mode=args.mode)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
