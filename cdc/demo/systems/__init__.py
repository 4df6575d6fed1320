"""The four demo source systems, in one registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cdc.demo.assign import Plan
from cdc.demo.systems import billing, billing_load, crm, crm_load, erp, erp_load, shop, shop_load
from cdc.demo.systems.base import SeedData, SystemLoad, Table
from cdc.demo.world import World


@dataclass(frozen=True, slots=True)
class SystemSpec:
    """One source system: its database, tables (parents before children), seeder and load generator."""

    name: str
    tables: tuple[Table, ...]
    truth_tables: tuple[Table, ...]  # the customer-ish tables the truth file maps to people/orgs
    seed_rows: Callable[[World, Plan], SeedData]
    loader: type[SystemLoad]

    @property
    def dbname(self) -> str:
        """The PostgreSQL database holding the system (named like the system)."""
        return self.name


SYSTEMS: dict[str, SystemSpec] = {
    "crm": SystemSpec("crm", crm.TABLES, crm.TRUTH_TABLES, crm.seed_rows, crm_load.CrmLoad),
    "erp": SystemSpec("erp", erp.TABLES, erp.TRUTH_TABLES, erp.seed_rows, erp_load.ErpLoad),
    "shop": SystemSpec("shop", shop.TABLES, shop.TRUTH_TABLES, shop.seed_rows, shop_load.ShopLoad),
    "billing": SystemSpec(
        "billing", billing.TABLES, billing.TRUTH_TABLES, billing.seed_rows, billing_load.BillingLoad
    ),
}
