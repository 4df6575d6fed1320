"""The demo CRM and ERP APIs as components of the local stack (``goldstream stack up/down/status``).

Each runs as ``python -m cdc.demo.api <system> --host H --port P`` (uvicorn, one worker), detached,
with its pid file and log under ``<state>/demo-api/``. Ready when ``GET /health`` answers 200, which
needs its database. Credentials come from the environment; when it has none, ``up`` generates them
into ``<state>/secrets.env`` like the CDC password, and the processes inherit them.
"""

from __future__ import annotations

import os
import secrets
import sys
import time

import httpx

from cdc.stack import proc
from cdc.stack.credentials import _append_secret, load_secrets, secrets_file
from cdc.stack.paths import StackPaths
from core.settings import DemoApiSettings, Settings, project_root

SYSTEMS = ("crm", "erp")
MODULE = "cdc.demo.api"


def component(system: str) -> str:
    """The component name in ``stack status``: ``crm-api``."""
    return f"{system}-api"


def api_settings(settings: Settings, system: str) -> DemoApiSettings:
    """``demo_apis.<system>``."""
    api: DemoApiSettings = getattr(settings.demo_apis, system)
    return api


def secret_names(settings: Settings) -> tuple[str, ...]:
    """Environment variables holding the APIs' credentials (names only)."""
    cfg = settings.demo_apis
    return (cfg.crm.secret_env, cfg.erp.secret_env, cfg.admin_token_env)


def ensure_secrets(settings: Settings) -> list[str]:
    """Make sure every API credential is in the environment; generate missing ones into secrets.env.

    Returns the names of the variables generated now (never their values).
    """
    load_secrets(settings)
    generated: list[str] = []
    for name in dict.fromkeys(secret_names(settings)):
        if os.environ.get(name):
            continue
        value = secrets.token_urlsafe(32)
        _append_secret(secrets_file(settings), name, value)
        os.environ[name] = value
        generated.append(name)
    return generated


def markers(settings: Settings, system: str) -> tuple[str, ...]:
    """What the service's command line contains (guards against signalling a recycled pid)."""
    return (f"{MODULE} {system}", f"--port {api_settings(settings, system).port}")


def running_pid(settings: Settings, paths: StackPaths, system: str) -> int | None:
    """Pid of our running service, or None."""
    return proc.running_pid(paths.demo_api_pidfile(system), markers(settings, system))


def start(settings: Settings, paths: StackPaths, system: str) -> int:
    """Start the service detached; returns its pid. The caller checked it is not running yet."""
    api = api_settings(settings, system)
    proc.ensure_port_free(component(system), api.host, api.port)
    argv = [sys.executable, "-m", MODULE, system, "--host", api.host, "--port", str(api.port)]
    return proc.spawn(
        argv,
        log=paths.demo_api_log(system),
        pidfile=paths.demo_api_pidfile(system),
        env=dict(os.environ),  # the credentials (secrets.env is loaded into it) and GOLDSTREAM_CONFIG
        cwd=project_root(),  # where the service finds config/goldstream.yaml
    )


def health(settings: Settings, system: str, timeout: float = 2.0) -> dict[str, object] | None:
    """The ``/health`` document if the service answers 200, else None."""
    try:
        response = httpx.get(f"{api_settings(settings, system).url}/health", timeout=timeout)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def wait_ready(settings: Settings, paths: StackPaths, system: str, pid: int, timeout: float) -> None:
    """Block until ``/health`` answers 200; TerminalError with the log tail on death or timeout."""
    api = api_settings(settings, system)
    ok = proc.wait_until(
        lambda: proc.port_open(api.host, api.port) and health(settings, system) is not None,
        timeout=timeout,
        interval=0.2,
        alive=lambda: proc.pid_alive(pid),
    )
    if ok:
        return
    problem = (
        f"process {pid} exited during startup"
        if not proc.pid_alive(pid)
        else f"GET {api.url}/health not 200 after {timeout:.0f} s"
    )
    raise proc.failure(component(system), paths.demo_api_log(system), problem)


def stop(settings: Settings, paths: StackPaths, system: str, echo: proc.Echo, timeout: float = 10.0) -> None:
    """SIGTERM the service (uvicorn finishes in-flight calls), SIGKILL after ``timeout``."""
    name = component(system)
    pidfile = paths.demo_api_pidfile(system)
    pid = running_pid(settings, paths, system)
    if pid is None:
        stale = proc.clear_stale_pidfile(pidfile, markers(settings, system))
        if stale:
            echo(f"{name}: removed stale pid file (pid {stale} is gone)")
        return
    started = time.monotonic()
    killed = proc.terminate(pid, timeout=timeout, markers=markers(settings, system))
    pidfile.unlink(missing_ok=True)
    how = "killed after SIGTERM timeout" if killed else "stopped"
    echo(f"{name}: {how} (pid {pid}) in {time.monotonic() - started:.1f} s")


def describe(settings: Settings, system: str, body: dict[str, object]) -> str:
    """The status line detail: auth, client, rate limit, injected faults."""
    auth = "OAuth2" if system == "crm" else "X-API-Key"
    limit = body.get("rate_limit")
    rate = "no rate limit"
    if isinstance(limit, dict) and not limit.get("unlimited"):
        rate = f"{limit.get('requests_per_second')}/s, burst {limit.get('burst')}"
    text = f"{auth} as {api_settings(settings, system).client_id}; {rate}"
    faults = body.get("faults")
    return text + (f"; FAULTS INJECTED: {faults}" if faults else "")
