"""Target configuration: ``config/targets/<target>.yaml`` validated into frozen pydantic models.

One file per target system the golden records are pushed to. It names the API (base URL, auth kind,
the environment variable holding the secret -- never the secret itself), the entity, the field map
canonical -> target (the inverse of the inbound mapping named by ``inbound_mapping``), the delete and
merge policies, and the delivery knobs (rate limit, retries, batch size, circuit breaker).

Unknown keys are errors naming the file and the key path (:class:`core.configfile.StrictModel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from core.configfile import StrictModel, load_yaml_model
from core.errors import ConfigError
from core.settings import Settings

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")]
Format = Literal["text", "country_name", "family_given", "join"]
"""Outbound value formats: ``country_name`` (ISO alpha-2 -> English name, which the inbound
``country`` transform reads back), ``family_given`` (``FAMILY, GIVEN MIDDLE`` from the ``from``
fields [last, first, middle], the ERP's way of writing a person), ``join`` (the non-null ``from``
values joined by a space)."""


class OAuth2Auth(StrictModel):
    """OAuth2 client credentials: ``POST token_url`` for a bearer token, cached until it expires."""

    kind: Literal["oauth2_client_credentials"]
    token_url: str = "/oauth/token"
    client_id: str | None = None
    """None: the ``client_id`` of the matching ``demo_apis`` settings."""
    secret_env: EnvName
    """Environment variable holding the client secret."""


class ApiKeyAuth(StrictModel):
    """A static API key in a header."""

    kind: Literal["api_key"]
    header: str = "X-API-Key"
    secret_env: EnvName
    """Environment variable holding the key."""


class ApiConfig(StrictModel):
    """How to reach the target's API."""

    kind: Literal["crm", "erp"]
    """The client flavour in :mod:`sinks.targets` (routes, pagination, deactivation verbs)."""
    base_url: str | None = None
    """None: the URL of the matching ``demo_apis`` settings."""
    auth: Annotated[OAuth2Auth | ApiKeyAuth, Field(discriminator="kind")]
    resource: Name
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0


class Condition(StrictModel):
    """``field`` (canonical) equals ``equals``."""

    field: Name
    equals: str | bool | int | None


