"""Realistic data-entry noise: typos, nicknames, case and whitespace, swapped name fields, email and
date variants. Every function takes the ``random.Random`` to draw from, so results are reproducible,
and keeps the value recognisable (at most one edit, first letter untouched).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from cdc.demo.names import is_latin, nicknames_for, transliterate

# Neighbouring keys on a QWERTY keyboard: the substitutions people actually make.
_KEYBOARD_NEIGHBOURS = {
    "a": "qwsz",
    "b": "vghn",
    "c": "xdfv",
    "d": "serfcx",
    "e": "wsdr",
    "f": "drtgvc",
    "g": "ftyhbv",
    "h": "gyujnb",
    "i": "ujko",
    "j": "huikmn",
    "k": "jiolm",
    "l": "kop",
    "m": "njk",
    "n": "bhjm",
    "o": "iklp",
    "p": "ol",
    "q": "wa",
    "r": "edft",
    "s": "awedxz",
    "t": "rfgy",
    "u": "yhji",
    "v": "cfgb",
    "w": "qase",
    "x": "zsdc",
    "y": "tghu",
    "z": "asx",
}


def typo(text: str, rng: random.Random) -> str:
    """One keyboard slip: swap two neighbours, drop, double or mistype a letter (never the first).

    Words shorter than four letters are returned unchanged: one edit would make them unrecognisable.
    """
    if len(text) < 4:
        return text
    i = rng.randrange(1, len(text) - 1)
    kind = rng.randrange(4)
    if kind == 0 and text[i] != text[i + 1]:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if kind == 1:
        return text[:i] + text[i + 1 :]
    if kind == 2:
        return text[:i] + text[i] + text[i:]
    low = text[i].lower()
    if low in _KEYBOARD_NEIGHBOURS:
        sub = rng.choice(_KEYBOARD_NEIGHBOURS[low])
        return text[:i] + (sub.upper() if text[i].isupper() else sub) + text[i + 1 :]
    return text[:i] + text[i + 1 :]


def nickname(given: str, rng: random.Random) -> str:
    """A short form of ``given`` (Robert -> Bob), in the same script; ``given`` itself if none is known."""
    options = nicknames_for(given)
    if not options:
        return given
    nick = rng.choice(options)
    # A romanised Greek/Russian formal name gets a romanised nickname (Konstantinos -> Kostas).
    return transliterate(nick) if is_latin(given) and not is_latin(nick) else nick


def case_noise(text: str, rng: random.Random) -> str:
    """The same text in upper, lower or title case, as different forms and people write it."""
    return rng.choice((text.upper(), text.lower(), text.title()))


def whitespace_noise(text: str, rng: random.Random) -> str:
    """Stray spaces: leading, trailing or doubled between words."""
    kind = rng.randrange(3)
    if kind == 0:
        return " " + text
    if kind == 1:
        return text + "  "
    return text.replace(" ", "  ", 1) if " " in text else text + " "


def email_variant(email: str, rng: random.Random, *, tag: str = "") -> str:
    """The same mailbox written differently: mixed case, or a '+tag' sub-address."""
    local, _, domain = email.partition("@")
    if tag and rng.random() < 0.5:
        return f"{local}+{tag}@{domain}"
    return f"{local.title()}@{domain.capitalize()}" if rng.random() < 0.5 else email.upper()


def misread_date(value: date, rng: random.Random) -> date:
    """A plausible entry error: day and month swapped (if valid) or the day off by one."""
    if value.day <= 12 and value.day != value.month and rng.random() < 0.6:
        return value.replace(month=value.day, day=value.month)
    return value.replace(day=value.day - 1 if value.day > 1 else 2)


@dataclass(frozen=True, slots=True)
class NoiseProfile:
    """How sloppy one system's data entry is: probabilities per kind of noise."""

    nickname: float = 0.0
    typo: float = 0.0
    case: float = 0.0
    whitespace: float = 0.0
    swap_names: float = 0.0
    romanize: float = 0.0  # write a non-Latin name in Latin letters
    missing_email: float = 0.0
    missing_phone: float = 0.0
    missing_birth_date: float = 0.0
    wrong_birth_date: float = 0.0
    stale_email: float = 0.0  # an older or other mailbox for the same person


@dataclass(frozen=True, slots=True)
class Name:
    """A given/family name pair as one system stores it."""

    given: str
    family: str

    def full(self, *, family_first: bool = False) -> str:
        """Both parts in one field."""
        parts = (self.family, self.given) if family_first else (self.given, self.family)
        return " ".join(p for p in parts if p)


def noisy_name(name: Name, profile: NoiseProfile, rng: random.Random) -> Name:
    """Apply a profile's name noise: nickname, one typo, case, whitespace, swapped fields."""
    given, family = name.given, name.family
    if rng.random() < profile.nickname:
        given = nickname(given, rng)
    if rng.random() < profile.typo:
        if rng.random() < 0.5:
            given = typo(given, rng)
        else:
            family = typo(family, rng)
    if rng.random() < profile.case:
        given, family = case_noise(given, rng), case_noise(family, rng)
    if rng.random() < profile.whitespace:
        family = whitespace_noise(family, rng)
    if rng.random() < profile.swap_names:
        given, family = family, given
    return Name(given, family)


def edit_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap neighbours) between two strings: the yardstick for
    "still recognisable" that :func:`typo` promises to stay within (at most 1)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]
