"""The ground truth: real-world people and organisations, before any system writes them down.

Everything is derived from ``(seed, index)``: the same seed and size always give the same world, and
the load generator mints new people with the same code.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache

from faker import Faker

from cdc.demo import names
from cdc.demo.countries import COUNTRIES, COUNTRY_WEIGHTS, ORG_COUNTRY_WEIGHTS, Country
from cdc.demo.formats import Phone
from cdc.demo.names import fold_ascii, transliterate

# Seed data lives in the past relative to this instant, so it does not depend on the clock.
ANCHOR = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
HISTORY_START = datetime(2016, 1, 1, tzinfo=UTC)

_INDUSTRIES = (
    "Manufacturing",
    "Retail",
    "Software",
    "Logistics",
    "Healthcare",
    "Financial Services",
    "Construction",
    "Education",
    "Hospitality",
    "Energy",
)
_LEGAL_FORMS = {
    "US": ("Inc.", "LLC", "Corp."),
    "GB": ("Ltd", "PLC", "LLP"),
    "DE": ("GmbH", "AG", "KG"),
    "FR": ("SA", "SARL", "SAS"),
    "ES": ("S.L.", "S.A."),
    "IT": ("S.p.A.", "S.r.l."),
    "NL": ("B.V.", "N.V."),
    "PL": ("Sp. z o.o.", "S.A."),
    "BR": ("Ltda.", "S.A."),
    "GR": ("Α.Ε.", "Ε.Π.Ε."),
    "RU": ("ООО", "АО"),
}
_TLD = {"US": "com", "GB": "co.uk", "BR": "com.br", "GR": "gr", "RU": "ru"}
_FREE_MAIL = {
    "US": ("gmail.com", "yahoo.com", "outlook.com", "icloud.com"),
    "GB": ("gmail.com", "btinternet.com", "yahoo.co.uk", "outlook.com"),
    "DE": ("gmail.com", "web.de", "gmx.de", "t-online.de"),
    "FR": ("gmail.com", "orange.fr", "free.fr"),
    "RU": ("yandex.ru", "mail.ru", "gmail.com"),
    "CN": ("qq.com", "163.com", "gmail.com"),
    "JP": ("yahoo.co.jp", "gmail.com", "docomo.ne.jp"),
}
_DEFAULT_FREE_MAIL = ("gmail.com", "outlook.com", "yahoo.com", "hotmail.com")


@dataclass(frozen=True, slots=True)
class Address:
    """A postal address in the local script, with the city in Latin letters for ASCII-minded systems."""

    street: str
    city: str
    postcode: str
    region: str
    country: str  # ISO alpha-2
    city_latin: str  # romanised where we know how; the native city otherwise (CJK)


@dataclass(frozen=True, slots=True)
class Organisation:
    """A company: customer in some systems, vendor in the ERP."""

    org_id: str  # 'O00001'
    name: str  # in the local script, with its legal form
    country: str
    industry: str
    domain: str
    vat_id: str  # '' outside the EU
    phone: Phone
    address: Address
    is_vendor: bool
    founded: date
    active: bool


@dataclass(frozen=True, slots=True)
class Person:
    """A real-world person, the unit of the ground truth."""

    person_id: str  # 'P000001'
    country: str
    gender: str  # 'F' or 'M'
    given: str  # local script
    family: str
    given_latin: str  # romanised, accents kept for Latin scripts
    family_latin: str
    family_first: bool  # native order writes the family name first (CJK)
    birth_date: date
    email: str  # personal mailbox
    phone: Phone
    mobile: Phone | None
    address: Address
    org_id: str | None  # employer, when the person is also a business contact
    job_title: str
    first_seen: datetime  # when the person first became anyone's customer
    active: bool
    given_variants: tuple[str, ...] = ()  # other romanisations (Mohammed: Muhammad, Mohamed)
    family_variants: tuple[str, ...] = ()

    @property
    def latin_is_native(self) -> bool:
        """True when the native name is already written in Latin letters."""
        return self.given == self.given_latin and self.family == self.family_latin


@dataclass(frozen=True, slots=True)
class World:
    """Everyone the demo systems know about."""

    seed: int
    people: tuple[Person, ...]
    orgs: tuple[Organisation, ...]

    def org(self, org_id: str) -> Organisation:
        """Look up an organisation by id."""
        return self.orgs[int(org_id[1:]) - 1]


@cache
def _faker(locale: str) -> Faker:
    # Building a Faker costs ~30 ms per locale; reseeding an existing one is cheap.
    return Faker(locale)


def _fake(locale: str, rng: random.Random) -> Faker:
    fake = _faker(locale)
    fake.seed_instance(rng.getrandbits(63))
    return fake


def _pick(weights: dict[str, float], rng: random.Random) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A uniformly random instant in [start, end), whole seconds."""
    span = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randrange(max(span, 1)))


