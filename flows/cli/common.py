"""Helpers shared by the CLI commands: settings, error reporting."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from core.errors import ConfigError, GoldstreamError, TerminalError, TransientError
from core.settings import Settings, load_settings

P = ParamSpec("P")
R = TypeVar("R")
console = Console(stderr=True)


def settings() -> Settings:
    """Settings with the local stack's secrets loaded into the environment."""
    s = load_settings()
    try:
        from cdc.stack import load_secrets
    except ImportError:  # the stack package is optional for remote deployments
        return s
    load_secrets(s)
    return s


def friendly_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn goldstream errors into one clear message and exit code instead of a traceback.

    Exit codes: 2 config, 3 terminal, 4 transient (worth retrying later).
    """

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            console.print(f"[red]config error:[/red] {exc}")
            raise typer.Exit(2) from exc
        except TransientError as exc:
            console.print(f"[yellow]not available (retry later):[/yellow] {exc}")
            raise typer.Exit(4) from exc
        except (TerminalError, GoldstreamError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(3) from exc

    return wrapper
