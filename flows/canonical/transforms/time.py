"""Dates and timestamps: ISO text, ``MM/DD/YYYY`` and friends, epochs, wall-clock times -> UTC.

Text formats are named (``iso``, ``mdy``, ``dmy``, ``ymd``, ``any``) rather than strptime patterns:
each named format is one regular expression that both implementations apply identically, so the
engine (polars) and the reference (Python) accept exactly the same strings. ``any`` hands the text to
python-dateutil (once per distinct value).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl
from pydantic import field_validator
from typing_extensions import override

from core.configfile import StrictModel
from flows.canonical import values as val
from flows.canonical.kinds import Kind
from flows.canonical.transforms.base import RowCtx, Transform, VectorCtx, keep_where, map_unique

UTC_US = pl.Datetime("us", "UTC")
TextFormat = Literal["iso", "mdy", "dmy", "ymd", "any"]
_OFFSET_RE = r"^([+-])([0-9]{2}):?([0-9]{2})?$"
_ISO = re.compile(val.ISO_DATETIME_RE)
_FORMATS = {name: (re.compile(rx), pos) for name, (rx, pos) in val.DATE_FORMATS.items()}


def check_zone(tz: str) -> str:
    """``tz`` if it is an IANA time zone name, else ValueError."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r} (use an IANA name such as Europe/Berlin)") from exc
    return tz


# ---- vectorised helpers ------------------------------------------------------------------------


# polars (chrono-tz) and Python (zoneinfo) agree on every zone's rules until 2099; from 2100 on
# chrono-tz stops applying daylight-saving rules. Later wall-clock times are localised in Python.
_LAST_VECTOR_YEAR = 2080


def _localize(naive: pl.Series, tz: str) -> pl.Series:
    """Naive wall-clock datetimes in ``tz`` -> UTC (DST gap -> null, DST overlap -> earlier)."""
    naive = _bounded(naive)
    if tz == "UTC":
        return naive.dt.replace_time_zone("UTC")
    out = naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.convert_time_zone(
        "UTC"
    )
    far = (naive.dt.year() > _LAST_VECTOR_YEAR).fill_null(False).arg_true()
    if far.len():
        fixed = map_unique(naive.gather(far), lambda d: val.localize(d, tz), pl.Datetime("us", "UTC"))
        out = out.scatter(far, fixed)
    return _bounded(out)


def _bounded(values: pl.Series) -> pl.Series:
    """Null for instants outside years 1..9999 (what Python's datetime, the reference, can hold)."""
    us = values.dt.epoch("us")
    return keep_where(values, (us >= val.MIN_US) & (us <= val.MAX_US))


def _text_date(t: pl.Series, fmt: str) -> pl.Series:
    """Dates in one of the named text formats (null when the text does not match or is no date)."""
    rx, (yi, mi, di) = val.DATE_FORMATS[fmt]
    # Extract once, then refer to the columns: an expression tree would re-run the regex per field.
    g = t.str.extract_groups(rx).struct.rename_fields(["a", "b", "c"]).struct.unnest()
    y, m, d = (pl.col("abc"[k]) for k in (yi, mi, di))
    text = pl.concat_str(y, pl.lit("-"), m.str.pad_start(2, "0"), pl.lit("-"), d.str.pad_start(2, "0"))
    out = g.select(pl.when(y != "0000").then(text).str.to_date("%Y-%m-%d", strict=False).alias(t.name))
    return out.to_series()


# Debezium's own timestamptz format, parsed by one chrono call. The regex keeps out what chrono would
# accept but the general path rejects (second 60, one-digit fields, year 0000, a sign).
_DEBEZIUM_TS = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?Z$"
_ISO_GROUPS = ["y", "mo", "d", "hh", "mi", "ss", "frac", "zone"]


def _iso_datetime(t: pl.Series, tz: str) -> pl.Series:
    """ISO 8601 text (date, or date and time, optional fraction and offset) -> UTC."""
    fast = t.str.contains(_DEBEZIUM_TS) & ~t.str.starts_with("0000")
    out = keep_where(t, fast).str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC", strict=False
    )
    rest = (t.is_not_null() & ~fast.fill_null(False)).arg_true()
    if rest.len() == 0:
        return out.rename(t.name)
    return out.scatter(rest, _iso_general(t.gather(rest), tz)).rename(t.name)


