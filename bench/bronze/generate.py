"""Produce the benchmark's change events with real Debezium.

A ``bench`` database holds a realistic ``customers`` table (20 columns: names in several scripts,
email, phone, address, country, status, numeric balance, dates, jsonb, notes). A temporary
connector (unique name per generation, slot ``bench_bronze``, ``topic.prefix`` ``bench``) captures
it into ``bench.public.customers`` (created up front with 2 partitions). The changes are written as
large ``INSERT ... SELECT generate_series`` / ranged ``UPDATE`` / ``DELETE`` statements in chunks of
about 80 % inserts, 15 % updates and 5 % deletes, so PostgreSQL is never the bottleneck; Debezium
adds a tombstone after each delete.

Generating a million events through Debezium takes minutes, so a marker file records the generator
config and the topic's watermarks; the next run reuses the topic when both still match.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition
from psycopg import sql

from cdc.connect_client import ConnectClient
from cdc.connectors import ConnectorFile, load_connector
from cdc.pg import admin_dsn
from cdc.readiness import wait_running
from cdc.topics import admin, ensure_topics
from core.settings import Settings

#: Bump when the table, the data or the connector settings change: it invalidates stored topics.
GENERATOR_VERSION = 1
DATABASE = "bench"
SYSTEM = "bench"  # topic.prefix == system, as goldstream requires
TABLE = "public.customers"
TOPIC = f"{SYSTEM}.{TABLE}"
SLOT = "bench_bronze"
PUBLICATION = "bench_pub"
PARTITIONS = 2
CONNECTOR_PREFIX = "bench-bronze-"
DEFAULT_CHUNK = 50_000
#: The production connector file whose converter/decimal/time settings the bench connector copies.
TEMPLATE_CONNECTOR = "crm.yaml"

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    """How many changes of each kind a generation writes (tombstones follow the deletes)."""

    events: int
    inserts: int
    updates: int
    deletes: int
    chunk: int

    @property
    def messages(self) -> int:
        """Kafka messages Debezium writes: every change plus one tombstone per delete."""
        return self.events + self.deletes


@dataclass(frozen=True)
class Chunk:
    """One step of the generation: id ranges (inclusive) to insert, delete and update."""

    insert: tuple[int, int]
    delete: tuple[int, int]
    update: tuple[int, int]
    round: int


def chunks(events: int, chunk: int = DEFAULT_CHUNK) -> list[Chunk]:
    """Split ``events`` changes into chunks of ~80 % inserts, 15 % updates, 5 % deletes.

    Inserts take fresh ids; deletes remove the oldest live ids; updates hit the oldest live ids after
    the deletes, so every row is updated a few times before it is deleted and every statement
    touches exactly the rows it counts.
    """
    if events < 1 or chunk < 1:
        raise ValueError("events and chunk must be >= 1")
    out: list[Chunk] = []
    inserted = deleted = 0
    left = events
    while left:
        n = min(chunk, left)
        d, u = n * 5 // 100, n * 15 // 100
        i = n - u - d
        ins = (inserted + 1, inserted + i)
        inserted += i
        dele = (deleted + 1, deleted + d)
        deleted += d
        upd = (deleted + 1, deleted + u)
        if upd[1] > inserted:  # cannot happen with the 80/15/5 mix, kept as a guard
            raise ValueError(f"chunk plan would update ids that do not exist: {upd} > {inserted}")
        out.append(Chunk(ins, dele, upd, len(out) + 1))
        left -= n
    return out


def plan(events: int, chunk: int = DEFAULT_CHUNK) -> Plan:
    """Totals of :func:`chunks`."""
    parts = chunks(events, chunk)

    def size(r: tuple[int, int]) -> int:
        return r[1] - r[0] + 1

    return Plan(
        events=events,
        inserts=sum(size(c.insert) for c in parts),
        updates=sum(size(c.update) for c in parts),
        deletes=sum(size(c.delete) for c in parts),
        chunk=chunk,
    )


# --------------------------------------------------------------------------------------------------
# Data: deterministic functions of the id, so the same config always writes the same rows.

FIRST_NAMES: list[tuple[str, str]] = [
    ("Anna", "anna"),
    ("Jürgen", "juergen"),
    ("Zoë", "zoe"),
    ("José", "jose"),
    ("Søren", "soren"),
    ("Łukasz", "lukasz"),
    ("Chloé", "chloe"),
    ("Ólafur", "olafur"),
    ("Mårten", "marten"),
    ("François", "francois"),
    ("Inês", "ines"),
    ("Ελένη", "eleni"),
    ("Κωνσταντίνος", "konstantinos"),
    ("Дмитрий", "dmitriy"),
    ("Юлия", "yuliya"),
    ("伟", "wei"),
    ("陽翔", "haruto"),
    ("Siobhán", "siobhan"),
    ("Mohammed", "mohammed"),
    ("Aisha", "aisha"),
    ("Priya", "priya"),
    ("Liam", "liam"),
    ("Emma", "emma"),
    ("Noah", "noah"),
    ("Olivia", "olivia"),
    ("Mateo", "mateo"),
    ("Camille", "camille"),
    ("Björn", "bjorn"),
    ("Niamh", "niamh"),
    ("Thảo", "thao"),
    ("Ayşe", "ayse"),
    ("Grace", "grace"),
]
LAST_NAMES: list[tuple[str, str]] = [
    ("Müller", "mueller"),
    ("García", "garcia"),
    ("Łukasiewicz", "lukasiewicz"),
    ("Ōtani", "otani"),
    ("Smith", "smith"),
    ("Johnson", "johnson"),
    ("Dubois", "dubois"),
    ("Rossi", "rossi"),
    ("Nowak", "nowak"),
    ("Papadopoulos", "papadopoulos"),
    ("Иванов", "ivanov"),
    ("Schmidt", "schmidt"),
    ("O'Brien", "obrien"),
    ("van der Berg", "vanderberg"),
    ("Fernández", "fernandez"),
    ("Kowalski", "kowalski"),
    ("Jensen", "jensen"),
    ("Nguyễn", "nguyen"),
    ("Kim", "kim"),
    ("Silva", "silva"),
    ("Öztürk", "ozturk"),
    ("Dvořák", "dvorak"),
    ("Ní Bhriain", "nibhriain"),
    ("Håkansson", "hakansson"),
    ("王", "wang"),
    ("山田", "yamada"),
    ("Παπαδάκη", "papadaki"),
]
CITIES: list[tuple[str, str, str]] = [  # city, ISO country, phone country code
    ("München", "DE", "49"),
    ("Zürich", "CH", "41"),
    ("Kraków", "PL", "48"),
    ("São Paulo", "BR", "55"),
    ("Reykjavík", "IS", "354"),
    ("Αθήνα", "GR", "30"),
    ("Москва", "RU", "7"),
    ("東京", "JP", "81"),
    ("Paris", "FR", "33"),
    ("London", "GB", "44"),
    ("New York", "US", "1"),
    ("Toronto", "CA", "1"),
    ("Madrid", "ES", "34"),
    ("Göteborg", "SE", "46"),
    ("København", "DK", "45"),
    ("Dublin", "IE", "353"),
    ("Lisboa", "PT", "351"),
    ("Milano", "IT", "39"),
    ("İstanbul", "TR", "90"),
    ("Praha", "CZ", "420"),
    ("Hà Nội", "VN", "84"),
    ("서울", "KR", "82"),
    ("Mumbai", "IN", "91"),
    ("Ciudad de México", "MX", "52"),
]
STREETS = [
    "Hauptstraße",
    "Rue de la Paix",
    "Main Street",
    "ul. Floriańska",
    "Calle Mayor",
    "Via Roma",
    "Øster Allé",
    "High Street",
    "Avenida Paulista",
    "Laugavegur",
    "Ermou",
    "Tverskaya ulitsa",
    "Bahnhofstrasse",
    "Kungsgatan",
    "Rua Augusta",
    "Baker Street",
    "Elm Avenue",
    "Church Road",
]
DOMAINS = ["example.com", "mail.example.org", "post.example.net", "kunde.example.de", "corp.example.co.uk"]
STATUSES = ["active", "active", "active", "active", "prospect", "suspended", "churned", "vip"]
LANGUAGES = ["en", "de", "fr", "es", "pl", "el", "ru", "ja", "pt", "it", "sv", "tr"]
NOTES = [
    "Prefers contact by email; invoices go to the finance team.",
    "Called support twice about delivery times. Very polite — follow up in Q3.",
    "Kunde wünscht Rechnungen auf Deutsch, Zahlungsziel 30 Tage.",
    "Client fidèle depuis 2016, remise de 5 % accordée sur les renouvellements.",
    "VIP: escalate any ticket to the account manager within 4 hours.",
    "Migrated from the legacy CRM; duplicate record merged by hand (see ticket #4411).",
    "Requested GDPR export in 2023; marketing consent withdrawn and later re-granted.",
    "Pays by SEPA direct debit. Address verified against the commercial register.",
]

COLUMNS = (
    "id, customer_ref, first_name, last_name, email, phone, street, city, postal_code, country, "
    "status, balance, credit_limit, birth_date, signup_date, created_at, updated_at, marketing_opt_in, "
    "preferences, notes"
)

DDL = """
CREATE TABLE public.customers (
  id bigint PRIMARY KEY,
  customer_ref text NOT NULL,
  first_name text NOT NULL,
  last_name text NOT NULL,
  email text NOT NULL,
  phone text,
  street text,
  city text,
  postal_code text,
  country char(2) NOT NULL,
  status text NOT NULL,
  balance numeric(14,2) NOT NULL,
  credit_limit numeric(12,2),
  birth_date date,
  signup_date date NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  marketing_opt_in boolean NOT NULL,
  preferences jsonb,
  notes text
)
"""


def _arr(values: list[str]) -> str:
    return "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]::text[]"


def insert_sql(lo: int, hi: int) -> str:
    """``INSERT ... SELECT`` of the customers with ids ``lo..hi``."""
    nf, nl, nc = len(FIRST_NAMES), len(LAST_NAMES), len(CITIES)
    phone = "lpad(((g * 7919 + 151234567) % 1000000000)::text, 9, '0')"
    return f"""
