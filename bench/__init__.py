"""Benchmarks: speed targets live here, not in the tests (see bench/README.md)."""

from core.runtime import tune_allocator

tune_allocator()  # before anything loads polars: its allocator reads the options once