def _iso_general(t: pl.Series, tz: str) -> pl.Series:
    g = t.str.extract_groups(val.ISO_DATETIME_RE).struct.rename_fields(_ISO_GROUPS).struct.unnest()
    g = g.with_columns(pl.col("hh", "mi", "ss").fill_null("00"), pl.col("frac").fill_null(""))
    g = g.with_columns(
        offset=pl.col("zone").str.extract_groups(_OFFSET_RE).struct.rename_fields(["sg", "oh", "om"])
    )
    hh, mi, ss = (pl.col(c).cast(pl.Int32) for c in ("hh", "mi", "ss"))
    valid = (pl.col("y") != "0000") & (hh < 24) & (mi < 60) & (ss < 60)
    text = pl.concat_str(
        pl.col("y"), pl.lit("-"), pl.col("mo"), pl.lit("-"), pl.col("d"), pl.lit(" "),
        pl.col("hh"), pl.lit(":"), pl.col("mi"), pl.lit(":"), pl.col("ss"),
    )  # fmt: skip
    frac = pl.col("frac").str.slice(0, 6).str.pad_end(6, "0").cast(pl.Int64)
    g = g.with_columns(
        naive=pl.when(valid).then(text).str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us", strict=False)
        + pl.duration(microseconds=frac)
    )
    off = pl.col("offset")
    off_h = off.struct.field("oh").cast(pl.Int64)
    off_m = off.struct.field("om").fill_null("00").cast(pl.Int64)
    sign = pl.when(off.struct.field("sg") == "-").then(-1).otherwise(1)
    zone = pl.col("zone")
    minutes = pl.when(zone == "Z").then(0).when((off_h < 24) & (off_m < 60)).then(sign * (off_h * 60 + off_m))
    g = g.with_columns(minutes=minutes)
    g = g.with_columns(local=_localize(g.get_column("naive"), tz))
    aware = pl.col("naive").dt.replace_time_zone("UTC") - pl.duration(minutes=pl.col("minutes"))
    result = pl.when(zone.is_null()).then(pl.col("local")).otherwise(aware)
    return _bounded(g.select(result.alias(t.name)).to_series())


