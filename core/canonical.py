"""The canonical model, version 1: what every source system's records look like once mapped.

One definition per entity, as a frozen pydantic model (unknown fields are errors). Everything else is
derived from these classes: the polars/Delta schema of the silver tables (:func:`record_schema`), the
mapping engine's target types, the per-record reference validation and the mapping documentation.

Conventions (see also ``config/mappings/README.md``):

* **Money** is an integer amount in the currency's *minor unit* (cents for EUR/USD, yen for JPY,
  fils for BHD) in ``*_minor`` fields, next to an upper-case ISO 4217 ``currency``. Integers are
  exact, cheap to compare and sum, and are how payment systems (Stripe, Adyen) already store money;
  decimal amounts from a source are converted losslessly (a value with more decimals than the
  currency allows is a mapping failure, never silently rounded).
* **Quantities** are decimals with three places (``Decimal(38, 3)``).
* **Timestamps** are UTC (``Datetime(us, UTC)``); **dates** are calendar dates without a zone.
* **Text** is Unicode NFC, trimmed, never the empty string (empty means null).
* **Codes**: countries ISO 3166-1 alpha-2, currencies ISO 4217, phones E.164, emails lower case.
* **References** to other records of the same source system (``customer_ref``, ``order_ref``...)
  use the referenced record's ``source_key`` format: key values in key-column order joined by ``|``.

Every record also carries :class:`Lineage` (where it came from) and :class:`ChangeInfo` (what kind of
change produced it); both are part of the silver schema.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

SCHEMA_VERSION = 1
QUANTITY_SCALE = 3

#: Debezium operations a canonical record can stem from (``t``: truncate of the whole table).
ChangeOp = Literal["c", "u", "d", "r", "t"]
PartyKind = Literal["person", "organisation"]
CustomerStatus = Literal["active", "inactive", "past_due", "suspended", "closed"]
ProductStatus = Literal["active", "inactive"]
OrderStatus = Literal["pending", "open", "paid", "partially_shipped", "shipped", "cancelled", "refunded"]
InvoiceStatus = Literal["draft", "open", "paid", "void", "uncollectible"]
PaymentStatus = Literal["succeeded", "failed", "refunded", "pending"]
PaymentMethod = Literal["card", "sepa_debit", "bank_transfer", "paypal", "cash", "other"]
AddressKind = Literal["billing", "shipping"]

Quantity = Annotated[Decimal, Field(max_digits=38, decimal_places=QUANTITY_SCALE)]


class Dtype:
    """``Annotated`` marker that pins a field's polars dtype (e.g. ``Int32`` for Kafka partitions)."""

    def __init__(self, dtype: pl.DataType) -> None:
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"Dtype({self.dtype})"


class CanonicalModel(BaseModel):
    """Base of every canonical model: frozen, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Lineage(CanonicalModel):
    """Where a canonical record came from: enough to find the exact source change again."""

    source_system: str
    """Logical source system (``crm``, ``erp``...)."""
    source_table: str
    """``schema.table`` in the source database."""
    source_key: str | None
    """The row's primary key as text, values in key-column order joined by ``|`` (null for truncates)."""
    lsn: int | None
    """PostgreSQL LSN of the change: the ordering key per source row."""
    tx_id: int | None
    source_ts: dt.datetime
    """Commit time in the source database (UTC)."""
    mapping_version: str
    """``<system>.<schema>.<table>@<version>#<hash>``: the mapping file's version and content hash."""


class ChangeInfo(CanonicalModel):
    """What kind of change produced the record, and what the mapping could not fill."""

    op: ChangeOp
    deleted: bool
    """True for deletes and truncates: silver keeps a soft-delete marker."""
    snapshot: bool
    """True for snapshot reads (``op=r``): they never overwrite newer streamed state."""
    topic: str
    partition: Annotated[int, Dtype(pl.Int32())]
    offset: int
    unavailable: tuple[str, ...] = ()
    """Canonical fields whose source held Debezium's unchanged-TOAST placeholder: they are null in this
    record and silver must keep their previous value."""
    issues: tuple[str, ...] = ()
    """Optional fields that could not be mapped (left null), each ``field: why (raw value)``."""
    extras: str | None = None
    """JSON object of source columns the mapping does not know yet (schema drift, policy ``evolve``)."""


