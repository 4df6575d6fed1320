"""The vectorised phone fast path decides exactly what phonenumbers decides, or leaves the row alone."""

from __future__ import annotations

import phonenumbers
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.canonical.transforms.phone_fast import calling_codes, fast_e164
from flows.canonical.values import phone_e164

CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


@st.composite
def international(draw: st.DrawFn) -> str:
    cc = str(draw(st.sampled_from(CODES))) if draw(st.booleans()) else str(draw(st.integers(0, 999)))
    prefix = draw(st.sampled_from(["", "", "0", "1", "8", "180020", "00"]))
    national = prefix + draw(st.text("0123456789", max_size=15))
    chars = []
    for c in cc + national:
        chars.append(c)
        if draw(st.integers(0, 9)) == 0:
            chars.append(draw(st.sampled_from(" ()./-")))
    plus = draw(st.sampled_from(["+", "+", "+", "", "+ ", " +"]))
    return plus + "".join(chars)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(numbers=st.lists(international(), min_size=1, max_size=40), digits_international=st.booleans())
def test_fast_path_equals_phonenumbers(numbers: list[str], digits_international: bool) -> None:
    series = pl.Series(numbers, dtype=pl.String)
    regions = pl.Series([None] * len(numbers), dtype=pl.String)
    decided, e164 = fast_e164(series, regions, digits_international=digits_international)
    for number, done, value in zip(numbers, decided.to_list(), e164.to_list(), strict=True):
        if done:
            assert value == phone_e164(number, None, False, digits_international), number


def test_the_common_shapes_take_the_fast_path() -> None:
    numbers = ["+44 131 436 7902", "+16177111964", "+33 6 12 34 56 78", "+49 30 1234567"]
    decided, e164 = fast_e164(
        pl.Series(numbers), pl.Series([None] * 4, dtype=pl.String), digits_international=False
    )
    assert decided.all()
    assert e164.to_list() == ["+441314367902", "+16177111964", "+33612345678", "+49301234567"]


def test_national_prefixes_and_regex_prefixes_are_left_to_phonenumbers() -> None:
    numbers = ["+44 (0)20 7946 0958", "+1 1234567890", "+55 11 91234 5678", "030 1234567"]
    decided, _ = fast_e164(
        pl.Series(numbers), pl.Series(["GB", None, None, "DE"]), digits_international=False
    )
    assert decided.to_list() == [False, False, False, False]
    table = calling_codes()
    assert table.filter(pl.col("cc") == "55").get_column("simple").item() is False  # BR: a regex prefix
    assert table.filter(pl.col("cc") == "44").get_column("p2").item() == "180020"
