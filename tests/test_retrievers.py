"""One contract, every retriever backend (a shared test mixin)."""

from pathlib import Path

import numpy as np
import pytest
from test_scores import DESIGN_EXAMPLE, load_triples

from graphrecall.embed.index import ItemVectorIndex
from graphrecall.embed.writeback import write_embeddings
from graphrecall.graph_schema.store.meta import store_blend
from graphrecall.query.scoring.cypher import compute_cooc, compute_swing
from graphrecall.query.serve.neo4j import Neo4jRetriever
from graphrecall.query.serve.resilient import ResilientRetriever
from graphrecall.query.serve.retriever import (
    CHANNELS,
    DEFAULT_BLEND,
    BlendConfig,
    Filters,
    Neighbours,
    UnknownItem,
    blend,
)
from graphrecall.query.serve.snapshot import SnapshotRetriever

EVIL = "x'}) DETACH DELETE n //"
TRIPLES = DESIGN_EXAMPLE + [("D", EVIL, 5), ("D", "h", 6)]
VECTORS = {"h": [1, 0, 0], "p": [0.9, 0.1, 0], "t": [0, 1, 0], "r": [0, 0.9, 0.1], EVIL: [0, 0, 1]}


def build_tiny_graph(driver, tmp_path):
    load_triples(driver, TRIPLES)
    compute_swing(driver, k=10)
    compute_cooc(driver, k=10, basis=None)
    ids = np.array(list(VECTORS), dtype=object)
    vec = np.array(list(VECTORS.values()), dtype=np.float32)
    write_embeddings(driver, ids, vec)
    return ItemVectorIndex(ids, vec).save(tmp_path / "faiss")


CATALOGUE = {
    "h": ("c1", "b1", "m1"),
    "p": ("c1", "b2", "m1"),
    "t": ("c2", "b1", "m2"),
    "r": ("c1", "b1", "m1"),
    EVIL: ("c2", "b3", "m2"),
    "fresh": ("c1", "b1", "m1"),
}  # fresh: a catalogue item without events


def add_catalogue(driver):
    with driver.session() as s:
        s.run(
            "UNWIND $rows AS r MERGE (i:Item {id: r[0]}) SET i.category = r[1], i.brand = r[2], i.market = r[3]",
            rows=[[i, *v] for i, v in CATALOGUE.items()],
        ).consume()