INSERT INTO public.customers ({COLUMNS})
SELECT g,
  'CUS-' || lpad(g::text, 9, '0'),
  ({_arr([f for f, _ in FIRST_NAMES])})[fi],
  ({_arr([n for n, _ in LAST_NAMES])})[li],
  ({_arr([a for _, a in FIRST_NAMES])})[fi] || '.' || ({_arr([a for _, a in LAST_NAMES])})[li]
    || (g % 997)::text || '@' || ({_arr(DOMAINS)})[1 + (g % {len(DOMAINS)})::int],
  '+' || ({_arr([c[2] for c in CITIES])})[ci] || ' ' || {phone},
  ((g % 250) + 1)::text || ' ' || ({_arr(STREETS)})[1 + ((g / 3) % {len(STREETS)})::int],
  ({_arr([c[0] for c in CITIES])})[ci],
  lpad(((g * 31) % 99999)::text, 5, '0'),
  ({_arr([c[1] for c in CITIES])})[ci],
  ({_arr(STATUSES)})[1 + (g % {len(STATUSES)})::int],
  round(((g * 104729) % 5000000) / 100.0 - 10000, 2),
  ((g % 40) * 500)::numeric(12,2),
  date '1940-01-01' + ((g * 37) % 25000)::int,
  date '2015-01-01' + (g % 3650)::int,
  timestamptz '2015-01-01 00:00:00+00' + make_interval(days => (g % 3650)::int, secs => (g % 86400)::int),
  now(),
  g % 3 = 0,
  jsonb_build_object(
    'language', ({_arr(LANGUAGES)})[1 + (g % {len(LANGUAGES)})::int],
    'newsletter', g % 2 = 0,
    'channels', CASE WHEN g % 5 = 0 THEN '["email","sms"]'::jsonb ELSE '["email"]'::jsonb END,
    'score', (g * 13) % 100),
  CASE WHEN g % 4 = 0 THEN NULL
       ELSE ({_arr(NOTES)})[1 + ((g / 7) % {len(NOTES)})::int] || ' (ref CUS-' || g || ')' END