class FieldCase(StrictModel):
    """One way to fill a target field: the first non-null ``from`` value, mapped and formatted."""

    when: Condition | None = None
    from_: Annotated[tuple[Name, ...], Field(alias="from", min_length=1)]
    map: dict[str, str] | None = None
    """Value translation; key ``"*"`` is the default for values not listed."""
    format: Format = "text"

    @field_validator("from_", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return (v,) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _format_inputs(self) -> FieldCase:
        if self.format == "family_given" and len(self.from_) != 3:
            raise ValueError("format family_given takes from: [last, first, middle]")
        return self


class TargetField(StrictModel):
    """A target field: one case, or ``cases`` tried in order (the first whose ``when`` holds and
    that yields a value wins; later cases are fallbacks)."""

    when: Condition | None = None
    from_: Annotated[tuple[Name, ...] | None, Field(alias="from")] = None
    map: dict[str, str] | None = None
    format: Format = "text"
    cases: tuple[FieldCase, ...] | None = None
    # Built once: the outbound mapping asks for the cases of every field of every pushed record.
    _all_cases: tuple[FieldCase, ...] = PrivateAttr(default=())

    @field_validator("from_", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return (v,) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _cases_or_from(self) -> TargetField:
        if (self.cases is None) == (self.from_ is None):
            raise ValueError("give either from (one case) or cases")
        if self.cases is not None and (self.when or self.map or self.format != "text"):
            raise ValueError("with cases, put when/map/format inside each case")
        if self.cases is not None:
            self._all_cases = self.cases
        else:
            case = {"when": self.when, "from": self.from_, "map": self.map, "format": self.format}
            self._all_cases = (FieldCase.model_validate(case),)
        return self

    def all_cases(self) -> tuple[FieldCase, ...]:
        """The cases in order (a single-case field as one)."""
        return self._all_cases

    def sources(self) -> set[str]:
        """Canonical fields this target field reads (including conditions)."""
        out: set[str] = set()
        for case in self.all_cases():
            out.update(case.from_)
            if case.when is not None:
                out.add(case.when.field)
        return out


class RateLimitConfig(StrictModel):
    """Client-side token bucket: stay under the target's limit instead of collecting 429s."""

    requests_per_s: Annotated[float, Field(ge=0)] = 10.0
    """0: no client-side limit (the target's 429 + Retry-After still apply)."""
    burst: Annotated[int, Field(ge=1, le=100_000)] = 20


class RetryConfig(StrictModel):
    """Exponential backoff with full jitter for transient failures (429, 5xx, timeouts)."""

    initial_s: Annotated[float, Field(gt=0, le=60)] = 0.2
    max_delay_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    """Attempts per request before the breaker counts it as a failure of the target."""


class BreakerConfig(StrictModel):
    """Circuit breaker: after ``failure_threshold`` failed requests in a row the target is *open*
    (consumption for it pauses); after ``reset_timeout_s`` one probe goes through (*half-open*)."""

    failure_threshold: Annotated[int, Field(ge=1, le=1000)] = 5
    reset_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    max_reset_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    """Each failed probe doubles the wait up to this."""


class Deactivation(StrictModel):
    """What deactivating a record writes (so the echo of a deactivation is recognised too)."""

    field: Name
    value: str


class TargetConfig(StrictModel):
    """One ``config/targets/<target>.yaml``."""

    version: Literal[1] = 1
    target: Name
    """The target's name (file stem); also the ``target`` column of sync_log."""
    system: Name
    """The source-system name the target's changes come back under through Debezium."""
    entity: Name
    api: ApiConfig
    inbound_mapping: Annotated[str, Field(pattern=r"^[a-z0-9_]+/[a-z0-9_]+$")]
    """``<system>/<table>`` under ``config/mappings``: the inbound mapping this field map inverts."""
    fields: dict[str, TargetField]
    required: tuple[str, ...] = ()
    """Target fields a create needs; a golden record without them is not created (yet)."""
    _field_cases: tuple[tuple[str, tuple[FieldCase, ...], bool], ...] = PrivateAttr(default=())
    deactivate: Deactivation
    """The target field and value the API's deactivate / block action sets."""
    delete_policy: Literal["deactivate", "delete", "ignore"] = "deactivate"
    merge_policy: Literal["merge", "repoint_deactivate"] = "repoint_deactivate"
    rate_limit: RateLimitConfig = RateLimitConfig()
    retry: RetryConfig = RetryConfig()
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    concurrency: Annotated[int, Field(ge=1, le=32)] = 1
    """Batch requests in flight at once (different records only; one record's order is kept)."""
    breaker: BreakerConfig = BreakerConfig()

    @model_validator(mode="after")
    def _consistent(self) -> TargetConfig:
        if not self.fields:
            raise ValueError("fields: map at least one target field")
        unknown = [f for f in self.required if f not in self.fields]
        if unknown:
            raise ValueError(f"required names fields not in the field map: {unknown}")
        if self.deactivate.field not in self.fields:
            raise ValueError(f"deactivate.field {self.deactivate.field!r} is not in the field map")
        if self.merge_policy == "merge" and self.api.kind != "crm":
            raise ValueError("merge_policy merge needs a target with a merge endpoint (api.kind crm)")
        if self.delete_policy == "delete" and self.api.kind != "crm":
            raise ValueError("delete_policy delete needs a target that deletes (api.kind crm)")
        required = set(self.required)
        self._field_cases = tuple(
            (name, spec.all_cases(), name in required) for name, spec in self.fields.items()
        )
        return self

    def field_cases(self) -> tuple[tuple[str, tuple[FieldCase, ...], bool], ...]:
        """Per target field in order: its cases and whether a create needs it (built once)."""
        return self._field_cases

    def base_url(self, settings: Settings) -> str:
        """``api.base_url``, or the demo API's URL from settings."""
        if self.api.base_url:
            return self.api.base_url.rstrip("/")
        return str(getattr(settings.demo_apis, self.api.kind).url)

    def client_id(self, settings: Settings) -> str:
        """The OAuth2 client id (from the file, else settings); '' for API keys."""
        auth = self.api.auth
        if isinstance(auth, OAuth2Auth):
            return auth.client_id or str(getattr(settings.demo_apis, self.api.kind).client_id)
        return ""

    def origin_marker(self, settings: Settings) -> str:
        """The ``last_modified_by`` the target records for our writes (the API client id)."""
        return str(getattr(settings.demo_apis, self.api.kind).client_id)

    def canonical_fields(self) -> set[str]:
        """Every canonical field the field map reads."""
        return set().union(*(f.sources() for f in self.fields.values()))


def targets_dir(settings: Settings) -> Path:
    """``<config_dir>/targets``."""
    return settings.config_dir / "targets"


def load_target(path: Path) -> TargetConfig:
    """Load one target file; its ``target`` must equal the file name."""
    cfg = load_yaml_model(path, TargetConfig)
    if cfg.target != path.stem:
        raise ConfigError(f"{path}: target: {cfg.target!r} differs from the file name {path.stem!r}")
    return cfg


def load_targets(settings: Settings, *, only: Sequence[str] | None = None) -> list[TargetConfig]:
    """Every target file (sorted by name), or just those named in ``only``."""
    folder = targets_dir(settings)
    paths = sorted(folder.glob("*.yaml"))
    if only:
        missing = sorted(set(only) - {p.stem for p in paths})
        if missing:
            raise ConfigError(f"{folder}: no target file for {missing}")
        paths = [p for p in paths if p.stem in only]
    return [load_target(p) for p in paths]
