"""Rendering the local stack's config files from infra/ templates (no services)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cdc.stack import connect, kafka, postgres, proc
from cdc.stack.paths import StackPaths, infra_dir, stack_paths
from core.errors import ConfigError
from core.settings import ConnectSettings, KafkaSettings, PostgresSettings, Settings

REPO_INFRA = Path(__file__).resolve().parents[4] / "infra"


def parse_properties(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        assert key not in out, f"duplicate key {key}"
        out[key.strip()] = value.strip()
    return out


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        postgres=PostgresSettings(port=55432),
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:29092", controller_port=29093, topic_partitions=3),
        connect=ConnectSettings(url="http://127.0.0.1:28083"),
    )


@pytest.fixture
def paths(settings: Settings) -> StackPaths:
    return stack_paths(settings, infra=REPO_INFRA)


def test_infra_dir_is_the_checkout() -> None:
    assert (infra_dir() / "kafka" / "pom.xml").is_file()


def test_server_properties(settings: Settings, paths: StackPaths) -> None:
    text = kafka.render_server_properties(settings, paths)
    assert "${" not in text
    props = parse_properties(text)
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == props["listeners"]
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(settings.state_dir / "kafka" / "data")
    assert props["auto.create.topics.enable"] == "true"
    assert props["num.partitions"] == "3"
    assert props["offsets.topic.num.partitions"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
        "default.replication.factor",
    ):
        assert props[key] == "1", key


def test_worker_properties(settings: Settings, paths: StackPaths) -> None:
    text = connect.render_worker_properties(settings, paths)
    assert "${" not in text
    props = parse_properties(text)
    assert props["bootstrap.servers"] == "127.0.0.1:29092"
    assert props["group.id"] == "goldstream-connect"
    assert props["listeners"] == "http://127.0.0.1:28083"
    assert props["plugin.path"] == str(settings.state_dir / "connect-plugins")
    assert props["config.providers"] == "env"
    assert (
        props["config.providers.env.class"] == "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
    )
    assert props["key.converter.schemas.enable"] == props["value.converter.schemas.enable"] == "false"
    assert props["offset.flush.interval.ms"] == "1000"
    for topic in ("config", "offset", "status"):
        assert props[f"{topic}.storage.replication.factor"] == "1"
    assert props["offset.storage.partitions"] == props["status.storage.partitions"] == "1"
    assert props["scheduled.rebalance.max.delay.ms"] == "0"


def test_postgres_conf(settings: Settings, paths: StackPaths) -> None:
    text = postgres.render_conf(settings, paths)
    assert "${" not in text
    # Values with dots must be quoted or PostgreSQL refuses to start.
    assert "listen_addresses = '127.0.0.1'" in text
    assert "port = 55432" in text
    assert f"unix_socket_directories = '{settings.state_dir / 'pg' / 'run'}'" in text
    assert "wal_level = logical" in text
    assert "max_replication_slots = 20" in text
    assert "max_wal_senders = 20" in text


def test_pg_hba_needs_passwords_over_tcp() -> None:
    rules = [line.split() for line in (REPO_INFRA / "postgres" / "pg_hba.conf").read_text().splitlines()]
    rules = [r for r in rules if r and not r[0].startswith("#")]
    assert ["local", "all", "all", "trust"] in rules
    assert ["host", "replication", "all", "127.0.0.1/32", "scram-sha-256"] in rules
    assert all(r[-1] == "scram-sha-256" for r in rules if r[0] == "host")


def test_goldstream_sql_is_plain_sql() -> None:
    # Shared by psycopg (local stack) and psql (Docker): no psql meta-commands or variables.
    text = (REPO_INFRA / "postgres" / "goldstream.sql").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    assert not re.search(r"^\s*\\", code, re.MULTILINE)  # no \gexec, \set, \getenv ...
    assert ":'" not in code and ':"' not in code  # no psql variables
    assert "goldstream_pub" in code


def test_bad_template_names_the_file(tmp_path: Path) -> None:
    template = tmp_path / "x.properties"
    template.write_text("a=${missing}\n")
    with pytest.raises(ConfigError, match=r"x\.properties: unknown placeholder \$\{missing\}"):
        proc.render_template(template)
    template.write_text("a=${env:X}\n")
    with pytest.raises(ConfigError, match=r"x\.properties"):
        proc.render_template(template)


def test_addresses() -> None:
    assert kafka.bootstrap_address(Settings(kafka=KafkaSettings(bootstrap_servers="h:1,h2:2"))) == ("h", 1)
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_servers"):
        kafka.bootstrap_address(Settings(kafka=KafkaSettings(bootstrap_servers="nohost")))
    assert connect.rest_address(Settings(connect=ConnectSettings(url="http://10.0.0.1:8083"))) == (
        "10.0.0.1",
        8083,
    )
    with pytest.raises(ConfigError, match=r"connect\.url"):
        connect.rest_address(Settings(connect=ConnectSettings(url="https://x")))


def test_cluster_id_shape() -> None:
    cid = kafka.new_cluster_id()
    assert len(cid) == 22 and "=" not in cid and "+" not in cid and "/" not in cid


def test_cluster_id_never_starts_with_a_dash() -> None:
    # b"\xfb..." encodes to "-..." in URL-safe base64: the storage tool would take it for an option
    draws = iter([b"\xfb" + bytes(15), b"\x00" + bytes(15)])
    assert kafka.new_cluster_id(lambda: next(draws)) == "A" * 22


def test_socket_path_limit(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    with pytest.raises(ConfigError, match="107 bytes"):
        stack_paths(Settings(state_dir=deep), infra=REPO_INFRA)


def test_java_command_shape(paths: StackPaths) -> None:
    argv = kafka.java_command(paths, ["-Xmx1g"], kafka.BROKER_MAIN, "x.properties", logs_dir=Path("/l"))
    assert argv[1] == "-Xmx1g"
    assert f"-Dlog4j2.configurationFile={REPO_INFRA / 'kafka' / 'log4j2.properties'}" in argv
    assert argv[argv.index("-cp") + 1] == f"{paths.kafka_libs}/*"
    assert argv[-2:] == [kafka.BROKER_MAIN, "x.properties"]
