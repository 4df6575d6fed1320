"""Codes and identifiers: countries, currencies, phone numbers, personal-name parts."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import polars as pl
from pydantic import field_validator
from typing_extensions import override

from core.configfile import StrictModel
from flows.canonical import values as val
from flows.canonical.transforms.base import (
    RowCtx,
    Transform,
    VectorCtx,
    const,
    keep_where,
    map_unique,
    map_unique_rows,
)
from flows.canonical.transforms.phone_fast import fast_e164


class Country(Transform):
    """Country names, aliases ('Deutschland', 'UK'), alpha-3 or numeric codes -> ISO 3166 alpha-2."""

    name = "country"
    summary = "country name / alias / alpha-3 / alpha-2 -> ISO 3166-1 alpha-2 (pycountry + aliases)"
    vectorised = False

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        return map_unique(inputs[0], val.country_alpha2, pl.String())

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        return val.country_alpha2(inputs[0])


class Currency(Transform):
    """ISO 4217 code, upper case ('eur' -> 'EUR'); unknown codes fail."""

    name = "currency"
    summary = "ISO 4217 code, upper case; unknown codes fail"

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        s = inputs[0].str.strip_chars(val.WHITESPACE).str.to_uppercase()
        return keep_where(s, s.is_in(sorted(val.CURRENCIES)))

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        s = val.strip_ws(inputs[0]).upper()
        return s if s in val.CURRENCIES else None


class PhoneArgs(StrictModel):
    """Where the default region for national numbers comes from."""

    region_from: str | None = None
    """A canonical field holding the record's ISO alpha-2 country (computed first)."""
    region: str | None = None
    """Fixed default region (also the fallback when ``region_from`` is null)."""
    strict: bool = False
    """Demand a number in an allocated range (phonenumbers' is_valid_number), not just a possible one."""
    digits_international: bool = False
    """Digits-only values are international numbers without '+' (read so before the regional reading)."""

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        if value is not None and val.country_alpha2(value) != value:
            raise ValueError(f"region must be an ISO 3166 alpha-2 code, got {value!r}")
        return value


class Phone(Transform):
    """Phone numbers as typed -> E.164 (phonenumbers)."""

    name = "phone"
    summary = "phone as typed -> E.164 (phonenumbers; default region from the record's country)"
    Args = PhoneArgs
    vectorised = False  # partly: international forms are vectorised, the rest is phonenumbers

    @override
    def refs(self, args: Any) -> tuple[str, ...]:
        return (args.region_from,) if args.region_from else ()

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        s = inputs[0]
        region = const(args.region, s.len(), pl.String())
        if args.region_from:
            region = ctx.fields[args.region_from].fill_null(region)
        frame = pl.DataFrame({"v": s, "r": region}).with_columns(
            pl.when(pl.col("v").is_not_null()).then(pl.col("r")).alias("r")
        )
        fn = partial(_phone, strict=args.strict, digits_international=args.digits_international)
        if args.strict:
            return map_unique_rows(frame, fn, pl.String()).rename(s.name)
        # Numbers written internationally are decided column-wise (see phone_fast); the rest go to
        # phonenumbers, once per distinct (number, region) pair: it is pure Python.
        decided, out = fast_e164(s, frame.get_column("r"), digits_international=args.digits_international)
        rest = (~decided & s.is_not_null()).arg_true()
        if rest.len():
            out = out.scatter(rest, map_unique_rows(frame[rest], fn, pl.String()))
        return out.rename(s.name)

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        region = ctx.fields.get(args.region_from) if args.region_from else None
        region = region if region is not None else args.region
        return val.phone_e164(inputs[0], region, args.strict, args.digits_international)


def _phone(value: str | None, region: str | None, *, strict: bool, digits_international: bool) -> str | None:
    return None if value is None else val.phone_e164(value, region, strict, digits_international)


class SplitNameArgs(StrictModel):
    """Which part of the name, and the word order when there is no comma."""

    part: Literal["first", "middle", "last"]
    order: Literal["given_first", "family_first", "auto"] = "given_first"
    """``auto``: family first for names written in Chinese, Japanese or Korean script."""


class SplitName(Transform):
    """One part of a personal name held in one field ('Ada King Lovelace', 'LOVELACE, ADA')."""

    name = "split_name"
    summary = "first/middle/last part of a full name ('FAMILY, GIVEN' read family-first)"
    Args = SplitNameArgs
    shorthand = "part"
    nullifies = True  # a name without a middle (or a one-word name) legitimately has none

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        # first/middle/last of one name are usually three steps on the same Series: split it once.
        key = ("split_name", id(inputs[0]), args.order)
        hit = ctx.memo.get(key)
        frame: pl.DataFrame
        if hit is not None and hit[0] is inputs[0]:
            frame = hit[1]
        else:
            frame = self._words(inputs[0], args.order)
            ctx.memo[key] = (inputs[0], frame)
        w = pl.col("w")
        n = pl.when(w.list.first() == "").then(0).otherwise(w.list.len())
        ff = pl.col("ff")
        if args.part == "last":
            value = (
                pl.when(n == 0).then(None).when((n == 1) | ff).then(w.list.first()).otherwise(w.list.last())
            )
        elif args.part == "first":
            value = (
                pl.when(n < 2)
                .then(None)
                .when(ff)
                .then(w.list.get(1, null_on_oob=True))
                .otherwise(w.list.first())
            )
        else:
            middle = pl.when(ff).then(w.list.slice(2)).otherwise(w.list.slice(1, n - 2))
            value = pl.when(n < 3).then(None).otherwise(middle.list.join(" "))
        return frame.select(value.cast(pl.String).alias("v")).to_series().rename(inputs[0].name)

    @staticmethod
    def _words(s: pl.Series, order: str) -> pl.DataFrame:
        """Columns ``w`` (the words, in reading order) and ``ff`` (family name first)."""
        ws = val.WS_CLASS_RUST + "+"
        v = pl.col("v")
        t = v.str.replace_all(ws, " ").str.strip_chars(val.WHITESPACE)
        frame = pl.DataFrame({"v": s}).select(t=t, comma=t.str.contains(",", literal=True))
        # 'FAMILY NAME, GIVEN MORE' is read family first, the part before the comma as one word.
        # Collapsed, trimmed text splits on single spaces without empty words; the empty parts of a
        # comma form are handled case by case (cheaper than filtering lists).
        parts = pl.col("t").str.splitn(",", 2)
        family = parts.struct.field("field_0").str.strip_chars(val.WHITESPACE)
        rest = parts.struct.field("field_1").str.strip_chars(val.WHITESPACE)
        comma_words = (
            pl.when(rest == "")
            .then(pl.concat_list(family))
            .when(family == "")
            .then(rest.str.split(" "))
            .otherwise(pl.concat_list(family, rest.str.split(" ")))
        )
        if order == "auto":
            ff_order = pl.col("t").str.contains(val.CJK_CLASS_RUST).fill_null(False)
        else:
            ff_order = pl.lit(order == "family_first")
        return frame.select(
            w=pl.when(pl.col("comma")).then(comma_words).otherwise(pl.col("t").str.split(" ")),
            ff=pl.col("comma") | ff_order,
        )

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        v = inputs[0]
        family_first = args.order == "family_first" or (args.order == "auto" and val.is_cjk(v))
        return val.split_name(v, args.part, family_first)


TRANSFORMS: tuple[Transform, ...] = (Country(), Currency(), Phone(), SplitName())
