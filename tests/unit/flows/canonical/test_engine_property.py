"""Property: the vectorised engine maps every batch exactly like the per-record reference.

Random batches of changes (all ops, missing and malformed keys and images, TOAST placeholders,
schema drift, nulls, '', odd Unicode, mojibake, malformed and edge-of-range dates, DST gaps,
lossy money, unreadable phones and countries) go through both implementations, for the synthetic
lab mappings (every transform and option) and for every real mapping in ``config/mappings``.

``HYPOTHESIS_PROFILE=dev`` runs many more examples (``CANONICAL_EXAMPLES``, default 500).
"""

from __future__ import annotations

import json
import os
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from core.errors import TerminalError
from flows.canonical import MappedBatch, Mapping, compile_mappings, map_batch, map_batch_reference
from flows.canonical.kinds import TOAST_PLACEHOLDER, ColumnType
from flows.canonical.sample import Change, events_frame
from tests.unit.flows.canonical.conftest import CONFIG
from tests.unit.flows.canonical.lab_mappings import load_lab

settings.register_profile(
    "canonical-ci",
    max_examples=40,
    deadline=None,
    derandomize=True,  # CI: a fixed example stream, so a run is reproducible (dev profile explores)
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "canonical-dev",
    max_examples=int(os.environ.get("CANONICAL_EXAMPLES", "500")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile(
    "canonical-dev" if os.environ.get("HYPOTHESIS_PROFILE") == "dev" else "canonical-ci"
)

LAB = load_lab()
REAL = {m.ident: m for m in compile_mappings(CONFIG)}

# Values real systems produce, and the ones that break naive code.
NAMES = [  # and other free text
    "Ada Lovelace",
    "  ada   LOVELACE ",
    "MUELLER, HANS PETER",
    "AL MANSOURI, ALI",
    "Bram Werl-Arnsberg, van",
    ", x",
    "Smith,",
    ",",
    "O'NEIL-SMITH",
    "王伟",
    "太田 和也",
    "Κωνσταντίνος Παπαδόπουλος",
    "Zoë Ōtani-Łukasiewicz",
    "MÃ¼ller",
    "CafÃ©",
    "Ǆemal",
    "İstanbul",
    "ß",
    "Straße",
    "e\u0301",  # decomposed é
    "\xa0Berlin\u3000",
    "a\x1cb",
    "\t",
    " ",
    "-",
    "n/a",
    "Deutschland",
    "UK",
    "u.s.a.",
    "DEU",
    "de",
    "Holland",
    "Atlantis",
    "ada@Example.COM ",
    "bad@",
    "a@b",
    "eur",
    "XXX",
    " usd",
    "true",
    "No",
    "Y",
    "1",
    "0",
    "active",
    " Inactive",
    "A",
    "I",
    "P",
    "S",
    "closed",
    "",
    "null",
    '{"a": 1}',
]
PHONES = [
    "+49 30 1234567",
    "0044-20-80650350",
    "(212) 629-0859",
    "5531353757578",
    "030 1234567",
    "+44 (0)20 7946 0958",
    "+1 800 FLOWERS",
    "+800 1234 5678",
    "+7 812 123 45 67",
    "+39 06 1234 5678",
    "+999 1234",
    "+49-30-1234567",
    "+49 30/1234567",
    "+(44) 131 436 7902",
    "+0 123",
    "+12",
    "+1 415 555 0196",
    "+44 7700 98 4202",
    "+55 31 3 5375 7578",
    "+86 10 1234 5678",
    "+81 3 1234 5678",
    "44 20 7946 0958",
    "+4930123456789012345",
    "+ 49 30 1234567",
    "+49  30 1234567",
    "12",
    "+7",
]
DATES = [
    "2150-07-01T12:00:00",
    "2100-03-28 02:30",
    "01/02/1990",
    "2/30/2020",
    "12/31/0000",
    "31.12.1999",
    "1999-12-31",
    "19991231",
    "2024-03-31T02:30:00",
    "2024-10-27 02:30",
    "2024-05-16T01:09:25.000000Z",
    "2024-05-16T01:09:25.123456789+05:30",
    "2024-05-16T23:59:60Z",
    "0001-01-01T00:30:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "March 3rd, 2021",
    "yesterday",
    "1.50",
    "12.345",
    "-0.5",
    "123456789012345.67",
]
OTHER = ["1e5", "0012", "99999999999999999999"]
# Values real systems produce, and the ones that break naive code.
TEXT_SAMPLES = [*NAMES, *PHONES, *DATES, *OTHER, TOAST_PLACEHOLDER]
INT_SAMPLES = [
    0, 1, -1, 2, 10, 1_700_000_000, 1_711_846_800, 253_402_300_799, 253_402_300_800, -62_135_596_800,
    -62_135_596_801, 10**14, 10**14 + 1, -(10**14), 2**62, -(2**63), 2**63 - 1, 4500000001,
]  # fmt: skip
DAY_SAMPLES = [0, 19_000, -719_162, -719_163, 2_932_896, 2_932_897, -1]
US_SAMPLES = [
    0,
    1_711_848_600_000_000,  # 2024-03-31 01:30 wall clock
    1_711_852_200_000_000,  # 02:30: does not exist in Berlin
    1_729_996_200_000_000,  # 2024-10-27 02:30: ambiguous in Berlin
    -62_135_596_800_000_000,  # 0001-01-01 (localised: before year 1 in UTC)
    5_803_560_000_000_000,  # 2153-11-28: zone rules beyond 2099 (polars stops applying DST)
    4_118_227_200_000_000,  # 2100-07-02 12:00 wall clock
    253_402_300_799_999_999,
    253_402_300_800_000_000,
    -(2**63),
    2**63 - 1,
]


def text_values() -> st.SearchStrategy[str | None]:
    odd = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
    joined = st.lists(st.sampled_from(TEXT_SAMPLES), min_size=2, max_size=3).map(" ".join)
    return st.one_of(st.none(), st.sampled_from(TEXT_SAMPLES), odd, joined)


def value_for(ctype: ColumnType) -> st.SearchStrategy[Any]:
    if ctype in (
        ColumnType.TEXT,
        ColumnType.UUID,
        ColumnType.ENUM,
        ColumnType.DECIMAL,
        ColumnType.TIMESTAMPTZ,
    ):
        return text_values()
    if ctype == ColumnType.JSON:
        return st.one_of(st.none(), st.just("{}"), st.just('{"vip": true}'), text_values())
    if ctype == ColumnType.BOOL:
        return st.one_of(st.none(), st.booleans())
    if ctype == ColumnType.FLOAT:
        return st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32))
    if ctype == ColumnType.DATE:
        return st.one_of(st.none(), st.sampled_from(DAY_SAMPLES), st.integers(-800_000, 3_000_000))
    if ctype in (ColumnType.TIMESTAMP, ColumnType.TIMESTAMP_MS):
        return st.one_of(st.none(), st.sampled_from(US_SAMPLES), st.integers(-(2**62), 2**62))
    return st.one_of(st.none(), st.sampled_from(INT_SAMPLES), st.integers(-(10**15), 10**15))