class RetrieverContract:
    def make(self, driver, faiss_dir):
        raise NotImplementedError

    @pytest.fixture
    def retriever(self, driver, tmp_path):
        return self.make(driver, build_tiny_graph(driver, tmp_path))

    @pytest.fixture
    def catalogue_retriever(self, driver, tmp_path):
        faiss_dir = build_tiny_graph(driver, tmp_path)
        add_catalogue(driver)
        return self.make(driver, faiss_dir)

    def test_side_channel_ranks_category_then_brand_then_popularity(self, catalogue_retriever):
        # for h (c1, b1): r and fresh match both (r more popular), p the category only, t the brand only
        assert list(catalogue_retriever.similar_items("h", k=10, channel="side").ids) == ["r", "fresh", "p", "t", EVIL]
        assert catalogue_retriever.item_info(["fresh", "nope"], ["category", "market"]) == [
            {"category": "c1", "market": "m1"},
            {"category": None, "market": None},
        ]

    def test_side_channel_puts_the_nearest_price_first_within_a_match(self, driver, tmp_path):
        """Same category and brand: fresh (no events, the query's price) before r (popular, 1000x the price)."""
        faiss_dir = build_tiny_graph(driver, tmp_path)
        add_catalogue(driver)
        with driver.session() as s:
            s.run(
                "UNWIND $rows AS r MATCH (i:Item {id: r[0]}) SET i.price = r[1]",
                rows=[["h", 100.0], ["fresh", 100.0], ["r", 100000.0]],
            ).consume()
        r = self.make(driver, faiss_dir)
        assert list(r.similar_items("h", k=10, channel="side").ids) == ["fresh", "r", "p", "t", EVIL]

    def test_filters_apply_before_the_top_k_cut(self, catalogue_retriever):
        r = catalogue_retriever

        def ids(channel, k=10, **kw):
            return list(r.similar_items("h", k=k, channel=channel, filters=Filters(**kw)).ids)

        assert ids("side", cold="exclude") == ["r", "p", "t", EVIL]
        assert ids("side", cold="only") == ["fresh"]
        assert ids("side", same="category") == ["r", "fresh", "p"]
        assert ids("side", same="market", exclude=frozenset({"r"})) == ["fresh", "p"]
        assert ids("side", k=2, same="category", exclude=frozenset({"r"})) == ["fresh", "p"]  # k after filters
        assert set(ids("swing", same="category")) == {"p", "r"}
        assert ids("swing", k=1, exclude=frozenset({"p"}))[0] in {"t", "r"}
        assert (
            "p" not in ids("blend", k=3, exclude=frozenset({"p"}))
            and len(ids("blend", k=3, exclude=frozenset({"p"}))) == 3
        )
        assert ids("blend", k=2, same="brand") == [x for x in ids("blend", k=10) if CATALOGUE[x][1] == "b1"][:2]
        with pytest.raises(ValueError, match="same='colour'"):
            Filters(same="colour")

    def test_unknown_item_raises(self, retriever):
        with pytest.raises(UnknownItem):
            retriever.similar_items("no-such-item", k=5, channel="swing")

    def test_bad_channel_and_k(self, retriever):
        with pytest.raises(ValueError, match="unknown channel"):
            retriever.similar_items("h", channel="magic")
        with pytest.raises(ValueError, match="k must be"):
            retriever.similar_items("h", k=0)

    def test_swing_channel_order(self, retriever):
        nb = retriever.similar_items("h", k=10, channel="swing")
        assert nb.ids[0] == "p"
        assert set(nb.channels) == {"swing"}
        assert list(nb.scores) == sorted(nb.scores, reverse=True)

    def test_k_is_respected(self, retriever):
        assert len(retriever.similar_items("h", k=1, channel="cooc")) == 1
        assert len(retriever.similar_items("h", k=2, channel="blend")) == 2

    def test_eges_channel_uses_vectors(self, retriever):
        nb = retriever.similar_items("h", k=2, channel="eges")
        assert list(nb.ids) == ["p", "r"] or list(nb.ids)[0] == "p"
        assert "h" not in list(nb.ids)

    def test_blend_labels_each_item_with_a_channel(self, retriever):
        nb = retriever.similar_items("h", k=4, channel="blend")
        assert len(nb) == 4 and set(nb.channels) <= {"swing", "cooc", "eges"}  # the built-in blend's channels

    def test_trans_channel_is_directed_session_covisitation(self, retriever):
        # sessions h>t>r>p (A, B), h>p (C), EVIL>h (D): from h, t follows twice and p once; nothing follows p
        nb = retriever.similar_items("h", k=5, channel="trans")
        assert list(nb.ids) == ["t", "p"] and list(nb.scores) == [2.0, 1.0]
        assert len(retriever.similar_items("p", k=5, channel="trans")) == 0
        assert list(retriever.similar_items(EVIL, k=5, channel="trans").ids) == ["h"]

    def test_side_channel_without_side_fields_is_popularity(self, retriever):
        # no item has side info: every item by its event count (h 4, p 3, r 2, t 2, EVIL 1), ties by id
        nb = retriever.similar_items("h", k=10, channel="side")
        assert list(nb.ids) == ["p", "r", "t", EVIL]
        assert np.allclose(nb.scores, [3 / 5, 2 / 5, 2 / 5, 1 / 5])
        assert list(retriever.similar_items("p", k=2, channel="side").ids) == ["h", "r"]

    def test_blend_follows_its_config(self, retriever):
        retriever.blend_config = BlendConfig.parse("score:trans=1")
        try:
            assert list(retriever.similar_items("h", k=5, channel="blend").ids) == ["t", "p"]
            assert retriever.health()["blend"] == "score:trans=1"
        finally:
            retriever.blend_config = DEFAULT_BLEND

    def test_blend_top_k_is_a_prefix_of_top_k_plus_one(self, retriever):
        lists = [list(retriever.similar_items("h", k=k, channel="blend").ids) for k in (1, 2, 3, 4)]
        for short, long in zip(lists, lists[1:]):
            assert long[: len(short)] == short

    def test_recall_sums_row_normalised_lists_and_names_sources(self, retriever):
        # trans lists: h -> t 2, p 1; t -> r 2; r -> p 2; EVIL -> h 1. Each list is divided by its own best
        # score (before the history is dropped), then summed; history items never come back.
        rec = retriever.recall(["h", "r"], k=10, channel="trans")
        assert list(rec.ids) == ["p", "t"] and np.allclose(rec.scores, [1.5, 1.0])
        assert rec.sources == [["r", "h"], ["h"]] and rec.history == ["h", "r"] and rec.unknown == []
        rec = retriever.recall(["h", "t"], k=10, channel="trans")  # t is history: h's p keeps 1/2, not 1
        assert list(rec.ids) == ["r", "p"] and np.allclose(rec.scores, [1.0, 0.5])
        assert list(retriever.recall(["h", "t"], k=10, channel="trans", weights=[1, 0.25]).ids) == ["p", "r"]
        assert list(retriever.recall(["h", "t"], k=1, channel="trans").ids) == ["r"]
        assert list(retriever.recall(["h", "nope", "h"], channel="trans").ids) == ["t", "p"]  # repeats count once
        assert retriever.recall(["h", "nope"], channel="trans").unknown == ["nope"]
        empty = retriever.recall(["nope"], channel="blend")
        assert len(empty) == 0 and empty.history == [] and empty.unknown == ["nope"]
        assert set(retriever.recall(["h"], k=10, channel="blend").ids) == set(
            retriever.similar_items("h", k=10, channel="blend").ids
        )  # one item: its own list
        with pytest.raises(ValueError, match="one number >= 0 per history item"):
            retriever.recall(["h", "t"], weights=[1.0])

    def test_recall_filters_apply_per_history_item(self, catalogue_retriever):
        r = catalogue_retriever
        got = r.recall(["h", "t"], k=10, channel="side", filters=Filters(same="category"))
        assert set(got.ids) == {"r", "fresh", "p", EVIL}  # h (c1) brings c1 items, t (c2) brings EVIL (c2)
        assert got.sources[list(got.ids).index(EVIL)] == ["t"]
        assert list(r.recall(["h"], channel="side", filters=Filters(cold="only")).ids) == ["fresh"]
        assert "r" not in r.recall(["h"], channel="side", filters=Filters(exclude=frozenset({"r"}))).ids

    def test_injection_string_is_plain_data(self, retriever, driver):
        nb = retriever.similar_items(EVIL, k=5, channel="cooc")
        assert "h" in list(nb.ids)
        with driver.session() as s:
            assert s.run("MATCH (n:Item) RETURN count(n)").single()[0] == 5