class Customer(CanonicalModel):
    """A customer: a person or an organisation, with contact data and one postal address."""

    entity: ClassVar[str] = "customer"
    version: ClassVar[int] = SCHEMA_VERSION

    kind: PartyKind
    status: CustomerStatus
    full_name: str | None = None
    """A person's name as one string, given name first (or as the source wrote it)."""
    first_name: str | None = None
    middle_name: str | None = None
    last_name: str | None = None
    organisation_name: str | None = None
    job_title: str | None = None
    email: str | None = None
    phone: str | None = None
    """E.164, e.g. ``+4930123456``."""
    mobile_phone: str | None = None
    birth_date: dt.date | None = None
    street: str | None = None
    street2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    region: str | None = None
    country: str | None = None
    """ISO 3166-1 alpha-2."""
    tax_id: str | None = None
    currency: str | None = None
    """Preferred / billing currency, ISO 4217."""
    marketing_opt_in: bool | None = None
    parent_ref: str | None = None
    """Source key of the record this one belongs to in the same system (a contact's account)."""
    created_at: dt.datetime | None = None
    """When the source system created the record (its own field, not the CDC time)."""
    updated_at: dt.datetime | None = None


class CustomerAddress(CanonicalModel):
    """A postal address a customer keeps in a source system besides the customer record itself."""

    entity: ClassVar[str] = "customer_address"
    version: ClassVar[int] = SCHEMA_VERSION

    customer_ref: str
    kind: AddressKind
    is_default: bool | None = None
    full_name: str | None = None
    """The recipient as typed on the address (may differ from the customer's name)."""
    organisation_name: str | None = None
    street: str | None = None
    street2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    region: str | None = None
    country: str | None = None
    phone: str | None = None


class Product(CanonicalModel):
    """A sellable product or material."""

    entity: ClassVar[str] = "product"
    version: ClassVar[int] = SCHEMA_VERSION

    sku: str
    name: str
    status: ProductStatus
    description: str | None = None
    category: str | None = None
    unit: str | None = None
    price_minor: int | None = None
    currency: str | None = None
    vendor_ref: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class Order(CanonicalModel):
    """A sales order header. Its lines are :class:`OrderLine` records (their own silver table)."""

    entity: ClassVar[str] = "order"
    version: ClassVar[int] = SCHEMA_VERSION

    order_number: str
    customer_ref: str
    status: OrderStatus
    currency: str
    order_date: dt.date | None = None
    placed_at: dt.datetime | None = None
    requested_delivery_date: dt.date | None = None
    customer_po: str | None = None
    subtotal_minor: int | None = None
    """Sum of the lines before shipping and tax."""
    shipping_minor: int | None = None
    tax_minor: int | None = None
    total_minor: int | None = None
    """Gross total (subtotal + shipping + tax); null when the source does not know it."""
    updated_at: dt.datetime | None = None


class OrderLine(CanonicalModel):
    """One line of a sales order; ``order_ref`` is the order's source key."""

    entity: ClassVar[str] = "order_line"
    version: ClassVar[int] = SCHEMA_VERSION

    order_ref: str
    line_no: int
    product_ref: str
    quantity: Quantity
    description: str | None = None
    unit: str | None = None
    unit_price_minor: int | None = None
    line_total_minor: int | None = None
    currency: str | None = None
    """Null when the source keeps the currency on the order header only."""


class Invoice(CanonicalModel):
    """An invoice header. Its lines are :class:`InvoiceLine` records."""

    entity: ClassVar[str] = "invoice"
    version: ClassVar[int] = SCHEMA_VERSION

    invoice_number: str
    customer_ref: str
    status: InvoiceStatus
    currency: str
    subtotal_minor: int | None = None
    tax_minor: int | None = None
    total_minor: int | None = None
    amount_paid_minor: int | None = None
    issued_at: dt.datetime | None = None
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    due_date: dt.date | None = None
    memo: str | None = None


class InvoiceLine(CanonicalModel):
    """One line of an invoice; ``invoice_ref`` is the invoice's source key."""

    entity: ClassVar[str] = "invoice_line"
    version: ClassVar[int] = SCHEMA_VERSION

    invoice_ref: str
    line_no: int
    description: str
    quantity: Quantity
    product_ref: str | None = None
    unit_amount_minor: int | None = None
    amount_minor: int | None = None
    currency: str | None = None


