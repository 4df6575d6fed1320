"""``python -m bench.propagation --mode propagation``: the propagation leg alone.

Golden changes/s delivered to the demo CRM, and latency at a rate, with no source database and no
ingest flow in front. What it measures (golden change emitted -> value acknowledged by the CRM API;
the source-commit -> golden leg and the whole path are :mod:`bench.propagation.e2e`):

1. **throughput**: ``--changes`` creates produced up front to a fresh golden topic, then the
   propagation flow (``python -m flows.propagate --only crm``) started; changes/s = changes / (time
   from the first to the last acknowledged write, from ``sync_log``);
2. **latency**: ``--rate`` changes/s produced for ``--seconds`` while the flow runs, each stamped with
   its emission time; latency = ``sync_log.at`` (after the CRM acknowledged) - emission.

The CRM's rate limit is lifted for the run (and restored), and the client-side bucket too (a copy of
``config/`` with ``rate_limit.requests_per_s: 0``). The numbers land under ``propagation_only``
in ``bench/results/propagation.json`` (see :mod:`bench.propagation.__main__`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import yaml
from confluent_kafka import Producer

from bench.propagation.e2e import scrape
from cdc.topics import ensure_topics
from core.golden import GoldenChange, content_hash, encode_change
from core.settings import Settings
from sinks.delta.sync_log import sync_log_path
from tests.integration.helpers import FlowProcess, free_port

REPO = Path(__file__).resolve().parents[2]


def _values(n: int, city: str) -> dict[str, Any]:
    return {
        "kind": "person",
        "status": "active",
        "full_name": f"Bench Person{n}",
        "first_name": "Bench",
        "last_name": f"Person{n}",
        "country": "DE",
        "currency": "EUR",
        "city": city,
        "postal_code": "10115",
        "phone": "+4930123456",
    }


def _config(tmp: Path, topic: str) -> Path:
    config_dir = tmp / "config"
    shutil.copytree(REPO / "config", config_dir)
    crm = config_dir / "targets" / "crm.yaml"
    doc = yaml.safe_load(crm.read_text())
    doc["rate_limit"] = {"requests_per_s": 0, "burst": 1}
    crm.write_text(yaml.safe_dump(doc, sort_keys=False))
    app = yaml.safe_load((REPO / "config" / "goldstream.yaml").read_text())
    app.update(config_dir=str(config_dir), delta_root=str(tmp / "delta"), recovery_root=str(tmp / "rec"))
    app["dataflow"] = {**app.get("dataflow", {}), "metrics_port": free_port(), "batch_timeout_ms": 50}
    app["propagation"] = {"topics": {"customer": topic}}
    path = tmp / "goldstream.yaml"
    path.write_text(yaml.safe_dump(app))
    return path


def _stage_seconds(config: Path) -> dict[str, dict[str, float]]:
    """The delivery thread's steps over the whole run, from the flow's own metrics: per unit of
    work, planning + echo fingerprints + the intent append (``sync_intent`` is the append alone),
    the API calls (``sync_send``) and the outcome appends (``sync_record``)."""
    port = yaml.safe_load(config.read_text())["dataflow"]["metrics_port"]
    out: dict[str, dict[str, float]] = {}
    for name, (total, n) in sorted(scrape(port).items()):
        stage = name.removeprefix("stage_batch_seconds.")
        if stage != name and stage.startswith("sync_"):
            out[stage] = {"units": n, "total_s": round(total, 3), "mean_s": round(total / n, 4) if n else 0.0}
    return out


def _sync_log(delta: Path) -> pl.DataFrame:
    path = sync_log_path(delta)
    if not (path / "_delta_log").exists():
        return pl.DataFrame()
    return pl.read_delta(str(path))


def _wait_ok(delta: Path, ids: set[str], timeout: float) -> pl.DataFrame:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        log = _sync_log(delta)
        if log.height and set(log.filter(pl.col("status") == "ok")["golden_id"]) >= ids:
            return log
        time.sleep(0.5)
    raise SystemExit(f"not every change acknowledged within {timeout:.0f}s")


def run(args: argparse.Namespace, settings: Settings, command: str) -> dict[str, Any]:
    """The propagation-only measurement (``args.changes``, ``args.rate``, ``args.seconds``)."""
    admin = {"X-Admin-Token": os.environ[settings.demo_apis.admin_token_env]}
    api = settings.demo_apis.crm
    httpx.put(f"{api.url}/admin/rate-limit", headers=admin, json={"requests_per_second": 0, "burst": 1})
    run = uuid.uuid4().hex[:8]
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 5})
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            topic = f"golden.customer.bench-{run}"
            ensure_topics(
                settings.kafka.bootstrap_servers, [topic], partitions=settings.kafka.topic_partitions
            )
            config = _config(tmp, topic)

            def send(gid: str, n: int, version: int, city: str) -> int:
                values = _values(n, city)
                now_us = int(time.time() * 1e6)
                change = GoldenChange(
                    "customer",
                    gid,
                    version,
                    "UPSERT",
                    values,
                    {},
                    tuple(values),
                    (),
                    now_us,
                    content_hash=content_hash(values),
                )
                producer.produce(topic, key=gid.encode(), value=encode_change(change))
                producer.poll(0)
                return now_us

            ids = {f"bench-{run}-{n}" for n in range(args.changes)}
            for n, gid in enumerate(sorted(ids)):
                send(gid, n, 1, "Berlin")
            producer.flush(60)
            flow = FlowProcess(
                config, "--only", "crm", "--no-dlq", log=tmp / "flow.log", module="flows.propagate"
            )
            with flow:
                log = _wait_ok(tmp / "delta", ids, timeout=600)
                ok = log.filter(pl.col("status") == "ok").sort("at")
                span = (ok["at"][-1] - ok["at"][0]).total_seconds()
                results["changes"] = args.changes
                results["changes_per_s"] = round(args.changes / max(span, 1e-9), 1)
                # Latency at a paced rate: updates of the same records, stamped at emission.
                emitted: dict[tuple[str, int], int] = {}
                total = int(args.rate * args.seconds)
                ordered = sorted(ids)
                start = time.monotonic()
                for i in range(total):
                    n = i % len(ordered)
                    version = 2 + i // len(ordered)
                    target_t = start + i / args.rate
                    delay = target_t - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    emitted[(ordered[n], version)] = send(ordered[n], n, version, f"City{i}")
                producer.flush(60)
                produced_s = time.monotonic() - start
                end = time.monotonic() + 300
                while time.monotonic() < end:
                    log = _sync_log(tmp / "delta").filter(pl.col("status") == "ok")
                    acked = {(g, v): at for g, v, at in log.select("golden_id", "version", "at").iter_rows()}
                    if all(k in acked for k in emitted):
                        break
                    time.sleep(0.5)
                else:
                    raise SystemExit("paced changes not all acknowledged")
                stages = _stage_seconds(config)
            lat = np.array([acked[k].timestamp() - us / 1e6 for k, us in emitted.items()])
            results.update(
                rate=args.rate,
                rate_achieved=round(total / produced_s, 1),
                paced_changes=total,
                p50_s=round(float(np.percentile(lat, 50)), 3),
                p99_s=round(float(np.percentile(lat, 99)), 3),
                max_s=round(float(lat.max()), 3),
                scope="golden change emitted -> CRM API acknowledged (propagation leg only)",
                goal_p99_s=3.0,
                goal_met=bool(np.percentile(lat, 99) < 3.0),
                load_avg=os.getloadavg()[0],
                delivery_stages=stages,
                command=command,
            )
    finally:
        httpx.put(
            f"{api.url}/admin/rate-limit",
            headers=admin,
            json={"requests_per_second": api.rate_limit_per_s, "burst": api.rate_limit_burst},
        )
    return results