class TestSnapshotRetriever(RetrieverContract):
    def make(self, driver, faiss_dir):
        return SnapshotRetriever.from_neo4j(driver, faiss_dir)


class TestSavedSnapshotRetriever(RetrieverContract):
    """The saved snapshot as API workers map it: CSR arrays, memory-mapped, the same contract."""

    def make(self, driver, faiss_dir):
        d = Path(faiss_dir).parent / "snap"
        SnapshotRetriever.from_neo4j(driver, faiss_dir).save(d)
        return SnapshotRetriever.load(d, faiss_dir)


class TestNeo4jRetriever(RetrieverContract):
    def make(self, driver, faiss_dir):
        return Neo4jRetriever(driver)


class TestResilientRetriever(RetrieverContract):
    def make(self, driver, faiss_dir):
        return ResilientRetriever(lambda: SnapshotRetriever.from_neo4j(driver, faiss_dir), lambda: None)


def test_snapshot_caches_unfiltered_answers_per_blend_and_a_reload_starts_empty(driver, tmp_path):
    faiss_dir = build_tiny_graph(driver, tmp_path)
    r = ResilientRetriever(lambda: SnapshotRetriever.from_neo4j(driver, faiss_dir), lambda: None)
    first = list(r.similar_items("h", k=4, channel="blend").ids)
    assert list(r.similar_items("h", k=4, channel="blend").ids) == first and r.snapshot.answers.hits == 1
    r.blend_config = BlendConfig.parse("score:trans=1")
    assert list(r.similar_items("h", k=4, channel="blend").ids) == ["t", "p"]  # the key holds the blend
    r.blend_override = None
    assert list(r.similar_items("h", k=4, channel="blend").ids) == first
    r.similar_items("h", k=4, channel="swing", filters=Filters(exclude=frozenset({"p"})))  # filtered: not cached
    assert len(r.snapshot.answers) == 2
    old = r.snapshot
    r.neo4j_ok = False
    assert r.check() and r.snapshot is not old and len(r.snapshot.answers) == 0


