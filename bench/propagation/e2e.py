"""``python -m bench.propagation`` (``--mode e2e``): source database commit -> value visible in the CRM.

Both dataflows run as real processes (``python -m flows.worker ingest|propagate``) on an isolated
config (own Delta root, recovery store and golden topic, like ``tests/integration/flows/
test_end_to_end.py``) against the running stack, with the CRM's rate limit lifted on the server
(``/admin/rate-limit``, restored afterwards) and in the client (``rate_limit.requests_per_s: 0`` in a
copy of ``config/``). ``--crm-api own`` serves the CRM from a private process of this working tree
(``python -m cdc.demo.api crm`` on a free port, same database) instead of the stack's shared one:
it measures the code in the tree and keeps other users' calls out of the numbers.

1. **Catch-up.** The ingest flow starts from the earliest offsets and resolves every existing
   customer; the propagation flow then starts at the end of the golden topic (``--start=latest``,
   ``--only crm``), so only what the bench does reaches the CRM.
2. **Bulk (throughput).** ``--customers`` new shop customers (random names, unique e-mails and
   phones) are inserted in one transaction. Each becomes a golden record that the propagation flow
   creates in the CRM. ``changes_per_s`` = customers / (last CRM acknowledgement - source commit);
   ``crm_delivery_per_s`` = the same acknowledgements / (last - first), the propagation leg's pace.
3. **Paced (latency).** ``--rounds`` rounds; in each, every bench customer's phone is updated once,
   at ``--rate`` changes/s, in transactions of ``rate x --tick-ms`` rows (one ``UPDATE ... FROM
   unnest`` and a commit per tick; a change's commit time is when its commit returned). The round
   ends when the CRM shows every new value. Every phone is a distinct number (``+49 30 9`` and a
   7-digit change number), so a value read back names the change that wrote it.

**Counting.** A change is one source row update. One customer changes once per round and a round
waits for the previous to be visible, so no change is coalesced with (superseded by) another: every
change has its own golden version, CRM write and visible value, and ``visible`` counts those whose
exact value the CRM returned. (With several changes of one record in flight, the pipeline
legitimately coalesces them; such a change would count as visible when the CRM shows it or a later
value of the same record. This bench avoids the case instead of modelling it.)

**Visible when.** The CRM stamps ``updated_at`` (``now()`` of its write transaction) on every write;
read back through the API with the value, it is when that value became visible (to within the
write's commit). Reading every record once after the fact therefore gives exact visibility times
without polling at 1,000/s. A sample (``--sample`` changes per round) is also polled while the round
runs (``GET /v1/accounts/by-external-id``), which checks the ``updated_at`` reading against an
observer's (``observed_*``: an upper bound, poll interval included).

**Stages** (cumulative from the source commit, p50/p99): ``silver`` (silver ``applied_at``; the last
round only, silver keeps the latest version per record), ``golden`` (the change's ``emitted_at_us``
on the golden topic), ``ack`` (``sync_log.at`` after the CRM acknowledged it), ``visible``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import psycopg
import yaml
from confluent_kafka import Consumer, KafkaError, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from cdc.pg import admin_dsn
from cdc.topics import ensure_topics
from core.golden import decode_change, record_id
from core.settings import Settings
from sinks.delta.bronze import bronze_path
from sinks.delta.gold import read_crosswalk
from sinks.delta.silver import read_current, silver_path
from sinks.delta.sync_log import sync_log_path
from tests.integration.flows.test_ingest_crash import db_record_ids
from tests.integration.flows.test_resolve import person
from tests.integration.helpers import FlowProcess, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
SHOP_TABLE = "public.customers"
#: Berlin numbers +49 30 9xxxxxxx: the 7 digits after the prefix are the change number.
PHONE_PREFIX = "49309"
PHONE_DIGITS = 7
#: Pause between the sample poller's sweeps (its resolution: an observed latency is an upper bound).
SWEEP_PAUSE_S = 0.2


def phone(number: int) -> str:
    """The shop phone of change ``number`` (digits only, international, as shop customers type it)."""
    return f"{PHONE_PREFIX}{number:0{PHONE_DIGITS}d}"


def phone_number(text: str | None) -> int | None:
    """The change number a phone read back from the CRM carries (None: not a bench phone)."""
    digits = re.sub(r"\D", "", text or "")
    if len(digits) != len(PHONE_PREFIX) + PHONE_DIGITS or not digits.startswith(PHONE_PREFIX):
        return None
    return int(digits[len(PHONE_PREFIX) :])


def pct(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile, rounded to ms (None for no values)."""
    return round(float(np.percentile(np.asarray(values), q)), 3) if len(values) else None


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50 / p99 / max / n of latencies in seconds."""
    return {
        "p50_s": pct(values, 50),
        "p99_s": pct(values, 99),
        "max_s": round(max(values), 3) if values else None,
        "n": len(values),
    }


def load() -> float:
    """The 1-minute load average (the machine is shared: every number is read against it)."""
    return round(os.getloadavg()[0], 2)


@dataclass(frozen=True)
class Change:
    """One source row update: which customer, which change number, when its commit returned."""

    golden_id: str
    customer_id: int
    number: int
    committed: float  # epoch seconds


def make_config(tmp: Path, topic: str, ingest_batch_timeout_ms: int | None, crm_port: int | None) -> Path:
    """An isolated goldstream.yaml (own Delta/recovery roots, golden topic) with the CRM bucket lifted."""
    config_dir = tmp / "config"
    shutil.copytree(REPO / "config", config_dir)
    crm = config_dir / "targets" / "crm.yaml"
    doc = yaml.safe_load(crm.read_text())
    doc["rate_limit"] = {"requests_per_s": 0, "burst": 1}
    crm.write_text(yaml.safe_dump(doc, sort_keys=False))
    app = yaml.safe_load((REPO / "config" / "goldstream.yaml").read_text())
    app.update(config_dir=str(config_dir), delta_root=str(tmp / "delta"), recovery_root=str(tmp / "rec"))
    dataflow = {**app.get("dataflow", {}), "metrics_port": free_port()}
    if ingest_batch_timeout_ms is not None:
        dataflow["batch_timeout_ms"] = ingest_batch_timeout_ms
    app["dataflow"] = dataflow
    app["propagation"] = {**app.get("propagation", {}), "topics": {"customer": topic}}
    if crm_port is not None:
        demo = app.setdefault("demo_apis", {})
        demo["crm"] = {**demo.get("crm", {}), "port": crm_port, "rate_limit_per_s": 0}
    path = tmp / "goldstream.yaml"
    path.write_text(yaml.safe_dump(app))
    return path


def crm_client(settings: Settings) -> httpx.Client:
    """An authenticated client of the demo CRM (OAuth2 client credentials)."""
    api = settings.demo_apis.crm
    client = httpx.Client(base_url=api.url, timeout=30, limits=httpx.Limits(max_connections=16))
    form = {"grant_type": "client_credentials", "client_id": api.client_id}
    form["client_secret"] = os.environ[api.secret_env]
    token = client.post("/oauth/token", data=form).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return client


@contextmanager
def crm_unlimited(settings: Settings) -> Iterator[None]:
    """Lift the CRM's server-side rate limit for the run and restore the configured one after."""
    admin = {"X-Admin-Token": os.environ[settings.demo_apis.admin_token_env]}
    api = settings.demo_apis.crm
    url = f"{api.url}/admin/rate-limit"
    httpx.put(url, headers=admin, json={"requests_per_second": 0, "burst": 1}).raise_for_status()
    try:
        yield
    finally:
        body = {"requests_per_second": api.rate_limit_per_s, "burst": api.rate_limit_burst}
        httpx.put(url, headers=admin, json=body)


