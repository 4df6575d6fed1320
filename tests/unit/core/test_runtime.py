"""Process settings: the allocator options reach polars's jemalloc, and an operator's own win."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.runtime import ALLOCATOR_ENV, tune_allocator

NAME, VALUE = ALLOCATOR_ENV


def test_the_options_are_set_unless_the_environment_has_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NAME, raising=False)
    tune_allocator()
    assert os.environ[NAME] == VALUE
    monkeypatch.setenv(NAME, "dirty_decay_ms:0")
    tune_allocator()
    assert os.environ[NAME] == "dirty_decay_ms:0"


def test_importing_flows_configures_the_allocator_polars_loads() -> None:
    # a fresh interpreter: jemalloc reads its options once, when polars loads; stats_print makes it
    # print the options in force at exit
    env = {k: v for k, v in os.environ.items() if k != NAME}
    code = f"import flows, os, polars; print(os.environ[{NAME!r}])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith(VALUE)  # polars puts its own defaults first: ours win
    probe = subprocess.run(
        [sys.executable, "-c", "import polars"],
        env={**env, NAME: VALUE + ",stats_print:true"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "opt.dirty_decay_ms: 30000" in probe.stderr and "opt.muzzy_decay_ms: 30000" in probe.stderr