def test_resilient_degrades_and_recovers(driver, tmp_path):
    faiss_dir = build_tiny_graph(driver, tmp_path)
    state = {"up": True, "loads": 0}

    def probe():
        if not state["up"]:
            raise ConnectionError("neo4j down")

    def load():
        state["loads"] += 1
        return SnapshotRetriever.from_neo4j(driver, faiss_dir)

    r = ResilientRetriever(load, probe)
    assert r.check() and r.health()["status"] == "ok"
    state["up"] = False
    assert not r.check()
    assert r.health()["status"] == "degraded"
    assert r.similar_items("h", k=1, channel="swing").ids[0] == "p"  # served from the snapshot
    state["up"] = True
    assert r.check() and r.health()["status"] == "ok"
    assert state["loads"] == 2


def test_saved_snapshot_serves_when_neo4j_is_down_at_start(driver, tmp_path):
    faiss_dir = build_tiny_graph(driver, tmp_path)
    store_blend(driver, "score:side=0.5,trans=1", {"ndcg@20": 0.5})  # as `graphrecall tune` does
    live = SnapshotRetriever.from_neo4j(driver, faiss_dir)
    assert str(live.blend_config) == "score:side=0.5,trans=1" and live.blend_source.startswith("graphrecall tune")
    live.save(tmp_path / "snap")

    def down():
        raise ConnectionError("neo4j down")

    r = ResilientRetriever(down, down, fallback=lambda: SnapshotRetriever.load(tmp_path / "snap", faiss_dir))
    assert r.health()["status"] == "degraded"
    assert r.health()["blend"] == "score:side=0.5,trans=1" and r.blend_source == live.blend_source
    for ch in CHANNELS:
        a, b = r.similar_items("h", k=3, channel=ch), live.similar_items("h", k=3, channel=ch)
        assert list(a.ids) == list(b.ids)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    with pytest.raises(UnknownItem):
        r.similar_items("nope")


def test_decay_weights_halve_per_half_life():
    from graphrecall.query.serve.retriever import decay_weights

    assert np.allclose(decay_weights([100, 100 - 3600, 100 - 7200], 3600), [1, 0.5, 0.25])
    assert np.allclose(decay_weights([5, 1], None), [1, 1])
    with pytest.raises(ValueError, match="half-life must be > 0"):
        decay_weights([1], 0)


