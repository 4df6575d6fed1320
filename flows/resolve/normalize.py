"""Value normalisation for matching: named operations chained per feature in the matching config.

A *feature* is a value derived from one or more record fields by a chain of operations (``lower``,
``ascii``, ``soundex``...). Blocking keys and comparisons work on features, never on raw fields,
so every normalisation choice lives in ``config/matching/<entity>.yaml``. Every operation maps a
string to a string or ``None`` (no usable value); an empty result is ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date

import jellyfish
from unidecode import unidecode

Op = Callable[[str], str | None]

_SPACES = re.compile(r"\s+")
_NON_ALNUM = re.compile(r"[^0-9a-zA-Z ]+")
_NON_LETTER = re.compile(r"[^a-zA-Z ]+")
_NON_DIGIT = re.compile(r"[^0-9]+")
_LEADING_LETTERS = re.compile(r"[a-zA-Z]*")
_DATE_DIGITS = re.compile(r"^(\d{4})-?(\d{1,2})-?(\d{1,2})")


def _strip(v: str) -> str:
    return _SPACES.sub(" ", v).strip()


def _email(v: str) -> str | None:
    v = v.strip().lower()
    local, sep, domain = v.partition("@")
    if not sep or not local or not domain:
        return None
    local = local.split("+", 1)[0]
    if domain in ("gmail.com", "googlemail.com"):
        local = local.replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


def _email_local(v: str) -> str | None:
    e = _email(v)
    return None if e is None else e.split("@", 1)[0]


def _email_domain(v: str) -> str | None:
    e = _email(v)
    return None if e is None else e.split("@", 1)[1]


def _phone(v: str) -> str | None:
    """E.164-ish: a leading ``+`` kept, every other non-digit dropped; under 6 digits is no number."""
    digits = _NON_DIGIT.sub("", v)
    if len(digits) < 6:
        return None
    return ("+" if v.strip().startswith("+") else "") + digits


def _date(v: str) -> str | None:
    """ISO ``YYYY-MM-DD`` from ``YYYY-MM-DD``, ``YYYYMMDD`` or a timestamp; invalid dates are None."""
    m = _DATE_DIGITS.match(v.strip())
    if m is None:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
    except ValueError:
        return None


def _is_han(ch: str) -> bool:
    """A CJK unified ideograph (Chinese characters, Japanese kanji)."""
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\uf900" <= ch <= "\ufaff"


def _translit(v: str) -> str:
    """ASCII for matching that keeps a name's words: each word transliterated as one word.

    ``unidecode`` romanises every Han character as its own syllable ("海燕" -> "Hai Yan "), but a
    romanised name writes a word's syllables together (Pinyin: "Lin Haiyan"), so the syllables of
    one written word are joined. A name of two to four Han characters without a space is written
    family name first, and the family name is one character in all but a few Chinese names, so it
    is split after the first ("林海燕" -> "Lin Haiyan", the same words as "Haiyan Lin"). Other
    scripts fold as ``ascii`` does, word by word ("Ślebioda" -> "Slebioda").
    """
    if v.isascii():
        return v
    words = v.split()
    if len(words) == 1 and 2 <= len(words[0]) <= 4 and all(_is_han(c) for c in words[0]):
        words = [words[0][0], words[0][1:]]
    return " ".join(w if w.isascii() else "".join(unidecode(w).split()) for w in words)


def _tokens_sorted(v: str) -> str:
    return " ".join(sorted(v.split()))


def _first_token(v: str) -> str | None:
    parts = v.split()
    return parts[0] if parts else None


def _last_token(v: str) -> str | None:
    parts = v.split()
    return parts[-1] if parts else None


def _first_last(v: str) -> str | None:
    """First and last word in alphabetical order: the same key for "Anna Maria Weber" and "Weber Anna"."""
    parts = v.split()
    if not parts:
        return None
    return " ".join(sorted({parts[0], parts[-1]}))


def _token_soundex(v: str) -> str | None:
    codes = [jellyfish.soundex(t) for t in _NON_LETTER.sub(" ", v).split()]
    return " ".join(codes) if codes else None


def _phonetic(fn: Callable[[str], str]) -> Op:
    def op(v: str) -> str | None:
        letters = _NON_LETTER.sub("", v)
        return fn(letters) if letters else None

    return op


_SIMPLE: dict[str, Op] = {
    "lower": str.lower,
    "upper": str.upper,
    "strip": _strip,
    "ascii": lambda v: v if v.isascii() else unidecode(v),
    "translit": _translit,
    "alnum": lambda v: _strip(_NON_ALNUM.sub(" ", v)),
    "letters": lambda v: _strip(_NON_LETTER.sub(" ", v)),
    "digits": lambda v: _NON_DIGIT.sub("", v),
    "nospace": lambda v: _SPACES.sub("", v),
    "first_token": _first_token,
    "last_token": _last_token,
    "sort_tokens": _tokens_sorted,
    "first_last": _first_last,
    "token_soundex": _token_soundex,
    "soundex": _phonetic(jellyfish.soundex),
    "metaphone": _phonetic(jellyfish.metaphone),
    "nysiis": _phonetic(jellyfish.nysiis),
    "email": _email,
    "email_local": _email_local,
    "email_domain": _email_domain,
    "phone": _phone,
    "date": _date,
    "leading_letters": lambda v: _LEADING_LETTERS.match(v).group(0),  # type: ignore[union-attr]
    "year": lambda v: v[:4] if len(v) >= 4 and v[:4].isdigit() else None,
}

#: Operations taking an integer argument, written ``name:N`` in the config.
_PARAMETRISED: dict[str, Callable[[int], Op]] = {
    "prefix": lambda n: lambda v: v[:n],
    "suffix": lambda n: lambda v: v[-n:],
    "drop_last": lambda n: lambda v: v[:-n].strip(),
}

OP_NAMES: tuple[str, ...] = tuple(sorted(_SIMPLE)) + tuple(f"{k}:N" for k in sorted(_PARAMETRISED))


def parse_op(spec: str) -> Op:
    """The operation named by ``spec`` (``lower``, ``prefix:3``...); ValueError for an unknown one."""
    name, _, arg = spec.partition(":")
    if name in _SIMPLE and not arg:
        return _SIMPLE[name]
    if name in _PARAMETRISED and arg.isdigit() and int(arg) > 0:
        return _PARAMETRISED[name](int(arg))
    raise ValueError(f"unknown normalisation {spec!r}; known: {', '.join(OP_NAMES)}")


def chain(specs: Sequence[str]) -> Callable[[str | None], str | None]:
    """Compose operations left to right; ``None`` or an empty string anywhere gives ``None``."""
    ops = [parse_op(s) for s in specs]

    def run(value: str | None) -> str | None:
        if value is None:
            return None
        out = value
        for op in ops:
            step = op(out)
            if not step:
                return None
            out = step
        return out

    return run