def _healthy(settings: Settings) -> bool:
    try:
        return httpx.get(f"{settings.demo_apis.crm.url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def crosswalk_of(delta: Path, rids: set[str]) -> dict[str, str] | None:
    """record id -> golden id once every record in ``rids`` is in the crosswalk."""
    if not (delta / "gold" / "crosswalk" / "_delta_log").exists():
        return None
    cw = read_crosswalk(delta, "customer").filter(~pl.col("deleted") & pl.col("record_id").is_in(list(rids)))
    got = dict(zip(cw["record_id"].to_list(), cw["golden_id"].to_list(), strict=True))
    return got if len(got) == len(rids) else None


def sync_acks(delta: Path) -> pl.DataFrame:
    """The CRM's successful sync_log rows: golden_id, version, at (empty before the first)."""
    path = sync_log_path(delta)
    if not (path / "_delta_log").exists():
        return pl.DataFrame(
            schema={"golden_id": pl.String, "version": pl.Int64, "at": pl.Datetime("us", "UTC")}
        )
    frame = pl.read_delta(str(path)).filter((pl.col("status") == "ok") & (pl.col("target") == "crm"))
    return frame.select("golden_id", pl.col("version").cast(pl.Int64), "at")


def create_customers(settings: Settings, n: int, tag: str) -> tuple[list[int], float]:
    """Insert ``n`` shop customers in one transaction; their ids (change numbers 0..n-1) and commit time."""
    rnd = random.Random(tag)
    emails, firsts, lasts, phones = [], [], [], []
    for i in range(n):
        first, last = person(rnd)
        emails.append(f"bench.{tag}.{i}@example.invalid")
        firsts.append(first)
        lasts.append(last)
        phones.append(phone(i))
    with psycopg.connect(admin_dsn(settings, "shop")) as conn:
        rows = conn.execute(
            "INSERT INTO public.customers (email, first_name, last_name, phone) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
            "RETURNING customer_id, email",
            (emails, firsts, lasts, phones),
        ).fetchall()
        conn.commit()
        committed = time.time()
    order = {e: i for i, e in enumerate(emails)}
    ids = [0] * n
    for customer_id, email in rows:
        ids[order[email]] = int(customer_id)
    return ids, committed


def paced_updates(
    settings: Settings,
    targets: list[tuple[str, int]],
    base: int,
    rate: float,
    tick_s: float,
    changes: list[Change] | None = None,
) -> tuple[list[Change], float]:
    """Update each (golden id, customer id)'s phone once at ``rate``/s; the changes and the seconds taken.

    One transaction per tick holds the changes due by then: 1,000 single-row commits a second from one
    client would measure this loop's round trips, not the pipeline. ``changes``: a list to extend
    after each commit, so a :class:`SamplePoller` reading it learns of a change while the round
    runs (with the list only returned at the end, it started polling the first changes ~a round late).
    """
    changes = [] if changes is None else changes
    with psycopg.connect(admin_dsn(settings, "shop")) as conn:
        start = time.monotonic()
        sent = 0
        while sent < len(targets):
            due = min(len(targets), max(sent + 1, int((time.monotonic() - start) * rate) + 1))
            chunk = targets[sent:due]
            numbers = [base + sent + k for k in range(len(chunk))]
            conn.execute(
                "UPDATE public.customers AS c SET phone = d.phone "
                "FROM unnest(%s::bigint[], %s::text[]) AS d(id, phone) WHERE c.customer_id = d.id",
                ([cid for _g, cid in chunk], [phone(n) for n in numbers]),
            )
            conn.commit()
            committed = time.time()
            changes.extend(Change(g, cid, n, committed) for (g, cid), n in zip(chunk, numbers, strict=True))
            sent = due
            wake = start + sent / rate + tick_s
            delay = wake - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return changes, time.monotonic() - start


class SamplePoller(threading.Thread):
    """Polls a sample of a round's changes by external id while it runs: when each was first seen.

    It learns each sampled change's commit time from the producer's list as the changes are made.
    """

    def __init__(self, client: httpx.Client, sample: set[str], changes: list[Change]) -> None:
        super().__init__(daemon=True, name="bench-sample-poller")
        self._client = client
        self._sample = sample
        self._changes = changes
        self._known = 0
        self._due: dict[str, Change] = {}
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        """Poll until stopped; a change counts as seen once its value (or a later one) is returned."""
        while not self.stop.is_set():
            fresh = self._changes[self._known :]
            self._known += len(fresh)
            self._due.update((c.golden_id, c) for c in fresh if c.golden_id in self._sample)
            due = [c for c in self._due.values() if c.number not in self.seen]
            if not due:
                time.sleep(0.02)
                continue
            for c in due:
                r = self._client.get(f"/v1/accounts/by-external-id/{c.golden_id}")
                if r.status_code == 200 and (phone_number(r.json().get("phone")) or -1) >= c.number:
                    self.seen[c.number] = time.time()
                if self.stop.is_set():
                    return
            time.sleep(SWEEP_PAUSE_S)  # a few dozen GETs a second at most: the poller must stay light


def crm_writes_ok(metrics_port: int) -> float:
    """Successful CRM creates + updates so far, from the propagation process's /metrics (cheap)."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^goldstream_sync_operations_total\{(.*)\} (\S+)$", line)
        if m is None:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        ours = labels.get("target") == "crm" and labels.get("outcome") == "ok"
        if ours and labels.get("operation") in ("create", "update"):
            total += float(m.group(2))
    return total


def read_visible(
    client: httpx.Client, changes: list[Change], acked: Callable[[], bool], timeout: float
) -> dict[int, float]:
    """change number -> the CRM's ``updated_at`` of the row holding that value, once all are visible.

    Reads nothing until ``acked()`` (the propagation flow reports every write done), then reads each
    record once (stragglers again a second later): polling thousands of records while the round
    drains would load the CRM API the pipeline is writing to, and measure the poller.
    """
    end = time.monotonic() + timeout
    while not acked() and time.monotonic() < end:
        time.sleep(0.5)
    pending = {c.golden_id: c for c in changes}
    visible: dict[int, float] = {}

    def fetch(c: Change) -> tuple[Change, dict[str, Any] | None]:
        r = client.get(f"/v1/accounts/by-external-id/{c.golden_id}")
        return c, (r.json() if r.status_code == 200 else None)

    with ThreadPoolExecutor(4) as pool:
        while pending and time.monotonic() < end:
            for c, body in pool.map(fetch, list(pending.values())):
                if body is None:
                    continue
                if phone_number(body.get("phone")) == c.number:
                    visible[c.number] = datetime.fromisoformat(body["updated_at"]).timestamp()
                    del pending[c.golden_id]
            if pending:
                time.sleep(1.0)
    return visible


def golden_emitted(
    settings: Settings, topic: str
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """From the bench's golden topic: (golden id, change number) -> emitted_at_us and -> version."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"bench-propagation-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    parts = [TopicPartition(topic, p, 0) for p in meta.partitions]
    consumer.assign(parts)
    emitted: dict[tuple[str, int], int] = {}
    version: dict[tuple[str, int], int] = {}
    eof: set[int] = set()
    end = time.monotonic() + 120
    try:
        while len(eof) < len(parts) and time.monotonic() < end:
            for m in consumer.consume(5000, timeout=1.0):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition() or 0)
                    continue
                value = m.value()
                if value is None:
                    continue
                change = decode_change(value)
                number = phone_number(change.values.get("phone"))
                if number is not None and (change.golden_id, number) not in emitted:
                    emitted[(change.golden_id, number)] = change.emitted_at_us
                    version[(change.golden_id, number)] = change.version
    finally:
        consumer.close()
    return emitted, version


