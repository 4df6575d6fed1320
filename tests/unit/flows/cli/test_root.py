"""The root ``goldstream`` command: every command group listed and loadable, and loaded lazily."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import flows.cli
from flows.cli import COMMANDS, app


def test_help_lists_every_command_with_its_help() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name, entry in COMMANDS.items():
        assert name in result.output and entry.help[:40] in result.output


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_listed_command_loads_and_answers_its_own_help(name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"goldstream {name}" in result.output
    # the listing's help is the command's own (one place to change it would drift from the other)
    assert " ".join(COMMANDS[name].help.split()) in " ".join(result.output.split())


def test_every_command_module_of_the_package_is_listed() -> None:
    modules = {i.name for i in pkgutil.iter_modules(flows.cli.__path__)} - {"common", "__main__"}
    assert modules == {e.module for e in COMMANDS.values()}


def test_an_unknown_command_is_refused_by_name() -> None:
    result = CliRunner().invoke(app, ["nope"])
    assert result.exit_code == 2 and "No such command 'nope'" in result.output


def test_help_imports_no_command_module_nor_the_heavy_libraries() -> None:
    # what makes `goldstream --help` answer at once: nothing below is needed to list the commands
    heavy = ["polars", "deltalake", "bytewax", "pyarrow", "confluent_kafka", "psycopg", "httpx"]
    heavy += [f"flows.cli.{e.module}" for e in COMMANDS.values()]
    code = (
        "import sys\nfrom flows.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
