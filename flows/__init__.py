"""Pure flow logic plus the Bytewax wiring and the CLI: the only package that joins cdc and sinks."""
