"""One contract, every retriever backend (a shared test mixin)."""

import numpy as np
import pytest

from embed.index import ItemVectorIndex
from embed.writeback import write_embeddings
from query.retriever import (Neo4jRetriever, ResilientRetriever, SnapshotRetriever, UnknownItem, blend, Neighbours)
from query.scores import compute_cooc, compute_swing
from test_scores import DESIGN_EXAMPLE, load_triples

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


class RetrieverContract:
    @pytest.fixture
    def retriever(self, driver, tmp_path):
        raise NotImplementedError

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
        assert len(nb) == 4 and set(nb.channels) <= {"swing", "cooc", "eges"}

    def test_blend_top_k_is_a_prefix_of_top_k_plus_one(self, retriever):
        lists = [list(retriever.similar_items("h", k=k, channel="blend").ids) for k in (1, 2, 3, 4)]
        for short, long in zip(lists, lists[1:]):
            assert long[:len(short)] == short

    def test_injection_string_is_plain_data(self, retriever, driver):
        nb = retriever.similar_items(EVIL, k=5, channel="cooc")
        assert "h" in list(nb.ids)
        with driver.session() as s:
            assert s.run("MATCH (n:Item) RETURN count(n)").single()[0] == 5


class TestSnapshotRetriever(RetrieverContract):
    @pytest.fixture
    def retriever(self, driver, tmp_path):
        return SnapshotRetriever.from_neo4j(driver, build_tiny_graph(driver, tmp_path))


class TestNeo4jRetriever(RetrieverContract):
    @pytest.fixture
    def retriever(self, driver, tmp_path):
        build_tiny_graph(driver, tmp_path)
        return Neo4jRetriever(driver)


class TestResilientRetriever(RetrieverContract):
    @pytest.fixture
    def retriever(self, driver, tmp_path):
        faiss_dir = build_tiny_graph(driver, tmp_path)
        return ResilientRetriever(lambda: SnapshotRetriever.from_neo4j(driver, faiss_dir), lambda: None)


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
    live = SnapshotRetriever.from_neo4j(driver, faiss_dir)
    live.save(tmp_path / "snap")

    def down():
        raise ConnectionError("neo4j down")

    r = ResilientRetriever(down, down, fallback=lambda: SnapshotRetriever.load(tmp_path / "snap", faiss_dir))
    assert r.health()["status"] == "degraded"
    for ch in ("swing", "cooc", "eges", "blend"):
        a, b = r.similar_items("h", k=3, channel=ch), live.similar_items("h", k=3, channel=ch)
        assert list(a.ids) == list(b.ids)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    with pytest.raises(UnknownItem):
        r.similar_items("nope")


def test_blend_rrf():
    a = Neighbours(np.array(["x", "y"], dtype=object), np.array([1, 0.5]), ["swing"] * 2)
    b = Neighbours(np.array(["y", "z"], dtype=object), np.array([1, 0.5]), ["eges"] * 2)
    out = blend({"swing": a, "eges": b}, k=3, weights={"swing": 1.0, "eges": 1.0})
    assert list(out.ids) == ["y", "x", "z"]
    assert out.channels[1] == "swing" and out.channels[2] == "eges"
