"""The demo job's live summary of the silver and gold layers."""

from pathlib import Path

import polars as pl

from core.settings import Settings
from flows.demo_job import example_golden_id, layers_summary


def settings(root: Path) -> Settings:
    return Settings.model_validate({"state_dir": str(root), "delta_root": str(root / "delta")})


def test_summary_counts_live_rows_joined_golden_records_and_lineage(tmp_path: Path) -> None:
    s = settings(tmp_path)
    pl.DataFrame(
        {
            "source_system": ["crm", "shop", "shop", "crm"],
            "source_key": ["1", "2", "3", "__truncate__"],
            "deleted": [False, False, True, True],
        }
    ).write_delta(str(s.delta_root / "silver" / "customer"))
    pl.DataFrame(
        {
            "golden_id": ["g1", "g2", "g3"],
            "golden_status": ["active", "active", "retired"],
            "members": [["crm:a", "shop:b"], ["shop:c"], []],
        }
    ).write_delta(str(s.delta_root / "gold" / "golden_customer"))
    pl.DataFrame({"kind": ["MERGED", "MERGED", "SPLIT"]}).write_delta(str(s.delta_root / "gold" / "lineage"))
    pl.DataFrame({"target": ["crm", "crm", "erp"], "status": ["ok", "failed", "skipped"]}).write_delta(
        str(s.delta_root / "sync_log")
    )
    rows = {r["table"]: r for r in layers_summary(s).iter_rows(named=True)}
    assert rows["customer"]["rows"] == 2
    assert rows["customer"]["detail"] == "1 soft-deleted; from crm, shop"  # the watermark row is not a row
    assert rows["golden_customer"]["rows"] == 2
    assert rows["golden_customer"]["detail"] == "1 joined from several records; 1 retired"
    assert rows["lineage"]["detail"] == "2 merged, 1 split"
    assert (rows["sync_log crm"]["rows"], rows["sync_log crm"]["detail"]) == (2, "1 failed, 1 ok")
    assert rows["sync_log erp"]["detail"] == "1 skipped"
    assert example_golden_id(s) == "g1"


def test_empty_state_has_an_empty_summary(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert layers_summary(s).height == 0
    assert example_golden_id(s) is None
