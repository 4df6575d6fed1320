"""A small client for the Kafka Connect REST API.

Connection failures and Connect's 409 (a rebalance in progress) are transient; other 4xx answers
are terminal and carry Connect's own error message, which names the offending config key.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from core.errors import TerminalError, TransientError


class ConnectClient:
    """Talks to one Kafka Connect worker (or cluster behind one URL)."""

    def __init__(self, url: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> ConnectClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, json: Any = None, ok404: bool = False) -> Any:
        try:
            resp = self._http.request(method, path, json=json)
        except httpx.TransportError as exc:
            raise TransientError(f"Kafka Connect at {self.url} is not reachable: {exc}") from exc
        if resp.status_code == 404 and ok404:
            return None
        if resp.status_code == 409:
            raise TransientError(f"Kafka Connect {method} {path}: 409 (rebalance in progress)")
        if resp.status_code >= 500:
            raise TransientError(f"Kafka Connect {method} {path}: {resp.status_code} {_message(resp)}")
        if resp.status_code >= 400:
            raise TerminalError(f"Kafka Connect {method} {path}: {resp.status_code} {_message(resp)}")
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def call_with_retry(
        self, method: str, path: str, *, json: Any = None, ok404: bool = False, deadline_s: float = 60.0
    ) -> Any:
        """Like a single call, retrying transient failures with exponential backoff until the deadline."""
        delay, end = 0.25, time.monotonic() + deadline_s
        while True:
            try:
                return self._call(method, path, json=json, ok404=ok404)
            except TransientError:
                if time.monotonic() + delay > end:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def info(self) -> dict[str, Any]:
        """``GET /``: version and commit of the worker."""
        result: dict[str, Any] = self._call("GET", "/")
        return result

    def plugins(self) -> list[str]:
        """Connector classes installed on the worker."""
        return [p["class"] for p in self._call("GET", "/connector-plugins")]

    def validate(self, name: str, config: dict[str, str]) -> list[str]:
        """Ask the connector plugin to validate ``config``; returns ``key: message`` problems."""
        plugin = config["connector.class"].rsplit(".", 1)[-1]
        body = {"name": name, **config}
        result = self.call_with_retry("PUT", f"/connector-plugins/{plugin}/config/validate", json=body)
        problems = []
        for item in result.get("configs", []):
            value = item.get("value") or {}
            for err in value.get("errors") or []:
                problems.append(f"{value.get('name')}: {err}")
        return problems

    def put_config(self, name: str, config: dict[str, str]) -> dict[str, Any]:
        """Create or update a connector (idempotent)."""
        result: dict[str, Any] = self.call_with_retry("PUT", f"/connectors/{name}/config", json=config)
        return result

    def get_config(self, name: str) -> dict[str, str] | None:
        """The stored config of a connector, or None if it does not exist."""
        result: dict[str, str] | None = self._call("GET", f"/connectors/{name}/config", ok404=True)
        return result

    def status(self, name: str) -> dict[str, Any] | None:
        """``GET /connectors/<name>/status``, or None if the connector does not exist."""
        result: dict[str, Any] | None = self._call("GET", f"/connectors/{name}/status", ok404=True)
        return result

    def list(self) -> list[str]:
        """Names of the connectors on the cluster."""
        result: list[str] = self._call("GET", "/connectors")
        return result

    def delete(self, name: str) -> bool:
        """Delete a connector; False if it did not exist."""
        try:
            resp = self._http.delete(f"/connectors/{name}")
        except httpx.TransportError as exc:
            raise TransientError(f"Kafka Connect at {self.url} is not reachable: {exc}") from exc
        if resp.status_code == 404:
            return False
        if resp.status_code >= 400:
            raise TerminalError(
                f"Kafka Connect DELETE /connectors/{name}: {resp.status_code} {_message(resp)}"
            )
        return True

    def restart(self, name: str) -> None:
        """Restart a connector and its failed tasks."""
        self.call_with_retry("POST", f"/connectors/{name}/restart?includeTasks=true&onlyFailed=true")


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500]
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return str(body)[:500]


def connector_state(status: dict[str, Any] | None) -> tuple[str, list[str]]:
    """``(connector state, [task states])`` from a status answer; ``MISSING`` if there is none."""
    if status is None:
        return "MISSING", []
    tasks = [str(t.get("state")) for t in status.get("tasks", [])]
    return str(status.get("connector", {}).get("state", "UNKNOWN")), tasks


def task_traces(status: dict[str, Any] | None) -> list[str]:
    """The first lines of each failed task's stack trace (Connect's explanation of a failure)."""
    if not status:
        return []
    traces = []
    for task in status.get("tasks", []):
        trace = task.get("trace")
        if trace:
            traces.append("\n".join(str(trace).splitlines()[:6]))
    return traces
