"""A vectorised fast path for phone numbers already written internationally (``+44 131 436 7902``).

phonenumbers is pure Python (~25 µs a number) and customer tables hold mostly distinct numbers, so it
would dominate the mapping. For the common shape "``+``, country code, digits and separators" its
answer can be computed column-wise from its own metadata, exactly:

* parsing keeps the digits, finds the country calling code as the shortest prefix (1-3 digits)
  that is an assigned code, and strips a national prefix only when the national number starts with
  one (``+44 (0)20 ...``);
* a number is possible (not just locally) when the national number's length is one of the possible
  lengths of the code's main region, and the E.164 text is ``+`` followed by the digits.

The fast path takes only those rows and only country codes whose national prefix for parsing is a
plain digit string (or a few alternatives of them, as GB's ``0|180020``); a national number starting
with such a prefix, a strict check (validity needs the number patterns), letters, extensions or any
other character go to phonenumbers. The property tests compare the result with phonenumbers itself
(the reference implementation never takes this path).
"""

from __future__ import annotations

import re
from functools import cache

import phonenumbers
import polars as pl
from phonenumbers import PhoneMetadata

from flows.canonical import values as val

_PLUS_FORM = r"^\+[0-9][0-9 ()./-]*$"
_PLAIN_FORM = r"^[1-9][0-9 ()./-]*$"  # digits-only values read as international (no region given)
_LITERAL_ALTERNATIVES = re.compile(r"^[0-9]+(\|[0-9]+)*$")


@cache
def calling_codes() -> pl.DataFrame:
    """Per assigned calling code: national prefixes to watch (up to 2) and possible lengths (bitmask)."""
    rows = []
    for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
        region = phonenumbers.region_code_for_country_code(cc)
        md = PhoneMetadata.metadata_for_region_or_calling_code(cc, region)
        if md is None or md.general_desc is None:
            continue
        npp = md.national_prefix_for_parsing
        prefixes = [] if npp is None else npp.split("|")
        simple = npp is None or (_LITERAL_ALTERNATIVES.match(npp) is not None and len(prefixes) <= 2)
        # Local-only lengths do not count: phone_e164 takes only fully possible numbers.
        lengths = [
            n for n in md.general_desc.possible_length if n not in md.general_desc.possible_length_local_only
        ]
        mask = 0
        for n in lengths:
            if 0 < n < 63:
                mask |= 1 << n
        rows.append(
            {
                "cc": str(cc),
                "simple": simple,
                "p1": prefixes[0] if simple and prefixes else None,
                "p2": prefixes[1] if simple and len(prefixes) > 1 else None,
                "lengths": mask,
            }
        )
    return pl.DataFrame(
        rows,
        schema={"cc": pl.String, "simple": pl.Boolean, "p1": pl.String, "p2": pl.String, "lengths": pl.Int64},
    )


def fast_e164(
    values: pl.Series, region: pl.Series, *, digits_international: bool
) -> tuple[pl.Series, pl.Series]:
    """``(decided, e164)``: rows the fast path decides, and their E.164 text (null: not a number).

    ``region`` is the default region per row (only digits-only values without a region qualify as
    international numbers, as in :func:`flows.canonical.values.phone_e164`).
    """
    t = pl.col("v").str.strip_chars(val.WHITESPACE)
    eligible = t.str.contains(_PLUS_FORM)
    if digits_international:
        eligible = eligible | (pl.col("r").is_null() & t.str.contains(_PLAIN_FORM))
    frame = pl.DataFrame({"v": values, "r": region}).select(
        ok=eligible.fill_null(False), d=t.str.replace_all("[^0-9]", "")
    )
    codes = calling_codes()
    known = set(codes.get_column("cc").to_list())
    # The shortest prefix that is an assigned code, as phonenumbers extracts it.
    d = pl.col("d")
    cc = (
        pl.when(d.str.slice(0, 1).is_in(known))
        .then(d.str.slice(0, 1))
        .when(d.str.slice(0, 2).is_in(known))
        .then(d.str.slice(0, 2))
        .when(d.str.slice(0, 3).is_in(known))
        .then(d.str.slice(0, 3))
    )
    frame = frame.with_columns(cc=cc).join(codes, on="cc", how="left", maintain_order="left")
    national = d.str.slice(pl.col("cc").str.len_chars())
    starts_with_prefix = national.str.starts_with(pl.col("p1")).fill_null(False) | national.str.starts_with(
        pl.col("p2")
    ).fill_null(False)
    length = national.str.len_chars().cast(pl.Int64)
    possible = (pl.col("lengths") // pl.lit(2, pl.Int64).pow(length)) % 2 == 1
    decided = pl.col("ok") & (pl.col("cc").is_null() | (pl.col("simple") & ~starts_with_prefix))
    e164 = pl.when(decided & pl.col("cc").is_not_null() & (length < 63) & possible).then(
        pl.concat_str(pl.lit("+"), d)
    )
    out = frame.select(decided=decided.fill_null(False), e164=e164)
    return out.get_column("decided"), out.get_column("e164")
