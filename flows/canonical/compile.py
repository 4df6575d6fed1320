"""Loading mapping files and compiling them into executable :class:`Mapping` objects.

Every problem is reported at load time, as ``<file>: <key.path>: <message>`` lines (all problems of
a file at once): unknown transforms or arguments, a step fed a kind it cannot take, a field the
canonical entity does not have, a required field or key without a mapping, a hook that does not
import, a dependency cycle. A mapping that compiles cannot fail for structural reasons at runtime.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import ValidationError

from core.canonical import ENTITIES, ENVELOPE_FIELDS, allowed_values, field_dtype, is_required
from core.configfile import read_yaml, validate
from core.errors import ConfigError
from flows.canonical.config import Condition, FieldRule, MappingFile
from flows.canonical.kinds import COLUMN_KIND, KEY_TYPES, ColumnType, Kind, kind_of_dtype
from flows.canonical.transforms import REGISTRY, KindError, Transform
from flows.canonical.transforms.combine import enum_key
from flows.canonical.transforms.time import check_zone

Hook = Callable[..., Any]
# Plain identifiers only: the drift check builds regular expressions from column names.
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Step:
    """One transform with validated arguments, as placed in a pipeline."""

    transform: Transform
    args: Any
    out_kind: Kind

    def describe(self) -> str:
        """The step as shown in the mapping document."""
        return self.transform.describe(self.args)


@dataclass(frozen=True)
class Cond:
    """A compiled ``when`` test: values compared in their text form (see ``enum_key``)."""

    column: str
    """A source column, or ``$field`` for a canonical field."""
    op: str  # equals | in | not_in | is_null
    values: tuple[str, ...]
    is_null: bool = False

    def describe(self) -> str:
        """Readable form for the mapping document."""
        if self.op == "is_null":
            return f"{self.column} is {'' if self.is_null else 'not '}null"
        if self.op == "equals":
            return f"{self.column} = {self.values[0]!r}"
        listed = ", ".join(repr(v) for v in self.values)
        return f"{self.column} {'in' if self.op == 'in' else 'not in'} ({listed})"

    def test(self, value: Any) -> bool:
        """The test on one value (None for null)."""
        if self.op == "is_null":
            return (value is None) == self.is_null
        if value is None:
            return False
        key = enum_key(value)
        return key not in self.values if self.op == "not_in" else key in self.values


@dataclass(frozen=True)
class CompiledField:
    """One canonical field's executable rule."""

    name: str
    dtype: pl.DataType
    kind: Kind
    required: bool
    allowed: frozenset[str] | None
    inputs: tuple[str, ...]
    """Source columns, or ``$field`` for a canonical field of this mapping computed earlier."""
    input_steps: tuple[tuple[Step, ...], ...]
    """Per input column, the implicit steps that read it (date/time columns)."""
    const: Any
    hook: Hook | None
    hook_name: str | None
    hook_kind: Kind | None
    steps: tuple[Step, ...]
    when: tuple[Cond, ...]
    empty_as_null: bool
    depends: tuple[str, ...]
    """Canonical fields this one reads (computed before it)."""
    note: str | None

    @property
    def columns_read(self) -> tuple[str, ...]:
        """Source columns whose TOAST placeholder makes this field unavailable."""
        cols = [c for c in (*self.inputs, *(w.column for w in self.when)) if not is_field_ref(c)]
        return tuple(dict.fromkeys(cols))


@dataclass(frozen=True)
class Mapping:
    """A compiled mapping: one source table to one canonical entity."""

    path: Path
    spec: MappingFile
    system: str
    database: str
    schema: str
    table: str
    entity: str
    version: int
    version_tag: str
    """``system.schema.table@version#hash``: written to every record's ``mapping_version``."""
    key: tuple[str, ...]
    replica_identity: str
    timezone: str
    columns: dict[str, ColumnType]
    drift: str
    fields: tuple[CompiledField, ...]
    """In evaluation order (dependencies first)."""

    @property
    def source_table(self) -> str:
        """``schema.table``."""
        return f"{self.schema}.{self.table}"

    @property
    def ident(self) -> tuple[str, str, str]:
        """``(system, schema, table)``."""
        return (self.system, self.schema, self.table)

    def columns_used(self) -> set[str]:
        """Source columns some field (or the key) reads."""
        return {c for f in self.fields for c in f.columns_read} | set(self.key)

    def unmapped_columns(self) -> list[str]:
        """Declared source columns no field reads."""
        used = self.columns_used()
        return [c for c in self.columns if c not in used]


