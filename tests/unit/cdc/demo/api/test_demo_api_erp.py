"""The demo ERP API over the in-memory store: API key, offset pagination, legacy fields, block/unblock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cdc.demo.api import erp
from cdc.demo.api.store import MemoryStore

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

DEBTOR = {"name1": "LOVELACE, ADA", "country": "GB", "currency": "GBP", "city": "London"}


def _put(client: TestClient, external_id: str, body: dict[str, Any], **headers: str) -> Any:
    return client.put(f"/v1/debtors/by-external-id/{external_id}", json=body, headers=headers)


def test_api_key_is_required(erp_client: TestClient) -> None:
    missing = erp_client.get("/v1/debtors", headers={"X-API-Key": ""})
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["error"]["message"]
    assert erp_client.get("/v1/debtors", headers={"X-API-Key": "guess"}).status_code == 401
    assert erp_client.get("/v1/debtors").status_code == 200


def test_upsert_fills_the_legacy_conventions(erp_client: TestClient) -> None:
    created = _put(erp_client, "g-1", {**DEBTOR, "name2": None})
    assert created.status_code == 201 and created.headers["etag"] == '"1"'
    debtor = created.json()
    assert debtor["debtor_no"].startswith("DX") and len(debtor["debtor_no"]) == 9
    assert debtor["name2"] == "" and debtor["street"] == "" and debtor["status"] == "A"
    assert debtor["payment_terms"] == "NT30" and debtor["credit_limit"] == "0.00"
    month, day, year = debtor["created_on"].split("/")
    assert len(month) == 2 and len(day) == 2 and len(year) == 4
    assert debtor["last_modified_by"] == "goldstream" and debtor["external_id"] == "g-1"
    assert "+" not in debtor["changed_at"]  # local time, no zone

    assert _put(erp_client, "g-1", {**DEBTOR, "name2": ""}).headers["x-outcome"] == "unchanged"
    assert _put(erp_client, "g-1", {"country": "gb"}).status_code == 422
    assert _put(erp_client, "g-1", {"credit_limit": "-1"}).status_code == 422
    assert _put(erp_client, "g-2", {"name1": "X"}).status_code == 422  # country, currency required


def test_offset_pagination(erp_client: TestClient, erp_store: MemoryStore) -> None:
    for n in range(5):
        erp_store.seed(
            erp.DEBTORS, {**DEBTOR, "debtor_no": f"D10000{n}", "created_on": "01/01/2020", "changed_at": None}
        )
    first = erp_client.get("/v1/debtors", params={"limit": 2}).json()
    assert [d["debtor_no"] for d in first["items"]] == ["D100000", "D100001"]
    assert (first["offset"], first["limit"], first["total"], first["next_offset"]) == (0, 2, 5, 2)
    last = erp_client.get("/v1/debtors", params={"offset": 4, "limit": 2}).json()
    assert [d["debtor_no"] for d in last["items"]] == ["D100004"] and last["next_offset"] is None
    assert erp_client.get("/v1/debtors", params={"offset": -1}).status_code == 422
    assert erp_client.get("/v1/debtors", params={"limit": 51}).status_code == 422


def test_block_unblock_and_change_with_if_match(erp_client: TestClient) -> None:
    debtor = _put(erp_client, "g-3", DEBTOR).json()
    url = f"/v1/debtors/{debtor['debtor_no']}"
    blocked = erp_client.post(f"{url}/block", headers={"If-Match": '"1"'})
    assert blocked.status_code == 200 and blocked.json()["status"] == "I" and blocked.headers["etag"] == '"2"'
    assert erp_client.post(f"{url}/block").headers["x-outcome"] == "unchanged"
    assert erp_client.post(f"{url}/unblock", headers={"If-Match": '"1"'}).status_code == 412
    assert erp_client.post(f"{url}/unblock").json()["status"] == "A"
    changed = erp_client.patch(url, json={"telephone": "0044-20-7946095"}, headers={"If-Match": '"3"'})
    assert changed.status_code == 200 and changed.json()["version"] == 4
    assert erp_client.patch(url, json={"telephone": "x"}, headers={"If-Match": '"3"'}).status_code == 412
    assert erp_client.delete(url).status_code == 405  # debtors are blocked, never deleted
    assert erp_client.post("/v1/debtors/D999999/block").status_code == 404


def test_batch_partial_failure(erp_client: TestClient) -> None:
    inputs = [
        {"external_id": "e-1", "properties": DEBTOR},
        {"external_id": "e-2", "properties": {**DEBTOR, "currency": None}},
        {"external_id": "e-3", "properties": DEBTOR},
    ]
    body = erp_client.post("/v1/debtors/batch", json={"inputs": inputs}).json()
    assert [r["status"] for r in body["results"]] == [201, 422, 201]
    assert body["results"][0]["id"] != body["results"][2]["id"]
    assert erp_client.get("/v1/debtors").json()["total"] == 2