def run(args: argparse.Namespace, settings: Settings, command: str) -> dict[str, Any]:
    """The end-to-end measurement (see the module docstring); the results document."""
    tag = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-propagation-{tag}-"))
    topic = f"golden.customer.bench-e2e-{tag}"
    ensure_topics(settings.kafka.bootstrap_servers, [topic], partitions=settings.kafka.topic_partitions)
    own_port = free_port() if args.crm_api == "own" else None
    if own_port is not None:
        crm = settings.demo_apis.crm.model_copy(update={"port": own_port})
        settings = settings.model_copy(
            update={"demo_apis": settings.demo_apis.model_copy(update={"crm": crm})}
        )
    config = make_config(tmp, topic, args.ingest_batch_timeout_ms, own_port)
    delta = tmp / "delta"
    own_api = None
    if own_port is not None:
        own_api = FlowProcess(
            config, "crm", "--port", str(own_port), log=tmp / "crm-api.log", module="cdc.demo.api"
        )
        own_api.start()
        wait_for("the private CRM API", lambda: _healthy(settings), timeout=60)
    out: dict[str, Any] = {"load_avg_start": load()}
    customer_ids: list[int] = []
    gids: list[str] = []
    client = crm_client(settings)
    try:
        with (
            crm_unlimited(settings),
            FlowProcess(config, "ingest", "--no-dlq", log=tmp / "ingest.log") as ingest,
        ):
            started = time.monotonic()
            existing = db_record_ids(settings)
            wait_for(
                "ingest to resolve every existing customer",
                lambda: crosswalk_of(delta, existing),
                timeout=900,
                every=3,
            )
            out["catch_up_s"] = round(time.monotonic() - started, 1)
            print(f"ingest caught up with {len(existing)} records in {out['catch_up_s']}s", flush=True)
            prop_port = free_port()
            prop_args = (
                "propagate",
                "--only",
                "crm",
                "--start=latest",
                "--no-dlq",
                f"--metrics-port={prop_port}",
            )
            with FlowProcess(config, *prop_args, log=tmp / "propagate.log") as propagate:
                time.sleep(8)  # its consumers are assigned at the end of the topic before anything new
                assert propagate.alive(), propagate.tail()

                # --- bulk: n creates, source commit -> acknowledged by the CRM ---
                customer_ids, committed = create_customers(settings, args.customers, tag)
                rids = {record_id("shop", SHOP_TABLE, str(c)): c for c in customer_ids}
                cw = wait_for(
                    "the bench customers' golden ids",
                    lambda: crosswalk_of(delta, set(rids)),
                    timeout=600,
                    every=1,
                )
                gid_of = {rids[r]: g for r, g in cw.items()}
                gids = [gid_of[c] for c in customer_ids]
                single = {g for g in gids if gids.count(g) == 1} if len(set(gids)) != len(gids) else set(gids)

                def all_acked() -> pl.DataFrame | None:
                    acks = sync_acks(delta).filter(pl.col("golden_id").is_in(list(single)))
                    return acks if acks["golden_id"].n_unique() == len(single) else None

                acks = wait_for("the CRM to acknowledge every create", all_acked, timeout=900, every=1)
                first, last = acks["at"].min(), acks["at"].max()
                assert isinstance(first, datetime) and isinstance(last, datetime)
                out["bulk"] = {
                    "customers": args.customers,
                    "golden_records": len(set(gids)),
                    "source_commit_to_last_ack_s": round(last.timestamp() - committed, 2),
                    "changes_per_s": round(len(single) / (last.timestamp() - committed), 1),
                    "crm_delivery_per_s": round(len(single) / max((last - first).total_seconds(), 1e-6), 1),
                    "load_avg": load(),
                }
                print("bulk", out["bulk"], flush=True)

                # --- paced rounds: every (1:1) bench customer's phone once per round at the rate ---
                targets = [(g, c) for g, c in zip(gids, customer_ids, strict=True) if g in single]
                rnd = random.Random(tag)
                rounds: list[dict[str, Any]] = []
                all_changes: list[Change] = []
                visible_at: dict[int, float] = {}
                observed_at: dict[int, float] = {}
                ingest_port = yaml.safe_load(config.read_text())["dataflow"]["metrics_port"]
                before = {**scrape(ingest_port), **scrape(prop_port)}
                for r in range(args.rounds):
                    rnd.shuffle(targets)
                    sample = {g for g, _c in rnd.sample(targets, min(args.sample, len(targets)))}
                    base = len(customer_ids) * (r + 1)
                    time.sleep(args.settle_s)
                    load_before = load()
                    writes_before = crm_writes_ok(prop_port)
                    changes_box: list[Change] = []
                    produced_s: list[float] = []

                    def produce(
                        base: int = base, box: list[Change] = changes_box, secs: list[float] = produced_s
                    ) -> None:
                        _made, took = paced_updates(
                            settings, targets, base, args.rate, args.tick_ms / 1000, changes=box
                        )
                        secs.append(took)

                    producer = threading.Thread(target=produce, daemon=True)
                    poller = SamplePoller(client, sample, changes_box)
                    producer.start()
                    poller.start()
                    producer.join()
                    changes = list(changes_box)
                    expected = writes_before + len(changes)

                    def acked(n: float = expected, port: int = prop_port) -> bool:
                        return crm_writes_ok(port) >= n

                    vis = read_visible(client, changes, acked, timeout=600)
                    poller.stop.set()
                    poller.join(10)
                    lat = [vis[c.number] - c.committed for c in changes if c.number in vis]
                    obs = [poller.seen[c.number] - c.committed for c in changes if c.number in poller.seen]
                    round_out = {
                        "round": r + 1,
                        "changes": len(changes),
                        "rate_achieved": round(len(changes) / produced_s[0], 1),
                        "visible": len(vis),
                        **summary(lat),
                        "observed_sample": summary(obs),
                        "load_avg_before": load_before,
                        "load_avg_after": load(),
                    }
                    print("round", round_out, flush=True)
                    rounds.append(round_out)
                    all_changes.extend(changes)
                    visible_at.update(vis)
                    observed_at.update(poller.seen)
                out["rounds"] = rounds
                assert ingest.alive() and propagate.alive()
                # mean seconds per batch of each step of both flows during the paced rounds
                out["steps_paced"] = step_times(before, {**scrape(ingest_port), **scrape(prop_port)})
        # --- stages, from the tables and the golden topic (flows stopped: everything is written) ---
        out["stages"] = stages(settings, delta, topic, all_changes, visible_at, customer_ids)
    finally:
        client.close()
        if own_api is not None:
            own_api.stop()
        cleanup(settings, customer_ids, gids)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    rounds = out["rounds"]
    out.update(
        scope="source database commit (shop UPDATE) -> value visible through the CRM API "
        "(ingest + propagation flows as processes); changes_per_s: bulk creates, source commit -> "
        "last CRM acknowledgement; p50/p99: medians over rounds",
        crm_api=args.crm_api,
        customers=args.customers,
        changes_per_s=out["bulk"]["changes_per_s"],
        rate=args.rate,
        rate_achieved=statistics.median(r["rate_achieved"] for r in rounds),
        p50_s=statistics.median(r["p50_s"] for r in rounds),
        p99_s=statistics.median(r["p99_s"] for r in rounds),
        max_s=max(r["max_s"] for r in rounds),
        changes=sum(r["changes"] for r in rounds),
        visible=sum(r["visible"] for r in rounds),
        goal_p99_s=3.0,
        goal_met=bool(statistics.median(r["p99_s"] for r in rounds) < 3.0),
        load_avg_end=load(),
        command=command,
    )
    return out


