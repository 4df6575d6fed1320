"""Synthetic canonical customers for the throughput run: the demo world's people (``cdc.demo``),
each written down by one to four systems with that system's data-entry noise."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl

from cdc.demo.noise import Name, NoiseProfile, email_variant, misread_date, noisy_name, typo
from cdc.demo.world import ANCHOR, HISTORY_START, Person, between, make_person

SYSTEMS = ("crm", "erp", "shop", "billing")
PROFILES = {
    "crm": NoiseProfile(nickname=0.15, typo=0.05, case=0.2, whitespace=0.05, missing_birth_date=0.3),
    "erp": NoiseProfile(typo=0.05, case=0.5, swap_names=0.05, missing_birth_date=0.6, missing_phone=0.2),
    "shop": NoiseProfile(nickname=0.2, typo=0.15, case=0.3, whitespace=0.1, missing_birth_date=0.5),
    "billing": NoiseProfile(typo=0.05, romanize=0.5, missing_email=0.3, missing_birth_date=0.7),
}


def _record(p: Person, system: str, rng: random.Random, n: int) -> dict[str, object]:
    prof = PROFILES[system]
    latin = p.latin_is_native or rng.random() < 0.8
    base = Name(p.given_latin, p.family_latin) if latin else Name(p.given, p.family)
    name = noisy_name(base, prof, rng)
    email: str | None = p.email
    r = rng.random()
    if r < 0.12 or rng.random() < prof.missing_email:
        email = None
    elif r < 0.22:
        email = email_variant(p.email, rng, tag=system).lower()
    elif r < 0.27:
        email = typo(p.email.split("@")[0], rng) + "@" + p.email.split("@")[1]
    birth: dt.date | None = p.birth_date
    if rng.random() < prof.missing_birth_date:
        birth = None
    elif rng.random() < 0.05 and birth is not None:
        birth = misread_date(birth, rng)
    phone = None if rng.random() < 0.15 + prof.missing_phone else p.phone.e164()
    mobile = p.mobile.e164() if p.mobile is not None and rng.random() < 0.5 else None
    addr = p.address
    moved = rng.random() < 0.05
    return {
        "id": f"{system}:{n}",
        "label": p.person_id,
        "kind": "person",
        "full_name": name.full(family_first=p.family_first),
        "first_name": name.given,
        "last_name": name.family,
        "email": email,
        "phone": phone,
        "mobile_phone": mobile,
        "birth_date": birth.isoformat() if birth else None,
        "street": None if moved else addr.street,
        "postal_code": None if moved else (addr.postcode or None),
        "city": addr.city_latin if latin else addr.city,
        "country": addr.country,
        "source_system": system,
        "source_ts": between(rng, HISTORY_START, ANCHOR).isoformat(),
    }


def customers(n_records: int, seed: int = 11) -> pl.DataFrame:
    """About ``n_records`` customer records (2.2 per person on average), labelled by person id."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    person = 0
    while len(rows) < n_records:
        person += 1
        p = make_person(person, seed, org_count=1000)
        k = rng.choices((1, 2, 3, 4), weights=(0.3, 0.35, 0.25, 0.1))[0]
        for system in rng.sample(SYSTEMS, k):
            rows.append(_record(p, system, rng, len(rows)))
    return pl.DataFrame(rows[:n_records])
