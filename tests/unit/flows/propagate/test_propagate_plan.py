"""Planning: create vs update, field-level diff, nothing when nothing changed, merges, retirements."""

from __future__ import annotations

from typing import Any

from core.golden import GoldenChange, content_hash
from core.settings import load_settings
from flows.propagate.config import load_targets
from flows.propagate.mapping import outbound
from flows.propagate.plan import PlannedOp, Position, PushedState, apply, coalesce, diff, plan_change

SETTINGS = load_settings()
TARGETS = {c.target: c for c in load_targets(SETTINGS)}
CRM, ERP = TARGETS["crm"], TARGETS["erp"]
VALUES: dict[str, Any] = {
    "kind": "person",
    "status": "active",
    "full_name": "Ann Lee",
    "first_name": "Ann",
    "last_name": "Lee",
    "country": "GB",
    "currency": "GBP",
    "city": "Leeds",
}


def change(version: int, values: dict[str, Any] | None = None, **kw: Any) -> GoldenChange:
    v = dict(VALUES if values is None else values)
    return GoldenChange(
        "customer", kw.pop("gid", "G1"), version, kw.pop("kind", "UPSERT"), v, {}, tuple(v), (), 1_000,
        content_hash=content_hash(v), **kw,
    )  # fmt: skip


def pushed(version: int, values: dict[str, Any] | None = None, **kw: Any) -> PushedState:
    return PushedState("G1", version, outbound(CRM, VALUES if values is None else values), "K1", **kw)


def test_first_version_is_a_create_with_everything() -> None:
    [op] = plan_change(CRM, change(1), None, position=Position("golden.customer", 1, 7))
    assert op.operation == "create" and op.fields == outbound(CRM, VALUES) == op.state
    assert op.idempotency_key == "crm:G1:1:create"
    assert op.position.offset == 7


def test_update_sends_only_the_changed_fields() -> None:
    [op] = plan_change(CRM, change(2, {**VALUES, "city": "York"}), pushed(1))
    assert op.operation == "update" and op.fields == {"billing_city": "York"}
    assert op.state["billing_city"] == "York" and op.state["name"] == "Ann Lee"


def test_nothing_when_nothing_the_target_holds_changed() -> None:
    # email is not a CRM account field: a golden change of email alone sends nothing to the CRM.
    assert plan_change(CRM, change(2, {**VALUES, "email": "ann@x.org"}), pushed(1)) == []
    assert plan_change(ERP, change(2, {**VALUES, "email": "ann@x.org"}), None)[0].operation == "create"


def test_stale_and_replayed_versions_are_ignored() -> None:
    assert plan_change(CRM, change(3, {**VALUES, "city": "York"}), pushed(3)) == []
    assert plan_change(CRM, change(2, {**VALUES, "city": "York"}), pushed(3)) == []


def test_create_without_required_fields_is_skipped() -> None:
    [op] = plan_change(ERP, change(1, {**VALUES, "currency": None}), None)
    assert op.operation == "skip" and "currency" in op.reason


def test_merge_goes_after_the_survivors_upsert_with_a_merge_endpoint() -> None:
    ops = plan_change(CRM, change(2, {**VALUES, "city": "York"}, merged_from=("G9",)), pushed(1))
    assert [o.operation for o in ops] == ["update", "merge"]
    assert ops[1].other == "G9" and ops[1].idempotency_key == "crm:G1:2:merge:G9"
    # The ERP has no merge endpoint: its retired record is blocked on its own RETIRED event.
    assert [o.operation for o in plan_change(ERP, change(2, merged_from=("G9",)), None)] == ["create"]


def test_retired_by_merge_deactivates_and_records_the_deactivated_state() -> None:
    [op] = plan_change(CRM, change(3, kind="RETIRED", merged_into="G0"), pushed(2))
    assert op.operation == "deactivate" and op.other == "G0" and op.state["status"] == "Inactive"
    assert plan_change(CRM, change(3, kind="RETIRED", merged_into="G0"), None) == []  # never pushed


def test_retired_without_merge_follows_the_delete_policy() -> None:
    [op] = plan_change(ERP, change(3, kind="RETIRED"), pushed(2))
    assert op.operation == "deactivate" and op.state["status"] == "I"
    ignore = CRM.model_copy(update={"delete_policy": "ignore"})
    assert plan_change(ignore, change(3, kind="RETIRED"), pushed(2)) == []
    delete = CRM.model_copy(update={"delete_policy": "delete"})
    assert plan_change(delete, change(3, kind="RETIRED"), pushed(2))[0].operation == "delete"
    assert plan_change(CRM, change(4, kind="RETIRED"), pushed(3, status="retired")) == []


def test_a_retired_record_coming_back_is_updated_in_full() -> None:
    [op] = plan_change(CRM, change(5), pushed(4, status="retired"))
    assert op.operation == "update" and op.fields == outbound(CRM, VALUES)


def test_diff() -> None:
    assert diff({"a": 1, "b": None}, {"a": 1}) == {"b": None}
    assert diff({"a": 1}, {"a": 2}) == {"a": 1}


def test_coalesce_folds_versions_of_one_record_and_keeps_barriers() -> None:
    a1 = plan_change(CRM, change(1), None)[0]
    state = apply(None, a1, target_key=None)
    a2 = plan_change(CRM, change(2, {**VALUES, "city": "York"}), state)[0]
    state = apply(state, a2, target_key=None)
    a3 = plan_change(CRM, change(3, {**VALUES, "city": "Hull"}, merged_from=("G7",)), state)
    ops: list[PlannedOp] = [a1, a2, *a3]
    out = coalesce(ops)
    assert [(o.operation, o.version) for o in out] == [("create", 3), ("merge", 3)]
    assert out[0].fields["billing_city"] == "Hull" and out[0].fields["name"] == "Ann Lee"
    b = plan_change(CRM, change(1, gid="G2"), None)[0]
    assert [o.golden_id for o in coalesce([a1, b, a2])] == ["G1", "G2"]


def test_apply_tracks_status_and_key() -> None:
    [create] = plan_change(CRM, change(1), None)
    state = apply(None, create, target_key="K9")
    assert state is not None and state.target_key == "K9" and state.status == "live"
    [retire] = plan_change(CRM, change(2, kind="RETIRED", merged_into="G0"), state)
    retired = apply(state, retire, target_key=None)
    assert retired is not None and retired.status == "retired" and retired.merged_into == "G0"
    assert retired.target_key == "K9"
