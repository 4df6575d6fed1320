"""Booleans, integers, decimals and money (integer minor units, see core.canonical)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal

import polars as pl
from pydantic import Field, model_validator
from typing_extensions import override

from core.configfile import StrictModel
from flows.canonical import values as val
from flows.canonical.kinds import Kind
from flows.canonical.transforms.base import RowCtx, Transform, VectorCtx, const, keep_where

TRUE_WORDS = ("1", "true", "t", "yes", "y", "on")
FALSE_WORDS = ("0", "false", "f", "no", "n", "off")


class Bool(Transform):
    """Flags as booleans: 1/0, true/false, t/f, yes/no, y/n, on/off (any case)."""

    name = "bool"
    summary = "1/0, true/false, t/f, yes/no, y/n, on/off -> boolean; other values fail"
    accepts = frozenset({Kind.TEXT, Kind.INT, Kind.BOOL})

    @override
    def result_kind(self, in_kinds: Sequence[Kind], args: Any) -> Kind:
        return Kind.BOOL

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        s = inputs[0]
        if s.dtype == pl.Boolean:
            return s
        text = s.cast(pl.String).str.strip_chars(val.WHITESPACE).str.to_lowercase()
        old = [*TRUE_WORDS, *FALSE_WORDS]
        new = [True] * len(TRUE_WORDS) + [False] * len(FALSE_WORDS)
        return text.replace_strict(old, new, default=None, return_dtype=pl.Boolean)

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        v = inputs[0]
        if isinstance(v, bool):
            return v
        word = val.strip_ws(str(v)).lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        return None


class Not(Transform):
    """Negate a boolean (``has_opted_out`` -> ``opt_in``)."""

    name = "not"
    summary = "boolean negation"
    accepts = frozenset({Kind.BOOL})

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        return ~inputs[0]

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        return not inputs[0]


class Int(Transform):
    """Whole numbers written as text (``"0042"``, ``"-7"``)."""

    name = "int"
    summary = "integer text -> int"
    accepts = frozenset({Kind.TEXT, Kind.INT})

    @override
    def result_kind(self, in_kinds: Sequence[Kind], args: Any) -> Kind:
        return Kind.INT

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        s = inputs[0]
        if s.dtype == pl.Int64:
            return s
        t = s.str.strip_chars(val.WHITESPACE)
        return keep_where(t, t.str.contains(val.INT_RE)).cast(pl.Int64)

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        v = inputs[0]
        if isinstance(v, int):
            return v
        t = val.strip_ws(v)
        return int(t) if re.fullmatch(val.INT_RE, t) else None


def _parse_decimal(s: pl.Series, scale: int) -> pl.DataFrame:
    """Columns ``sign``, ``whole``, ``frac``, ``ok`` (a plain decimal, nothing non-zero beyond ``scale``)."""
    t = s.str.strip_chars(val.WHITESPACE)
    groups = t.str.extract_groups(val.DECIMAL_RE).struct.rename_fields(["sign", "whole", "frac"])
    frame = groups.struct.unnest().with_columns(pl.col("frac").fill_null(""))
    return frame.with_columns(
        ok=pl.col("whole").is_not_null() & pl.col("frac").str.slice(scale).str.contains("^0*$")
    )


class DecimalArgs(StrictModel):
    """Decimal places kept (more non-zero places fail rather than round)."""

    scale: int = Field(3, ge=0, le=9)


class DecimalT(Transform):
    """Exact decimals (``"971.020"``, ints) with a fixed number of places; never rounds."""

    name = "decimal"
    summary = "exact decimal with `scale` places; extra non-zero places fail"
    Args = DecimalArgs
    shorthand = "scale"
    accepts = frozenset({Kind.TEXT, Kind.INT})

    @override
    def result_kind(self, in_kinds: Sequence[Kind], args: Any) -> Kind:
        return Kind.DECIMAL

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        s = inputs[0]
        dtype = pl.Decimal(38, args.scale)
        if s.dtype == pl.Int64:
            return s.cast(dtype)
        p = _parse_decimal(s, args.scale)
        frac = pl.col("frac").str.slice(0, args.scale).str.pad_end(args.scale, "0")
        text = (
            pl.concat_str(pl.col("sign"), pl.col("whole"), pl.lit("."), frac)
            if args.scale
            else (pl.concat_str(pl.col("sign"), pl.col("whole")))
        )
        out = p.select(pl.when(pl.col("ok")).then(text).cast(dtype).alias("v")).to_series()
        return out.rename(s.name)

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        v = inputs[0]
        if isinstance(v, int):
            return Decimal(v).scaleb(0).quantize(Decimal(1).scaleb(-args.scale))
        scaled = val.decimal_to_scaled(v, args.scale)
        return None if scaled is None else Decimal(scaled).scaleb(-args.scale)


class MoneyArgs(StrictModel):
    """How the source writes the amount and where the currency's minor unit comes from."""

    unit: Literal["minor", "major"]
    """``minor``: integer minor units already (cents); ``major``: a decimal amount (``12.30``)."""
    currency: str | None = None
    """The currency when the source has one fixed currency (its ISO 4217 minor unit is used)."""
    currency_from: str | None = None
    """A canonical field holding each record's currency (computed first)."""
    minor_digits: int | None = Field(None, ge=0, le=val.MAX_MINOR_DIGITS)
    """Decimal places of the minor unit when the source has no currency at hand."""

    @model_validator(mode="after")
    def _one_source_of_digits(self) -> MoneyArgs:
        given = [n for n in ("currency", "currency_from", "minor_digits") if getattr(self, n) is not None]
        if self.unit == "major" and len(given) != 1:
            raise ValueError("unit 'major' needs exactly one of currency, currency_from, minor_digits")
        if self.unit == "minor" and given:
            raise ValueError(
                f"unit 'minor' takes no {', '.join(given)} (the amount is already in minor units)"
            )
        if self.currency is not None and self.currency not in val.CURRENCIES:
            raise ValueError(f"unknown ISO 4217 currency {self.currency!r}")
        return self