def test_neo4j_history_is_recent_items_first(driver):
    from graphrecall.query.serve.neo4j import Neo4jHistory

    load_triples(driver, TRIPLES)
    with driver.session() as s:
        s.run("CREATE (:User {id: 'lonely'})").consume()
    h = Neo4jHistory(driver)
    assert h.recent_items("A", 10) == [("p", 4), ("r", 3), ("t", 2), ("h", 1)]
    assert h.recent_items("D", 1) == [("h", 6)]
    assert h.recent_items("lonely", 5) == [] and h.recent_items("nobody", 5) is None
    assert h.recent_items(EVIL, 5) is None  # user ids are data, not Cypher


def test_blend_rrf():
    a = Neighbours(np.array(["x", "y"], dtype=object), np.array([1, 0.5]), ["swing"] * 2)
    b = Neighbours(np.array(["y", "z"], dtype=object), np.array([1, 0.5]), ["eges"] * 2)
    out = blend({"swing": a, "eges": b}, k=3, config=BlendConfig.of("rrf", swing=1.0, eges=1.0))
    assert list(out.ids) == ["y", "x", "z"]
    np.testing.assert_allclose(out.scores, [1 / 62 + 1 / 61, 1 / 61, 1 / 62], rtol=1e-6)
    assert out.channels[1] == "swing" and out.channels[2] == "eges"


def test_blend_score_divides_each_channel_by_its_best():
    # raw scales differ 100x; after dividing by each channel's best they are comparable
    sw = Neighbours(np.array(["x", "y"], dtype=object), np.array([100.0, 50.0]), ["swing"] * 2)
    co = Neighbours(np.array(["y", "z"], dtype=object), np.array([2.0, 1.6]), ["cooc"] * 2)
    eg = Neighbours(np.array(["z"], dtype=object), np.array([-0.3]), ["eges"])  # best score <= 0: no say
    out = blend(
        {"swing": sw, "cooc": co, "eges": eg}, k=3, config=BlendConfig.of("score", swing=0.5, cooc=1.0, eges=1.0)
    )
    assert list(out.ids) == ["y", "z", "x"]  # y: 0.5*0.5 + 1; z: 0.8; x: 0.5
    np.testing.assert_allclose(out.scores, [1.25, 0.8, 0.5], rtol=1e-6)
    assert out.channels == ["cooc", "cooc", "swing"]
    # a channel with weight 0 contributes nothing, not even candidates
    out = blend({"swing": sw, "cooc": co}, k=5, config=BlendConfig.of("score", swing=0.0, cooc=1.0))
    assert list(out.ids) == ["y", "z"]


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_blend_equals_the_item_by_item_blend(seed):
    """Random lists over a small id space, so that ids repeat across channels and scores tie."""
    from oracles import blend_reference

    rng = np.random.default_rng(seed)
    pool = np.array([f"i{n}" for n in range(25)], dtype=object)
    lists = {}
    for ch in ("swing", "cooc", "trans", "side", "eges"):
        n = int(rng.integers(0, 15))
        scores = np.sort(rng.choice([1.0, 0.5, 0.25, 0.0], size=n))[::-1] * (1 if rng.random() < 0.8 else -1)
        lists[ch] = Neighbours(rng.choice(pool, size=n, replace=False), scores, [ch] * n)
    is_new = lambda ids: np.array([int(i[1:]) % 3 == 0 for i in ids])  # noqa: E731
    for spec in (
        "score:swing=1,cooc=0.5,trans=1,side=0.25,eges=0.5",
        "score:swing=1,eges=1,new=0.7",
        "rrf:swing=1,cooc=1,side=0.5,eges=1",
        "score:cooc=1",
    ):
        cfg = BlendConfig.parse(spec)
        got = blend(lists, 12, cfg, is_new)
        ids, scores, channels = blend_reference(lists, 12, cfg, is_new)
        assert list(got.ids) == ids and list(got.scores) == scores and got.channels == channels, spec


