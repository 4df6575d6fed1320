"""The pickled state of the stages: compact layout, and state written in the older layout resumes."""

from __future__ import annotations

import pickle
from typing import Any

from core.golden import RecordChange
from flows.resolve.stages.base import STATE_FORMAT, Stage
from flows.resolve.stages.blocks import BlockStage
from flows.resolve.stages.context import StageContext
from flows.resolve.stages.golden import GoldenStage
from flows.resolve.stages.protocol import decode_features, decode_row
from flows.resolve.stages.records import RecordStage, ValueStage
from flows.resolve.stages.simulate import StagedResolver
from tests.unit.flows.resolve.stages.test_staged_operator import CONFIG, scenario


def _ctx(shards: int = 3) -> StageContext:
    return StageContext.from_config_dir(CONFIG, "customer", shards)


def _run(sim: StagedResolver, batches: list[list[RecordChange]]) -> None:
    for b in batches:
        sim.submit(b)
        sim.run()


def _as_layout_1(stage: Stage) -> dict[str, Any]:
    """The state the first staged layout pickled for ``stage`` (tuples, no format key)."""
    state = stage.__getstate__()
    del state["format"]
    for name in state.pop("tables"):
        state[name] = getattr(stage, name)
    if isinstance(stage, BlockStage):
        state["members"] = {r: (s, decode_features(f), k) for r, (s, f, k) in stage.members.items()}
    elif isinstance(stage, ValueStage):
        state["vals"] = {
            r: (*v[:3], None if v[3] is None else decode_row(v[3]), *v[4:]) for r, v in stage.vals.items()
        }
    elif isinstance(stage, GoldenStage):
        state["rec"] = {r: (*v[:4], decode_row(v[4]), *v[5:]) for r, v in stage.rec.items()}
        state["gold"] = {g: (v[0], decode_row(v[1]), v[2]) for g, v in stage.gold.items()}
    return state


def _restore(stage: Stage, state: dict[str, Any]) -> Stage:
    new = type(stage).__new__(type(stage))
    new.__setstate__(pickle.loads(pickle.dumps(state)))
    return new


def test_features_and_values_are_held_as_blobs() -> None:
    sim = StagedResolver(_ctx())
    _run(sim, scenario()[:3])
    kinds = {type(st).__name__ for st in sim.stages.values()}
    assert {"BlockStage", "ValueStage", "GoldenStage"} <= kinds
    for st in sim.stages.values():
        state = st.__getstate__()
        assert state["format"] == STATE_FORMAT
        # every large table is msgpack-encoded (none fell back to pickle), and decodes to itself
        assert set(state["tables"]) == set(type(st).TABLES)
        again = pickle.loads(pickle.dumps(st))
        for name in type(st).TABLES:
            assert getattr(again, name) == getattr(st, name), (st.key, name)
            assert type(getattr(again, name)) is type(getattr(st, name))
        if isinstance(st, BlockStage):
            assert all(type(f) is bytes for _, f, _ in st.members.values())
        elif isinstance(st, GoldenStage):
            assert all(type(r[4]) is bytes for r in st.rec.values())
            assert all(type(g[1]) is bytes for g in st.gold.values())


def _same_result(a: StagedResolver, b: StagedResolver) -> None:
    assert a.cluster.partition() == b.cluster.partition()
    assert a.cluster.golden_of == b.cluster.golden_of

    def rows(sim: StagedResolver) -> dict[tuple[str, str], Any]:
        return {
            (k, gid): st.row(gid)
            for k, st in sim.stages.items()
            if isinstance(st, GoldenStage)
            for gid in st.gold
        }

    assert rows(a) == rows(b)
    assert len(rows(a)) == 8 and all(r is not None for r in rows(a).values())


def test_state_pickled_mid_stream_resumes_to_the_same_result() -> None:
    batches = scenario()
    straight = StagedResolver(_ctx())
    _run(straight, batches)
    for cut in range(1, len(batches)):
        resumed = StagedResolver(_ctx())
        _run(resumed, batches[:cut])
        resumed.stages = {k: pickle.loads(pickle.dumps(st)) for k, st in resumed.stages.items()}
        for st in resumed.stages.values():
            assert st.ctx is None
            st.attach(resumed.ctx)
        _run(resumed, batches[cut:])
        _same_result(resumed, straight)
        for k, st in resumed.stages.items():
            for name in type(st).TABLES:
                assert getattr(st, name) == getattr(straight.stages[k], name), (cut, k, name)


def test_state_in_the_first_layout_resumes_to_the_same_result() -> None:
    batches = scenario()
    straight = StagedResolver(_ctx())
    _run(straight, batches)

    resumed = StagedResolver(_ctx())
    _run(resumed, batches[:3])
    old = {k: _as_layout_1(st) for k, st in resumed.stages.items()}
    assert any(isinstance(v, tuple) for s in old.values() for v in s.get("members", {}).values())
    resumed.stages = {k: _restore(st, old[k]) for k, st in resumed.stages.items()}
    for st in resumed.stages.values():
        st.attach(resumed.ctx)
    # converted back to the current layout, holding the same values
    for k, st in resumed.stages.items():
        assert st.__getstate__()["format"] == STATE_FORMAT
        again = _as_layout_1(st)
        for name in ("members", "blocks", "vals", "rec", "gold", "recs", "pairs", "adj", "live"):
            assert again.get(name) == old[k].get(name), (k, name)
        if isinstance(st, BlockStage):
            assert all(type(f) is bytes for _, f, _ in st.members.values())
    _run(resumed, batches[3:])
    _same_result(resumed, straight)


def test_a_table_msgpack_cannot_hold_is_pickled_as_it_is() -> None:
    """Record masks have a bit per key group: beyond 64 groups they outgrow msgpack's integers."""
    sim = StagedResolver(_ctx(100))
    _run(sim, scenario()[:1])
    records = [st for st in sim.stages.values() if isinstance(st, RecordStage)]
    wide = [st for st in records if any(mask >= 2**64 for _, mask, _ in st.recs.values())]
    assert wide
    for st in records:
        state = st.__getstate__()
        assert ("recs" in state["tables"]) == (st not in wide)
        again = pickle.loads(pickle.dumps(st))
        assert again.recs == st.recs
