import itertools
import random

from flows.resolve.cluster import ClusterParams, MergeStep, cluster_component

PARAMS = ClusterParams(link_weight=3.0, min_support=0.0, missing_weight=-2.0)


def graph(edges: dict[tuple[str, str], float]) -> dict[str, dict[str, tuple[float, bytes]]]:
    adj: dict[str, dict[str, tuple[float, bytes]]] = {}
    for (a, b), w in edges.items():
        adj.setdefault(a, {})[b] = (w, b"")
        adj.setdefault(b, {})[a] = (w, b"")
    return adj


def test_strong_edges_join() -> None:
    adj = graph({("a", "b"): 10.0, ("b", "c"): 9.0, ("a", "c"): 8.0})
    assert cluster_component("abc", adj, PARAMS) == [("a", "b", "c")]


def test_chain_through_a_bridge_is_not_joined() -> None:
    # a-b and c-d are tight pairs; one weak-ish link b-c would chain them with single linkage, but
    # a-c, a-d, b-d have no support: the mean over cross pairs (8 + 3 * -2) / 4 < 0.
    adj = graph({("a", "b"): 12.0, ("c", "d"): 12.0, ("b", "c"): 5.0, ("a", "d"): -1.5})
    assert cluster_component("abcd", adj, PARAMS) == [("a", "b"), ("c", "d")]
    single = ClusterParams(link_weight=3.0, min_support=None, missing_weight=-2.0)
    assert cluster_component("abcd", adj, single) == [("a", "b", "c", "d")]


def test_supported_join_across_clusters() -> None:
    adj = graph({("a", "b"): 12.0, ("c", "d"): 12.0, ("b", "c"): 5.0, ("a", "c"): 4.0, ("b", "d"): 4.0})
    assert cluster_component("abcd", adj, PARAMS) == [("a", "b", "c", "d")]


def test_edges_below_link_weight_never_join() -> None:
    adj = graph({("a", "b"): 2.9})
    assert cluster_component("ab", adj, PARAMS) == [("a",), ("b",)]


def test_must_link_joins_and_cannot_link_separates() -> None:
    adj = graph({("a", "b"): 12.0, ("b", "c"): 12.0, ("a", "c"): 12.0})
    cannot = {"a": {"c"}, "c": {"a"}}
    out = cluster_component("abc", adj, PARAMS, cannot=cannot)
    assert ("a", "b") in out and ("c",) in out
    must = {"x": {"y"}, "y": {"x"}}
    assert cluster_component(["x", "y"], {}, PARAMS, must=must) == [("x", "y")]
    # cannot-link wins over a must-link chain that would put a and c together
    must = {"a": {"b"}, "b": {"a", "c"}, "c": {"b"}}
    out = cluster_component("abc", {}, PARAMS, must=must, cannot=cannot)
    assert ("a", "b") in out and ("c",) in out


def test_result_does_not_depend_on_input_or_storage_order() -> None:
    rng = random.Random(3)
    nodes = [f"r{i}" for i in range(12)]
    edges = {
        (a, b): rng.choice([-3.0, 1.0, 3.5, 4.0, 6.0, 6.0, 12.0]) for a, b in itertools.combinations(nodes, 2)
    }
    edges = {k: v for k, v in edges.items() if rng.random() < 0.5}
    expected = cluster_component(nodes, graph(edges), PARAMS)
    for _ in range(20):
        items = list(edges.items())
        rng.shuffle(items)
        order = nodes[:]
        rng.shuffle(order)
        assert cluster_component(order, graph(dict(items)), PARAMS) == expected


def test_trace_names_each_join() -> None:
    adj = graph({("a", "b"): 10.0, ("b", "c"): 9.0, ("a", "c"): 8.0})
    trace: list[MergeStep] = []
    cluster_component("abc", adj, PARAMS, trace=trace)
    assert [(s.a, s.b) for s in trace] == [("a", "b"), ("b", "c")]
    assert trace[1].left in {("a", "b"), ("c",)} and trace[1].support == 8.5