# Amounts are limited so that any amount times 10^4 still fits a signed 64-bit integer.
MAX_MAJOR = 10**14


class Money(Transform):
    """An amount in integer minor units (see core.canonical): from cents, or losslessly from decimals."""

    name = "money"
    summary = "amount -> integer minor units of the currency (decimals never rounded)"
    Args = MoneyArgs
    accepts = frozenset({Kind.TEXT, Kind.INT})

    @override
    def result_kind(self, in_kinds: Sequence[Kind], args: Any) -> Kind:
        return Kind.INT

    @override
    def refs(self, args: Any) -> tuple[str, ...]:
        return (args.currency_from,) if args.currency_from else ()

    def _digits(self, args: Any, n: int, ctx: VectorCtx) -> pl.Series:
        if args.minor_digits is not None:
            return const(args.minor_digits, n, pl.Int64())
        if args.currency is not None:
            return const(val.minor_digits(args.currency), n, pl.Int64())
        cur = ctx.fields[args.currency_from]
        digits = cur.replace_strict(
            list(val.MINOR_UNIT_TABLE), list(val.MINOR_UNIT_TABLE.values()), default=2, return_dtype=pl.Int64
        )
        return keep_where(digits, cur.is_not_null())  # no currency on the row: nothing to convert with

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        s = inputs[0]
        if args.unit == "minor":
            return Int().vector([s], None, ctx)
        digits = self._digits(args, s.len(), ctx)
        if s.dtype == pl.Int64:
            frame = pl.DataFrame({"v": s, "d": digits})
            ok = pl.col("v").abs() <= MAX_MAJOR
            return frame.select(pl.when(ok).then(pl.col("v") * pl.lit(10).pow(pl.col("d")))).to_series()
        p = _parse_decimal(s, val.MAX_MINOR_DIGITS).with_columns(d=digits)
        frac4 = (
            pl.col("frac")
            .str.slice(0, val.MAX_MINOR_DIGITS)
            .str.pad_end(val.MAX_MINOR_DIGITS, "0")
            .cast(pl.Int64)
        )
        div = pl.lit(10, pl.Int64).pow(val.MAX_MINOR_DIGITS - pl.col("d"))
        whole = pl.col("whole").cast(pl.Int64)
        value = whole * pl.lit(10, pl.Int64).pow(pl.col("d")) + frac4 // div
        ok = pl.col("ok") & (frac4 % div == 0) & (whole <= MAX_MAJOR)
        signed = pl.when(pl.col("sign") == "-").then(-value).otherwise(value)
        return p.select(pl.when(ok).then(signed).alias("v")).to_series()

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        v = inputs[0]
        if args.unit == "minor":
            return Int().scalar([v], None, ctx)
        if args.minor_digits is not None:
            digits = args.minor_digits
        elif args.currency is not None:
            digits = val.minor_digits(args.currency)
        else:
            cur = ctx.fields.get(args.currency_from)
            if cur is None:
                return None
            digits = val.minor_digits(cur)
        if isinstance(v, int):
            return v * 10**digits if abs(v) <= MAX_MAJOR else None
        scaled = val.decimal_to_scaled(v, val.MAX_MINOR_DIGITS)
        if scaled is None:
            return None
        magnitude = abs(scaled)
        div = 10 ** (val.MAX_MINOR_DIGITS - digits)
        if magnitude // 10**val.MAX_MINOR_DIGITS > MAX_MAJOR or magnitude % div:
            return None
        return magnitude // div if scaled >= 0 else -(magnitude // div)


TRANSFORMS: tuple[Transform, ...] = (Bool(), Not(), Int(), DecimalT(), Money())
