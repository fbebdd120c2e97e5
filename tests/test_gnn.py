"""The gnn channel: LightGCN (torch-geometric) on tiny graphs with known answers, its user tower, and the
channel end to end through Neo4j, the snapshot and the API."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient
from test_scores import load_triples

from graphrecall.app.pipeline import compute_gnn, gnn_dir
from graphrecall.embed.gnn import fit_gnn, normalised_adjacency, train_lightgcn
from graphrecall.embed.index import UserTower
from graphrecall.embed.settings import GnnSettings
from graphrecall.graph_schema.store.lists import read_top_lists
from graphrecall.query.channels import REGISTRY
from graphrecall.query.config import PipelineConfig
from graphrecall.query.serve.api import create_app
from graphrecall.query.serve.neo4j import Neo4jHistory
from graphrecall.query.serve.snapshot import SnapshotRetriever

FAST = GnnSettings(epochs=150, lr=0.02, batch_size=64, dim=16)


def test_normalised_adjacency_is_d_half_a_d_half():
    # users u0 {i0, i1}, u1 {i1}: degrees u0 2, u1 1, i0 1, i1 2
    adj = normalised_adjacency(sp.csr_matrix(np.array([[1, 1], [0, 1]]))).to_dense().numpy()
    want = np.zeros((4, 4))
    for u, i, value in ((0, 0, 1 / np.sqrt(2)), (0, 1, 0.5), (1, 1, 1 / np.sqrt(2))):
        want[u, 2 + i] = want[2 + i, u] = value
    np.testing.assert_allclose(adj, want, rtol=1e-6)


def two_blocks(seed=0, users_per_block=10, items_per_block=6, per_user=4):
    """Two communities: block b's users engage only block b's items (4 of 6 each)."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for b in range(2):
        for u in range(users_per_block):
            for i in rng.choice(items_per_block, per_user, replace=False):
                users.append(f"u{b}{u}")
                items.append(f"i{b}{i}")
    return np.array(users, dtype=object), np.array(items, dtype=object)


def test_lightgcn_keeps_the_two_communities_apart():
    users, items = two_blocks()
    model = fit_gnn(users, items, FAST, k=3, progress=False)
    assert model.result.losses[-1] < model.result.losses[0]
    for item, (ids, scores) in model.lists.items():
        assert len(ids) == 3 and all(j[1] == item[1] for j in ids), (item, ids)  # same block
        assert np.all(np.diff(scores) <= 1e-6)
    seen = {}
    for u, i in zip(users, items):
        seen.setdefault(u, set()).add(i)
    for u, have in seen.items():
        ids, _ = model.tower.recall(u, 2, frozenset(have))
        assert len(ids) == 2 and all(j[1] == u[1] for j in ids) and not set(ids) & have, (u, ids)


def test_lightgcn_is_seeded():
    m = sp.csr_matrix(np.eye(4) + np.eye(4, k=1))
    a = train_lightgcn(m, dim=8, epochs=3, random_seed=5, progress=False)
    b = train_lightgcn(m, dim=8, epochs=3, random_seed=5, progress=False)
    c = train_lightgcn(m, dim=8, epochs=3, random_seed=6, progress=False)
    np.testing.assert_array_equal(a.item_vectors, b.item_vectors)
    assert not np.allclose(a.item_vectors, c.item_vectors)


