"""Plain-Python value helpers shared by the vectorised engine and the per-record reference.

Two kinds live here:

* the lookups that have no vectorised form (phone numbers, countries, mojibake repair, free-form
  dates): the engine calls them once per *unique* value of a batch, the reference once per record,
  and both go through the same LRU caches so repeated values across batches cost nothing;
* constants both implementations must agree on (what counts as whitespace, key formatting, the
  ISO 4217 minor units, epoch bounds), so the two cannot drift apart by accident.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import ftfy
import phonenumbers
import pycountry
from dateutil import parser as dateutil_parser  # type: ignore[import-untyped]  # no stubs shipped

# Unicode White_Space. Spelled out because Python's str.isspace() also counts the ASCII separators
# \x1c-\x1f while Rust (polars) does not: both implementations use exactly this set.
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
WS_CLASS_RUST = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE) + "]"
_WS_RUN = re.compile("[" + "".join(f"\\u{ord(c):04x}" for c in WHITESPACE) + "]+")

CACHE_SIZE = 1 << 16


def strip_ws(value: str) -> str:
    """Trim Unicode whitespace at both ends."""
    return value.strip(WHITESPACE)


def collapse_ws(value: str) -> str:
    """Replace every run of whitespace by one space (no trimming)."""
    return _WS_RUN.sub(" ", value)


def clean_text(value: str) -> str:
    """Collapse whitespace runs to one space, then trim: the usual tidy-up of a typed field."""
    return strip_ws(collapse_ws(value))


# ---- text repair -------------------------------------------------------------------------------

# Only the encoding repairs: no quote uncurling, width folding, ligature splitting, control-character
# removal. With this configuration ASCII text is never changed, which lets the engine skip ASCII
# values entirely (most of them) and call ftfy only on the unique non-ASCII ones.
_FTFY = ftfy.TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=False,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    remove_control_chars=False,
    normalization="NFC",
    explain=False,
)


@lru_cache(maxsize=CACHE_SIZE)
def fix_text(value: str) -> str:
    """Repair mis-decoded text (``MÃ¼ller`` -> ``Müller``) and normalise to NFC."""
    if value.isascii():
        return value
    return unicodedata.normalize("NFC", ftfy.fix_text(value, _FTFY))


@lru_cache(maxsize=CACHE_SIZE)
def nfc(value: str) -> str:
    """Unicode NFC normalisation (composed characters)."""
    return value if value.isascii() else unicodedata.normalize("NFC", value)


_WORD = re.compile(r"[^\W\d_]+")  # runs of letters: apostrophes, hyphens and spaces start a new word


@lru_cache(maxsize=CACHE_SIZE)
def fix_case(value: str) -> str:
    """Title-case text typed in ALL CAPS or all lower case (``MUELLER`` -> ``Mueller``); keep mixed case.

    Each run of letters gets an upper-case first letter and a lower-case rest (``O'NEIL-SMITH`` ->
    ``O'Neil-Smith``); lower-casing whole words keeps Greek final sigma right (``...ΟΣ`` -> ``...ος``).
    """
    letters = [c for c in value if c.isalpha()]
    if not letters:
        return value
    if any(c.isupper() for c in letters) and any(c.islower() for c in letters):
        return value
    return _WORD.sub(lambda m: m[0][0].upper() + m[0][1:].lower(), value)


# ---- countries ---------------------------------------------------------------------------------

# What people type that pycountry does not know (its names are the ISO ones). Keys are compared
# after NFC, trimming, case folding and removing dots.
COUNTRY_ALIASES: dict[str, str] = {
    "deutschland": "DE",
    "allemagne": "DE",
    "uk": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "great britain": "GB",
    "britain": "GB",
    "us": "US",
    "usa": "US",
    "america": "US",
    "united states of america": "US",
    "holland": "NL",
    "the netherlands": "NL",
    "nederland": "NL",
    "russia": "RU",
    "uae": "AE",
    "emirates": "AE",
    "turkey": "TR",
    "espana": "ES",
    "españa": "ES",
    "italia": "IT",
    "polska": "PL",
    "brasil": "BR",
    "hellas": "GR",
    "ellada": "GR",
    "schweiz": "CH",
    "suisse": "CH",
    "osterreich": "AT",
    "österreich": "AT",
    "south korea": "KR",
    "korea": "KR",
    "czech republic": "CZ",
    "ivory coast": "CI",
    "vatican": "VA",
}


@lru_cache(maxsize=CACHE_SIZE)
def country_alpha2(value: str) -> str | None:
    """ISO 3166-1 alpha-2 for a country name, alias, alpha-2, alpha-3 or numeric code; None if unknown."""
    key = strip_ws(unicodedata.normalize("NFC", value)).casefold().replace(".", "")
    key = collapse_ws(key)
    if not key:
        return None
    if key in COUNTRY_ALIASES:
        return COUNTRY_ALIASES[key]
    try:
        country = pycountry.countries.lookup(key)
    except LookupError:
        return None
    return str(country.alpha_2)


# ---- currencies and money ----------------------------------------------------------------------

CURRENCIES: frozenset[str] = frozenset(str(c.alpha_3) for c in pycountry.currencies)

# ISO 4217 minor units that are not 2 (pycountry does not carry them).
_MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        (
            "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
            "VUV", "XAF", "XOF", "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}  # fmt: skip
MAX_MINOR_DIGITS = 4


def minor_digits(currency: str) -> int:
    """Decimal places of a currency's minor unit (2 unless ISO 4217 says otherwise)."""
    return _MINOR_UNITS.get(currency, 2)


MINOR_UNIT_TABLE: dict[str, int] = dict(_MINOR_UNITS)

# A plain decimal number: optional sign, digits, optional fraction. No exponent, no grouping.
DECIMAL_RE = r"^([+-]?)([0-9]{1,18})(?:\.([0-9]+))?$"
INT_RE = r"^[+-]?[0-9]{1,18}$"
_DECIMAL = re.compile(DECIMAL_RE)


def decimal_to_scaled(text: str, digits: int) -> int | None:
    """``"12.30"`` with 2 digits -> 1230. None if not a number or if it has more (non-zero) decimals."""
    m = _DECIMAL.match(strip_ws(text))
    if not m:
        return None
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    if frac[digits:].strip("0"):
        return None
    value: int = int(whole) * 10**digits + int((frac[:digits]).ljust(digits, "0") or "0")
    return -value if sign == "-" else value


# ---- email -------------------------------------------------------------------------------------

# Deliberately loose: one @, no whitespace, a dot in the domain. Deliverability is not our business.
EMAIL_RE = r"^[^@" + WHITESPACE + r"]+@[^@" + WHITESPACE + r"]+\.[^@" + WHITESPACE + r"]+$"
EMAIL_RE_RUST = (
    r"^[^@"
    + WS_CLASS_RUST[1:-1]
    + r"]+@[^@"
    + WS_CLASS_RUST[1:-1]
    + r"]+\.[^@"
    + WS_CLASS_RUST[1:-1]
    + r"]+$"
)
_EMAIL = re.compile(EMAIL_RE)


def is_email(value: str) -> bool:
    """Whether ``value`` looks like an email address (see :data:`EMAIL_RE`)."""
    return _EMAIL.match(value) is not None


# ---- phones ------------------------------------------------------------------------------------

_NOT_DIGITS = re.compile(r"[\s().\-/]")


@lru_cache(maxsize=CACHE_SIZE)
def phone_e164(
    value: str, region: str | None, strict: bool = False, digits_international: bool = False
) -> str | None:
    """E.164 form of a phone number as typed, or None when it cannot be read.

    Readings tried, in order: ``+...`` as written; with ``region`` (ISO alpha-2: national numbers
    and that country's international prefix); a leading ``00`` as ``+`` (the international prefix
    almost everywhere); a digits-only value not starting with 0 as an international number without
    its ``+`` (web forms). With ``digits_international`` that last reading comes before the regional
    one. The first reading that is a valid number wins, else (unless ``strict``) the first one of a
    possible length for its country.
    """
    text = strip_ws(value)
    digits = _NOT_DIGITS.sub("", text)
    plain = digits.isascii() and digits.isdigit()
    tries: list[tuple[str, str | None]] = []
    if text.startswith("+"):
        tries.append((text, None))
    intl = [("+" + digits, None)] if plain and not digits.startswith("0") else []
    if digits_international:
        tries += intl
    if region and not text.startswith("+"):
        tries.append((text, region))
    if plain and digits.startswith("00"):
        tries.append(("+" + digits[2:], None))
    if not digits_international:
        tries += intl
    # The first valid reading wins, else the first possible one. Validity (costly: it matches the
    # number against its region's patterns) implies a possible length, so it is only checked on
    # possible readings, and not at all when the last reading is the only possible one.
    first_possible = None
    best = None
    for i, (candidate, reg) in enumerate(tries):
        try:
            number = phonenumbers.parse(candidate, reg)
        except phonenumbers.NumberParseException:
            continue
        # Numbers only diallable inside their area (IS_POSSIBLE_LOCAL_ONLY) have no E.164 form.
        if phonenumbers.is_possible_number_with_reason(number) != phonenumbers.ValidationResult.IS_POSSIBLE:
            continue
        if not strict and first_possible is None and i == len(tries) - 1:
            best = number
            break
        if phonenumbers.is_valid_number(number):
            best = number
            break
        if first_possible is None:
            first_possible = number
    if best is None and not strict:
        best = first_possible
    if best is None:
        return None
    return str(phonenumbers.format_number(best, phonenumbers.PhoneNumberFormat.E164))


# ---- names -------------------------------------------------------------------------------------


# Scripts whose names are written family name first (Han, kana, Hangul); same class in both regex dialects.
_CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF))
CJK_CLASS_RUST = "[" + "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in _CJK_RANGES) + "]"
_CJK = re.compile("[" + "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in _CJK_RANGES) + "]")