FROM (
  SELECT g, 1 + (g % {nf})::int AS fi, 1 + ((g / 11) % {nl})::int AS li, 1 + ((g / 5) % {nc})::int AS ci
  FROM generate_series({lo}::bigint, {hi}::bigint) AS g
) AS s
"""


def update_sql(lo: int, hi: int, rnd: int) -> str:
    """A ranged ``UPDATE`` of ids ``lo..hi`` (status, balance, preferences, notes, updated_at)."""
    return f"""
UPDATE public.customers SET
  status = ({_arr(STATUSES)})[1 + ((id + {rnd}) % {len(STATUSES)})::int],
  balance = balance + round(((id * 31 + {rnd}) % 20000) / 100.0 - 100, 2),
  preferences = jsonb_set(preferences, '{{score}}', to_jsonb((id * 7 + {rnd}) % 100)),
  notes = ({_arr(NOTES)})[1 + ((id + {rnd}) % {len(NOTES)})::int] || ' (rev {rnd})',
  updated_at = now()
WHERE id BETWEEN {lo} AND {hi}
"""


def delete_sql(lo: int, hi: int) -> str:
    """A ranged ``DELETE``."""
    return f"DELETE FROM public.customers WHERE id BETWEEN {lo} AND {hi}"


# --------------------------------------------------------------------------------------------------
# Connector and marker


def connector_file(settings: Settings, name: str = f"{CONNECTOR_PREFIX}template") -> ConnectorFile:
    """The bench connector: the production template's settings, pointed at the bench database.

    It is a real :class:`ConnectorFile`, so the dataflow can be built with ``build_bronze_flow``.
    """
    template = load_connector(settings.config_dir / "connectors" / TEMPLATE_CONNECTOR)
    config: dict[str, Any] = template.config.model_dump(by_alias=True, exclude_none=True)
    for key in ("heartbeat.interval.ms", "heartbeat.action.query"):
        config.pop(key, None)  # no heartbeats: nothing but the table's changes on the bench topics
    config.update(
        {
            "database.dbname": DATABASE,
            "topic.prefix": SYSTEM,
            "table.include.list": TABLE,
            "slot.name": SLOT,
            "publication.name": PUBLICATION,
            "publication.autocreate.mode": "disabled",
            "snapshot.mode": "initial",  # the table is empty when the connector starts
        }
    )
    return ConnectorFile.model_validate(
        {"name": name, "system": SYSTEM, "config": config, "topics": {"partitions": PARTITIONS}}
    )


def config_hash(settings: Settings, events: int, chunk: int) -> str:
    """Identifies what a generation writes: generator version, data, plan and connector settings."""
    conn = connector_file(settings).rest_config()
    doc = {
        "version": GENERATOR_VERSION,
        "events": events,
        "chunk": chunk,
        "ddl": DDL,
        "insert": insert_sql(1, 2),
        "update": update_sql(1, 2, 1),
        "connector": {k: v for k, v in sorted(conn.items()) if k != "database.password"},
        "partitions": PARTITIONS,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TopicData:
    """What the bench topic holds: the offsets to read and the expected counts."""

    topic: str
    config_hash: str
    events: int
    messages: int
    inserts: int
    updates: int
    deletes: int
    tombstones: int
    low: dict[int, int]
    high: dict[int, int]
    generated_at: str
    generation_s: float
    value_bytes: int = 0
    """Total size of the message values (for MB/s figures), measured once after generation."""

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly dict (partition keys as strings)."""
        d = asdict(self)
        d["low"] = {str(k): v for k, v in self.low.items()}
        d["high"] = {str(k): v for k, v in self.high.items()}
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> TopicData:
        """Inverse of :meth:`to_json`."""
        d = dict(d)
        d["low"] = {int(k): int(v) for k, v in d["low"].items()}
        d["high"] = {int(k): int(v) for k, v in d["high"].items()}
        return TopicData(**d)