def key_value(ctype: ColumnType) -> st.SearchStrategy[Any]:
    if ctype == ColumnType.INT:
        return st.integers(-5, 50)
    return st.sampled_from(["a", "B-1", "ü", "x|y", "1"])


@st.composite
def image(draw: st.DrawFn, mapping: Mapping, key: dict[str, Any]) -> str:
    doc: dict[str, Any] = {c: draw(value_for(t)) for c, t in mapping.columns.items()}
    doc.update(key)
    drift = draw(st.sampled_from(["none"] * 12 + ["added", "removed", "retyped", "malformed", "array"]))
    if drift == "added":
        doc[draw(st.sampled_from(["extra", "version", "tags"]))] = draw(
            st.one_of(st.none(), st.integers(), st.text(max_size=4), st.lists(st.integers(), max_size=2))
        )
    elif drift == "removed":
        doc.pop(draw(st.sampled_from(sorted(mapping.columns))), None)
    elif drift == "retyped":
        col = draw(st.sampled_from(sorted(mapping.columns)))
        doc[col] = draw(st.one_of(st.integers(-5, 5), st.text(max_size=3), st.booleans(), st.floats(0, 2)))
    elif drift == "malformed":
        return draw(st.sampled_from(["not json", "", "{", "null"]))
    elif drift == "array":
        return "[1, 2]"
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