def stages(
    settings: Settings,
    delta: Path,
    topic: str,
    changes: list[Change],
    visible_at: dict[int, float],
    customer_ids: list[int],
) -> dict[str, Any]:
    """Cumulative latency from the source commit to each stage (see the module docstring)."""
    emitted, version = golden_emitted(settings, topic)
    acks = {(g, int(v)): at.timestamp() for g, v, at in sync_acks(delta).iter_rows()}
    golden = [
        emitted[(c.golden_id, c.number)] / 1e6 - c.committed
        for c in changes
        if (c.golden_id, c.number) in emitted
    ]
    ack = [
        acks[(c.golden_id, version[(c.golden_id, c.number)])] - c.committed
        for c in changes
        if (c.golden_id, c.number) in version and (c.golden_id, version[(c.golden_id, c.number)]) in acks
    ]
    visible = [visible_at[c.number] - c.committed for c in changes if c.number in visible_at]
    # silver keeps the latest version of each record: the last round's change
    keys = {str(c) for c in customer_ids}
    last: dict[str, Change] = {str(c.customer_id): c for c in changes}
    silver = read_current(silver_path(delta, "customer")).filter(
        (pl.col("source_system") == "shop") & (pl.col("source_key").is_in(list(keys)))
    )
    # Kafka: the Connect producer's record timestamp of the change silver holds, from bronze
    bronze = (
        pl.read_delta(
            str(bronze_path(delta, "shop", "public", "customers")),
            columns=["partition", "offset", "kafka_ts"],
        )
        if (bronze_path(delta, "shop", "public", "customers") / "_delta_log").exists()
        else None
    )
    kafka_ts = {(p, o): ts for p, o, ts in bronze.iter_rows() if ts is not None} if bronze is not None else {}
    to_silver, source_ts, to_kafka = [], [], []
    for key, applied, ts, part, off in silver.select(
        "source_key", "applied_at", "source_ts", "partition", "offset"
    ).iter_rows():
        mine = last.get(key)
        if mine is None:
            continue
        to_silver.append(applied.timestamp() - mine.committed)
        if ts is not None:
            source_ts.append(ts.timestamp() - mine.committed)
        if (part, off) in kafka_ts:
            to_kafka.append(kafka_ts[(part, off)].timestamp() - mine.committed)
    return {
        "source_ts": summary(source_ts),
        "kafka": summary(to_kafka),
        "silver": summary(to_silver),
        "golden": summary(golden),
        "ack": summary(ack),
        "visible": summary(visible),
        "note": "seconds from the source commit returning to the client; source_ts is Debezium's "
        "source.ts_ms (the commit in the database's clock, ms); kafka: the record's timestamp as Kafka"
        " Connect produced it (read from bronze); kafka and silver: last round only",
    }