class MappingSet:
    """All compiled mappings, indexed by source table."""

    def __init__(self, mappings: list[Mapping]) -> None:
        self._by_table = {m.ident: m for m in mappings}

    def for_table(self, system: str, schema: str, table: str) -> Mapping | None:
        """The mapping of one source table, or None when the table is not mapped."""
        return self._by_table.get((system, schema, table))

    def __iter__(self) -> Iterator[Mapping]:
        return iter(sorted(self._by_table.values(), key=lambda m: m.ident))

    def __len__(self) -> int:
        return len(self._by_table)

    def entities(self) -> list[str]:
        """The canonical entities at least one mapping produces."""
        return sorted({m.entity for m in self._by_table.values()})


# ---- loading ------------------------------------------------------------------------------------


def is_field_ref(name: str) -> bool:
    """``$first_name`` in ``from`` reads a canonical field of the same mapping, not a source column."""
    return name.startswith("$")


def mapping_files(config_dir: Path) -> list[Path]:
    """Every ``<system>/<table>.yaml`` under the mappings folder, sorted."""
    return sorted(p for p in config_dir.glob("*/*.yaml") if p.is_file())


def _mappings_dir(config_dir: Path) -> Path:
    # Accept the config folder (config/) or the mappings folder itself (config/mappings/).
    sub = config_dir / "mappings"
    return sub if sub.is_dir() else config_dir


def compile_mappings(config_dir: Path) -> MappingSet:
    """Load, validate and compile every mapping under ``config_dir`` (``config/`` or ``config/mappings/``).

    Raises :class:`~core.errors.ConfigError` listing every problem in every file.
    """
    root = _mappings_dir(config_dir)
    if not root.is_dir():
        raise ConfigError(f"{root}: mappings folder not found")
    errors: list[str] = []
    compiled: list[Mapping] = []
    for path in mapping_files(root):
        try:
            compiled.append(load_mapping(path))
        except ConfigError as exc:
            errors.append(str(exc))
    # One file per table by construction: <system>/<table>.yaml, checked against source.system/table.
    if errors:
        raise ConfigError("\n".join(errors))
    return MappingSet(compiled)


def load_mapping(path: Path) -> Mapping:
    """Load and compile one mapping file."""
    spec = validate(MappingFile, read_yaml(path), source=str(path))
    return _Compiler(path, spec).run()


