"""The mapping file format: ``config/mappings/<system>/<table>.yaml``, validated with pydantic.

This module only describes the YAML; :mod:`flows.canonical.compile` checks what pydantic cannot
(transform names and kinds, canonical field names, hooks, dependencies) and builds the executable
:class:`~flows.canonical.compile.Mapping`. The format is documented in ``config/mappings/README.md``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from core.configfile import StrictModel
from flows.canonical.kinds import ColumnType, Kind

DriftPolicy = Literal["evolve", "lenient", "ignore", "fail"]
ConstValue = str | bool | int


class SourceSpec(StrictModel):
    """The source table: where it lives, its key, and every column with its Debezium JSON type."""

    system: str
    """Logical system (Debezium ``topic.prefix``); must match the folder name."""
    database: str | None = None
    """PostgreSQL database (default: the system name); used by ``mappings check --live``."""
    schema_: str = Field(alias="schema")
    table: str
    """Must match the file name."""
    key: list[str] = Field(min_length=1)
    """Primary-key columns, in key order (the order of ``source_key``)."""
    replica_identity: Literal["full", "default"] = "default"
    """``full``: deletes carry the whole old row in ``before``; ``default``: only the key (Debezium fills
    the other columns with type defaults, which must not be mistaken for data)."""
    timezone: str = "UTC"
    """IANA zone of the source's wall-clock timestamps (``timestamp without time zone`` columns)."""
    columns: dict[str, ColumnType] = Field(min_length=1)
    """Every column of the table: unmapped ones too, so schema drift can be told from intent."""

    @field_validator("columns", mode="before")
    @classmethod
    def _names_are_text(cls, value: Any) -> Any:
        # YAML 1.1 reads yes/no/on/off/true/false as booleans, even as mapping keys.
        if isinstance(value, dict):
            odd = [k for k in value if not isinstance(k, str)]
            if odd:
                raise ValueError(f"column name(s) {odd} were not read as text: quote them (e.g. 'on': text)")
        return value


class Options(StrictModel):
    """Mapping-wide rules."""

    empty_as_null: bool = True
    """Treat '' in text columns (and text that becomes '' after cleaning) as null."""
    drift: DriftPolicy = "evolve"
    """Schema drift: ``evolve`` keeps unknown columns in ``extras`` (never loses data), ``lenient``
    reports and ignores them, ``ignore`` is ``lenient`` without reports, ``fail`` stops the flow."""


class Condition(StrictModel):
    """A test on one source column or canonical field; a field with ``when`` is null where it is false."""

    column: str | None = None
    field: str | None = None
    """A canonical field of this mapping (computed first), e.g. ``kind``."""
    equals: ConstValue | None = None
    in_: list[ConstValue] | None = Field(None, alias="in")
    not_in: list[ConstValue] | None = None
    """True when the value is present and not listed."""
    is_null: bool | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        if (self.column is None) == (self.field is None):
            raise ValueError("give exactly one of column, field")
        tests = [n for n in ("equals", "in_", "not_in", "is_null") if getattr(self, n) is not None]
        if len(tests) != 1:
            raise ValueError("give exactly one of equals, in, not_in, is_null")
        return self


class FieldRule(StrictModel):
    """How one canonical field is computed."""

    from_: str | list[str] | None = Field(None, alias="from")
    """Source column(s). Several columns need a combining first step (join, coalesce, ref) or a hook."""
    const: ConstValue | None = None
    hook: str | None = None
    """``module:function`` called with the ``from`` values (once per distinct combination)."""
    returns: Kind = Kind.TEXT
    """Kind of the hook's result (what the following steps receive)."""
    steps: list[str | dict[str, Any]] = Field(default_factory=list)
    when: Condition | list[Condition] | None = None
    empty_as_null: bool | None = None
    """Overrides ``options.empty_as_null`` for this field."""
    note: str | None = None
    """Free text for the mapping document."""

    @model_validator(mode="after")
    def _one_source(self) -> FieldRule:
        if self.const is not None and (self.from_ is not None or self.hook is not None or self.steps):
            raise ValueError("'const' stands alone (no from, hook or steps)")
        if self.const is None and self.from_ is None:
            raise ValueError("give 'from' (source columns) or 'const'")
        return self

    @property
    def inputs(self) -> tuple[str, ...]:
        """The source columns read, in order."""
        if self.from_ is None:
            return ()
        return (self.from_,) if isinstance(self.from_, str) else tuple(self.from_)

    @property
    def conditions(self) -> tuple[Condition, ...]:
        """``when`` as a tuple (all must hold)."""
        if self.when is None:
            return ()
        return (self.when,) if isinstance(self.when, Condition) else tuple(self.when)


class MappingFile(StrictModel):
    """One mapping file: a source table to one canonical entity."""

    version: int = Field(ge=1)
    """Bump on every change that alters mapped values (it is part of every record's lineage)."""
    entity: str
    description: str | None = None
    source: SourceSpec
    options: Options = Options()
    fields: dict[str, FieldRule] = Field(min_length=1)
