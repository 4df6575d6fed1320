"""The transform library on real-world values: each example runs the vectorised and the per-record form.

``run`` returns the vectorised result and asserts the per-record form agrees on every value, so each
case checks the expected value and engine/reference parity at once.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from flows.canonical.kinds import KIND_DTYPE, Kind
from flows.canonical.transforms import REGISTRY, RowCtx, VectorCtx
from flows.canonical.values import country_alpha2, phone_e164

UTC = dt.UTC


def run(name: str, args: Any, values: list[Any], kind: Kind = Kind.TEXT, **fields: list[Any]) -> list[Any]:
    t = REGISTRY[name]
    parsed = t.parse_args(args)
    dtype = pl.Decimal(38, 3) if kind == Kind.DECIMAL else KIND_DTYPE[kind]
    series = pl.Series("v", values, dtype=dtype)
    ctx_fields = {k: pl.Series(k, v) for k, v in fields.items()}
    vector = t.vector([series], parsed, VectorCtx("Europe/Berlin", ctx_fields)).to_list()
    scalar = []
    for i, v in enumerate(values):
        row = RowCtx("Europe/Berlin", {k: vs[i] for k, vs in fields.items()})
        scalar.append(None if v is None and not t.handles_null else t.scalar([v], parsed, row))
    assert vector == scalar, f"{name}: engine {vector} != reference {scalar}"
    return vector


def test_text_cleaning_repairs_mojibake_normalises_and_collapses() -> None:
    values = ["  Ada   Lovelace ", "MÃ¼ller", "e\u0301clair", "\u00a0Zoë\u3000", "", None]
    assert run("text", None, values) == ["Ada Lovelace", "Müller", "éclair", "Zoë", "", None]


def test_fix_case_only_touches_single_case_text() -> None:
    values = ["MUELLER", "o'neil-smith", "McDonald", "ΠΑΠΑΔΟΠΟΥΛΟΣ", "123"]
    assert run("fix_case", None, values) == ["Mueller", "O'Neil-Smith", "McDonald", "Παπαδοπουλος", "123"]


NAMES = ["Ada King Lovelace", "MUELLER, Hans Peter", "Cher", "太田 和也", " ", "AL MANSOURI, Ali"]


@pytest.mark.parametrize(
    ("part", "order", "expected"),
    [
        ("first", "given_first", ["Ada", "Hans", None, "太田", None, "Ali"]),
        ("middle", "given_first", ["King", "Peter", None, None, None, None]),
        ("last", "given_first", ["Lovelace", "MUELLER", "Cher", "和也", None, "AL MANSOURI"]),
        ("first", "auto", ["Ada", "Hans", None, "和也", None, "Ali"]),  # CJK script: family name first
        ("last", "auto", ["Lovelace", "MUELLER", "Cher", "太田", None, "AL MANSOURI"]),
        ("first", "family_first", ["King", "Hans", None, "和也", None, "Ali"]),
    ],
)
def test_split_name(part: str, order: str, expected: list[str | None]) -> None:
    assert run("split_name", {"part": part, "order": order}, NAMES) == expected


def test_email() -> None:
    assert run("email", None, [" Ada@Example.COM ", "not-an-email", "a@b", "x y@z.io"]) == [
        "ada@example.com",
        None,
        None,
        None,
    ]


def test_enum_compares_ints_and_bools_as_text() -> None:
    assert run("enum", {1: "active", 0: "inactive"}, [1, 0, 2, None], Kind.INT) == [
        "active",
        "inactive",
        None,
        None,
    ]
    assert run("enum", {"A": "active"}, ["A", "a", " A"]) == ["active", None, None]


def test_presence_maps_null_to_a_value() -> None:
    assert run("presence", {"present": "organisation", "absent": "person"}, ["ACME", None]) == [
        "organisation",
        "person",
    ]


def test_bool_and_not() -> None:
    assert run("bool", None, ["Yes", " 0", "t", "maybe"]) == [True, False, True, None]
    assert run("bool", None, [1, 0, 2], Kind.INT) == [True, False, None]
    assert run("not", None, [True, False, None], Kind.BOOL) == [False, True, None]


def test_null_if() -> None:
    assert run("null_if", ["-", "n/a"], ["-", "n/a", "x"]) == [None, None, "x"]


def test_country_names_aliases_and_codes() -> None:
    values = [
        "Germany",
        "Deutschland",
        "DEU",
        "de",
        "UK",
        "U.S.A.",
        "United States of America",
        "Holland",
        "Atlantis",
    ]
    assert run("country", None, values) == ["DE", "DE", "DE", "DE", "GB", "US", "US", "NL", None]


def test_currency() -> None:
    assert run("currency", None, ["eur", " usd ", "XXX", "EURO"]) == ["EUR", "USD", "XXX", None]


def test_phone_formats_to_e164_with_the_records_country() -> None:
    values = ["+44 131 436 7902", "(212) 629-0859", "0044-20-80650350", "030 1234567", "5531353757578", "12"]
    regions = ["GB", "US", "GB", "DE", None, "DE"]  # '12' is only a local number in DE: no E.164 form
    out = run("phone", {"region_from": "country"}, values, country=regions)
    assert out == ["+441314367902", "+12126290859", "+442080650350", "+49301234567", "+5531353757578", None]


def test_phone_digits_international_prefers_the_international_reading() -> None:
    assert run("phone", {"region": "US", "digits_international": True}, ["4930123456"]) == ["+4930123456"]
    assert run("phone", {"region": "US"}, ["2126290859"]) == ["+12126290859"]


def test_phone_fast_path_agrees_with_phonenumbers_on_awkward_international_forms() -> None:
    values = ["+44 (0)20 7946 0958", "+1 800 FLOWERS", "+999 1234", "+39 06 1234 5678", "+(44) 131 436 7902"]
    out = run("phone", None, values)
    assert out == [phone_e164(v, None) for v in values]
    assert out[0] == "+442079460958"  # the national prefix in brackets is dropped, as phonenumbers does


@pytest.mark.parametrize(
    ("args", "values", "expected"),
    [
        (
            "mdy",
            ["01/02/1990", "1/2/1990", "02/30/1990", "13/01/1990", "12/31/0000"],
            [dt.date(1990, 1, 2), dt.date(1990, 1, 2), None, None, None],
        ),
        ("dmy", ["31.12.1999", "31/12/1999"], [dt.date(1999, 12, 31)] * 2),
        ("ymd", ["19991231", "1999-12-31"], [dt.date(1999, 12, 31), None]),
        ("iso", ["1999-12-31", "1999-2-3", "31.12.1999"], [dt.date(1999, 12, 31), dt.date(1999, 2, 3), None]),
        (
            {"format": "any", "dayfirst": True},
            ["3 March 2021", "01/02/2024", "no date"],
            [dt.date(2021, 3, 3), dt.date(2024, 2, 1), None],
        ),
    ],
)
def test_text_dates(args: Any, values: list[str], expected: list[dt.date | None]) -> None:
    assert run("date", args, values) == expected


def test_dates_from_debezium_days_and_epochs() -> None:
    assert run("date", None, [0, 19785, -719163], Kind.INT) == [
        dt.date(1970, 1, 1),
        dt.date(2024, 3, 3),
        None,
    ]
    assert run("date", {"unit": "s"}, [1558369060], Kind.INT) == [dt.date(2019, 5, 20)]


def test_iso_timestamps_with_and_without_offsets() -> None:
    values = [
        "2024-05-16T01:09:25.000000Z",
        "2024-05-16T01:09:25.123456789+05:30",
        "2024-05-16 03:09",  # wall clock in Europe/Berlin (UTC+2 in May)
        "2024-03-31T02:30:00",  # does not exist in Berlin (clocks jump 02:00 -> 03:00)
        "2024-10-27T02:30:00",  # exists twice: the earlier instant (still summer time)
        "2024-05-16T23:59:60Z",
        "0001-01-01T00:30:00+01:00",
    ]
    assert run("timestamp", None, values) == [
        dt.datetime(2024, 5, 16, 1, 9, 25, tzinfo=UTC),
        dt.datetime(2024, 5, 15, 19, 39, 25, 123456, tzinfo=UTC),
        dt.datetime(2024, 5, 16, 1, 9, tzinfo=UTC),
        None,
        dt.datetime(2024, 10, 27, 0, 30, tzinfo=UTC),
        None,
        None,
    ]


def test_epoch_and_wall_clock_timestamps() -> None:
    assert run("timestamp", {"unit": "s"}, [1554567460], Kind.INT) == [
        dt.datetime(2019, 4, 6, 16, 17, 40, tzinfo=UTC)
    ]
    # Debezium's timestamp without time zone: the wall clock as if it were UTC, in micros.
    wall = 1_652_544_769_000_000  # 2022-05-14 16:12:49 local
    assert run("timestamp", {"unit": "us", "wall_clock": True}, [wall], Kind.INT) == [
        dt.datetime(2022, 5, 14, 14, 12, 49, tzinfo=UTC)
    ]
    assert run("timestamp", {"unit": "s"}, [2**62], Kind.INT) == [None]


def test_wall_clock_times_beyond_2100_follow_the_zone_rules() -> None:
    # polars stops applying daylight-saving rules after 2099; the engine hands these to Python.
    summer = dt.datetime(2153, 7, 1, 12, 0) - dt.datetime(1970, 1, 1)
    wall = summer // dt.timedelta(microseconds=1)
    out = run("timestamp", {"unit": "us", "wall_clock": True}, [wall], Kind.INT)
    assert out == [dt.datetime(2153, 7, 1, 10, 0, tzinfo=UTC)]  # CEST, UTC+2


def test_money_minor_units_and_lossless_decimals() -> None:
    assert run("money", {"unit": "minor"}, [1234, None], Kind.INT) == [1234, None]
    values = ["12.30", "12.345", "-0.5", "1e5", " 7 ", "100000000000001"]
    assert run("money", {"unit": "major", "currency": "EUR"}, values) == [1230, None, -50, None, 700, None]
    assert run("money", {"unit": "major", "currency": "JPY"}, ["1200", "1200.50"]) == [1200, None]
    assert run("money", {"unit": "major", "currency": "BHD"}, ["1.234"]) == [1234]
    out = run(
        "money",
        {"unit": "major", "currency_from": "currency"},
        ["5.00", "5.00", "5"],
        currency=["EUR", "JPY", None],
    )
    assert out == [500, 5, None]  # 5.00 yen is 5 (JPY has no minor unit)


def test_decimal_never_rounds() -> None:
    assert run("decimal", 3, ["971.020", "1.0005", "-2", "x"]) == [
        Decimal("971.020"),
        None,
        Decimal("-2.000"),
        None,
    ]
    assert run("decimal", 3, [5], Kind.INT) == [Decimal("5.000")]


def test_join_coalesce_ref_take_several_columns() -> None:
    a = pl.Series(["Ada", None, None])
    b = pl.Series(["Lovelace", "Hopper", None])
    ctx = VectorCtx("UTC")
    assert REGISTRY["join"].vector([a, b], REGISTRY["join"].parse_args(None), ctx).to_list() == [
        "Ada Lovelace",
        "Hopper",
        None,
    ]
    assert REGISTRY["coalesce"].vector([a, b], None, ctx).to_list() == ["Ada", "Hopper", None]
    ids = pl.Series([4500000001, 7, None])
    items = pl.Series([10, None, 1])
    assert REGISTRY["ref"].vector([ids, items], None, ctx).to_list() == ["4500000001|10", None, None]


def test_country_lookup_is_cached_across_calls() -> None:
    country_alpha2.cache_clear()
    country_alpha2("Deutschland")
    country_alpha2("Deutschland")
    assert country_alpha2.cache_info().hits == 1
