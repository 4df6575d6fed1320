"""Application settings: ``config/goldstream.yaml`` validated into frozen pydantic models.

Secrets never live here: the database password is read from the environment variable named by
``postgres.password_env``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from core.configfile import StrictModel, load_yaml_model
from core.errors import ConfigError

Port = Annotated[int, Field(ge=1, le=65535)]


class PostgresSettings(StrictModel):
    """The PostgreSQL cluster holding the demo source systems."""

    host: str = "127.0.0.1"
    port: Port = 54329
    superuser: str = "postgres"
    cdc_user: str = "debezium"
    password_env: str = "GOLDSTREAM_DB_PASSWORD"
    databases: tuple[str, ...] = ("crm", "erp", "shop", "billing")

    def password(self) -> str:
        """The CDC user's password, from the environment only."""
        value = os.environ.get(self.password_env)
        if not value:
            raise ConfigError(
                f"postgres.password_env: environment variable {self.password_env} is not set "
                "(the local stack writes one to .state/secrets.env on `goldstream stack up`)"
            )
        return value


class KafkaSettings(StrictModel):
    """The Kafka broker (KRaft, single node locally)."""

    bootstrap_servers: str = "127.0.0.1:19092"
    controller_port: Port = 19093
    heap: str = "512m"
    topic_partitions: Annotated[int, Field(ge=1, le=1024)] = 2


class ConnectSettings(StrictModel):
    """The Kafka Connect worker running the Debezium connectors."""

    url: str = "http://127.0.0.1:18083"
    heap: str = "1g"


class DataflowSettings(StrictModel):
    """The Bytewax dataflows."""

    recovery_partitions: Annotated[int, Field(ge=1, le=256)] = 8
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 20_000
    batch_timeout_ms: Annotated[int, Field(ge=1, le=60_000)] = 500
    snapshot_interval_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    gold_write_interval_s: Annotated[float, Field(ge=0, le=300)] = 15.0
    """Least time between the starts of two gold Delta writes (golden changes reach the golden topic
    at once; the gold tables lag by up to this plus a write). Batches that arrive meanwhile are
    written together: fewer commits, less CPU taken from the critical path. A gold write is five
    copy-on-write MERGEs whose cost grows with the tables, not the batch: at 1,000 changes/s
    (bench/propagation) 15 s here and 5 s for silver cut the end-to-end p99 by ~22 % against 3 s
    and 0 s."""
    silver_write_interval_s: Annotated[float, Field(ge=0, le=300)] = 5.0
    """Least time between the starts of two silver MERGEs of one entity in the ingest flow (they run
    beside the flow; entity resolution does not wait for them, and a read-back flushes the queue
    first). 0: one starts as soon as the last ended, with everything that queued up meanwhile."""
    silver_engine: Literal["delta-rs", "rewrite"] = "delta-rs"
    """How the ingest flow applies silver MERGEs (``sinks.delta.silver``). ``delta-rs``: its MERGE.
    ``rewrite``: computed with polars and committed by goldstream, 1.9x faster per 500k-row MERGE
    and the engine behind bench/silver's 61k upserts/s: for bulk loads and backfills. The default
    stays ``delta-rs`` until the latency path has been compared properly: beside the flow at 1,000
    changes/s, two alternating runs each gave end-to-end p99s of 3.67 and 2.46 s against 2.27 and
    2.95 s (bench/propagation), no difference that stands out from the noise."""
    metrics_port: Port = 9464
    dlq_topic: str = "goldstream.dlq"
    resolve_mode: Literal["single", "staged"] = "single"
    """How the ingest flow resolves entities: ``single``, one step per entity type
    (:mod:`flows.resolve.operator`), or ``staged``, the parallel stages of DESIGN.md (records, blocks,
    pairs keyed by key group, clustering by entity type, golden records by golden id:
    :mod:`flows.resolve.staged_operator`). Both give the same clusters and golden records; a
    recovery store written by one cannot be resumed by the other."""
    resolve_key_groups: Annotated[int, Field(ge=1, le=4096)] = 16
    """Key groups per keyed step of the staged resolution (the most workers each step can use).
    Fixed when the ingest flow's recovery store is created, like ``recovery_partitions``."""


