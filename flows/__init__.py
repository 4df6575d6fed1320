"""Pure flow logic plus the Bytewax wiring and the CLI: the only package that joins cdc and sinks."""

from core.runtime import tune_allocator

tune_allocator()  # before anything loads polars: its allocator reads the options once
