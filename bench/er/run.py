"""Streaming a labelled data set through the resolver and measuring it (see ``bench/er/README.md``)."""

from __future__ import annotations

import gc
import os
import pickle
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.er import splink_baseline
from bench.er.datasets import Dataset
from bench.er.metrics import bcubed, missed_pairs_by_group, pairwise, true_pairs
from flows.resolve.blocking import BlockKeyer
from flows.resolve.config import MatchingConfig, load_matching_config
from flows.resolve.resolver import Resolver
from flows.resolve.train import train_with_report

Echo = Callable[[str], None]
BATCH = 1000


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def deep_size(root: object) -> int:
    """Bytes held by ``root`` and everything it references (each object counted once)."""
    seen: set[int] = set()
    total = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            total += obj.nbytes + 112
            if obj.dtype == object:
                stack.extend(x for x in obj.ravel().tolist() if x is not None)
            continue
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.append(vars(obj))
    return total


def state_sizes(resolver: Resolver) -> tuple[int, int]:
    """(bytes in memory, bytes pickled) of the resolver's state: records' features, blocks, edges,
    clusters. The matching config (with its term-frequency tables) is shared and left out."""
    state = dict(resolver.__getstate__())
    state.pop("config")
    return deep_size(state), len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))


def _cpu_busy() -> tuple[float, float]:
    with open("/proc/stat") as f:
        parts = [float(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


QUIET_WAIT = [5.0]
"""Seconds a timed run waits for a quiet machine (``--quiet-wait``)."""


def wait_quiet(cores: float = 0.6) -> float:
    """Wait (up to ``QUIET_WAIT`` s) until the rest of the machine uses under ``cores`` CPUs, so other
    users' jobs disturb as few timed runs as possible; returns the cores busy when it stopped."""
    n = os.cpu_count() or 1
    deadline = time.monotonic() + QUIET_WAIT[0]
    busy = float(n)
    while time.monotonic() < deadline:
        b0, t0 = _cpu_busy()
        time.sleep(1.0)
        b1, t1 = _cpu_busy()
        busy = (b1 - b0) / max(t1 - t0, 1e-9) * n
        if busy < cores:
            break
    return busy


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def _records(ds: Dataset) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    ids = ds.frame["id"].to_list()
    labels = ds.frame["label"].to_list()
    rows = ds.frame.drop("id", "label").to_dicts()
    return ids, labels, rows


def blocking_recall(resolver: Resolver, pairs: list[tuple[str, str]]) -> float:
    """Share of true pairs sharing a block key value small enough to be compared."""
    keyer = BlockKeyer(resolver.config)
    cap = resolver.config.blocking.max_block_size
    keys: dict[str, set[str]] = {}
    for rid in {r for p in pairs for r in p}:
        feats = resolver.store.get(rid)
        keys[rid] = {k for k in keyer(feats) if len(resolver.blocks.get(k, ())) <= cap} if feats else set()
    met = sum(1 for a, b in pairs if keys[a] & keys[b])
    return met / len(pairs) if pairs else 1.0


def stream(
    config: MatchingConfig, ids: list[str], rows: list[dict[str, Any]], order: list[int]
) -> tuple[Resolver, dict[str, float]]:
    """Upsert the records one at a time in ``order``; per-record latency and throughput."""
    resolver = Resolver(config)
    lat = np.empty(len(order))
    busy = wait_quiet()
    gc.collect()
    rss0 = rss_bytes()
    load0 = load_avg()
    clock = time.perf_counter
    t0, c0 = clock(), time.process_time()
    for j, i in enumerate(order):
        s = clock()
        resolver.upsert(ids[i], rows[i])
        lat[j] = clock() - s
    wall, cpu = clock() - t0, time.process_time() - c0
    gc.collect()
    rss = rss_bytes() - rss0
    n = len(order)
    return resolver, {
        "rec_per_s": n / wall,
        "rec_per_cpu_s": n / cpu,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "max_ms": float(lat.max() * 1e3),
        "rss_bytes_per_record": rss / n,
        "load_avg": (load0 + load_avg()) / 2,
        "other_cores_busy_at_start": busy,
    }


def batched(
    config: MatchingConfig, ids: list[str], rows: list[dict[str, Any]], order: list[int]
) -> tuple[Resolver, dict[str, float]]:
    """Upsert in micro-batches of ``BATCH`` records (the shape a dataflow step receives)."""
    resolver = Resolver(config)
    wait_quiet()
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    lat = []
    for s in range(0, len(order), BATCH):
        b0 = time.perf_counter()
        resolver.upsert_many((ids[i], rows[i]) for i in order[s : s + BATCH])
        lat.append(time.perf_counter() - b0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return resolver, {
        "rec_per_s_batched": len(order) / wall,
        "rec_per_cpu_s_batched": len(order) / cpu,
        "p99_batch_ms": float(np.percentile(lat, 99) * 1e3),
    }


def accuracy(resolver: Resolver, truth: dict[str, str]) -> dict[str, float]:
    assigned = {rid: g for rid, g in resolver.golden_of.items()}
    pw = pairwise(truth, assigned)
    bc = bcubed(truth, assigned)
    return {
        "f1_pairwise": pw["f1"],
        "precision": pw["precision"],
        "recall": pw["recall"],
        "f1_bcubed": bc["f1"],
        "precision_bcubed": bc["precision"],
        "recall_bcubed": bc["recall"],
    }


def evaluate(
    ds: Dataset, config_path: Path, orders: int, with_splink: bool, echo: Echo, *, train: bool = True
) -> dict[str, Any]:
    """Train (unless ``train`` is false: the config's m/u as written), stream in ``orders`` shuffled
    orders, a batched run, Splink; one results dict."""
    ids, labels, rows = _records(ds)
    truth = dict(zip(ids, labels, strict=True))
    n = len(ids)
    how = "training (EM, no labels)" if train else "hand-set m/u as written (no training)"
    echo(f"{ds.name}: {n:,} records, {len(set(labels)):,} entities; {config_path.name}, {how}")
    t0 = time.perf_counter()
    config = load_matching_config(config_path)
    if train:
        config, report = train_with_report(ds.frame.drop("label"), config)
        pairs = report.candidate_pairs
        echo(f"{ds.name}: trained in {time.perf_counter() - t0:.1f} s ({pairs:,} candidate pairs)")
    train_s = time.perf_counter() - t0
    runs: list[dict[str, Any]] = []
    partitions = []
    first: Resolver | None = None
    for k in range(orders):
        order = list(range(n))
        random.Random(k).shuffle(order)
        resolver, speed = stream(config, ids, rows, order)
        acc = accuracy(resolver, truth)
        runs.append({**speed, **acc})
        partitions.append(resolver.partition())
        echo(
            f"{ds.name}: order {k + 1}/{orders}: F1 {acc['f1_pairwise']:.4f} (P {acc['precision']:.4f} "
            f"R {acc['recall']:.4f}), {speed['rec_per_s']:,.0f} rec/s, p50 {speed['p50_ms']:.2f} ms, "
            f"p99 {speed['p99_ms']:.2f} ms"
        )
        if first is None:
            first = resolver
    assert first is not None
    order = list(range(n))
    random.Random(0).shuffle(order)
    batch_resolver, batch_speed = batched(config, ids, rows, order)
    echo(f"{ds.name}: batches of {BATCH}: {batch_speed['rec_per_s_batched']:,.0f} rec/s")
    same_batched = batch_resolver.partition() == partitions[0]
    stats = first.stats()
    f1s = [r["f1_pairwise"] for r in runs]
    sizes: dict[str, int] = {}
    for lab in labels:
        sizes[lab] = sizes.get(lab, 0) + 1
    memory, pickled = state_sizes(first)
    out: dict[str, Any] = {
        "records": n,
        "entities": len(sizes),
        "source": ds.source,
        "config": str(config_path),
        "m_u": "trained (EM, no labels)" if train else "hand-set (config as written)",
        **{k: v for k, v in runs[0].items() if k.startswith(("f1", "precision", "recall"))},
        "order_spread_f1": max(f1s) - min(f1s),
        "orders": orders,
        "partitions_identical_across_orders": all(p == partitions[0] for p in partitions),
        "partition_batched_equals_streamed": same_batched,
        "rec_per_s": statistics.median(r["rec_per_s"] for r in runs),
        "rec_per_cpu_s": statistics.median(r["rec_per_cpu_s"] for r in runs),
        **batch_speed,
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "largest_cluster": stats.largest_cluster,
        "true_largest_cluster": max(sizes.values()),
        "clusters": stats.clusters,
        "blocking_recall": blocking_recall(first, true_pairs(ids, labels)),
        "comparisons_per_record": stats.pairs_scored / n,
        "edges": stats.edges,
        "memory_bytes_per_record": memory / n,
        "state_bytes_per_record": pickled / n,
        "train_seconds": train_s,
        "load_avg_during_runs": statistics.median(r["load_avg"] for r in runs),
        "other_cores_busy_at_start": statistics.median(r["other_cores_busy_at_start"] for r in runs),
    }
    if ds.kind == "demo":
        # Record ids are ``system:schema.table:key``: which source tables the misses are between.
        out["missed_pairs_by_tables"] = missed_pairs_by_group(
            truth, first.golden_of, lambda rid: rid.rsplit(":", 1)[0]
        )
    if with_splink and ds.kind in ("febrl", "historical_50k", "demo"):
        echo(f"{ds.name}: Splink baseline (DuckDB)")
        out.update(splink_baseline.run(ds.kind, ds.frame, truth))
        echo(
            f"{ds.name}: Splink F1 {out['splink_f1_pairwise']:.4f} at {out['splink_threshold']} "
            f"(best {out['splink_f1_pairwise_best']:.4f} at {out['splink_best_threshold']}), "
            f"{out['splink_seconds']:.1f} s"
        )
    return out


def scale(ds: Dataset, config_path: Path, fill: int, echo: Echo) -> dict[str, Any]:
    """Fill the resolver with ``fill`` records, then measure the rest: batched and one by one."""
    ids, labels, rows = _records(ds)
    truth = dict(zip(ids, labels, strict=True))
    n = len(ids)
    rest = n - fill
    echo(f"{ds.name}: {n:,} records, training {config_path.name} on the first {fill:,} (EM, no labels)")
    t0 = time.perf_counter()
    config, _ = train_with_report(ds.frame.head(fill).drop("label"), load_matching_config(config_path))
    train_s = time.perf_counter() - t0
    resolver = Resolver(config)
    gc.collect()
    rss0 = rss_bytes()
    t0, c0 = time.perf_counter(), time.process_time()
    for s in range(0, fill, 2 * BATCH):
        resolver.upsert_many((ids[i], rows[i]) for i in range(s, min(s + 2 * BATCH, fill)))
    fill_wall, fill_cpu = time.perf_counter() - t0, time.process_time() - c0
    gc.collect()
    rss = rss_bytes() - rss0
    echo(f"{ds.name}: filled {fill:,} records in {fill_wall:.1f} s ({fill / fill_wall:,.0f} rec/s)")
    half = fill + rest // 2
    wait_quiet()
    load0 = load_avg()
    t0, c0 = time.perf_counter(), time.process_time()
    lat_b = []
    for s in range(fill, half, BATCH):
        b0 = time.perf_counter()
        resolver.upsert_many((ids[i], rows[i]) for i in range(s, min(s + BATCH, half)))
        lat_b.append(time.perf_counter() - b0)
    b_wall, b_cpu = time.perf_counter() - t0, time.process_time() - c0
    echo(f"{ds.name}: {half - fill:,} more in batches of {BATCH}: {(half - fill) / b_wall:,.0f} rec/s")
    lat = np.empty(n - half)
    t0, c0 = time.perf_counter(), time.process_time()
    for j, i in enumerate(range(half, n)):
        s0 = time.perf_counter()
        resolver.upsert(ids[i], rows[i])
        lat[j] = time.perf_counter() - s0
    o_wall, o_cpu = time.perf_counter() - t0, time.process_time() - c0
    load1 = load_avg()
    echo(
        f"{ds.name}: {n - half:,} more one by one: {(n - half) / o_wall:,.0f} rec/s, "
        f"p99 {np.percentile(lat, 99) * 1e3:.2f} ms"
    )
    stats = resolver.stats()
    sizes: dict[str, int] = {}
    for lab in labels:
        sizes[lab] = sizes.get(lab, 0) + 1
    memory, pickled = state_sizes(resolver)
    return {
        "records": n,
        "entities": len(sizes),
        "source": ds.source,
        "config": str(config_path),
        "records_in_state_before_measuring": fill,
        **accuracy(resolver, truth),
        "order_spread_f1": None,
        "rec_per_s": (n - half) / o_wall,
        "rec_per_cpu_s": (n - half) / o_cpu,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "rec_per_s_batched": (half - fill) / b_wall,
        "rec_per_cpu_s_batched": (half - fill) / b_cpu,
        "p99_batch_ms": float(np.percentile(lat_b, 99) * 1e3),
        "rec_per_s_fill": fill / fill_wall,
        "rec_per_cpu_s_fill": fill / fill_cpu,
        "largest_cluster": stats.largest_cluster,
        "true_largest_cluster": max(sizes.values()),
        "clusters": stats.clusters,
        "blocking_recall": blocking_recall(resolver, true_pairs(ids, labels)),
        "comparisons_per_record": stats.pairs_scored / n,
        "edges": stats.edges,
        "memory_bytes_per_record": memory / n,
        "rss_bytes_per_record_fill": rss / fill,
        "state_bytes_per_record": pickled / n,
        "train_seconds": train_s,
        "load_avg_during_runs": (load0 + load1) / 2,
    }
