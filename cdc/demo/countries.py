"""The countries demo people live in: codes, names, phone numbering and the faker locale to draw from.

Only what the generators need, kept as data so every system can render the same fact its own way
(name vs alpha-2 vs alpha-3, national vs international phone formats).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Country:
    """One country and how its phone numbers are written."""

    iso2: str
    iso3: str
    name: str
    calling_code: str
    trunk_prefix: str  # dialled before the area code nationally ('0' in DE, '8' in RU, '' in ES)
    area_codes: tuple[str, ...]
    national_digits: int  # area code + subscriber number, without the trunk prefix
    currency: str
    locale: str  # faker locale for names and addresses


COUNTRIES: dict[str, Country] = {
    c.iso2: c
    for c in (
        Country(
            "US", "USA", "United States", "1", "1", ("415", "212", "312", "617", "206"), 10, "USD", "en_US"
        ),
        Country("GB", "GBR", "United Kingdom", "44", "0", ("20", "161", "131", "7700"), 10, "GBP", "en_GB"),
        Country("DE", "DEU", "Germany", "49", "0", ("30", "89", "40", "221", "69"), 10, "EUR", "de_DE"),
        Country("FR", "FRA", "France", "33", "0", ("1", "4", "6"), 9, "EUR", "fr_FR"),
        Country("ES", "ESP", "Spain", "34", "", ("91", "93", "96"), 9, "EUR", "es_ES"),
        Country("IT", "ITA", "Italy", "39", "", ("06", "02", "055"), 10, "EUR", "it_IT"),
        Country("NL", "NLD", "Netherlands", "31", "0", ("20", "10", "30"), 9, "EUR", "nl_NL"),
        Country("PL", "POL", "Poland", "48", "", ("22", "12", "61"), 9, "PLN", "pl_PL"),
        Country("BR", "BRA", "Brazil", "55", "0", ("11", "21", "31"), 11, "BRL", "pt_BR"),
        Country("GR", "GRC", "Greece", "30", "", ("21", "231", "261"), 10, "EUR", "el_GR"),
        Country("RU", "RUS", "Russia", "7", "8", ("495", "812", "383"), 10, "RUB", "ru_RU"),
        Country("CN", "CHN", "China", "86", "0", ("10", "21", "755"), 10, "CNY", "zh_CN"),
        Country("JP", "JPN", "Japan", "81", "0", ("3", "6", "45"), 9, "JPY", "ja_JP"),
        Country("AE", "ARE", "United Arab Emirates", "971", "0", ("4", "2", "50"), 9, "AED", "ar_AA"),
    )
}

# How often each country's people appear (weights, not probabilities).
COUNTRY_WEIGHTS: dict[str, float] = {
    "US": 28,
    "GB": 12,
    "DE": 12,
    "FR": 7,
    "ES": 5,
    "IT": 4,
    "NL": 3,
    "PL": 3,
    "BR": 5,
    "GR": 4,
    "RU": 5,
    "CN": 5,
    "JP": 4,
    "AE": 3,
}

# Organisations come from countries whose company names faker writes in a script we can transliterate.
ORG_COUNTRY_WEIGHTS: dict[str, float] = {
    "US": 30,
    "GB": 14,
    "DE": 16,
    "FR": 8,
    "ES": 5,
    "IT": 5,
    "NL": 5,
    "PL": 4,
    "BR": 4,
    "GR": 4,
    "RU": 5,
}

# Alternative spellings a CRM user types into a free-text country field.
COUNTRY_NAME_VARIANTS: dict[str, tuple[str, ...]] = {
    "US": ("USA", "U.S.", "United States of America", "US"),
    "GB": ("UK", "Great Britain", "England"),
    "DE": ("Deutschland", "germany"),
    "NL": ("The Netherlands", "Holland"),
    "RU": ("Russian Federation",),
    "AE": ("UAE", "U.A.E."),
}
