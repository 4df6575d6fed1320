"""Debezium connector configs: ``config/connectors/*.yaml`` validated, rendered for Connect and Strimzi.

A file holds Debezium's own keys verbatim under ``config``. Known keys are typed (bad values are
rejected with the key path); unknown keys are rejected too, because a misspelt Debezium key is
otherwise silently ignored by Connect. Keys goldstream does not model go under ``extra_config``,
where they are passed through untouched. Secrets are never written in the file: values reference
the environment as ``${env:NAME}``, resolved by Connect's ``EnvVarConfigProvider`` inside the worker,
so the password is never sent over the REST API nor stored in Connect's config topic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.configfile import StrictModel, env_refs, load_yaml_model
from core.errors import ConfigError

POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
JSON_CONVERTER: Final = "org.apache.kafka.connect.json.JsonConverter"
#: Tables of our own (heartbeat, readiness sentinel) that the connectors capture but the dataflows skip.
INTERNAL_SCHEMA = "goldstream"
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*$")


class PostgresConnectorConfig(BaseModel):
    """The Debezium PostgreSQL connector keys goldstream understands, spelt as Debezium spells them."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)

    connector_class: Literal["io.debezium.connector.postgresql.PostgresConnector"] = Field(
        alias="connector.class"
    )
    tasks_max: Literal[1] = Field(1, alias="tasks.max")  # the PostgreSQL connector runs one task
    plugin_name: Literal["pgoutput", "decoderbufs"] = Field(alias="plugin.name")
    database_hostname: str = Field(alias="database.hostname")
    database_port: Annotated[int, Field(ge=1, le=65535)] = Field(alias="database.port")
    database_user: str = Field(alias="database.user")
    database_password: str = Field(alias="database.password")
    database_dbname: str = Field(alias="database.dbname")
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+$")] = Field(alias="topic.prefix")
    table_include_list: str = Field(alias="table.include.list")
    slot_name: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")] = Field(alias="slot.name")
    publication_name: str = Field("dbz_publication", alias="publication.name")
    publication_autocreate_mode: Literal["all_tables", "disabled", "filtered", "no_tables"] = Field(
        "disabled", alias="publication.autocreate.mode"
    )
    snapshot_mode: Literal[
        "initial", "always", "no_data", "initial_only", "when_needed", "configuration_based", "custom"
    ] = Field("initial", alias="snapshot.mode")
    decimal_handling_mode: Literal["precise", "string", "double"] = Field(
        "string", alias="decimal.handling.mode"
    )
    time_precision_mode: Literal[
        "adaptive", "adaptive_time_microseconds", "connect", "isostring", "microseconds", "nanoseconds"
    ] = Field("adaptive", alias="time.precision.mode")
    heartbeat_interval_ms: Annotated[int, Field(ge=0)] = Field(0, alias="heartbeat.interval.ms")
    heartbeat_action_query: str | None = Field(None, alias="heartbeat.action.query")
    tombstones_on_delete: bool = Field(True, alias="tombstones.on.delete")
    provide_transaction_metadata: bool = Field(False, alias="provide.transaction.metadata")
    skipped_operations: str = Field("t", alias="skipped.operations")
    key_converter: Literal["org.apache.kafka.connect.json.JsonConverter"] = Field(
        JSON_CONVERTER, alias="key.converter"
    )
    key_converter_schemas_enable: bool = Field(False, alias="key.converter.schemas.enable")
    value_converter: Literal["org.apache.kafka.connect.json.JsonConverter"] = Field(
        JSON_CONVERTER, alias="value.converter"
    )
    value_converter_schemas_enable: bool = Field(False, alias="value.converter.schemas.enable")
    slot_drop_on_stop: bool = Field(False, alias="slot.drop.on.stop")
    max_batch_size: Annotated[int, Field(ge=1)] = Field(2048, alias="max.batch.size")
    max_queue_size: Annotated[int, Field(ge=1)] = Field(8192, alias="max.queue.size")
    poll_interval_ms: Annotated[int, Field(ge=1)] = Field(500, alias="poll.interval.ms")

    @field_validator("database_password")
    @classmethod
    def _password_from_env(cls, value: str) -> str:
        if not env_refs(value) or value.strip() != f"${{env:{env_refs(value)[0]}}}":
            raise ValueError("must be an environment reference like ${env:GOLDSTREAM_DB_PASSWORD}")
        return value

    @field_validator("table_include_list")
    @classmethod
    def _plain_table_names(cls, value: str) -> str:
        names = [t.strip() for t in value.split(",") if t.strip()]
        if not names:
            raise ValueError("lists no tables")
        bad = [t for t in names if not _TABLE_NAME.match(t)]
        if bad:
            raise ValueError(
                f"entries must be plain schema.table names (goldstream derives topics from them): {bad}"
            )
        return ",".join(names)

    @model_validator(mode="after")
    def _checks(self) -> PostgresConnectorConfig:
        if self.heartbeat_action_query and not self.heartbeat_interval_ms:
            raise ValueError("heartbeat.action.query needs heartbeat.interval.ms > 0")
        if self.value_converter_schemas_enable:
            raise ValueError(
                "value.converter.schemas.enable: goldstream expects false (messages are 5x smaller; "
                "types come from the mappings)"
            )
        return self

    def tables(self) -> list[str]:
        """The captured ``schema.table`` names."""
        return self.table_include_list.split(",")

    def rest_config(self) -> dict[str, str]:
        """The map Kafka Connect takes (every value a string), keys exactly as Debezium spells them."""
        out: dict[str, str] = {}
        for name, value in self.model_dump(by_alias=True, exclude_none=True).items():
            out[name] = str(value).lower() if isinstance(value, bool) else str(value)
        return out


