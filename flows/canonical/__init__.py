"""Canonical mapping: source rows -> canonical records, declared in ``config/mappings`` (pure logic).

Public API (the contract the dataflow wires):

* :func:`compile_mappings` -- load and validate every mapping file into a :class:`MappingSet`;
* :meth:`MappingSet.for_table` -- the :class:`Mapping` of one source table (or None);
* :func:`map_batch` -- a micro-batch of bronze change rows -> :class:`MappedBatch`
  (records, rejects for quarantine, drift findings);
* :func:`map_batch_reference` -- the same, one record at a time (the semantics' reference);
* :func:`map_rows` -- either of the two, whichever is cheaper for the batch's size (the flows);
* :func:`mapping_document` -- Markdown describing every mapping, field by field.
"""

from flows.canonical.compile import Mapping, MappingSet, compile_mappings, load_mapping
from flows.canonical.dispatch import SMALL_BATCH_ROWS, map_rows
from flows.canonical.doc import mapping_document
from flows.canonical.drift import DriftFinding
from flows.canonical.engine import REJECT_SCHEMA, MappedBatch, map_batch
from flows.canonical.reference import map_batch_reference

__all__ = [
    "REJECT_SCHEMA",
    "SMALL_BATCH_ROWS",
    "DriftFinding",
    "MappedBatch",
    "Mapping",
    "MappingSet",
    "compile_mappings",
    "load_mapping",
    "map_batch",
    "map_batch_reference",
    "map_rows",
    "mapping_document",
]