class Payment(CanonicalModel):
    """A payment received against an invoice."""

    entity: ClassVar[str] = "payment"
    version: ClassVar[int] = SCHEMA_VERSION

    customer_ref: str
    amount_minor: int
    currency: str
    status: PaymentStatus
    paid_at: dt.datetime
    invoice_ref: str | None = None
    method: PaymentMethod | None = None
    card_last4: str | None = None


ENTITIES: dict[str, type[CanonicalModel]] = {
    m.entity: m for m in (Customer, CustomerAddress, Product, Order, OrderLine, Invoice, InvoiceLine, Payment)
}
"""Every canonical entity of this schema version, by name."""

#: Column names that belong to the record envelope, not to any entity (entities may not reuse them).
ENVELOPE_FIELDS: tuple[str, ...] = (*Lineage.model_fields, *ChangeInfo.model_fields)


def entity_model(entity: str) -> type[CanonicalModel]:
    """The model class of ``entity``; ``KeyError`` with the known names if there is none."""
    try:
        return ENTITIES[entity]
    except KeyError:
        raise KeyError(
            f"unknown canonical entity {entity!r} (known: {', '.join(sorted(ENTITIES))})"
        ) from None


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != len(typing.get_args(tp)) and len(args) == 1:
            return args[0], True
    return tp, False


def _dtype_of(tp: Any, metadata: list[Any]) -> pl.DataType:
    for m in metadata:
        if isinstance(m, Dtype):
            return m.dtype
    if typing.get_origin(tp) is Annotated:
        base, *extra = typing.get_args(tp)
        return _dtype_of(base, [*metadata, *extra])
    if typing.get_origin(tp) is Literal:
        return pl.String()
    if typing.get_origin(tp) in (tuple, list):
        (item, *_rest) = typing.get_args(tp)
        return pl.List(_dtype_of(item, []))
    if tp is bool:
        return pl.Boolean()
    if tp is int:
        return pl.Int64()
    if tp is float:
        return pl.Float64()
    if tp is str:
        return pl.String()
    if tp is dt.datetime:
        return pl.Datetime("us", "UTC")
    if tp is dt.date:
        return pl.Date()
    if tp is Decimal:
        scale = next(
            (m.decimal_places for m in metadata if getattr(m, "decimal_places", None) is not None), None
        )
        if scale is None:
            raise TypeError("a Decimal canonical field needs Field(decimal_places=...)")
        return pl.Decimal(38, scale)
    raise TypeError(f"no polars dtype for canonical type {tp!r}")


def field_dtype(info: FieldInfo) -> pl.DataType:
    """The polars dtype of one model field."""
    tp, _ = _unwrap_optional(info.annotation)
    return _dtype_of(tp, list(info.metadata))


def is_required(info: FieldInfo) -> bool:
    """A field is required when it has no default and is not optional."""
    _, optional = _unwrap_optional(info.annotation)
    return info.is_required() and not optional


def allowed_values(info: FieldInfo) -> frozenset[str] | None:
    """The values a ``Literal`` text field accepts, or None for free text."""
    tp, _ = _unwrap_optional(info.annotation)
    if typing.get_origin(tp) is Literal:
        return frozenset(str(v) for v in typing.get_args(tp))
    return None


def model_schema(model: type[BaseModel]) -> pl.Schema:
    """The polars schema of a model's fields, in declaration order."""
    return pl.Schema({name: field_dtype(info) for name, info in model.model_fields.items()})


def entity_schema(entity: str) -> pl.Schema:
    """The canonical columns of ``entity`` (no lineage)."""
    return model_schema(entity_model(entity))


def record_schema(entity: str) -> pl.Schema:
    """Columns of a mapped record of ``entity``: lineage, change info, then the entity's own fields.

    This is the schema of :attr:`flows.canonical.MappedBatch.records` and of the silver table.
    """
    cols = {**model_schema(Lineage), **model_schema(ChangeInfo)}
    for name, dtype in entity_schema(entity).items():
        if name in cols:
            raise TypeError(f"canonical entity {entity!r} reuses envelope column {name!r}")
        cols[name] = dtype
    return pl.Schema(cols)
