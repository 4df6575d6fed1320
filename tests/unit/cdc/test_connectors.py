from pathlib import Path

import pytest
import yaml

from cdc.connectors import load_connector, load_connectors, strimzi_resource
from core.errors import ConfigError

REPO_CONNECTORS = Path(__file__).resolve().parents[3] / "config" / "connectors"


def base() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((REPO_CONNECTORS / "crm.yaml").read_text())


def write(tmp_path: Path, doc: dict) -> Path:  # type: ignore[type-arg]
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_repo_connectors_are_valid() -> None:
    cs = load_connectors(REPO_CONNECTORS)
    assert {c.system for c in cs} == {"crm", "erp", "shop", "billing"}
    for c in cs:
        cfg = c.rest_config()
        assert cfg["plugin.name"] == "pgoutput"
        assert cfg["value.converter.schemas.enable"] == "false"
        assert cfg["database.password"] == "${env:GOLDSTREAM_DB_PASSWORD}"
        assert all(isinstance(v, str) for v in cfg.values())
        assert c.sentinel_topic() == f"{c.system}.goldstream.sentinel"
        assert all(not t.startswith(f"{c.system}.goldstream.") for t in c.table_topics())


def test_repo_connectors_capture_tables_that_exist_in_the_demo_schemas() -> None:
    root = REPO_CONNECTORS.parents[1] / "infra" / "demo"
    for c in load_connectors(REPO_CONNECTORS):
        sql = (root / c.system / "schema.sql").read_text().lower()
        for t in c.config.tables():
            if not t.startswith("goldstream."):
                assert f"create table if not exists {t.lower()} (" in sql, (c.system, t)


def test_misspelt_debezium_key_is_rejected_with_path(tmp_path: Path) -> None:
    doc = base()
    doc["config"]["snapshot.mod"] = "initial"
    with pytest.raises(ConfigError, match=r"c\.yaml: config\.snapshot\.mod: unknown key"):
        load_connector(write(tmp_path, doc))


def test_bad_enum_value_names_the_key(tmp_path: Path) -> None:
    doc = base()
    doc["config"]["snapshot.mode"] = "never"
    with pytest.raises(ConfigError, match=r"config\.snapshot\.mode: Input should be"):
        load_connector(write(tmp_path, doc))


def test_plain_text_password_is_refused(tmp_path: Path) -> None:
    doc = base()
    doc["config"]["database.password"] = "hunter2"
    with pytest.raises(ConfigError, match=r"config\.database\.password: .*environment reference"):
        load_connector(write(tmp_path, doc))


def test_prefix_must_match_system(tmp_path: Path) -> None:
    doc = base()
    doc["config"]["topic.prefix"] = "other"
    with pytest.raises(ConfigError, match="must equal system"):
        load_connector(write(tmp_path, doc))


def test_regex_table_list_is_refused(tmp_path: Path) -> None:
    doc = base()
    doc["config"]["table.include.list"] = "public.*"
    with pytest.raises(ConfigError, match=r"plain schema\.table names"):
        load_connector(write(tmp_path, doc))


def test_extra_config_passes_through_but_cannot_shadow(tmp_path: Path) -> None:
    doc = base()
    doc["extra_config"] = {"signal.data.collection": "goldstream.signals"}
    c = load_connector(write(tmp_path, doc))
    assert c.rest_config()["signal.data.collection"] == "goldstream.signals"
    doc["extra_config"] = {"slot.name": "x"}
    with pytest.raises(ConfigError, match="repeats modelled keys"):
        load_connector(write(tmp_path, doc))


def test_strimzi_rendering_matches_rest_config() -> None:
    c = load_connector(REPO_CONNECTORS / "crm.yaml")
    res = yaml.safe_load(strimzi_resource(c, cluster="my-connect", namespace="data"))
    assert res["kind"] == "KafkaConnector"
    assert res["metadata"] == {
        "name": c.name,
        "labels": {"strimzi.io/cluster": "my-connect"},
        "namespace": "data",
    }
    assert res["spec"]["class"] == "io.debezium.connector.postgresql.PostgresConnector"
    assert res["spec"]["tasksMax"] == 1
    rest = c.rest_config()
    assert res["spec"]["config"] == {
        k: v for k, v in rest.items() if k not in ("connector.class", "tasks.max")
    }