ClientId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class DemoApiSettings(StrictModel):
    """One demo source system's HTTP API (``cdc.demo.api``), a local service like the other components.

    ``client_id`` is not a secret: it is the name the API records in ``last_modified_by`` for writes
    made with this client's credentials (the inbound flow recognises goldstream's own writes by it).
    The secret (CRM client secret, ERP API key) comes only from the environment variable named by
    ``secret_env``.
    """

    host: str = "127.0.0.1"
    port: Port = 18181
    client_id: ClientId = "goldstream"
    secret_env: str = "GOLDSTREAM_CRM_CLIENT_SECRET"
    rate_limit_per_s: Annotated[float, Field(ge=0)] = 20.0
    """Token bucket refill per client; 0 lifts the limit."""
    rate_limit_burst: Annotated[int, Field(ge=1, le=100_000)] = 40

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"


class CrmApiSettings(DemoApiSettings):
    """The CRM's API: OAuth2 client credentials (``POST /oauth/token``)."""


class ErpApiSettings(DemoApiSettings):
    """The ERP's API: an ``X-API-Key`` header."""

    port: Port = 18182
    secret_env: str = "GOLDSTREAM_ERP_API_KEY"


class DemoApisSettings(StrictModel):
    """The demo CRM and ERP HTTP APIs (golden records are pushed back through them)."""

    admin_token_env: str = "GOLDSTREAM_DEMO_API_ADMIN_TOKEN"
    """``X-Admin-Token`` for ``/admin/*`` (fault injection, rate limit); from the environment only."""
    token_ttl_s: Annotated[int, Field(ge=1, le=86_400)] = 3600
    batch_max: Annotated[int, Field(ge=1, le=10_000)] = 200
    page_size_max: Annotated[int, Field(ge=1, le=10_000)] = 500
    db_pool_size: Annotated[int, Field(ge=1, le=64)] = 4
    crm: CrmApiSettings = CrmApiSettings()
    erp: ErpApiSettings = ErpApiSettings()


class PropagationSettings(StrictModel):
    """The propagation dataflow (golden records -> target APIs; targets in ``config/targets``)."""

    topics: dict[str, str] = {}
    """Entity -> golden topic to read instead of ``golden.<entity>`` (tests use their own topic)."""
    dlq_topic: str = "goldstream.sync.dlq"
    """Where terminal delivery failures are published (with the golden change as the value)."""
    max_pending: Annotated[int, Field(ge=1, le=1_000_000)] = 5_000
    """Messages a target may have waiting before its source pauses."""


class Settings(StrictModel):
    """Everything in ``config/goldstream.yaml``."""

    config_dir: Path = Path("config")
    """Where connectors/, mappings/ and the other config folders live."""
    state_dir: Path = Path(".state")
    delta_root: Path = Path(".state/delta")
    recovery_root: Path = Path(".state/recovery")
    """Bytewax recovery stores, one folder per dataflow."""
    postgres: PostgresSettings = PostgresSettings()
    kafka: KafkaSettings = KafkaSettings()
    connect: ConnectSettings = ConnectSettings()
    dataflow: DataflowSettings = DataflowSettings()
    demo_apis: DemoApisSettings = DemoApisSettings()
    propagation: PropagationSettings = PropagationSettings()

    def resolved(self, base: Path) -> Settings:
        """Make relative paths absolute against ``base`` (the project root)."""
        return self.model_copy(
            update={
                "config_dir": (base / self.config_dir).resolve(),
                "state_dir": (base / self.state_dir).resolve(),
                "delta_root": (base / self.delta_root).resolve(),
                "recovery_root": (base / self.recovery_root).resolve(),
            }
        )


def project_root() -> Path:
    """The checkout root: ``GOLDSTREAM_HOME`` if set, else the nearest parent holding ``config/``."""
    env = os.environ.get("GOLDSTREAM_HOME")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "config" / "goldstream.yaml").is_file():
            return candidate
    return here


def load_settings(path: Path | None = None) -> Settings:
    """Load and validate the settings file.

    Default: ``$GOLDSTREAM_CONFIG`` if set, else ``<root>/config/goldstream.yaml``. Relative paths
    inside are resolved against the project root either way.
    """
    root = project_root()
    env_path = os.environ.get("GOLDSTREAM_CONFIG")
    path = path or (Path(env_path) if env_path else root / "config" / "goldstream.yaml")
    return load_yaml_model(path, Settings).resolved(root)
