"""Who is known to which system: about 60% of people in two or more systems, some twice in one.

Organisations are customers in the CRM, the ERP and billing (never the web shop), and are pulled into
the CRM or ERP whenever one of their employees is a business contact there. Vendors (``org.is_vendor``)
are always in ``erp.vendors``, independently of this plan.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cdc.demo.world import World

SYSTEMS = ("crm", "erp", "shop", "billing")

# How many systems a person is in (1..4): 40% one, so 60% are in two or more.
_SPREAD = (0.40, 0.30, 0.20, 0.10)
_PERSON_SYSTEM_WEIGHTS = {"shop": 0.36, "crm": 0.28, "billing": 0.26, "erp": 0.10}
_EMPLOYEE_SYSTEM_WEIGHTS = {"shop": 0.25, "crm": 0.35, "billing": 0.15, "erp": 0.25}
_ORG_SYSTEM_PROBABILITY = {"crm": 0.75, "erp": 0.55, "billing": 0.45}
DUPLICATE_RATE = 0.04  # the same person registered twice in one system


@dataclass(frozen=True, slots=True)
class Plan:
    """Per system, the people (with copy numbers for in-system duplicates) and organisations in it."""

    people: dict[str, tuple[tuple[int, int], ...]]  # system -> ((person index, copy no), ...)
    orgs: dict[str, tuple[int, ...]]  # system -> org indexes (0-based into world.orgs)

    def person_systems(self, index: int) -> set[str]:
        """The systems that know person ``index``."""
        return {s for s, entries in self.people.items() if any(i == index for i, _ in entries)}


def _weighted_sample(weights: dict[str, float], k: int, rng: random.Random) -> list[str]:
    pool = dict(weights)
    out: list[str] = []
    for _ in range(min(k, len(pool))):
        names = list(pool)
        choice = rng.choices(names, weights=[pool[n] for n in names])[0]
        out.append(choice)
        del pool[choice]
    return out


def plan(world: World) -> Plan:
    """Decide, deterministically from the world's seed, which system knows whom."""
    rng = random.Random(f"goldstream-demo:{world.seed}:plan")
    people: dict[str, list[tuple[int, int]]] = {s: [] for s in SYSTEMS}
    org_sets: dict[str, set[int]] = {s: set() for s in SYSTEMS}
    for i, org in enumerate(world.orgs):
        for system, p in _ORG_SYSTEM_PROBABILITY.items():
            if rng.random() < p:
                org_sets[system].add(i)
        if not any(i in org_sets[s] for s in _ORG_SYSTEM_PROBABILITY) and not org.is_vendor:
            org_sets["crm"].add(i)  # everyone is known somewhere (vendors at least in erp.vendors)
    for i, person in enumerate(world.people):
        k = rng.choices((1, 2, 3, 4), weights=_SPREAD)[0]
        weights = _EMPLOYEE_SYSTEM_WEIGHTS if person.org_id else _PERSON_SYSTEM_WEIGHTS
        for system in _weighted_sample(weights, k, rng):
            copies = 2 if rng.random() < DUPLICATE_RATE else 1
            people[system].extend((i, c) for c in range(copies))
            if person.org_id and system in ("crm", "erp"):
                # A business contact sits under the employer's account / debtor.
                org_sets[system].add(int(person.org_id[1:]) - 1)
    return Plan(
        people={s: tuple(v) for s, v in people.items()},
        orgs={s: tuple(sorted(v)) for s, v in org_sets.items()},
    )
