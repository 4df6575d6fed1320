"""bench/er: the demo data set, the missed-pair breakdown and merging into an existing results file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.er import datasets
from bench.er.__main__ import main
from bench.er.metrics import missed_pairs_by_group, pairwise
from core.golden import split_record_id


@pytest.fixture(scope="module")
def small_demo() -> datasets.Dataset:
    return datasets.demo(people=40, seed=7)


def test_demo_records_are_the_resolvers_input_labelled_by_the_truth(small_demo: datasets.Dataset) -> None:
    frame = small_demo.frame
    assert frame.height > 40 and frame["id"].n_unique() == frame.height
    assert frame["label"].null_count() == 0
    systems = {split_record_id(r)[0] for r in frame["id"].to_list()}
    assert systems == {"crm", "erp", "shop", "billing"}
    # What the ingest flow hands the resolver: canonical attributes plus the record's own key (for
    # parent_ref matching), no other lineage columns.
    assert {"full_name", "email", "parent_ref", "kind", "source_system", "source_key"} <= set(frame.columns)
    assert not {"lsn", "topic", "mapping_version"} & set(frame.columns)
    assert set(frame["label"].str.slice(0, 1).unique().to_list()) <= {"P", "O"}


def test_demo_is_deterministic(small_demo: datasets.Dataset) -> None:
    assert datasets.demo(people=40, seed=7).frame.equals(small_demo.frame)


def test_missed_pairs_by_group_counts_split_true_pairs() -> None:
    truth = {"a:1": "x", "a:2": "x", "b:1": "x", "b:2": "y"}
    predicted = {"a:1": "g1", "a:2": "g1", "b:1": "g2", "b:2": "g2"}
    missed = missed_pairs_by_group(truth, predicted, lambda r: r.split(":")[0])
    assert missed == {"a <-> b": 2}
    assert pairwise(truth, predicted)["recall"] == pytest.approx(1 / 3)


def test_merge_keeps_other_sets(tmp_path: Path) -> None:
    out = tmp_path / "er.json"
    out.write_text(json.dumps({"sets": {"febrl1": {"f1_pairwise": 1.0}}}), encoding="utf-8")
    args = ["--sets", "demo_handset", "--orders", "1", "--quiet-wait", "0", "--no-splink"]
    main([*args, "--demo-people", "30", "--out", str(out), "--merge"])
    sets = json.loads(out.read_text(encoding="utf-8"))["sets"]
    assert sets["febrl1"] == {"f1_pairwise": 1.0}
    assert sets["demo_handset"]["m_u"] == "hand-set (config as written)"
    assert sets["demo_handset"]["records"] > 30