class TopicSettings(StrictModel):
    """How the connector's topics are created before the connector starts."""

    partitions: Annotated[int, Field(ge=1, le=1024)] | None = None
    """Partitions per table topic; default ``kafka.topic_partitions`` from goldstream.yaml."""
    config: dict[str, str] = {}
    """Extra topic configs (e.g. ``retention.ms``)."""


class ConnectorFile(StrictModel):
    """One file in ``config/connectors``."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")]
    system: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    """The source system this connector captures (``crm``...); must equal ``topic.prefix``."""
    config: PostgresConnectorConfig
    extra_config: dict[str, str] = {}
    """Debezium/Connect keys goldstream does not model, passed through verbatim."""
    topics: TopicSettings = TopicSettings()

    @model_validator(mode="after")
    def _consistent(self) -> ConnectorFile:
        if self.config.topic_prefix != self.system:
            raise ValueError(
                f"config.topic.prefix ({self.config.topic_prefix!r}) must equal system ({self.system!r})"
            )
        clash = set(self.extra_config) & set(self.config.rest_config())
        if clash:
            raise ValueError(f"extra_config repeats modelled keys: {sorted(clash)}")
        return self

    def rest_config(self) -> dict[str, str]:
        """The full Connect config map."""
        return {**self.config.rest_config(), **self.extra_config}

    def table_topics(self, *, include_internal: bool = False) -> list[str]:
        """Kafka topics of the captured tables: ``<topic.prefix>.<schema>.<table>``."""
        return [
            f"{self.config.topic_prefix}.{t}"
            for t in self.config.tables()
            if include_internal or not t.startswith(f"{INTERNAL_SCHEMA}.")
        ]

    def sentinel_topic(self) -> str | None:
        """The readiness sentinel's topic, if the connector captures ``goldstream.sentinel``."""
        t = f"{INTERNAL_SCHEMA}.sentinel"
        return f"{self.config.topic_prefix}.{t}" if t in self.config.tables() else None

    def env_vars(self) -> list[str]:
        """Environment variables the config references (the Connect worker must have them)."""
        names: list[str] = []
        for value in self.rest_config().values():
            names.extend(env_refs(value))
        return sorted(set(names))


def load_connector(path: Path) -> ConnectorFile:
    """Load and validate one connector file."""
    return load_yaml_model(path, ConnectorFile)


def load_connectors(directory: Path, *, only: Iterable[str] | None = None) -> list[ConnectorFile]:
    """All connector files in ``directory`` (sorted by name), optionally only the named ones."""
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ConfigError(f"{directory}: no connector files (*.yaml)")
    connectors = [load_connector(f) for f in files]
    names = [c.name for c in connectors]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"{directory}: connector names used twice: {sorted(dupes)}")
    slots = [c.config.slot_name for c in connectors]
    if len(set(slots)) != len(slots):
        raise ConfigError(f"{directory}: two connectors share a replication slot.name")
    if only:
        wanted = set(only)
        unknown = wanted - set(names) - {c.system for c in connectors}
        if unknown:
            raise ConfigError(f"unknown connector(s) {sorted(unknown)}; known: {names}")
        connectors = [c for c in connectors if c.name in wanted or c.system in wanted]
    return connectors


def strimzi_resource(connector: ConnectorFile, *, cluster: str, namespace: str | None = None) -> str:
    """A Strimzi ``KafkaConnector`` resource (YAML) for the same connector.

    The Strimzi ``KafkaConnect`` must declare the ``env`` config provider and expose the referenced
    variables (``spec.externalConfiguration.env`` or ``spec.template.connectContainer.env``).
    """
    config = connector.rest_config()
    metadata: dict[str, Any] = {"name": connector.name, "labels": {"strimzi.io/cluster": cluster}}
    if namespace:
        metadata["namespace"] = namespace
    resource = {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaConnector",
        "metadata": metadata,
        "spec": {
            "class": config.pop("connector.class"),
            "tasksMax": int(config.pop("tasks.max")),
            "config": config,
        },
    }
    header = (
        f"# Generated by `goldstream connectors render --strimzi` from {connector.name}.\n"
        f"# Needs env vars on the Connect pods: {', '.join(connector.env_vars()) or 'none'}\n"
    )
    return header + yaml.safe_dump(resource, sort_keys=False, allow_unicode=True)
