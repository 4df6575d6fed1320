"""Turning a real-world person into what one system recorded: script, spelling, noise, gaps.

The helpers are shared by the seeders and the load generator so both produce the same kind of data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from functools import cache

from faker import Faker

from cdc.demo.formats import Phone
from cdc.demo.names import fold_ascii
from cdc.demo.noise import Name, NoiseProfile, email_variant, misread_date, noisy_name
from cdc.demo.world import Person


@dataclass(frozen=True, slots=True)
class Rendered:
    """A person's name as one system stores it, and whether it is in the native script."""

    name: Name
    native: bool
    family_first: bool  # the full-name form puts the family name first

    def full(self) -> str:
        """Given and family name in one field, in the order this rendering uses."""
        if self.native and self.family_first and not any(c.isascii() for c in self.name.family):
            # Chinese full names are written without a space (王伟); Japanese with one.
            joiner = "" if all("\u4e00" <= c <= "\u9fff" for c in self.name.family + self.name.given) else " "
            return f"{self.name.family}{joiner}{self.name.given}".strip()
        return self.name.full(family_first=self.family_first)


def render_name(
    person: Person, profile: NoiseProfile, rng: random.Random, *, ascii_only: bool = False
) -> Rendered:
    """The person's name in this system: native script or romanised (with spelling variants), then noise."""
    native = person.latin_is_native or (not ascii_only and rng.random() >= profile.romanize)
    if native:
        given, family = person.given, person.family
    else:
        given = person.given_latin
        family = person.family_latin
        if person.given_variants and rng.random() < 0.4:
            given = rng.choice(person.given_variants)
        if person.family_variants and rng.random() < 0.4:
            family = rng.choice(person.family_variants)
    name = noisy_name(Name(given, family), profile, rng)
    if ascii_only:
        german = person.country in ("DE", "AT", "CH")
        name = Name(fold_ascii(name.given, german=german), fold_ascii(name.family, german=german))
    # Romanised East Asian names are usually written given-first; native ones family-first.
    return Rendered(name, native and not person.latin_is_native, person.family_first and native)


def pick_email(
    person: Person,
    profile: NoiseProfile,
    rng: random.Random,
    *,
    work_domain: str | None = None,
    tag: str = "",
) -> str | None:
    """The email a system holds: missing, work address, personal address, or a variant of it."""
    if rng.random() < profile.missing_email:
        return None
    if work_domain:
        local = person.email.split("@", 1)[0].rstrip("0123456789")
        return f"{local}@{work_domain}"
    if rng.random() < profile.stale_email:
        local, _, _ = person.email.partition("@")
        return f"{local}{rng.randrange(1, 9)}@{rng.choice(('gmail.com', 'outlook.com', 'yahoo.com'))}"
    if rng.random() < 0.15:
        return email_variant(person.email, rng, tag=tag)
    return person.email


def pick_phone(person: Person, profile: NoiseProfile, rng: random.Random) -> Phone | None:
    """Landline or mobile, or nothing."""
    if rng.random() < profile.missing_phone:
        return None
    if person.mobile is not None and rng.random() < 0.5:
        return person.mobile
    return person.phone


def pick_birth_date(person: Person, profile: NoiseProfile, rng: random.Random) -> date | None:
    """The birth date, missing or mistyped now and then."""
    if rng.random() < profile.missing_birth_date:
        return None
    if rng.random() < profile.wrong_birth_date:
        return misread_date(person.birth_date, rng)
    return person.birth_date


@cache
def _sentences() -> tuple[str, ...]:
    fake = Faker("en_US")
    fake.seed_instance(20250630)  # a fixed corpus: free-text columns stay reproducible
    return tuple(str(fake.sentence(nb_words=14)) for _ in range(400))


def big_text(rng: random.Random, min_chars: int) -> str:
    """Free text of at least ``min_chars`` characters (notes, descriptions) for TOAST-sized values."""
    pool = _sentences()
    parts: list[str] = []
    size = 0
    while size < min_chars:
        s = pool[rng.randrange(len(pool))]
        parts.append(s)
        size += len(s) + 1
    return " ".join(parts)


def note_text(rng: random.Random) -> str | None:
    """A notes value: mostly short or absent, sometimes several kB (so TOAST really happens)."""
    roll = rng.random()
    if roll < 0.3:
        return None
    if roll < 0.6:
        return big_text(rng, rng.randrange(40, 300))
    return big_text(rng, rng.randrange(2500, 8000))


_LEGAL_VARIANTS = {
    "Inc.": ("Inc", "Incorporated", "INC"),
    "LLC": ("L.L.C.", "Llc"),
    "Corp.": ("Corporation", "Corp"),
    "Ltd": ("Ltd.", "Limited", "LTD"),
    "PLC": ("plc", "P.L.C."),
    "GmbH": ("Gmbh", "G.m.b.H.", "GMBH"),
    "AG": ("A.G.",),
    "S.A.": ("SA", "S.A"),
    "S.L.": ("SL",),
    "B.V.": ("BV", "B.V"),
    "S.r.l.": ("Srl", "SRL"),
    "S.p.A.": ("SpA", "SPA"),
    "Sp. z o.o.": ("Sp.z o.o.", "sp. z o.o."),
    "Ltda.": ("Ltda",),
}


def org_name(name: str, rng: random.Random, *, noise: float, ascii_only: bool = False) -> str:
    """An organisation's name as one system has it: legal-form spelling, dropped legal form, case, '&'."""
    if rng.random() < noise:
        for form, variants in _LEGAL_VARIANTS.items():
            if name.endswith(" " + form):
                base = name[: -len(form) - 1]
                name = base if rng.random() < 0.3 else f"{base} {rng.choice(variants)}"
                break
    if rng.random() < noise / 2:
        name = name.replace(" & ", " and ")
    if rng.random() < noise / 2:
        name = name.upper()
    return fold_ascii(name).strip() if ascii_only else name