def random_phone(country: Country, rng: random.Random, *, mobile: bool = False) -> Phone:
    """A well-formed phone number for ``country`` (not checked against real allocations)."""
    area = (
        country.area_codes[-1] if mobile and len(country.area_codes) > 2 else rng.choice(country.area_codes)
    )
    first = str(rng.randrange(2, 10))
    rest = "".join(str(rng.randrange(10)) for _ in range(country.national_digits - len(area) - 1))
    return Phone(country.iso2, area, first + rest)


def _address(country: Country, fake: Faker, rng: random.Random) -> Address:
    if country.iso2 == "AE":
        city, city_latin = rng.choice(names.AR_CITIES)
        street = f"{rng.choice(names.AR_STREETS)[0]} {rng.randrange(1, 400)}"
        return Address(street, city, "", "", "AE", city_latin)
    if country.iso2 == "JP":
        street = f"{fake.town()}{fake.chome()}{fake.ban()}{fake.gou()}"
        city = str(fake.city())
        return Address(street, city, str(fake.zipcode()), str(fake.prefecture()), "JP", city)
    region = str(fake.administrative_unit()) if hasattr(fake, "administrative_unit") else ""
    city = str(fake.city())
    latin = city if country.iso2 == "CN" else fold_ascii(city)
    return Address(str(fake.street_address()), city, str(fake.postcode()), region, country.iso2, latin)


_DrawnName = tuple[str, str, str, str, tuple[str, ...], tuple[str, ...]]


def _draw_name(country: Country, gender: str, fake: Faker, rng: random.Random) -> _DrawnName:
    """(given, family, given_latin, family_latin, other spellings of each)."""
    if country.iso2 == "CN":
        fam, fam_l = rng.choice(names.ZH_FAMILY)
        given, given_l, _ = rng.choice([g for g in names.ZH_GIVEN if g[2] == gender])
        return given, fam, given_l, fam_l, (), ()
    if country.iso2 == "JP":
        g = fake.first_name_male_pair() if gender == "M" else fake.first_name_female_pair()
        f = fake.last_name_pair()
        return g[0], f[0], g[2], f[2], (), ()
    if country.iso2 == "AE":
        g_ar, g_l, _, g_var = rng.choice([g for g in names.AR_GIVEN if g[2] == gender])
        f_ar, f_l, f_var = rng.choice(names.AR_FAMILY)
        return g_ar, f_ar, g_l, f_l, g_var, f_var
    lang = country.locale.split("_")[0]
    formal = names.FORMAL_NAMES.get(lang, {}).get(gender, ())
    if formal and rng.random() < 0.4:
        given = rng.choice(formal)
    else:
        given = str(fake.first_name_male() if gender == "M" else fake.first_name_female())
    if gender == "M" and hasattr(fake, "last_name_male"):
        family = str(fake.last_name_male())
    elif gender == "F" and hasattr(fake, "last_name_female"):
        family = str(fake.last_name_female())
    else:
        family = str(fake.last_name())
    return given, family, transliterate(given), transliterate(family), (), ()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", fold_ascii(text, german=True).lower())


def _email_local(given: str, family: str, rng: random.Random) -> str:
    g, f = _slug(given) or "user", _slug(family) or "mail"
    pattern = rng.randrange(6)
    if pattern == 0:
        return f"{g}.{f}"
    if pattern == 1:
        return f"{g[0]}{f}"
    if pattern == 2:
        return f"{g}{f}{rng.randrange(1, 99)}"
    if pattern == 3:
        return f"{g}_{f}"
    if pattern == 4:
        return f"{f}.{g}"
    return f"{g}.{f}{rng.randrange(60, 99)}"