def is_cjk(value: str) -> bool:
    """Whether the text contains Chinese, Japanese or Korean characters."""
    return _CJK.search(value) is not None


def split_name(value: str, part: str, family_first: bool) -> str | None:
    """One part (``first``, ``middle``, ``last``) of a personal name held in one field.

    ``FAMILY, GIVEN [MIDDLE...]`` (a comma) is read family-first whatever the setting. Otherwise the
    words are given-first (``Ada King Lovelace``) or, with ``family_first``, ``Wang Wei Ming``. A
    single word is the family name.
    """
    text = clean_text(value)
    if "," in text:
        family, _, rest = text.partition(",")
        words = [w for w in [strip_ws(family), *strip_ws(rest).split(" ")] if w]
        family_first = True
    else:
        words = text.split(" ") if text else []
    if not words:
        return None
    if len(words) == 1:
        return words[0] if part == "last" else None
    if family_first:
        last, first, middle = words[0], words[1], words[2:]
    else:
        first, last, middle = words[0], words[-1], words[1:-1]
    if part == "first":
        return first
    if part == "last":
        return last
    return " ".join(middle) or None


# ---- dates and times ---------------------------------------------------------------------------

# Named text formats (both implementations use these regexes; groups are y, m, d[, H, M, S, frac, tz]).
DATE_FORMATS: dict[str, tuple[str, tuple[int, int, int]]] = {
    # name: (regex, positions of year, month, day in the groups)
    "iso": (r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})$", (0, 1, 2)),
    "mdy": (r"^([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})$", (2, 0, 1)),
    "dmy": (r"^([0-9]{1,2})[./]([0-9]{1,2})[./]([0-9]{4})$", (2, 1, 0)),
    "ymd": (r"^([0-9]{4})([0-9]{2})([0-9]{2})$", (0, 1, 2)),
}
ISO_DATETIME_RE = (
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?)?"
    r" ?(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?$"
)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Representable range (Python's datetime): values outside are mapping failures in both implementations.
MIN_US = int((dt.datetime(1, 1, 1, tzinfo=dt.UTC) - EPOCH).total_seconds()) * 1_000_000
MAX_US = (
    int((dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC) - EPOCH).total_seconds()) * 1_000_000 + 999_999
)
MIN_DAYS = (dt.date(1, 1, 1) - dt.date(1970, 1, 1)).days
MAX_DAYS = (dt.date(9999, 12, 31) - dt.date(1970, 1, 1)).days
UNIT_US: dict[str, int] = {"s": 1_000_000, "ms": 1_000, "us": 1}