def import_hook(ref: str) -> Hook:
    """Resolve ``module:function``; ValueError saying what is wrong."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"hook must be 'module:function', got {ref!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure is a config problem to report
        raise ValueError(f"hook module {module_name!r} does not import: {exc}") from exc
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise ValueError(f"hook {ref!r}: {module_name} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


def _version_tag(spec: MappingFile) -> str:
    dumped = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True)
    digest = hashlib.sha256(dumped.encode()).hexdigest()[:8]
    src = spec.source
    return f"{src.system}.{src.schema_}.{src.table}@{spec.version}#{digest}"


# Column types read through an implicit first step (the value's kind changes on read).
_IMPLICIT: dict[ColumnType, tuple[str, dict[str, Any]]] = {
    ColumnType.DATE: ("date", {"unit": "days"}),
    ColumnType.TIMESTAMP: ("timestamp", {"unit": "us", "wall_clock": True}),
    ColumnType.TIMESTAMP_MS: ("timestamp", {"unit": "ms", "wall_clock": True}),
    ColumnType.TIMESTAMPTZ: ("timestamp", {"format": "iso"}),
}
_RAW_KIND: dict[ColumnType, Kind] = {
    ColumnType.DATE: Kind.INT,
    ColumnType.TIMESTAMP: Kind.INT,
    ColumnType.TIMESTAMP_MS: Kind.INT,
    ColumnType.TIMESTAMPTZ: Kind.TEXT,
}


class _Compiler:
    """Checks one parsed mapping file and builds the :class:`Mapping`; collects every error."""

    def __init__(self, path: Path, spec: MappingFile) -> None:
        self.path = path
        self.spec = spec
        self.errors: list[str] = []

    def err(self, where: str, message: str) -> None:
        self.errors.append(f"{self.path}: {where}: {message}")

    def run(self) -> Mapping:
        spec, src = self.spec, self.spec.source
        if self.path.parent.name != src.system:
            self.err("source.system", f"{src.system!r} does not match the folder {self.path.parent.name!r}")
        if self.path.stem != src.table:
            self.err("source.table", f"{src.table!r} does not match the file name {self.path.stem!r}")
        try:
            check_zone(src.timezone)
        except ValueError as exc:
            self.err("source.timezone", str(exc))
        for i, col in enumerate(src.key):
            if col not in src.columns:
                self.err(f"source.key.{i}", f"key column {col!r} is not declared in source.columns")
            elif src.columns[col] not in KEY_TYPES:
                self.err(f"source.key.{i}", f"key column {col!r} has type {src.columns[col]}, not a key type")
        for col in src.columns:
            if not _IDENT.match(col):
                self.err(
                    f"source.columns.{col}", "column names must be plain identifiers (letters, digits, _)"
                )
        if len(set(src.key)) != len(src.key):
            self.err("source.key", "a key column is listed twice")
        model = ENTITIES.get(spec.entity)
        if model is None:
            self.err(
                "entity", f"unknown canonical entity {spec.entity!r} (known: {', '.join(sorted(ENTITIES))})"
            )
            raise ConfigError("\n".join(self.errors))
        known = model.model_fields
        fields: dict[str, CompiledField] = {}
        for name, rule in spec.fields.items():
            where = f"fields.{name}"
            if name not in known:
                hint = (
                    "lineage is filled by the engine"
                    if name in ENVELOPE_FIELDS
                    else f"{spec.entity} fields: "
                )
                hint += "" if name in ENVELOPE_FIELDS else ", ".join(known)
                self.err(where, f"{spec.entity} has no field {name!r} ({hint})")
                continue
            compiled = self.field(name, rule, where)
            if compiled is not None:
                fields[name] = compiled
        for name, info in known.items():
            if is_required(info) and name not in spec.fields:
                self.err("fields", f"required {spec.entity} field {name!r} has no mapping")
        ordered = self.order(fields)
        if self.errors:
            raise ConfigError("\n".join(self.errors))
        return Mapping(
            path=self.path,
            spec=spec,
            system=src.system,
            database=src.database or src.system,
            schema=src.schema_,
            table=src.table,
            entity=spec.entity,
            version=spec.version,
            version_tag=_version_tag(spec),
            key=tuple(src.key),
            replica_identity=src.replica_identity,
            timezone=src.timezone,
            columns=dict(src.columns),
            drift=spec.options.drift,
            fields=ordered,
        )

    # -- one field ---------------------------------------------------------------------------------

    def field(self, name: str, rule: FieldRule, where: str) -> CompiledField | None:
        info = self.spec_model().model_fields[name]
        dtype = field_dtype(info)
        kind = kind_of_dtype(dtype)
        required = is_required(info)
        allowed = allowed_values(info)
        columns = self.spec.source.columns
        ok = True
        model_fields = self.spec_model().model_fields
        for i, col in enumerate(rule.inputs):
            if is_field_ref(col):
                ref = col[1:]
                if ref not in self.spec.fields or ref not in model_fields:
                    loc = f"{where}.from" + (f".{i}" if isinstance(rule.from_, list) else "")
                    self.err(loc, f"{col!r} refers to field {ref!r}, which this mapping does not fill")
                    ok = False
            elif col not in columns:
                loc = f"{where}.from" + (f".{i}" if isinstance(rule.from_, list) else "")
                self.err(loc, f"source column {col!r} is not declared in source.columns")
                ok = False
        conds = self.conditions(rule.conditions, f"{where}.when")
        if conds is None:
            ok = False
        if conds and required:
            self.err(f"{where}.when", f"{name!r} is required: it cannot be conditional")
        if not ok:
            return None
        input_steps = tuple(() if is_field_ref(c) else self.implicit(columns[c]) for c in rule.inputs)
        in_kinds = [
            kind_of_dtype(field_dtype(model_fields[c[1:]])) if is_field_ref(c) else COLUMN_KIND[columns[c]]
            for c in rule.inputs
        ]
        hook = None
        const = rule.const
        if rule.hook is not None:
            try:
                hook = import_hook(rule.hook)
                inspect.signature(hook).bind(*rule.inputs)
            except ValueError as exc:
                self.err(f"{where}.hook", str(exc))
                return None
            except TypeError as exc:
                self.err(f"{where}.hook", f"{rule.hook} cannot take {len(rule.inputs)} argument(s): {exc}")
                return None
            in_kinds = [rule.returns]
        elif const is not None:
            in_kinds = [
                Kind.BOOL if isinstance(const, bool) else Kind.INT if isinstance(const, int) else Kind.TEXT
            ]
        steps: list[Step] = []
        depends: list[str] = [
            c[1:] for c in (*rule.inputs, *(w.column for w in conds or ())) if is_field_ref(c)
        ]
        for i, raw in enumerate(rule.steps):
            loc = f"{where}.steps.{i}"
            step = self.step(raw, loc, in_kinds, first=i == 0 and hook is None)
            if step is None:
                return None
            steps.append(step)
            depends.extend(step.transform.refs(step.args))
            in_kinds = [step.out_kind]
        if len(in_kinds) > 1:
            self.err(
                f"{where}.from",
                "several source columns need a combining first step (join, coalesce, ref) or a hook",
            )
            return None
        out = in_kinds[0]
        if out != kind:
            self.err(where, f"the pipeline produces {out}, but {self.spec.entity}.{name} is {kind}")
            return None
        if (
            kind == Kind.DECIMAL
            and steps
            and getattr(steps[-1].args, "scale", None) != getattr(dtype, "scale", None)
        ):
            self.err(
                where,
                f"{name} has {getattr(dtype, 'scale', '?')} decimal places: use decimal(scale=...) to match",
            )
            return None
        if allowed is not None:
            self.check_allowed(name, allowed, const, steps, where)
        return CompiledField(
            name=name,
            dtype=dtype,
            kind=kind,
            required=required,
            allowed=allowed,
            inputs=rule.inputs,
            input_steps=input_steps,
            const=const,
            hook=hook,
            hook_name=rule.hook,
            hook_kind=rule.returns if hook is not None else None,
            steps=tuple(steps),
            when=conds or (),
            empty_as_null=self.spec.options.empty_as_null
            if rule.empty_as_null is None
            else rule.empty_as_null,
            depends=tuple(depends),
            note=rule.note,
        )

    def spec_model(self) -> Any:
        return ENTITIES[self.spec.entity]

    def implicit(self, ctype: ColumnType) -> tuple[Step, ...]:
        if ctype not in _IMPLICIT:
            return ()
        name, args = _IMPLICIT[ctype]
        t = REGISTRY[name]
        parsed = t.parse_args(args)
        return (Step(t, parsed, t.out_kind([_RAW_KIND[ctype]], parsed)),)

    def step(self, raw: Any, where: str, in_kinds: list[Kind], *, first: bool) -> Step | None:
        if isinstance(raw, str):
            name, raw_args = raw, None
        elif isinstance(raw, dict) and len(raw) == 1:
            ((name, raw_args),) = raw.items()
        else:
            self.err(where, "a step is a transform name or a one-key mapping {name: arguments}")
            return None
        t = REGISTRY.get(name)
        if t is None:
            self.err(where, f"unknown transform {name!r} (known: {', '.join(sorted(REGISTRY))})")
            return None
        try:
            args = t.parse_args(raw_args)
        except ValidationError as exc:
            self.errors.append(self._arg_errors(exc, f"{where}.{name}"))
            return None
        except ValueError as exc:
            self.err(where, str(exc))
            return None
        if t.many and not first:
            self.err(where, f"'{name}' combines the source columns: it must be the first step")
            return None
        if len(in_kinds) > 1 and not t.many:
            self.err(
                where,
                f"'{name}' takes one value, but the field reads {len(in_kinds)} columns: combine them first",
            )
            return None
        try:
            out = t.out_kind(in_kinds, args)
        except KindError as exc:
            self.err(where, str(exc))
            return None
        for ref in t.refs(args):
            if ref not in self.spec.fields:
                self.err(where, f"refers to field {ref!r}, which this mapping does not fill")
                return None
        return Step(t, args, out)

    def _arg_errors(self, exc: ValidationError, where: str) -> str:
        lines = []
        for item in exc.errors():
            loc = ".".join(str(p) for p in item["loc"])
            msg = "unknown argument" if item["type"] == "extra_forbidden" else item["msg"]
            lines.append(f"{self.path}: {where}{'.' + loc if loc else ''}: {msg}")
        return "\n".join(lines)

    def conditions(self, conds: tuple[Condition, ...], where: str) -> tuple[Cond, ...] | None:
        out = []
        columns = self.spec.source.columns
        model_fields = self.spec_model().model_fields
        for i, c in enumerate(conds):
            loc = f"{where}.{i}" if len(conds) > 1 else where
            if c.field is not None:
                if c.field not in self.spec.fields or c.field not in model_fields:
                    self.err(f"{loc}.field", f"field {c.field!r} is not filled by this mapping")
                    return None
                name, kind = f"${c.field}", kind_of_dtype(field_dtype(model_fields[c.field]))
            else:
                assert c.column is not None
                if c.column not in columns:
                    self.err(f"{loc}.column", f"source column {c.column!r} is not declared in source.columns")
                    return None
                name, kind = c.column, COLUMN_KIND[columns[c.column]]
            if kind not in (Kind.TEXT, Kind.INT, Kind.BOOL):
                self.err(loc, f"conditions test text, int or bool values, not {kind}")
                return None
            if c.is_null is not None:
                out.append(Cond(name, "is_null", (), c.is_null))
            elif c.equals is not None:
                out.append(Cond(name, "equals", (enum_key(c.equals),)))
            elif c.in_ is not None:
                out.append(Cond(name, "in", tuple(enum_key(v) for v in c.in_)))
            elif c.not_in is not None:
                out.append(Cond(name, "not_in", tuple(enum_key(v) for v in c.not_in)))
        return tuple(out)

    def check_allowed(
        self, name: str, allowed: frozenset[str], const: Any, steps: list[Step], where: str
    ) -> None:
        produced: set[str] = set()
        if const is not None:
            produced = {str(const)}
        elif steps and steps[-1].transform.name == "enum":
            produced = set(steps[-1].args.values.values())
        elif steps and steps[-1].transform.name == "presence":
            produced = {steps[-1].args.present, steps[-1].args.absent}
        bad = sorted(produced - allowed)
        if bad:
            self.err(
                where,
                f"{', '.join(map(repr, bad))} not allowed for {name} (one of: {', '.join(sorted(allowed))})",
            )

    def order(self, fields: dict[str, CompiledField]) -> tuple[CompiledField, ...]:
        """Dependencies first, otherwise file order; a cycle is an error."""
        done: dict[str, CompiledField] = {}
        visiting: set[str] = set()

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in done or name not in fields:
                return
            if name in visiting:
                self.err(f"fields.{name}", "dependency cycle: " + " -> ".join((*chain, name)))
                return
            visiting.add(name)
            for dep in fields[name].depends:
                visit(dep, (*chain, name))
            visiting.discard(name)
            done[name] = fields[name]

        for name in fields:
            visit(name, ())
        return tuple(done.values())
