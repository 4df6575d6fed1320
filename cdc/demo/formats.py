"""How each source system writes the same fact: dates, money, statuses, phone numbers, countries.

The disagreements are the point of the demo: a date is an ISO ``date`` in the CRM, ``MM/DD/YYYY``
text in the ERP and the shop, epoch seconds in billing; money is numeric with a currency code in the
ERP and integer cents in the shop and billing; "active" is 'Active', 'A', 1 or an enum value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

from cdc.demo.countries import COUNTRIES, Country

_CENT = Decimal("0.01")


def mdy(value: date) -> str:
    """``MM/DD/YYYY`` text, the US-style legacy export format (ERP, shop forms)."""
    return f"{value.month:02d}/{value.day:02d}/{value.year:04d}"


def epoch(value: datetime) -> int:
    """Whole seconds since 1970-01-01 UTC (billing); naive values are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


def naive_local(value: datetime) -> datetime:
    """A wall-clock timestamp without time zone, as systems configured in local time store it."""
    return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


def money(value: Decimal | float | int) -> Decimal:
    """A numeric amount rounded to cents (ERP, CRM)."""
    return Decimal(str(value)).quantize(_CENT, rounding=ROUND_HALF_UP)


def cents(value: Decimal | float | int) -> int:
    """An amount in integer minor units (shop, billing): 12.34 -> 1234."""
    return int((money(value) * 100).to_integral_value(rounding=ROUND_HALF_UP))


def crm_status(active: bool) -> str:
    """CRM status picklist: 'Active' / 'Inactive'."""
    return "Active" if active else "Inactive"


def erp_status(active: bool) -> str:
    """ERP status flag: 'A' / 'I'."""
    return "A" if active else "I"


def shop_status(active: bool) -> int:
    """Shop activity flag: 1 / 0."""
    return 1 if active else 0


def billing_status(active: bool, delinquent: bool = False) -> str:
    """Billing account status enum value."""
    if not active:
        return "closed"
    return "past_due" if delinquent else "active"


@dataclass(frozen=True, slots=True)
class Phone:
    """A phone number as its parts; the systems format it differently."""

    country: str  # ISO alpha-2
    area: str
    subscriber: str

    @property
    def _c(self) -> Country:
        return COUNTRIES[self.country]

    def e164(self) -> str:
        """``+4930123456`` (billing)."""
        return f"+{self._c.calling_code}{self.area}{self.subscriber}"

    def international(self) -> str:
        """``+44 20 7946 0958`` style, subscriber grouped in fours from the right."""
        return f"+{self._c.calling_code} {self.area} {_group(self.subscriber)}"

    def national(self) -> str:
        """As dialled at home: ``(415) 555-0100`` in the US, ``030 1234567`` elsewhere."""
        if self.country == "US":
            return f"({self.area}) {self.subscriber[:3]}-{self.subscriber[3:]}"
        return f"{self._c.trunk_prefix}{self.area} {self.subscriber}"

    def dashed_idd(self) -> str:
        """``0049-30-1234567``: international call prefix 00, dash separated (ERP)."""
        return f"00{self._c.calling_code}-{self.area}-{self.subscriber}"

    def digits(self, *, international: bool = True) -> str:
        """Digits only (shop): with the country code, or national with the trunk prefix."""
        if international:
            return f"{self._c.calling_code}{self.area}{self.subscriber}"
        return f"{self._c.trunk_prefix}{self.area}{self.subscriber}"


def _group(digits: str) -> str:
    head = len(digits) % 4 or 4
    groups = [digits[:head]] + [digits[i : i + 4] for i in range(head, len(digits), 4)]
    return " ".join(g for g in groups if g)
