"""Process-wide runtime settings of the dataflow processes (and of benchmarks that stand beside them)."""

from __future__ import annotations

import gc
import os
import sys

#: jemalloc options of polars's allocator, set for our processes unless the environment sets them.
#: Freed pages are kept for 30 s instead of being returned to the OS at once: a silver MERGE
#: allocates and frees gigabytes per batch, and with the default decay each batch faulted all of its
#: pages in again (bench/silver: ~13% less CPU per upsert; the price is a resident set that stays
#: at its recent peak).
ALLOCATOR_ENV = ("_RJEM_MALLOC_CONF", "dirty_decay_ms:30000,muzzy_decay_ms:30000")

#: Allocations between two young-generation garbage collections in a dataflow process.
GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Move everything alive now out of the collector's generations and collect young objects
    every :data:`GC_GEN0_THRESHOLD` allocations.

    What is alive at start (modules, the flow, clients) lives as long as the process, so full
    collections need not rescan it. The hot path allocates tens of thousands of container objects
    per batch (Kafka messages, tuples, lists) that reference counting frees and that form no
    cycles: at the default threshold of 700 a 20k-message batch triggered ~25 young collections,
    each traversing the batch's live messages (1.5-2.3 CPU-s per 1M messages in the bronze flow,
    0.3-0.6 at 50k).
    """
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 10)


def tune_allocator() -> bool:
    """Set :data:`ALLOCATOR_ENV` unless the environment has it; True when it can still take effect.

    jemalloc reads its options once, when polars loads: call this before anything imports polars
    (``flows`` and ``bench`` do, in their package ``__init__``). Child processes inherit it.
    """
    name, value = ALLOCATOR_ENV
    os.environ.setdefault(name, value)
    return "polars" not in sys.modules
