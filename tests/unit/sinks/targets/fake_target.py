"""An in-memory CRM/ERP-shaped API for ``httpx.MockTransport``: upsert, batch, merge, block, faults."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx

SECRET = "s3cr3t-value-never-logged"


@dataclass
class FakeTarget:
    """Records, calls and scripted failures of one fake target."""

    kind: str = "crm"
    resource: str = "accounts"
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    script: list[httpx.Response] = field(default_factory=list)
    """Responses returned (in order) before the normal behaviour, one per business call."""
    down: bool = False
    bad_external_ids: set[str] = field(default_factory=set)
    """Batch items with these external ids get a per-item 422."""
    flaky_items: dict[str, int] = field(default_factory=dict)
    """external id -> how many more times its batch item answers 503."""
    tokens_issued: int = 0
    expire_tokens: bool = False
    next_key: int = 1
    on_write: Callable[[str, dict[str, Any]], None] | None = None

    def _key(self) -> str:
        self.next_key += 1
        return f"K{self.next_key:06d}"

    def _upsert(self, external_id: str, props: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
        row = self.records.get(external_id)
        if row is None:
            row = {"id": self._key(), "external_id": external_id, "version": 1, "status": "Active", **props}
            self.records[external_id] = row
            outcome, status = "created", 201
        else:
            changes = {k: v for k, v in props.items() if row.get(k) != v}
            if changes:
                row.update(changes)
                row["version"] += 1
                outcome = "updated"
            else:
                outcome = "unchanged"
            status = 200
        if self.on_write is not None and outcome != "unchanged":
            self.on_write(external_id, dict(row))
        return status, row, outcome

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/oauth/token":
            form = parse_qs(request.content.decode())
            if form.get("client_secret") != [SECRET]:
                return httpx.Response(401, json={"error": "invalid_client"})
            self.tokens_issued += 1
            return httpx.Response(200, json={"access_token": f"tok{self.tokens_issued}", "expires_in": 3600})
        self.calls.append((request.method, path))
        if self.kind == "crm":
            auth = request.headers.get("Authorization", "")
            if self.expire_tokens or not auth.startswith("Bearer tok"):
                self.expire_tokens = False
                return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "expired"}})
        elif request.headers.get("X-API-Key") != SECRET:
            return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "no key"}})
        if self.down:
            return httpx.Response(
                503, headers={"Retry-After": "1"}, json={"error": {"code": "injected_outage"}}
            )
        if self.script:
            return self.script.pop(0)
        base = f"/v1/{self.resource}"
        if path.startswith(f"{base}/by-external-id/"):
            external_id = unquote(path.rsplit("/", 1)[1])
            if request.method == "GET":
                row = self.records.get(external_id)
                return httpx.Response(
                    404 if row is None else 200, json=row or {"error": {"code": "not_found"}}
                )
            if external_id in self.bad_external_ids:
                return httpx.Response(422, json={"error": {"code": "invalid", "message": "refused"}})
            status, row, outcome = self._upsert(external_id, json.loads(request.content))
            return httpx.Response(
                status, json=row, headers={"X-Outcome": outcome, "ETag": f'"{row["version"]}"'}
            )
        if path == f"{base}/batch":
            results = []
            for i, item in enumerate(json.loads(request.content)["inputs"]):
                ext = item["external_id"]
                if ext in self.bad_external_ids:
                    results.append(
                        {"index": i, "external_id": ext, "status": 422, "error": {"code": "invalid"}}
                    )
                    continue
                if self.flaky_items.get(ext, 0) > 0:
                    self.flaky_items[ext] -= 1
                    results.append({"index": i, "external_id": ext, "status": 503, "error": {"code": "busy"}})
                    continue
                status, row, outcome = self._upsert(ext, item["properties"])
                results.append(
                    {"index": i, "external_id": ext, "status": status, "outcome": outcome, "id": row["id"],
                     "version": row["version"]}
                )  # fmt: skip
            return httpx.Response(200, json={"results": results})
        parts = path.split("/")
        if len(parts) == 5 and parts[4] in ("deactivate", "block", "activate", "unblock", "merge"):
            key, action = parts[3], parts[4]
            row = next((r for r in self.records.values() if r["id"] == key), None)
            if row is None:
                return httpx.Response(404, json={"error": {"code": "not_found"}})
            if action == "merge":
                retired = self.records.get(json.loads(request.content)["retired_external_id"])
                if retired is None:
                    return httpx.Response(404, json={"error": {"code": "not_found"}})
                retired["status"] = "Inactive"
                return httpx.Response(200, json={"survivor": row, "retired": retired, "moved": {}})
            row["status"] = "Inactive" if action in ("deactivate", "block") else "Active"
            return httpx.Response(200, json=row, headers={"X-Outcome": "updated"})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)