def test_blend_new_items_weight_multiplies_items_without_events():
    sw = Neighbours(np.array(["old", "fresh"], dtype=object), np.array([1.0, 0.9]), ["swing"] * 2)
    eg = Neighbours(np.array(["fresh", "old"], dtype=object), np.array([1.0, 0.5]), ["eges"] * 2)
    is_new = lambda ids: np.array([i == "fresh" for i in ids])  # noqa: E731
    cfg = BlendConfig.parse("score:swing=1,eges=1")
    assert list(blend({"swing": sw, "eges": eg}, 2, cfg, is_new).ids) == ["fresh", "old"]  # 1.9 vs 1.5
    cfg = BlendConfig.parse("score:swing=1,eges=1,new=0.7")
    out = blend({"swing": sw, "eges": eg}, 2, cfg, is_new)
    assert list(out.ids) == ["old", "fresh"] and np.allclose(out.scores, [1.5, 1.9 * 0.7])
    assert str(cfg) == "score:eges=1,swing=1,new=0.7" and BlendConfig.parse(str(cfg)) == cfg
    with pytest.raises(ValueError, match="new="):
        BlendConfig.parse("score:swing=1,new=2")


def test_snapshot_marks_items_without_events_as_new(driver, tmp_path):
    faiss_dir = build_tiny_graph(driver, tmp_path)
    with driver.session() as s:
        s.run("CREATE (:Item {id: 'catalogue-only', category: 'c'})").consume()
    snap = SnapshotRetriever.from_neo4j(driver, faiss_dir)
    assert snap.is_new(np.array(["catalogue-only", "h", "unknown"], dtype=object)).tolist() == [True, False, False]
    assert Neo4jRetriever(driver).is_new(np.array(["catalogue-only", "h"], dtype=object)).tolist() == [True, False]


def test_blend_config_parse_and_errors():
    assert BlendConfig.parse("score") == DEFAULT_BLEND
    c = BlendConfig.parse(" rrf : swing=1, cooc=0.5 ")
    assert c.method == "rrf" and c.weight == {"swing": 1.0, "cooc": 0.5}
    assert BlendConfig.parse(str(c)) == c
    for bad, hint in (
        ("mean", "choose one of score, rrf"),
        ("score:swing", "channel=weight"),
        ("score:swing=x", "channel=weight"),
        ("score:views=1", "channels from swing, cooc, trans, side, eges"),
        ("score:swing=-1", "weights >= 0"),
    ):
        with pytest.raises(ValueError, match=hint):
            BlendConfig.parse(bad)


def test_retriever_uses_its_blend_config(tmp_path):
    lists = {
        "swing": {"a": (np.array(["b", "c"], dtype=object), np.array([2.0, 1.0], np.float32))},
        "cooc": {"a": (np.array(["c"], dtype=object), np.array([1.0], np.float32))},
    }
    r = SnapshotRetriever(items={"a", "b", "c"}, lists=lists)
    r.blend_config = BlendConfig.of("score", swing=1.0)
    assert list(r.similar_items("a", k=2, channel="blend").ids) == ["b", "c"]
    r.blend_config = BlendConfig.of("score", swing=0.1, cooc=1.0)
    assert list(r.similar_items("a", k=2, channel="blend").ids) == ["c", "b"]


def test_snapshot_answers_follow_replaced_vectors_and_lists():
    """The answer cache must not outlive the data it was computed from: the next-item benches swap another
    seed's vectors into one retriever (this once returned the first seed's lists for every seed)."""
    ids = np.array(["a", "b", "c"], dtype=object)
    r = SnapshotRetriever(
        items=set(ids), vectors=ItemVectorIndex(ids, np.array([[1, 0], [0.9, 0.1], [0, 1]], np.float32))
    )
    assert list(r.similar_items("a", k=1, channel="eges").ids) == ["b"]
    r.vectors = ItemVectorIndex(ids, np.array([[1, 0], [0, 1], [0.9, 0.1]], np.float32))
    assert list(r.similar_items("a", k=1, channel="eges").ids) == ["c"]
    r.lists = {"swing": {"a": (np.array(["c"], dtype=object), np.array([1.0], np.float32))}}
    assert list(r.similar_items("a", k=1, channel="swing").ids) == ["c"]
    r.lists = {"swing": {"a": (np.array(["b"], dtype=object), np.array([1.0], np.float32))}}
    assert list(r.similar_items("a", k=1, channel="swing").ids) == ["b"]


