from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from cdc.demo.formats import (
    Phone,
    billing_status,
    cents,
    crm_status,
    epoch,
    erp_status,
    mdy,
    money,
    naive_local,
    shop_status,
)


def test_mdy_is_zero_padded_us_order() -> None:
    assert mdy(date(2024, 3, 7)) == "03/07/2024"
    assert mdy(date(1999, 12, 31)) == "12/31/1999"


def test_epoch_seconds() -> None:
    assert epoch(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert epoch(datetime(2024, 1, 1, tzinfo=UTC)) == 1704067200
    assert epoch(datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == 1704067200
    assert epoch(datetime(2024, 1, 1)) == 1704067200  # naive taken as UTC


def test_naive_local_drops_the_zone_after_converting_to_utc() -> None:
    aware = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert naive_local(aware) == datetime(2024, 5, 1, 12, 0)


@pytest.mark.parametrize(
    ("amount", "expected"), [(12.34, 1234), (Decimal("0.005"), 1), (7, 700), ("19.99", 1999)]
)
def test_cents(amount: object, expected: int) -> None:
    assert cents(amount) == expected  # type: ignore[arg-type]


def test_money_rounds_half_up_to_cents() -> None:
    assert money(Decimal("2.675")) == Decimal("2.68")
    assert str(money(5)) == "5.00"


def test_status_encodings() -> None:
    assert (crm_status(True), crm_status(False)) == ("Active", "Inactive")
    assert (erp_status(True), erp_status(False)) == ("A", "I")
    assert (shop_status(True), shop_status(False)) == (1, 0)
    assert billing_status(True) == "active"
    assert billing_status(True, delinquent=True) == "past_due"
    assert billing_status(False) == "closed"


def test_phone_formats() -> None:
    london = Phone("GB", "20", "79460958")
    assert london.international() == "+44 20 7946 0958"
    assert london.national() == "020 79460958"
    assert london.e164() == "+442079460958"
    sf = Phone("US", "415", "5550100")
    assert sf.national() == "(415) 555-0100"
    assert sf.digits() == "14155550100"
    berlin = Phone("DE", "30", "1234567")
    assert berlin.dashed_idd() == "0049-30-1234567"
    assert berlin.digits(international=False) == "0301234567"
    assert berlin.international() == "+49 30 123 4567"
