"""Connector readiness: tasks RUNNING, then a sentinel row travelling PostgreSQL -> Debezium -> Kafka.

A connector reported RUNNING may still be snapshotting or stuck on its replication slot; only a
row that actually arrives on its topic proves the whole path works.
"""

from __future__ import annotations

import time
import uuid

import psycopg
from confluent_kafka import Consumer, TopicPartition

from cdc.connect_client import ConnectClient, connector_state, task_traces
from cdc.connectors import ConnectorFile
from cdc.pg import admin_dsn
from core.errors import TerminalError, TransientError
from core.settings import Settings


def wait_running(client: ConnectClient, name: str, *, timeout_s: float = 120.0) -> None:
    """Wait until the connector and all its tasks are RUNNING; a FAILED one raises with Connect's trace."""
    end = time.monotonic() + timeout_s
    state, tasks = "MISSING", list[str]()
    while time.monotonic() < end:
        try:
            status = client.status(name)
        except TransientError:
            time.sleep(1)
            continue
        state, tasks = connector_state(status)
        if state == "FAILED" or "FAILED" in tasks:
            traces = "\n".join(task_traces(status)) or "(no trace)"
            raise TerminalError(f"connector {name} FAILED:\n{traces}")
        if state == "RUNNING" and tasks and all(t == "RUNNING" for t in tasks):
            return
        time.sleep(0.5)
    raise TerminalError(
        f"connector {name} not RUNNING after {timeout_s:.0f}s (connector={state}, tasks={tasks})"
    )


def sentinel_roundtrip(settings: Settings, connector: ConnectorFile, *, timeout_s: float = 180.0) -> float:
    """Insert a sentinel row and wait for it on the connector's topic; returns the seconds it took."""
    topic = connector.sentinel_topic()
    if topic is None:
        raise TerminalError(f"connector {connector.name} does not capture goldstream.sentinel")
    token = uuid.uuid4().hex
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": "goldstream-readiness",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        # Pin the current end of every partition before inserting, so the new row cannot be missed
        # and old sentinels are not re-read.
        md = consumer.list_topics(topic, timeout=10)
        parts = list(md.topics[topic].partitions) if topic in md.topics else []
        if not parts or md.topics[topic].error is not None:
            raise TerminalError(f"topic {topic} does not exist; apply the connector first")
        assignment = []
        for p in parts:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assignment.append(TopicPartition(topic, p, high))
        consumer.assign(assignment)
        started = time.monotonic()
        with psycopg.connect(admin_dsn(settings, connector.config.database_dbname), autocommit=True) as conn:
            conn.execute("INSERT INTO goldstream.sentinel (id) VALUES (%s)", (token,))
        while time.monotonic() - started < timeout_s:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            value = msg.value()
            if value is not None and token.encode() in value:
                return time.monotonic() - started
        raise TerminalError(
            f"connector {connector.name}: sentinel row not seen on {topic} within {timeout_s:.0f}s "
            "(is the initial snapshot still running? see the Connect log)"
        )
    finally:
        consumer.close()
