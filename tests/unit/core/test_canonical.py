"""The canonical model: one pydantic definition per entity, and the polars schema derived from it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest
from pydantic import ValidationError

from core.canonical import (
    ENTITIES,
    ChangeInfo,
    Customer,
    Lineage,
    OrderLine,
    allowed_values,
    entity_schema,
    is_required,
    record_schema,
)


def test_every_entity_has_a_record_schema_with_lineage_then_change_then_fields() -> None:
    for name, model in ENTITIES.items():
        schema = record_schema(name)
        names = schema.names()
        assert names[: len(Lineage.model_fields)] == list(Lineage.model_fields)
        assert names[
            len(Lineage.model_fields) : len(Lineage.model_fields) + len(ChangeInfo.model_fields)
        ] == list(ChangeInfo.model_fields)
        assert names[-len(model.model_fields) :] == list(model.model_fields)


def test_dtypes_follow_the_python_types() -> None:
    s = record_schema("customer")
    assert s["birth_date"] == pl.Date()
    assert s["created_at"] == pl.Datetime("us", "UTC")
    assert s["source_ts"] == pl.Datetime("us", "UTC")
    assert s["marketing_opt_in"] == pl.Boolean()
    assert s["partition"] == pl.Int32()  # pinned by an Annotated marker, as in bronze
    assert s["offset"] == pl.Int64()
    assert s["unavailable"] == pl.List(pl.String())
    assert s["kind"] == pl.String()  # Literal -> text
    assert entity_schema("order_line")["quantity"] == pl.Decimal(38, 3)
    assert entity_schema("invoice")["total_minor"] == pl.Int64()


def test_requiredness_and_allowed_values_come_from_the_annotations() -> None:
    fields = Customer.model_fields
    assert is_required(fields["kind"]) and is_required(fields["status"])
    assert not is_required(fields["email"])
    assert allowed_values(fields["kind"]) == {"person", "organisation"}
    assert allowed_values(fields["email"]) is None


def test_models_are_frozen_and_reject_unknown_fields() -> None:
    c = Customer(kind="person", status="active", email="a@b.co")
    with pytest.raises(ValidationError):
        c.email = "x@y.z"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        Customer(kind="person", status="active", nickname="Bob")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Customer(kind="robot", status="active")  # type: ignore[arg-type]


def test_quantity_keeps_three_decimal_places() -> None:
    line = OrderLine(order_ref="1", line_no=10, product_ref="M-1", quantity=Decimal("971.020"))
    assert line.quantity == Decimal("971.020")
    with pytest.raises(ValidationError):
        OrderLine(order_ref="1", line_no=10, product_ref="M-1", quantity=Decimal("1.0005"))


def test_lineage_allows_truncates_without_a_key() -> None:
    lineage = Lineage(
        source_system="crm",
        source_table="public.accounts",
        source_key=None,
        lsn=None,
        tx_id=None,
        source_ts=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        mapping_version="crm.public.accounts@1#abcdef12",
    )
    assert lineage.source_key is None


def test_entities_do_not_reuse_envelope_names() -> None:
    envelope = set(Lineage.model_fields) | set(ChangeInfo.model_fields)
    for model in ENTITIES.values():
        assert not envelope & set(model.model_fields), model