def test_snapshot_of_an_empty_graph_says_what_to_run(driver, caplog):
    from conftest import wipe

    wipe(driver)
    with caplog.at_level("WARNING", logger="graphrecall.query.serve.snapshot"):
        snap = SnapshotRetriever.from_neo4j(driver)
    assert snap.stats()["items"] == 0
    assert "every lookup will be 404" in caplog.text and "graphrecall ingest" in caplog.text
    with pytest.raises(UnknownItem):
        snap.similar_items("anything")


def test_shared_snapshot_is_built_once_per_data_key_and_memory_mapped(driver, tmp_path):
    """Workers of one API: the first builds and saves, the rest map the same files; a new key rebuilds;
    old versions are pruned; a format-1 snapshot.json still loads."""
    import json
    import shutil
    import threading

    from graphrecall.common.versions import current
    from graphrecall.graph_schema.store.meta import bump_data_version, read_data_key
    from graphrecall.query.serve.snapshot import SNAPSHOTS_KEPT, CsrLists, shared_snapshot

    faiss_dir = build_tiny_graph(driver, tmp_path)
    live = SnapshotRetriever.from_neo4j(driver, faiss_dir)
    builds = []

    def build():
        builds.append(1)
        return SnapshotRetriever.from_neo4j(driver, faiss_dir)

    d = tmp_path / "shared"
    key = read_data_key(driver)
    got = []
    threads = [threading.Thread(target=lambda: got.append(shared_snapshot(d, key, build, faiss_dir))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(got) == 3
    snap = got[0]
    assert isinstance(snap.lists["swing"], CsrLists) and isinstance(snap.lists["swing"].nbr, np.memmap)
    assert isinstance(snap.items.ids, np.memmap) and len(snap.items) == len(live.items)
    assert set(snap.items) == set(live.items) and "nope" not in snap.items
    for ch in ("swing", "cooc", "trans"):
        assert set(snap.lists[ch]) == set(live.lists[ch])
        for item, (ids, scores) in live.lists[ch].items():
            got_ids, got_scores = snap.lists[ch][item]
            assert list(got_ids) == list(ids) and all(type(x) is str for x in got_ids)
            np.testing.assert_allclose(got_scores, scores, rtol=1e-7)
    for ch in CHANNELS:
        assert list(snap.similar_items("h", k=5, channel=ch).ids) == list(live.similar_items("h", k=5, channel=ch).ids)
    # the side index and the Faiss index are mapped too, and answer as the live ones do
    assert isinstance(snap.side.codes, np.memmap) and isinstance(snap.side.item_ids, np.memmap)
    assert isinstance(snap.vectors.vectors, np.memmap)
    private = SnapshotRetriever.load(d, faiss_dir, mmap=False)
    assert not isinstance(private.side.codes, np.memmap) and not isinstance(private.vectors.vectors, np.memmap)
    everyone = sorted(live.items) + ["nope"]
    for other in (snap, private):
        for f in ("category", "brand", "market", "price", "shop"):
            assert other.item_values(everyone, f) == live.item_values(everyone, f)
        assert list(other.is_new(np.array(everyone, dtype=object))) == list(
            live.is_new(np.array(everyone, dtype=object))
        )
        for item in sorted(live.items):
            for ch in ("side", "eges"):
                want, mine = live.similar_items(item, k=10, channel=ch), other.similar_items(item, k=10, channel=ch)
                assert list(mine.ids) == list(want.ids) and all(type(x) is str for x in mine.ids)
                np.testing.assert_allclose(mine.scores, want.scores, rtol=1e-6)
    for n in range(SNAPSHOTS_KEPT + 1):  # each new data key: one more build, older folders pruned
        bump_data_version(driver, f"test {n}")
        shared_snapshot(d, read_data_key(driver), build, faiss_dir)
    assert len(builds) == SNAPSHOTS_KEPT + 2
    assert len([p for p in d.iterdir() if p.is_dir()]) == SNAPSHOTS_KEPT
    assert list(got[1].similar_items("h", k=3, channel="swing").ids) == list(
        live.similar_items("h", k=3, channel="swing").ids
    )
    old = tmp_path / "format1"  # what save() wrote before the arrays
    old.mkdir()
    old_body = {
        "items": sorted(live.items),
        "loaded_at": 1.0,
        "version": 3,
        "blend": str(live.blend_config),
        "blend_source": "x",
        "side": live.side.to_json(),
        "lists": {
            ch: {i: [list(map(str, ids)), [float(x) for x in sc]] for i, (ids, sc) in per.items()}
            for ch, per in live.lists.items()
        },
    }
    (old / "snapshot.json").write_text(json.dumps(old_body))
    legacy = SnapshotRetriever.load(old, faiss_dir)
    assert legacy.version == 3
    assert list(legacy.similar_items("h", k=5, channel="blend").ids) == list(
        live.similar_items("h", k=5, channel="blend").ids
    )
    two = tmp_path / "format2"  # format 2: arrays for the lists, the side index as JSON in meta.json
    shutil.copytree(d, two)
    sub = current(two)
    meta = json.loads((sub / "meta.json").read_text())
    meta.update(format=2, side=live.side.to_json())
    (sub / "meta.json").write_text(json.dumps(meta))
    for p in sub.glob("side.*.npy"):
        p.unlink()
    legacy = SnapshotRetriever.load(two, faiss_dir)
    for item in sorted(live.items):
        assert list(legacy.similar_items(item, k=10, channel="side").ids) == list(
            live.similar_items(item, k=10, channel="side").ids
        )


def test_eges_ties_go_to_the_nearest_price_and_the_cut_sees_the_whole_tie():
    """Items without events that share side info share one vector: their exact tie is ordered by price
    proximity to the query, also when the tie is far longer than the list (the search widens)."""
    from graphrecall.query.channels.side import SideIndex

    n_tied = 60
    ids = ["q", "close"] + [f"t{r:02d}" for r in range(n_tied)] + ["far"]
    vec = np.array([[1.0, 0.0], [1.0, 0.05]] + [[1.0, 0.3]] * n_tied + [[0.0, 1.0]], np.float32)
    # the tied items' prices: the nearest to the query's 100 sit at the end of the index's row order
    prices = [100.0, 5.0] + [1000.0 + r for r in range(n_tied - 3)] + [99.0, None, 101.5] + [100.0]
    side = {"category": ["c"] * len(ids), "price": prices}
    snap = SnapshotRetriever(
        items=set(ids), vectors=ItemVectorIndex(ids, vec), side=SideIndex(ids, side, [1, 1] + [0] * n_tied + [1])
    )
    got = list(snap.similar_items("q", k=4, channel="eges").ids)
    assert got == ["close", "t57", "t59", "t00"]  # "close" is nearer in vector; then 99, 101.5, 1000
    assert list(snap.similar_items("q", k=62, channel="eges").ids)[-2:] == ["t58", "far"]  # no price: last in its tie
    plain = SnapshotRetriever(
        items=set(ids),
        vectors=ItemVectorIndex(ids, vec),
        side=SideIndex(ids, {"category": ["c"] * len(ids)}, [1] * len(ids)),
    )
    got = list(plain.similar_items("q", k=3, channel="eges").ids)  # no prices: the tie keeps Faiss's order
    assert got[0] == "close" and set(got[1:]) <= {f"t{r:02d}" for r in range(n_tied)}