def make_org(index: int, seed: int) -> Organisation:
    """Organisation number ``index`` (1-based) of the world for ``seed``."""
    rng = random.Random(f"goldstream-demo:{seed}:org:{index}")
    country = COUNTRIES[_pick(ORG_COUNTRY_WEIGHTS, rng)]
    fake = _fake(country.locale, rng)
    # Faker's Russian company names carry their own legal form ("ИП «Фролов»"): use a surname there.
    use_company = rng.random() < 0.5 and country.iso2 != "RU"
    base = str(fake.company()).split(",")[0].split(" ")[0] if use_company else str(fake.last_name())
    base = base.strip(" -") or str(fake.last_name())
    suffix = rng.choice(("", " Group", " Solutions", " & Partners", " Holding", " Trading", " Systems"))
    if country.iso2 in ("GR", "RU"):
        suffix = ""  # these stay entirely in the local script
    legal = rng.choice(_LEGAL_FORMS[country.iso2])
    name = f"{legal} «{base}»" if country.iso2 == "RU" else f"{base}{suffix} {legal}"
    domain = f"{_slug(base + suffix) or 'company'}{index}.{_TLD.get(country.iso2, country.iso2.lower())}"
    eu = country.iso2 in ("DE", "FR", "ES", "IT", "NL", "PL", "GR")
    vat = f"{'EL' if country.iso2 == 'GR' else country.iso2}{rng.randrange(10**8, 10**9)}" if eu else ""
    return Organisation(
        org_id=f"O{index:05d}",
        name=name,
        country=country.iso2,
        industry=rng.choice(_INDUSTRIES),
        domain=domain,
        vat_id=vat,
        phone=random_phone(country, rng),
        address=_address(country, fake, rng),
        is_vendor=rng.random() < 0.2,
        founded=date(rng.randrange(1950, 2020), rng.randrange(1, 13), rng.randrange(1, 29)),
        active=rng.random() < 0.93,
    )


def make_person(index: int, seed: int, *, org_count: int, prefix: str = "P") -> Person:
    """Person number ``index`` (1-based) of the world for ``seed``; employers among ``org_count`` orgs."""
    rng = random.Random(f"goldstream-demo:{seed}:{prefix}:{index}")
    country = COUNTRIES[_pick(COUNTRY_WEIGHTS, rng)]
    gender = rng.choice("FM")
    fake = _fake(country.locale, rng)
    given, family, given_l, family_l, given_var, family_var = _draw_name(country, gender, fake, rng)
    local = _email_local(given_l, family_l, rng)
    domain = rng.choice(_FREE_MAIL.get(country.iso2, _DEFAULT_FREE_MAIL))
    employed = org_count > 0 and rng.random() < 0.35
    return Person(
        person_id=f"{prefix}{index:06d}",
        country=country.iso2,
        gender=gender,
        given=given,
        family=family,
        given_latin=given_l,
        family_latin=family_l,
        family_first=country.iso2 in ("CN", "JP"),
        birth_date=date(rng.randrange(1945, 2006), rng.randrange(1, 13), rng.randrange(1, 29)),
        email=f"{local}@{domain}",
        phone=random_phone(country, rng),
        mobile=random_phone(country, rng, mobile=True) if rng.random() < 0.6 else None,
        address=_address(country, fake, rng),
        org_id=f"O{rng.randrange(org_count) + 1:05d}" if employed else None,
        job_title=str(fake.job()) if employed else "",
        first_seen=between(rng, HISTORY_START, ANCHOR),
        active=rng.random() < 0.9,
        given_variants=given_var,
        family_variants=family_var,
    )


def org_count_for(people: int) -> int:
    """How many organisations a world of ``people`` people has (about one per five people)."""
    return max(3, people // 5)


def build_world(people: int, seed: int) -> World:
    """The full world for ``people`` people and ``seed``; deterministic."""
    n_orgs = org_count_for(people)
    orgs = tuple(make_org(i, seed) for i in range(1, n_orgs + 1))
    persons = tuple(make_person(i, seed, org_count=n_orgs) for i in range(1, people + 1))
    return World(seed=seed, people=persons, orgs=orgs)


def employees(world: World) -> dict[str, Sequence[Person]]:
    """People per employer org id."""
    out: dict[str, list[Person]] = {}
    for p in world.people:
        if p.org_id:
            out.setdefault(p.org_id, []).append(p)
    return dict(out)
