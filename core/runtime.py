"""Process-wide runtime settings of the dataflow processes (and of benchmarks that stand beside them)."""

from __future__ import annotations

import gc

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