@st.composite
def changes(draw: st.DrawFn, mapping: Mapping) -> list[Change]:
    out = []
    for _ in range(draw(st.integers(1, 25))):
        op = draw(st.sampled_from(["c", "c", "u", "u", "r", "d", "d", "t", "m"]))
        key = {c: draw(key_value(mapping.columns[c])) for c in mapping.key}
        key_text = draw(
            st.sampled_from(
                [json.dumps(key)] * 8 + [None, "{}", "not json", json.dumps({c: None for c in mapping.key})]
            )
        )
        if op == "t":
            out.append(Change("t"))
        elif op == "d":
            before = draw(st.one_of(st.none(), image(mapping, key)))
            out.append(Change("d", key=key_text, before=before))
        else:
            after = draw(
                st.one_of(image(mapping, key), st.just(None)) if draw(st.booleans()) else image(mapping, key)
            )
            out.append(Change(op, key=key_text, after=after if after is not None else None))
    return out


def run_both(
    mapping: Mapping, batch: list[Change]
) -> tuple[MappedBatch | Exception, MappedBatch | Exception]:
    events = events_frame(mapping, batch)
    # Change(after=None) for c/u/r is kept as a missing image: events_frame only builds JSON from rows.
    results: list[MappedBatch | Exception] = []
    for fn in (map_batch, map_batch_reference):
        try:
            results.append(fn(mapping, events))
        except TerminalError as exc:
            results.append(exc)
    return results[0], results[1]


def assert_same(engine: MappedBatch | Exception, reference: MappedBatch | Exception) -> None:
    if isinstance(reference, Exception):
        assert isinstance(engine, Exception), f"reference raised {reference}, engine did not"
        assert str(engine) == str(reference)
        return
    assert not isinstance(engine, Exception), f"engine raised {engine}"
    assert_frame_equal(engine.records, reference.records)
    assert_frame_equal(engine.rejects, reference.rejects)
    assert engine.drift == reference.drift
    assert engine.entity == reference.entity


@pytest.mark.parametrize("table", sorted(LAB))
def test_engine_equals_reference_on_lab_mappings(table: str) -> None:
    mapping = LAB[table]

    @PROFILE
    @given(batch=changes(mapping))
    def check(batch: list[Change]) -> None:
        assert_same(*run_both(mapping, batch))

    check()


@pytest.mark.parametrize("ident", sorted(REAL), ids=lambda i: ".".join(i))
def test_engine_equals_reference_on_real_mappings(ident: tuple[str, str, str]) -> None:
    mapping = REAL[ident]

    @settings(PROFILE, max_examples=max(8, PROFILE.max_examples // 4))
    @given(batch=changes(mapping))
    def check(batch: list[Change]) -> None:
        assert_same(*run_both(mapping, batch))

    check()


def test_fail_policy_raises_in_both() -> None:
    import dataclasses

    mapping = dataclasses.replace(LAB["lines"], drift="fail")
    extra = json.dumps({"order_no": 1, "line": 1, "brand_new": 5})
    engine, reference = run_both(mapping, [Change("c", key='{"order_no":1,"line":1}', after=extra)])
    assert isinstance(engine, TerminalError) and "brand_new" in str(engine)
    assert_same(engine, reference)


def test_one_realistic_row_maps_with_issues_and_extras() -> None:
    """A concrete row through both implementations, checked value by value."""
    mapping = LAB["people"]
    row = {
        "id": 1, "name": "MUELLER, HANS", "first": "hans", "last": "Müller", "email": "H@X.DE ",
        "phone": "030 1234567", "country": "Deutschland", "status": " A", "flag": 1, "born": "02/30/1990",
        "birth": 0, "seen": 0,
        "at": "2024-05-16T01:09:25Z", "opt": False, "note": "MÃ¼ller", "cur": "eur", "extra": 1,
    }  # fmt: skip
    after = json.dumps(row, ensure_ascii=False)
    engine, reference = run_both(mapping, [Change("c", key='{"id":1}', after=after)])
    assert_same(engine, reference)
    assert isinstance(engine, MappedBatch)
    rec = engine.records.row(0, named=True)
    assert rec["first_name"] == "Hans" and rec["last_name"] == "Mueller"
    assert rec["issues"] == [
        'mobile_phone: phone(strict=True, digits_international=True) failed on "030 1234567"',
        'birth_date: date(format=mdy) failed on "02/30/1990"',
    ]
    assert rec["extras"] == '{"extra":1}'
    assert rec["phone"] == "+49301234567" and rec["country"] == "DE" and rec["email"] == "h@x.de"
    assert pl.Series([rec["street2"]]).item() == "Müller"
