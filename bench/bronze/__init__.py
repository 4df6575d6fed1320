"""``bench/bronze``: Debezium change events through the real broker into bronze Delta tables.

Run ``.venv/bin/python -m bench.bronze --events 1000000 --runs 3``; see ``bench/README.md``.

Modules:

* :mod:`bench.bronze.generate` - a ``bench`` database with a realistic ``customers`` table, a
  temporary Debezium connector, inserts/updates/deletes, and a marker so the topic is reused;
* :mod:`bench.bronze.ceiling` - the raw ceiling: confluent-kafka consume (+ ``decode_batch``), no
  Bytewax, no Delta;
* :mod:`bench.bronze.worker` - one process of the bronze dataflow (``build_bronze_flow``) on the
  bench topic;
* :mod:`bench.bronze.measure` - running the dataflow, timing it from the Delta log, peak RSS, checks;
* :mod:`bench.bronze.__main__` - the command line and the results file.
"""