@pytest.mark.parametrize("bad", [dict(dim=0), dict(epochs=0), dict(layers=0)])
def test_bad_settings_say_which(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        train_lightgcn(sp.csr_matrix(np.eye(2)), progress=False, **bad)


def test_no_events_says_to_ingest():
    with pytest.raises(ValueError, match="ingest"):
        train_lightgcn(sp.csr_matrix((2, 2)), progress=False)


def test_user_tower_is_exact_inner_product(tmp_path):
    rng = np.random.default_rng(1)
    uv, iv = rng.normal(size=(5, 4)), rng.normal(size=(30, 4)) * rng.uniform(0.1, 3, size=(30, 1))
    tower = UserTower([f"u{n}" for n in range(5)], uv, [f"i{n}" for n in range(30)], iv)
    tower.save(tmp_path / "gnn")
    loaded = UserTower.load_saved(tmp_path / "gnn")
    for t in (tower, loaded):
        for u in range(5):
            order = np.argsort(-(iv @ uv[u]), kind="stable")
            drop = {f"i{order[0]}", f"i{order[3]}"}
            ids, scores = t.recall(f"u{u}", 5, frozenset(drop))
            want = [f"i{j}" for j in order if f"i{j}" not in drop][:5]
            assert list(ids) == want
            np.testing.assert_allclose(scores, np.sort(iv @ uv[u])[::-1][[1, 2, 4, 5, 6]], rtol=1e-5)
    assert "nobody" not in tower and UserTower.load_saved(tmp_path / "none") is None
    with pytest.raises(KeyError):
        tower.recall("nobody")


@pytest.fixture
def gnn_graph(driver, tmp_path):
    users, items = two_blocks()
    load_triples(driver, [(u, i, n) for n, (u, i) in enumerate(zip(users, items))])
    cfg = PipelineConfig(top_k=4, gnn=FAST)
    rep = compute_gnn(driver, cfg, tmp_path, progress=False)
    load_triples(driver, [("late", "i00", 10_000)], key="late")  # a user first seen after training
    return rep, tmp_path


def test_gnn_pipeline_writes_lists_vectors_and_the_user_tower(driver, gnn_graph):
    rep, artifacts = gnn_graph
    assert rep.users == 20 and rep.items == 12 and rep.written == 12 * 4
    stored = read_top_lists(driver, "GNN")
    assert len(stored) == 12 and all(all(j[1] == i[1] for j in ids) for i, (ids, _) in stored.items())
    with driver.session() as s:
        n = s.run("MATCH (i:Item) WHERE i.gnn_embedding IS NOT NULL RETURN count(i)").single()[0]
        idx = s.run("SHOW INDEXES YIELD name WHERE name = 'item_gnn_embedding' RETURN count(*)").single()[0]
    assert n == 12 and idx == 1
    assert UserTower.load_saved(gnn_dir(artifacts)) is not None
    # the snapshot answers what the graph holds, and live reads agree
    snap = SnapshotRetriever.from_neo4j(driver, artifacts / "faiss")
    for item, (ids, scores) in stored.items():
        nb = snap.similar_items(item, k=4, channel="gnn")
        assert list(nb.ids) == list(ids)
        np.testing.assert_allclose(nb.scores, scores, rtol=1e-5)
        assert list(REGISTRY["gnn"].answer_live(driver, "neo4j", item, 4).ids) == list(ids)


def test_recall_for_a_user_comes_from_the_users_vector(driver, gnn_graph):
    _, artifacts = gnn_graph
    snap = SnapshotRetriever.from_neo4j(driver, artifacts / "faiss")
    with TestClient(create_app(snap, Neo4jHistory(driver))) as c:
        body = c.get("/recall/u03", params={"channel": "gnn", "k": 2}).json()
        assert body["via"] == "user vector" and len(body["items"]) == 2
        ids, _ = snap.users.recall("u03", 2, frozenset(body["history"]))
        assert [x["item_id"] for x in body["items"]] == list(ids)
        assert all(x["item_id"][1] == "0" and x["item_id"] not in body["history"] for x in body["items"])
        late = c.get("/recall/late", params={"channel": "gnn", "k": 3}).json()  # no vector: the history's lists
        assert late["via"] == "history lists" and late["history"] == ["i00"]
        assert [x["item_id"] for x in late["items"]] == list(snap.similar_items("i00", k=3, channel="gnn").ids)
        swing = c.get("/recall/u03", params={"channel": "swing"}).json()
        assert swing["via"] == "history lists"


def test_a_graph_past_max_pairs_is_skipped_with_the_fix_named(driver, gnn_graph):
    from dataclasses import replace

    from graphrecall.app import pipeline

    _, artifacts = gnn_graph
    cfg = PipelineConfig(top_k=4, gnn=replace(FAST, max_pairs=10))
    with pytest.raises(ValueError, match="--gnn-max-pairs"):
        compute_gnn(driver, cfg, artifacts, progress=False)
    assert read_top_lists(driver, "GNN")  # a refused fit leaves the earlier one
    assert pipeline._gnn_or_warn(driver, cfg, artifacts, "neo4j", progress=False) is None
    assert read_top_lists(driver, "GNN") == {} and not gnn_dir(artifacts).exists()  # stale lists removed
