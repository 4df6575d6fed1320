import re

from cdc.demo.assign import SYSTEMS, plan
from cdc.demo.names import is_latin
from cdc.demo.world import build_world, make_person


def test_same_seed_same_world_other_seed_other_world() -> None:
    a, b, c = build_world(120, 7), build_world(120, 7), build_world(120, 8)
    assert a == b
    assert a.people != c.people


def test_ids_and_basic_shape() -> None:
    world = build_world(300, 1)
    assert [p.person_id for p in world.people] == [f"P{i:06d}" for i in range(1, 301)]
    assert len(world.orgs) == 60
    for p in world.people:
        assert is_latin(p.given_latin) and is_latin(p.family_latin), p
        assert re.fullmatch(r"[a-z0-9._+-]+@[a-z0-9.-]+", p.email), p.email
        if p.org_id:
            assert world.org(p.org_id).org_id == p.org_id


def test_world_is_international() -> None:
    world = build_world(500, 42)
    scripts = {p.country for p in world.people if not p.latin_is_native}
    assert {"GR", "RU", "CN", "JP", "AE"} <= scripts
    assert any(p.family_first for p in world.people)
    assert any(p.given_variants for p in world.people)  # Mohammed / Muhammad ...


def test_load_people_continue_the_numbering_deterministically() -> None:
    assert make_person(501, 42, org_count=0) == make_person(501, 42, org_count=0)
    assert make_person(501, 42, org_count=0).org_id is None


def test_about_sixty_percent_in_two_or_more_systems() -> None:
    world = build_world(500, 42)
    p = plan(world)
    per_person: dict[int, set[str]] = {}
    for system, entries in p.people.items():
        for index, _ in entries:
            per_person.setdefault(index, set()).add(system)
    multi = sum(1 for s in per_person.values() if len(s) >= 2) / len(world.people)
    assert 0.5 <= multi <= 0.72
    assert set(p.people) == set(SYSTEMS)
    # In-system duplicates exist (the same person registered twice).
    assert any(copy == 1 for entries in p.people.values() for _, copy in entries)
    assert not p.orgs["shop"]


def test_business_contacts_pull_their_employer_in() -> None:
    world = build_world(300, 3)
    p = plan(world)
    for system in ("crm", "erp"):
        orgs = set(p.orgs[system])
        for index, _ in p.people[system]:
            org_id = world.people[index].org_id
            if org_id:
                assert int(org_id[1:]) - 1 in orgs
