"""Entity resolution as parallel dataflow stages (DESIGN.md section 1): pure, deterministic logic.

One entity type's records flow through six keyed stages. Every stage but clustering is keyed by a
*key group* (``f"{entity}/{stage}{i}"``, ``i = stable_hash(x) % S``, as Flink does), so the work
spreads over workers while Bytewax sees few keys (one call and one snapshot per touched key):

    split (stateless)       input batch -> one message per record shard; a token per input batch
    records  (r, by record) features, blocking keys, a version (seq) per record; who to tell
    blocks   (b, by key)    block membership per blocking key value, the cap (oversized blocks),
                            candidate pairs -> support claims (+ features) per pair shard
    pairs    (p, by pair)   support per pair from every block shard; scores each pair once per
                            version pair (batched, vectorised) -> edge added / changed / removed
    cluster  (c, entity)    the match graph (edges only), union-find per component
                            (:func:`~flows.resolve.cluster.cluster_component`), golden ids
                            (oldest survives a merge, larger part keeps the id on a split),
                            steward overrides, the completeness protocol
    values   (v, by record) each record's canonical values, released to the golden shard of the
                            golden id clustering gave that version
    golden   (g, by id)     survivorship, versions (only on content or membership change),
                            provenance, crosswalk, links with breakdowns, lineage -> GoldBatch

:mod:`.protocol` holds the messages and the completeness protocol, :mod:`.context` the per-entity
compiled config, one module per stage, and :mod:`.simulate` an in-process driver (tests and the
benchmark) delivering messages in any interleaving. The Bytewax wiring is
:mod:`flows.resolve.staged_operator`.
"""