#: Histograms of the flows' own steps (name -> the label that tells the steps apart).
STEP_HISTOGRAMS = {
    "goldstream_stage_batch_seconds": "stage",
    "goldstream_resolve_batch_seconds": "entity",
    "goldstream_delta_commit_seconds": "layer",
    "goldstream_sync_latency_seconds": "target",
}


def scrape(metrics_port: int) -> dict[str, tuple[float, float]]:
    """(sum, count) of every step histogram a flow's metrics endpoint shows."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    out: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(text):
        label = STEP_HISTOGRAMS.get(family.name)
        if label is None:
            continue
        for sample in family.samples:
            name = f"{family.name.removeprefix('goldstream_')}.{sample.labels.get(label, '')}"
            total, count = out.get(name, (0.0, 0.0))
            if sample.name.endswith("_sum"):
                out[name] = (sample.value, count)
            elif sample.name.endswith("_count"):
                out[name] = (total, sample.value)
    return out


def step_times(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, dict[str, float]]:
    """Batches and mean seconds per batch of each step between two scrapes (the paced rounds)."""
    out = {}
    for name, (total, count) in sorted(after.items()):
        total0, count0 = before.get(name, (0.0, 0.0))
        if count > count0:
            mean = (total - total0) / (count - count0)
            out[name] = {"batches": int(count - count0), "mean_s": round(mean, 4)}
    return out


def cleanup(settings: Settings, customer_ids: list[int], gids: list[str]) -> None:
    """Remove the bench's shop customers and the CRM accounts it created (the flows are stopped)."""
    if gids:
        with psycopg.connect(admin_dsn(settings, "crm")) as conn:
            conn.execute("DELETE FROM public.accounts WHERE external_id = ANY(%s)", (sorted(set(gids)),))
    if customer_ids:
        with psycopg.connect(admin_dsn(settings, "shop")) as conn:
            conn.execute("DELETE FROM public.customers WHERE customer_id = ANY(%s)", (customer_ids,))