def localize(naive: dt.datetime, tz: str) -> dt.datetime | None:
    """A wall-clock time in ``tz`` as UTC; None for a time that does not exist there (DST gap) or
    that falls outside the representable range. Ambiguous times (DST end) take the earlier instant."""
    zone = _zone(tz)
    try:
        utc = naive.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)
        if utc.astimezone(zone).replace(tzinfo=None) != naive:
            return None
    except (OverflowError, ValueError):
        return None
    return utc


@lru_cache(maxsize=256)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def in_range_us(micros: int) -> bool:
    """Whether epoch microseconds fall inside years 1..9999."""
    return MIN_US <= micros <= MAX_US


def from_epoch_us(micros: int) -> dt.datetime | None:
    """UTC datetime from epoch microseconds (None outside years 1..9999)."""
    return EPOCH + dt.timedelta(microseconds=micros) if in_range_us(micros) else None


@lru_cache(maxsize=CACHE_SIZE)
def parse_any_datetime(value: str, dayfirst: bool) -> dt.datetime | None:
    """Free-form date/time text via python-dateutil (naive unless it has an offset); None if unreadable."""
    try:
        parsed: dt.datetime = dateutil_parser.parse(strip_ws(value), dayfirst=dayfirst)
        return parsed
    except (ValueError, OverflowError, dateutil_parser.ParserError):
        return None


def any_to_utc(value: str, tz: str, dayfirst: bool) -> dt.datetime | None:
    """Free-form text to UTC: naive readings are wall-clock time in ``tz``."""
    parsed = parse_any_datetime(value, dayfirst)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        return localize(parsed, tz)
    try:
        return parsed.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        return None


def to_epoch_us(value: dt.datetime) -> int:
    """Epoch microseconds of an aware datetime."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# ---- formatting ---------------------------------------------------------------------------------


def key_text(value: object) -> str:
    """One key value as text, the way ``source_key`` and ``*_ref`` fields write it."""
    return str(value)


def raw_repr(value: Any) -> str:
    """A raw source value quoted for an issue or reject message (JSON-like, truncated)."""
    if isinstance(value, dt.datetime | dt.date):
        text = value.isoformat()
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except TypeError:
            text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def extras_json(values: dict[str, Any]) -> str | None:
    """Source columns the mapping does not know, as a JSON object (nulls left out); None if none."""
    kept = {k: values[k] for k in sorted(values) if values[k] is not None}
    return json.dumps(kept, ensure_ascii=False, separators=(",", ":")) if kept else None
