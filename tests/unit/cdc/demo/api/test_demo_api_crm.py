"""The demo CRM API over the in-memory store: auth, upsert, ETags, pages, batch, merge, limits, faults."""

from __future__ import annotations

import base64
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from cdc.demo.api import crm
from cdc.demo.api.store import MemoryStore

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

PERSON = {"account_type": "Person", "name": "Ada Lovelace", "billing_country": "United Kingdom"}


def _put(client: TestClient, external_id: str, body: dict[str, Any], **headers: str) -> Any:
    return client.put(f"/v1/accounts/by-external-id/{external_id}", json=body, headers=headers)


# --- auth ------------------------------------------------------------------------------------------


def test_business_calls_need_a_bearer_token(crm_client: TestClient) -> None:
    anonymous = crm_client.get("/v1/accounts", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    bogus = crm_client.get("/v1/accounts", headers={"Authorization": "Bearer nope"})
    assert bogus.status_code == 401
    assert 'error="invalid_token"' in bogus.headers["www-authenticate"]
    assert crm_client.get("/v1/accounts").status_code == 200


def test_token_endpoint_follows_rfc_6749(crm_client: TestClient, crm_secret: str) -> None:
    form = {"grant_type": "client_credentials", "client_id": "goldstream", "client_secret": crm_secret}
    ok = crm_client.post("/oauth/token", data=form)
    assert ok.status_code == 200
    assert ok.json()["token_type"] == "Bearer" and ok.json()["expires_in"] == 60
    assert ok.headers["cache-control"] == "no-store"
    basic = base64.b64encode(f"goldstream:{crm_secret}".encode()).decode()
    via_basic = crm_client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert via_basic.status_code == 200
    assert crm_client.post("/oauth/token", json=form).status_code == 200
    wrong = crm_client.post("/oauth/token", data={**form, "client_secret": "guess"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert crm_secret not in wrong.text
    unknown = crm_client.post("/oauth/token", data={**form, "client_id": "someone"})
    assert unknown.status_code == 401
    grant = crm_client.post("/oauth/token", data={**form, "grant_type": "password"})
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"


def test_tokens_expire(crm_client: TestClient, clock: Any) -> None:
    assert crm_client.get("/v1/accounts").status_code == 200
    clock.advance(61)
    expired = crm_client.get("/v1/accounts")
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


# --- upsert, ETag, If-Match -------------------------------------------------------------------------


def test_upsert_creates_then_is_idempotent(crm_client: TestClient, crm_store: MemoryStore) -> None:
    created = _put(crm_client, "g-1", PERSON)
    assert created.status_code == 201
    assert created.headers["etag"] == '"1"' and created.headers["x-outcome"] == "created"
    body = created.json()
    assert created.headers["location"] == f"/v1/accounts/{body['account_id']}"
    assert body["external_id"] == "g-1" and body["version"] == 1
    assert body["last_modified_by"] == "goldstream"  # the origin marker: the authenticated client
    assert body["status"] == "Active" and body["custom_fields"] == {}  # the table's defaults

    again = _put(crm_client, "g-1", PERSON)
    assert again.status_code == 200 and again.headers["x-outcome"] == "unchanged"
    assert again.json()["version"] == 1 and again.json()["updated_at"] == body["updated_at"]
    assert len(crm_store.tables["accounts"]) == 1

    changed = _put(crm_client, "g-1", {"billing_city": "London"})
    assert changed.status_code == 200 and changed.headers["x-outcome"] == "updated"
    assert changed.headers["etag"] == '"2"'
    assert changed.json()["name"] == "Ada Lovelace"  # fields left out stay as they were


def test_decimals_compare_by_value_and_travel_as_strings(crm_client: TestClient) -> None:
    first = _put(crm_client, "g-2", {**PERSON, "annual_revenue": "1250.5"})
    assert first.json()["annual_revenue"] == "1250.5"
    again = _put(crm_client, "g-2", {**PERSON, "annual_revenue": 1250.50})
    assert again.headers["x-outcome"] == "unchanged"
    too_precise = _put(crm_client, "g-2", {"annual_revenue": "1.001"})
    assert too_precise.status_code == 422


def test_create_needs_the_required_fields_and_rejects_unknown_ones(crm_client: TestClient) -> None:
    missing = _put(crm_client, "g-3", {"name": "No Type"})
    assert missing.status_code == 422
    assert missing.json()["error"]["details"] == [{"field": "account_type", "message": "required to create"}]
    unknown = _put(crm_client, "g-3", {**PERSON, "nickname": "x"})
    assert unknown.status_code == 422 and unknown.json()["error"]["details"][0]["field"] == "nickname"
    assert _put(crm_client, "g-3", {**PERSON, "status": "Gone"}).status_code == 422
    _put(crm_client, "g-3", PERSON)
    null = _put(crm_client, "g-3", {"name": None})
    assert null.status_code == 422 and null.json()["error"]["details"][0]["field"] == "name"
    assert _put(crm_client, "g-3", {"external_id": "other"}).status_code == 422
    not_json = crm_client.put(
        "/v1/accounts/by-external-id/g-3", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400


def test_if_match_guards_writes_with_412(crm_client: TestClient, crm_store: MemoryStore) -> None:
    account = _put(crm_client, "g-4", PERSON).json()
    url = f"/v1/accounts/{account['account_id']}"

    ok = crm_client.patch(url, json={"phone": "+44 20 7946 0958"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == '"2"'

    stale = crm_client.patch(url, json={"phone": "0"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.headers["etag"] == '"2"' and stale.json()["error"]["details"] == {"current_version": 2}
    assert crm_client.get(url).json()["phone"] == "+44 20 7946 0958"

    # A user's direct edit in the CRM bumps the version too, and replaces the origin marker.
    edited = crm_store.edit(crm.ACCOUNTS, uuid.UUID(account["account_id"]), {"phone": "typed by a user"})
    assert edited["version"] == 3 and edited["last_modified_by"] == "db:test"
    assert _put(crm_client, "g-4", {"phone": "mine"}, **{"If-Match": '"2"'}).status_code == 412
    assert _put(crm_client, "g-4", {"phone": "mine"}, **{"If-Match": '"3"'}).status_code == 200

    assert _put(crm_client, "g-4", PERSON, **{"If-None-Match": "*"}).status_code == 412
    assert _put(crm_client, "g-new", PERSON, **{"If-Match": '"1"'}).status_code == 412  # does not exist
    assert _put(crm_client, "g-new", PERSON, **{"If-None-Match": "*"}).status_code == 201


def test_get_by_id_and_external_id_with_etag_and_304(crm_client: TestClient) -> None:
    account = _put(crm_client, "g-5", PERSON).json()
    by_id = crm_client.get(f"/v1/accounts/{account['account_id']}")
    assert by_id.status_code == 200 and by_id.headers["etag"] == '"1"'
    assert crm_client.get("/v1/accounts/by-external-id/g-5").json()["account_id"] == account["account_id"]
    cached = crm_client.get(f"/v1/accounts/{account['account_id']}", headers={"If-None-Match": '"1"'})
    assert cached.status_code == 304
    assert crm_client.get(f"/v1/accounts/{uuid.uuid4()}").status_code == 404
    assert crm_client.get("/v1/accounts/not-a-uuid").status_code == 404
    assert crm_client.get("/v1/accounts/by-external-id/nobody").status_code == 404


# --- pagination ------------------------------------------------------------------------------------


def test_cursor_pagination_visits_every_account_once(crm_client: TestClient, crm_store: MemoryStore) -> None:
    for n in range(7):
        crm_store.seed(
            crm.ACCOUNTS, {"account_id": uuid.uuid4(), "account_type": "Organization", "name": f"Org {n}"}
        )
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"page_size": 3, **({"cursor": cursor} if cursor else {})}
        page = crm_client.get("/v1/accounts", params=params).json()
        seen += [item["account_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 7 and len(set(seen)) == 7 and seen == sorted(seen)
    assert crm_client.get("/v1/accounts", params={"cursor": "garbage"}).status_code == 400
    assert crm_client.get("/v1/accounts", params={"page_size": 51}).status_code == 422
    assert crm_client.get("/v1/accounts", params={"page_size": 0}).status_code == 422
    exact = crm_client.get("/v1/accounts", params={"page_size": 7}).json()
    assert len(exact["items"]) == 7 and exact["next_cursor"] is None  # no empty trailing page


# --- batch -----------------------------------------------------------------------------------------


def test_batch_one_bad_record_does_not_fail_the_rest(crm_client: TestClient, crm_store: MemoryStore) -> None:
    _put(crm_client, "b-2", PERSON)
    inputs = [
        {"external_id": "b-1", "properties": PERSON},
        {"external_id": "b-2", "properties": PERSON},  # unchanged
        {"external_id": "b-3", "properties": {**PERSON, "currency_iso_code": "euro"}},  # invalid
        {"external_id": "b-2", "properties": {"name": "Ada King"}, "if_match": '"1"'},  # updated
        {"external_id": "b-2", "properties": {"name": "Ada K."}, "if_match": '"1"'},  # stale now
    ]
    response = crm_client.post("/v1/accounts/batch", json={"inputs": inputs})
    assert response.status_code == 200
    body = response.json()
    assert [r["status"] for r in body["results"]] == [201, 200, 422, 200, 412]
    assert [r.get("outcome") for r in body["results"]] == ["created", "unchanged", None, "updated", None]
    assert body["results"][2]["error"]["details"][0]["field"] == "currency_iso_code"
    assert (body["created"], body["updated"], body["unchanged"], body["failed"]) == (1, 1, 1, 2)
    assert {r["external_id"] for r in crm_store.tables["accounts"].values()} == {"b-1", "b-2"}
    assert crm_client.get("/v1/accounts/by-external-id/b-2").json()["name"] == "Ada King"


def _count_transactions(store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every transaction the store opens (the writer of each)."""
    opened: list[str] = []
    original = store.transaction

    def counted(modified_by: str) -> Any:
        opened.append(modified_by)
        return original(modified_by)

    monkeypatch.setattr(store, "transaction", counted)
    return opened


def test_batch_commits_once_when_every_write_succeeds(
    crm_client: TestClient, crm_store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _put(crm_client, "t-2", PERSON)
    opened = _count_transactions(crm_store, monkeypatch)
    inputs = [
        {"external_id": "t-1", "properties": PERSON},
        {"external_id": "t-2", "properties": {"name": "Ada King"}},
        {"external_id": "t-3", "properties": {"name": "No type"}},  # refused by a check: fails alone
    ]
    body = crm_client.post("/v1/accounts/batch", json={"inputs": inputs}).json()
    assert [r["status"] for r in body["results"]] == [201, 200, 422]
    assert len(opened) == 1  # one transaction for the batch, not one per record
    assert {r["external_id"] for r in crm_store.tables["accounts"].values()} == {"t-1", "t-2"}


def test_batch_redoes_item_by_item_when_a_write_fails_in_the_database(
    crm_client: TestClient, crm_store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _put(crm_client, "acc-1", PERSON)
    opened = _count_transactions(crm_store, monkeypatch)
    contact = {"account_external_id": "acc-1", "last_name": "Lovelace"}
    inputs = [
        {"external_id": "k-1", "properties": contact},
        # passes the checks, refused by the database (foreign key): the batch transaction is lost
        {"external_id": "k-2", "properties": {"account_id": str(uuid.uuid4()), "last_name": "Byron"}},
        {"external_id": "k-3", "properties": contact},
    ]
    body = crm_client.post("/v1/contacts/batch", json={"inputs": inputs}).json()
    assert [r["status"] for r in body["results"]] == [201, 422, 201]
    assert len(opened) == 1 + 3  # the rolled-back batch, then each record on its own
    stored = {r["external_id"] for r in crm_store.tables["contacts"].values()}
    assert stored == {"k-1", "k-3"}


def test_batch_limits_and_shape(crm_client: TestClient) -> None:
    six = [{"external_id": f"x-{n}", "properties": PERSON} for n in range(6)]
    assert crm_client.post("/v1/accounts/batch", json={"inputs": six}).status_code == 413
    assert crm_client.post("/v1/accounts/batch", json=[]).status_code == 400
    bad_item = crm_client.post("/v1/accounts/batch", json={"inputs": [{"properties": PERSON}, "x"]}).json()
    assert [r["status"] for r in bad_item["results"]] == [422, 422]


def test_batch_replays_with_the_same_idempotency_key(crm_client: TestClient) -> None:
    body = {"inputs": [{"external_id": "i-1", "properties": PERSON}]}
    first = crm_client.post("/v1/accounts/batch", json=body, headers={"Idempotency-Key": "k-1"})
    replay = crm_client.post("/v1/accounts/batch", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.json()["results"][0]["outcome"] == "created"
    assert replay.json() == first.json() and replay.headers["idempotent-replayed"] == "true"
    fresh = crm_client.post("/v1/accounts/batch", json=body, headers={"Idempotency-Key": "k-2"})
    assert fresh.json()["results"][0]["outcome"] == "unchanged"
    reused = crm_client.post("/v1/accounts/batch", json={"inputs": []}, headers={"Idempotency-Key": "k-1"})
    assert reused.status_code == 422


# --- contacts, merge, status, delete ----------------------------------------------------------------


def test_contacts_reference_accounts_by_external_id(crm_client: TestClient) -> None:
    account = _put(crm_client, "acc-1", PERSON).json()
    contact = crm_client.put(
        "/v1/contacts/by-external-id/p-1",
        json={
            "account_external_id": "acc-1",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "birthdate": "1815-12-10",
        },
    )
    assert contact.status_code == 201
    assert (
        contact.json()["account_id"] == account["account_id"] and contact.json()["birthdate"] == "1815-12-10"
    )
    again = crm_client.put(
        "/v1/contacts/by-external-id/p-1", json={"account_external_id": "acc-1", "last_name": "Lovelace"}
    )
    assert again.headers["x-outcome"] == "unchanged"
    orphan = crm_client.put(
        "/v1/contacts/by-external-id/p-2", json={"account_external_id": "nope", "last_name": "X"}
    )
    assert orphan.status_code == 422
    dangling = crm_client.put(
        "/v1/contacts/by-external-id/p-2", json={"account_id": str(uuid.uuid4()), "last_name": "X"}
    )
    assert dangling.status_code == 422
    no_account = crm_client.put("/v1/contacts/by-external-id/p-2", json={"last_name": "X"})
    assert no_account.status_code == 422


def test_merge_repoints_children_and_deactivates_the_retired(
    crm_client: TestClient, crm_store: MemoryStore
) -> None:
    survivor = _put(crm_client, "m-1", PERSON).json()
    retired = _put(crm_client, "m-2", {**PERSON, "name": "A. Lovelace"}).json()
    for n in range(2):
        crm_client.put(
            f"/v1/contacts/by-external-id/mc-{n}", json={"account_external_id": "m-2", "last_name": f"C{n}"}
        )
    crm_store.extra["public.opportunities"] = [
        {"opportunity_id": "OPP-1", "account_id": uuid.UUID(retired["account_id"])}
    ]

    url = f"/v1/accounts/{survivor['account_id']}/merge"
    merged = crm_client.post(url, json={"retired_external_id": "m-2"}, headers={"If-Match": '"1"'})
    assert merged.status_code == 200
    body = merged.json()
    assert body["moved"] == {"contacts": 2, "opportunities": 1}
    assert body["retired"]["status"] == "Inactive" and body["retired"]["version"] == 2
    contacts = crm_client.get("/v1/contacts").json()["items"]
    assert {c["account_id"] for c in contacts} == {survivor["account_id"]}
    assert {c["last_modified_by"] for c in contacts} == {"goldstream"}

    again = crm_client.post(url, json={"retired_id": retired["account_id"]}).json()
    assert again["moved"] == {"contacts": 0, "opportunities": 0} and again["retired"]["version"] == 2
    assert crm_client.post(url, json={"retired_id": survivor["account_id"]}).status_code == 409
    assert crm_client.post(url, json={"retired_id": str(uuid.uuid4())}).status_code == 404
    assert crm_client.post(url, json={}).status_code == 422
    assert (
        crm_client.post(url, json={"retired_external_id": "m-2"}, headers={"If-Match": '"9"'}).status_code
        == 412
    )


def test_deactivate_activate_and_delete(crm_client: TestClient, crm_store: MemoryStore) -> None:
    account = _put(crm_client, "d-1", PERSON).json()
    crm_client.put("/v1/contacts/by-external-id/dc-1", json={"account_external_id": "d-1", "last_name": "C"})
    url = f"/v1/accounts/{account['account_id']}"
    off = crm_client.post(f"{url}/deactivate")
    assert off.json()["status"] == "Inactive" and off.headers["x-outcome"] == "updated"
    assert crm_client.post(f"{url}/deactivate").headers["x-outcome"] == "unchanged"
    assert crm_client.post(f"{url}/activate", headers={"If-Match": '"1"'}).status_code == 412
    assert crm_client.post(f"{url}/activate").json()["status"] == "Active"
    assert crm_client.delete(url, headers={"If-Match": '"1"'}).status_code == 412
    assert crm_client.delete(url).status_code == 204
    assert crm_client.get(url).status_code == 404
    assert crm_store.tables["contacts"] == {}  # ON DELETE CASCADE
    assert crm_client.delete(url).status_code == 404


# --- rate limits, faults, admin ---------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(
    crm_client: TestClient, admin: dict[str, str], clock: Any
) -> None:
    assert (
        crm_client.put("/admin/rate-limit", json={"requests_per_second": 0.5, "burst": 2}).status_code == 401
    )
    assert (
        crm_client.put(
            "/admin/rate-limit", json={"requests_per_second": 0.5, "burst": 2}, headers=admin
        ).status_code
        == 200
    )
    assert crm_client.get("/v1/accounts").status_code == 200
    assert crm_client.get("/v1/accounts").status_code == 200
    limited = crm_client.get("/v1/accounts")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert limited.json()["error"]["code"] == "rate_limited"
    assert crm_client.get("/health").status_code == 200  # operators are not limited
    clock.advance(2)
    assert crm_client.get("/v1/accounts").status_code == 200
    lifted = crm_client.delete("/admin/rate-limit", headers=admin)
    assert lifted.json()["unlimited"] is True
    assert all(crm_client.get("/v1/accounts").status_code == 200 for _ in range(20))


def test_injected_outage_errors_and_latency(crm_client: TestClient, admin: dict[str, str]) -> None:
    assert crm_client.post("/admin/faults", json={"outage": True}).status_code == 401
    assert (
        crm_client.post("/admin/faults", json={"outage": True, "retry_after_s": 7}, headers=admin).status_code
        == 200
    )
    down = crm_client.get("/v1/accounts")
    assert down.status_code == 503 and down.headers["retry-after"] == "7"
    assert crm_client.post("/oauth/token", data={}).status_code == 503
    health = crm_client.get("/health").json()
    assert health["faults"]["outage"] is True  # operators still get through
    assert crm_client.delete("/admin/faults", headers=admin).status_code == 204
    assert crm_client.get("/v1/accounts").status_code == 200

    crm_client.post("/admin/faults", json={"error_rate": 1.0, "status_code": 502}, headers=admin)
    assert crm_client.get("/v1/accounts").status_code == 502
    assert _put(crm_client, "f-1", PERSON).status_code == 502
    crm_client.delete("/admin/faults", headers=admin)
    assert crm_client.get("/v1/accounts/by-external-id/f-1").status_code == 404  # "before": no effect

    crm_client.post("/admin/faults", json={"error_rate": 1.0, "error_phase": "after"}, headers=admin)
    assert _put(crm_client, "f-2", PERSON).status_code == 500
    crm_client.delete("/admin/faults", headers=admin)
    assert crm_client.get("/v1/accounts/by-external-id/f-2").status_code == 200  # "after": the write happened
    assert _put(crm_client, "f-2", PERSON).headers["x-outcome"] == "unchanged"  # a retry is harmless

    crm_client.post("/admin/faults", json={"latency_ms": 300}, headers=admin)
    started = time.monotonic()
    assert crm_client.get("/v1/accounts").status_code == 200
    assert time.monotonic() - started >= 0.3
    assert crm_client.get("/admin/faults", headers=admin).json()["faults"]["latency_ms"] == 300
    assert crm_client.post("/admin/faults", json={"error_rate": 2}, headers=admin).status_code == 422


def test_admin_stats_count_calls(crm_client: TestClient, admin: dict[str, str]) -> None:
    crm_client.delete("/admin/stats", headers=admin)
    crm_client.get("/v1/accounts")
    crm_client.get("/v1/accounts/by-external-id/none")
    calls = crm_client.get("/admin/stats", headers=admin).json()["calls"]
    assert {"method": "GET", "route": "/v1/accounts", "status": 200, "count": 1} in calls
    assert {
        "method": "GET",
        "route": "/v1/accounts/by-external-id/{external_id}",
        "status": 404,
        "count": 1,
    } in calls


def test_credentials_come_from_the_environment(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import ConfigError

    monkeypatch.delenv(settings.demo_apis.crm.secret_env)
    with pytest.raises(ConfigError, match="GOLDSTREAM_CRM_CLIENT_SECRET is not set"):
        crm.create_app(settings, MemoryStore(crm.SPECS))