def marker_path(settings: Settings) -> Path:
    """Where the marker of the generated topic lives."""
    return settings.state_dir / "bench" / "bronze-topic.json"


def watermarks(bootstrap: str, topic: str) -> dict[int, tuple[int, int]] | None:
    """``{partition: (low, high)}`` of ``topic``, or None if it does not exist."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-bronze-probe"})
    try:
        md = consumer.list_topics(topic, timeout=10)
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None:
            return None
        out: dict[int, tuple[int, int]] = {}
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out[p] = (int(low), int(high))
        return out
    finally:
        consumer.close()


def reusable(settings: Settings, events: int, chunk: int) -> TopicData | None:
    """The marker's topic data if the topic still holds exactly what that generation wrote."""
    path = marker_path(settings)
    if not path.is_file():
        return None
    try:
        data = TopicData.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError):
        return None
    if data.config_hash != config_hash(settings, events, chunk):
        return None
    marks = watermarks(settings.kafka.bootstrap_servers, data.topic)
    if marks is None:
        return None
    now = {p: lh for p, lh in marks.items()}
    want = {p: (data.low[p], data.high[p]) for p in data.low}
    return data if now == want else None


# --------------------------------------------------------------------------------------------------
# Generation


def _drop_topic(bootstrap: str, topic: str, echo: Echo) -> None:
    client = admin(bootstrap)
    if topic not in client.list_topics(timeout=10).topics:
        return
    echo(f"generate: deleting topic {topic} (it holds another generation)")
    for fut in client.delete_topics([topic], operation_timeout=30).values():
        fut.result()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if topic not in client.list_topics(timeout=10).topics:
            return
        time.sleep(0.5)
    raise RuntimeError(f"topic {topic} still exists 60 s after its deletion")


