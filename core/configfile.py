"""Loading YAML config files into pydantic models with errors that name the file and key path."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


class StrictModel(BaseModel):
    """Base for every config model: frozen, and unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def format_validation_error(source: str, err: ValidationError) -> str:
    """Render a pydantic error as ``file: key.path: message`` lines, one per problem."""
    lines = []
    for item in err.errors():
        path = ".".join(str(p) for p in item["loc"]) or "<root>"
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; unknown keys are rejected)"
        lines.append(f"{source}: {path}: {msg}")
    return "\n".join(lines)


def read_yaml(path: Path) -> Any:
    """Parse one YAML file, turning syntax errors into :class:`ConfigError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def validate(model: type[M], data: Any, *, source: str) -> M:
    """Validate already-parsed data against ``model``; errors name ``source`` and the key path."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from exc


def load_yaml_model(path: Path, model: type[M]) -> M:
    """Read ``path`` and validate it against ``model``."""
    return validate(model, read_yaml(path), source=str(path))


def env_refs(value: str) -> list[str]:
    """Names of the ``${env:NAME}`` references inside a config string."""
    return _ENV_REF.findall(value)


def resolve_env(value: str, *, environ: dict[str, str] | None = None, where: str = "") -> str:
    """Replace ``${env:NAME}`` references with the environment's values; a missing one is a ConfigError."""
    env = os.environ if environ is None else environ

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return env[name]

    return _ENV_REF.sub(sub, value)
