"""Transforms over several input columns, and value lookups: join, coalesce, ref, enum, presence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from pydantic import Field, field_validator
from typing_extensions import override

from core.configfile import StrictModel
from flows.canonical import values as val
from flows.canonical.kinds import Kind
from flows.canonical.transforms.base import KindError, RowCtx, Transform, VectorCtx


class JoinArgs(StrictModel):
    """Separator between the joined values."""

    sep: str = " "


class Join(Transform):
    """Join the non-null input columns with a separator (``first_name last_name``)."""

    name = "join"
    summary = "join the non-null inputs with a separator (null if all are null)"
    Args = JoinArgs
    shorthand = "sep"
    many = True

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        frame = pl.DataFrame({f"c{i}": s for i, s in enumerate(inputs)})
        cols = [pl.col(c) for c in frame.columns]
        joined = pl.concat_str(cols, separator=args.sep, ignore_nulls=True)
        out = pl.when(pl.any_horizontal(c.is_not_null() for c in cols)).then(joined)
        return frame.select(out.alias("v")).to_series()

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        present = [v for v in inputs if v is not None]
        return args.sep.join(present) if present else None


class Coalesce(Transform):
    """The first non-null input column."""

    name = "coalesce"
    summary = "first non-null input"
    many = True
    accepts = frozenset(Kind)

    @override
    def result_kind(self, in_kinds: Sequence[Kind], args: Any) -> Kind:
        if len(set(in_kinds)) != 1:
            raise KindError(f"'coalesce' needs inputs of one kind, got {', '.join(in_kinds)}")
        return in_kinds[0]

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        frame = pl.DataFrame({f"c{i}": s for i, s in enumerate(inputs)})
        return frame.select(pl.coalesce(frame.columns).alias("v")).to_series()

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        return next((v for v in inputs if v is not None), None)


class Ref(Transform):
    """A reference to another record of the same system, in ``source_key`` form (``D100008|1``)."""

    name = "ref"
    summary = "key text of another record: values joined by '|' (null if any is null)"
    many = True
    accepts = frozenset({Kind.TEXT, Kind.INT})

    @override
    def result_kind(self, in_kinds: Sequence[Kind], args: Any) -> Kind:
        return Kind.TEXT

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        if len(inputs) == 1:
            return inputs[0].cast(pl.String)
        frame = pl.DataFrame({f"c{i}": s.cast(pl.String) for i, s in enumerate(inputs)})
        return frame.select(pl.concat_str(frame.columns, separator="|").alias("v")).to_series()

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        if any(v is None for v in inputs):
            return None
        return "|".join(val.key_text(v) for v in inputs)


def enum_key(value: Any) -> str:
    """How a source value is looked up in an ``enum`` table: text; ints as digits; booleans true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class EnumArgs(StrictModel):
    """The lookup table: source value -> canonical value."""

    values: dict[str, str] = Field(min_length=1)

    @field_validator("values", mode="before")
    @classmethod
    def _keys_as_text(cls, raw: Any) -> Any:
        # YAML reads `1: active` and `true: yes` as int/bool keys: compare them as text.
        if isinstance(raw, dict):
            return {enum_key(k): v for k, v in raw.items()}
        return raw


class Enum(Transform):
    """Look the value up in a table; a value not in the table is a mapping failure."""

    name = "enum"
    summary = "lookup table; unknown values fail"
    Args = EnumArgs
    shorthand = "values"
    mapping_shorthand = True
    accepts = frozenset({Kind.TEXT, Kind.INT, Kind.BOOL})

    @override
    def result_kind(self, in_kinds: Sequence[Kind], args: Any) -> Kind:
        return Kind.TEXT

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        s = inputs[0].cast(pl.String)
        old = list(args.values)
        return s.replace_strict(old, [args.values[k] for k in old], default=None, return_dtype=pl.String)

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        return args.values.get(enum_key(inputs[0]))

    @override
    def describe(self, args: Any) -> str:
        return "enum(" + ", ".join(f"{k!r}→{v}" for k, v in args.values.items()) + ")"


class PresenceArgs(StrictModel):
    """The values for a present and for an absent input."""

    present: str
    absent: str


class Presence(Transform):
    """One value when the input is present (not null), another when it is null."""

    name = "presence"
    summary = "present -> one value, null -> another"
    Args = PresenceArgs
    accepts = frozenset(Kind)
    handles_null = True

    @override
    def result_kind(self, in_kinds: Sequence[Kind], args: Any) -> Kind:
        return Kind.TEXT

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        frame = pl.DataFrame({"v": inputs[0]})
        expr = pl.when(pl.col("v").is_not_null()).then(pl.lit(args.present)).otherwise(pl.lit(args.absent))
        return frame.select(expr.alias("v")).to_series()

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        return args.present if inputs[0] is not None else args.absent


TRANSFORMS: tuple[Transform, ...] = (Join(), Coalesce(), Ref(), Enum(), Presence())