def _create_topic(bootstrap: str, topic: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            ensure_topics(bootstrap, [topic], partitions=PARTITIONS)
            return
        except Exception:  # a just-deleted topic can be "marked for deletion" for a few seconds
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _ensure_database(settings: Settings) -> None:
    with psycopg.connect(admin_dsn(settings, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def _drop_slot(settings: Settings, echo: Echo, *, timeout_s: float = 60.0) -> None:
    """Drop the bench replication slot once its walsender is gone (a leftover slot pins WAL)."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(admin_dsn(settings, DATABASE), autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = %s", (SLOT,)
            ).fetchone()
            if row is None:
                return
            active, pid = row
            if not active:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT,))
                echo(f"generate: dropped replication slot {SLOT}")
                return
            if time.monotonic() > deadline:
                # The connector is deleted; a walsender still holding the slot is a leftover.
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            time.sleep(0.5)


def _drop_leftover_connectors(client: ConnectClient, echo: Echo) -> None:
    for name in client.list():
        if name.startswith(CONNECTOR_PREFIX):
            echo(f"generate: deleting leftover connector {name}")
            client.delete(name)


def _setup_table(settings: Settings) -> None:
    with psycopg.connect(admin_dsn(settings, DATABASE), autocommit=True) as conn:
        conn.execute(f"DROP PUBLICATION IF EXISTS {PUBLICATION}")
        conn.execute("DROP TABLE IF EXISTS public.customers")
        conn.execute(DDL)
        conn.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLE public.customers")
        conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA public TO {u}; GRANT SELECT ON public.customers TO {u}").format(
                u=sql.Identifier(settings.postgres.cdc_user)
            )
        )


def _teardown_table(settings: Settings) -> None:
    with psycopg.connect(admin_dsn(settings, DATABASE), autocommit=True) as conn:
        conn.execute(f"DROP PUBLICATION IF EXISTS {PUBLICATION}")
        conn.execute("DROP TABLE IF EXISTS public.customers")


def _wait_slot_streaming(settings: Settings, timeout_s: float = 120.0) -> None:
    """Wait until the connector's walsender holds the slot (snapshot done, streaming started)."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(admin_dsn(settings, DATABASE), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (SLOT,)
            ).fetchone()
            if row is not None and row[0]:
                return
            time.sleep(0.5)
    raise RuntimeError(f"replication slot {SLOT} not streaming after {timeout_s:.0f} s")


def _total(marks: dict[int, tuple[int, int]] | None) -> int:
    return sum(h for _, h in (marks or {}).values())


def value_bytes(bootstrap: str, low: dict[int, int], high: dict[int, int], topic: str = TOPIC) -> int:
    """Sum of the value sizes between ``low`` and ``high`` (one pass over the topic)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-bronze-size", "enable.auto.commit": False}
    )
    todo = {p: h for p, h in high.items() if h > low[p]}
    consumer.assign([TopicPartition(topic, p, low[p]) for p in todo])
    total = 0
    try:
        while todo:
            for msg in consumer.consume(10_000, 1.0):
                if msg.error() is not None:
                    continue
                value = msg.value()
                total += len(value) if value is not None else 0
                p, off = msg.partition(), msg.offset()
                if p in todo and off is not None and off >= todo[p] - 1:
                    del todo[p]
    finally:
        consumer.close()
    return total


def generate(settings: Settings, events: int, chunk: int, echo: Echo) -> TopicData:
    """Write ``events`` changes through a temporary Debezium connector; returns the topic's data.

    Always removes the connector, the replication slot, the publication and the table afterwards.
    """
    bootstrap = settings.kafka.bootstrap_servers
    p = plan(events, chunk)
    started = time.monotonic()
    name = f"{CONNECTOR_PREFIX}{int(time.time())}"
    conn_file = connector_file(settings, name)
    marker = marker_path(settings)
    marker.unlink(missing_ok=True)
    with ConnectClient(settings.connect.url) as client:
        _drop_leftover_connectors(client, echo)
        _ensure_database(settings)
        _drop_slot(settings, echo)
        _drop_topic(bootstrap, TOPIC, echo)
        _create_topic(bootstrap, TOPIC)
        before = watermarks(bootstrap, TOPIC)
        if before is None:
            raise RuntimeError(f"topic {TOPIC} missing right after its creation")
        _setup_table(settings)
        echo(
            f"generate: {p.events:,} changes ({p.inserts:,} inserts, {p.updates:,} updates, "
            f"{p.deletes:,} deletes + {p.deletes:,} tombstones = {p.messages:,} messages) "
            f"via connector {name}"
        )
        try:
            client.put_config(name, conn_file.rest_config())
            wait_running(client, name)
            _wait_slot_streaming(settings)
            sql_started = time.monotonic()
            with psycopg.connect(admin_dsn(settings, DATABASE), autocommit=True) as conn:
                for c in chunks(events, chunk):
                    if c.insert[1] >= c.insert[0]:
                        conn.execute(insert_sql(*c.insert))
                    if c.delete[1] >= c.delete[0]:
                        conn.execute(delete_sql(*c.delete))
                    if c.update[1] >= c.update[0]:
                        conn.execute(update_sql(*c.update, c.round))
            sql_s = time.monotonic() - sql_started
            echo(f"generate: PostgreSQL wrote the changes in {sql_s:.1f} s; waiting for Debezium")
            want = _total(before) + p.messages
            last, last_change, last_print = _total(before), time.monotonic(), 0.0
            while True:
                now_total = _total(watermarks(bootstrap, TOPIC))
                now = time.monotonic()
                if now_total != last:
                    last, last_change = now_total, now
                if now_total >= want:
                    break
                if now - last_change > 180:
                    raise RuntimeError(
                        f"Debezium stalled: {now_total - _total(before):,}/{p.messages:,} messages "
                        f"on {TOPIC} after 180 s without progress (see .state/connect/connect.log)"
                    )
                if now - last_print >= 5:
                    done = now_total - _total(before)
                    echo(
                        f"generate: {done:,}/{p.messages:,} messages on {TOPIC} "
                        f"({done / max(now - sql_started, 1e-9):,.0f} msg/s since the first insert)"
                    )
                    last_print = now
                time.sleep(0.5)
            if last > want:
                raise RuntimeError(f"{TOPIC} holds {last - want} more messages than generated")
        finally:
            client.delete(name)
            _drop_slot(settings, echo)
            _teardown_table(settings)
    after = watermarks(bootstrap, TOPIC)
    assert after is not None
    low = {part: lh[0] for part, lh in before.items()}
    high = {part: lh[1] for part, lh in after.items()}
    data = TopicData(
        topic=TOPIC,
        config_hash=config_hash(settings, events, chunk),
        events=p.events,
        messages=p.messages,
        inserts=p.inserts,
        updates=p.updates,
        deletes=p.deletes,
        tombstones=p.deletes,
        low=low,
        high=high,
        generated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        generation_s=round(time.monotonic() - started, 1),
    )
    data = TopicData(**{**asdict(data), "value_bytes": value_bytes(bootstrap, low, high)})
    echo(
        f"generate: done in {data.generation_s:.0f} s: {data.messages:,} messages, "
        f"{data.value_bytes / data.messages:,.0f} B/value on average"
    )
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(data.to_json(), indent=1) + "\n", encoding="utf-8")
    return data


def ensure_topic(
    settings: Settings, events: int, chunk: int, echo: Echo, *, regenerate: bool = False
) -> tuple[TopicData, bool]:
    """Reuse the generated topic when it matches, else generate; returns ``(data, reused)``."""
    if not regenerate:
        data = reusable(settings, events, chunk)
        if data is not None:
            echo(
                f"generate: reusing {data.topic} ({data.messages:,} messages from {data.generated_at}, "
                f"config {data.config_hash})"
            )
            return data, True
    return generate(settings, events, chunk, echo), False


def cleanup(settings: Settings, echo: Echo) -> None:
    """Remove everything the generator leaves behind: connector, slot, table, topic, marker."""
    with ConnectClient(settings.connect.url) as client:
        _drop_leftover_connectors(client, echo)
    try:
        _drop_slot(settings, echo)
        _teardown_table(settings)
    except psycopg.OperationalError:
        pass  # no bench database
    try:
        _drop_topic(settings.kafka.bootstrap_servers, TOPIC, echo)
    except KafkaException as exc:
        echo(f"cleanup: could not delete {TOPIC}: {exc}")
    marker_path(settings).unlink(missing_ok=True)