def _epoch(v: pl.Series, unit: str, wall_clock: bool, tz: str) -> pl.Series:
    """Epoch integers -> UTC; ``wall_clock``: the epoch encodes local time in ``tz``."""
    mult = val.UNIT_US[unit]
    lo, hi = -(-val.MIN_US // mult), val.MAX_US // mult
    us = keep_where(v, (v >= lo) & (v <= hi)) * mult
    naive = us.cast(pl.Datetime("us"))
    return _localize(naive, tz) if wall_clock else _bounded(naive.dt.replace_time_zone("UTC"))


# ---- per-record helpers ------------------------------------------------------------------------


def _py_date(text: str, fmt: str) -> dt.date | None:
    rx, (yi, mi, di) = _FORMATS[fmt]
    m = rx.match(text)
    if not m:
        return None
    g = m.groups()
    try:
        return dt.date(int(g[yi]), int(g[mi]), int(g[di]))
    except ValueError:
        return None


def _py_iso(text: str, tz: str) -> dt.datetime | None:
    m = _ISO.match(text)
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, zone = m.groups()
    try:
        naive = dt.datetime(
            int(y),
            int(mo),
            int(d),
            int(hh or 0),
            int(mi or 0),
            int(ss or 0),
            int((frac or "")[:6].ljust(6, "0")),
        )
    except ValueError:
        return None
    if zone is None:
        return val.localize(naive, tz)
    if zone == "Z":
        minutes = 0
    else:
        om = re.match(_OFFSET_RE, zone)
        assert om is not None  # the ISO regex only lets valid offset shapes through
        oh, omin = int(om.group(2)), int(om.group(3) or 0)
        if oh >= 24 or omin >= 60:
            return None
        minutes = (oh * 60 + omin) * (-1 if om.group(1) == "-" else 1)
    try:
        return (naive - dt.timedelta(minutes=minutes)).replace(tzinfo=dt.UTC)
    except OverflowError:
        return None


def _py_epoch(v: int, unit: str, wall_clock: bool, tz: str) -> dt.datetime | None:
    mult = val.UNIT_US[unit]
    lo, hi = -(-val.MIN_US // mult), val.MAX_US // mult
    if not lo <= v <= hi:
        return None
    utc = val.from_epoch_us(v * mult)
    if utc is None or not wall_clock:
        return utc
    return val.localize(utc.replace(tzinfo=None), tz)


# ---- transforms ---------------------------------------------------------------------------------


class DateArgs(StrictModel):
    """How a date is written in the source."""

    format: TextFormat = "iso"
    """For text: ``iso`` (YYYY-MM-DD), ``mdy`` (MM/DD/YYYY), ``dmy`` (DD.MM.YYYY or DD/MM/YYYY),
    ``ymd`` (YYYYMMDD), ``any`` (python-dateutil)."""
    unit: Literal["days", "s", "ms", "us"] = "days"
    """For integers: days since 1970-01-01 (Debezium DATE) or an epoch in s/ms/us (UTC)."""
    dayfirst: bool = False
    """For ``any``: read 01/02/2024 as 1 February."""


class Date(Transform):
    """A calendar date from text, an epoch, or a timestamp (its UTC date)."""

    name = "date"
    summary = "text (named format) / days or epoch / timestamp -> date"
    Args = DateArgs
    shorthand = "format"
    accepts = frozenset({Kind.TEXT, Kind.INT, Kind.DATE, Kind.DATETIME})

    @override
    def result_kind(self, in_kinds: Sequence[Kind], args: Any) -> Kind:
        return Kind.DATE

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        s = inputs[0]
        v = pl.col("v")
        if s.dtype == pl.Date:
            return s
        if s.dtype == UTC_US:
            expr = v.dt.date()
        elif s.dtype == pl.Int64 and args.unit == "days":
            expr = pl.when((v >= val.MIN_DAYS) & (v <= val.MAX_DAYS)).then(v).cast(pl.Int32).cast(pl.Date)
        elif s.dtype == pl.Int64:
            return _epoch(s, args.unit, False, "UTC").dt.date().rename(s.name)
        elif args.format == "any":
            return map_unique(s, lambda x: _py_any_date(x, args.dayfirst), pl.Date())
        else:
            return _text_date(s.str.strip_chars(val.WHITESPACE), args.format)
        return pl.DataFrame({"v": s}).select(expr.alias(s.name)).to_series()

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        v = inputs[0]
        if isinstance(v, dt.datetime):
            return v.astimezone(dt.UTC).date()
        if isinstance(v, dt.date):
            return v
        if isinstance(v, int):
            if args.unit == "days":
                return (
                    dt.date(1970, 1, 1) + dt.timedelta(days=v) if val.MIN_DAYS <= v <= val.MAX_DAYS else None
                )
            utc = _py_epoch(v, args.unit, False, "UTC")
            return None if utc is None else utc.date()
        if args.format == "any":
            return _py_any_date(v, args.dayfirst)
        return _py_date(val.strip_ws(v), args.format)


def _py_any_date(value: str, dayfirst: bool) -> dt.date | None:
    parsed = val.parse_any_datetime(value, dayfirst)
    return None if parsed is None else parsed.date()


class TimestampArgs(StrictModel):
    """How a point in time is written in the source."""

    format: TextFormat = "iso"
    """For text: ``iso`` (ISO 8601, offset optional), a date-only format (midnight), or ``any``."""
    unit: Literal["s", "ms", "us"] = "s"
    """For integers: the epoch unit."""
    wall_clock: bool = False
    """For integers: the epoch encodes local wall-clock time (Debezium's timestamp without time zone)."""
    timezone: str | None = None
    """Zone of wall-clock values (no offset written); default: the mapping's ``source.timezone``."""
    dayfirst: bool = False

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)


class Timestamp(Transform):
    """A UTC timestamp from ISO text, an epoch, a wall-clock time in the source's zone, or a date."""

    name = "timestamp"
    summary = "text / epoch / wall clock / date -> UTC timestamp"
    Args = TimestampArgs
    shorthand = "format"
    accepts = frozenset({Kind.TEXT, Kind.INT, Kind.DATE, Kind.DATETIME})

    @override
    def result_kind(self, in_kinds: Sequence[Kind], args: Any) -> Kind:
        return Kind.DATETIME

    @override
    def vector(self, inputs: Sequence[pl.Series], args: Any, ctx: VectorCtx) -> pl.Series:
        s = inputs[0]
        tz = args.timezone or ctx.timezone
        if s.dtype == UTC_US:
            return s
        if s.dtype == pl.Date:
            out = _localize(s.cast(pl.Datetime("us")), tz)
        elif s.dtype == pl.Int64:
            out = _epoch(s, args.unit, args.wall_clock, tz)
        elif args.format == "any":
            us = map_unique(s, lambda x: _us(val.any_to_utc(x, tz, args.dayfirst)), pl.Int64())
            out = us.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        elif args.format == "iso":
            out = _iso_datetime(s.str.strip_chars(val.WHITESPACE), tz)
        else:
            day = _text_date(s.str.strip_chars(val.WHITESPACE), args.format)
            out = _localize(day.cast(pl.Datetime("us")), tz)
        return out.rename(s.name)

    @override
    def scalar(self, inputs: Sequence[Any], args: Any, ctx: RowCtx) -> Any:
        v = inputs[0]
        tz = args.timezone or ctx.timezone
        if isinstance(v, dt.datetime):
            return v
        if isinstance(v, dt.date):
            return val.localize(dt.datetime.combine(v, dt.time()), tz)
        if isinstance(v, int):
            return _py_epoch(v, args.unit, args.wall_clock, tz)
        text = val.strip_ws(v)
        if args.format == "any":
            return val.any_to_utc(v, tz, args.dayfirst)
        if args.format == "iso":
            return _py_iso(text, tz)
        day = _py_date(text, args.format)
        return None if day is None else val.localize(dt.datetime.combine(day, dt.time()), tz)


def _us(value: dt.datetime | None) -> int | None:
    return None if value is None else val.to_epoch_us(value)


TRANSFORMS: tuple[Transform, ...] = (Date(), Timestamp())
