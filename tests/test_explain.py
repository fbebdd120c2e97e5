"""`graphrecall explain` and `GET /explain/{a}/{b}`: the evidence behind a pair adds up to the stored scores."""

from __future__ import annotations

import networkx as nx
import pytest
from fastapi.testclient import TestClient
from test_scores import DESIGN_EXAMPLE, checkerboard, load_triples

from graphrecall.app.cli import main
from graphrecall.app.pipeline import compute_scores
from graphrecall.graph_schema.store.lists import read_scores
from graphrecall.query.config import PipelineConfig
from graphrecall.query.serve.api import create_app
from graphrecall.query.serve.explain import explain_pair, summary, table, write_graph
from graphrecall.query.serve.retriever import UnknownItem
from graphrecall.query.serve.snapshot import SnapshotRetriever


@pytest.fixture
def design_graph(driver):
    """The Swing design example (A and B share h, t, r, p; C has h and p), scored with every pair kept."""
    load_triples(driver, DESIGN_EXAMPLE)
    compute_scores(driver, PipelineConfig(top_k=100), progress=False)
    return driver


def test_swing_and_cooc_terms_add_up_to_every_stored_score(design_graph):
    driver = design_graph
    snap = SnapshotRetriever.from_neo4j(driver)
    swing, cooc = read_scores(driver, "SWING"), read_scores(driver, "COOC")
    assert swing and cooc
    for (a, b), score in swing.items():
        s = summary(explain_pair(driver, snap, a, b))
        assert s["swing"]["score"] == pytest.approx(score, abs=1e-12), (a, b)
        assert s["stored"]["swing"]["score"] == pytest.approx(score, abs=1e-12)
    for (a, b), score in cooc.items():
        assert summary(explain_pair(driver, snap, a, b))["cooc"]["score"] == pytest.approx(score, abs=1e-12), (a, b)
    # by hand: (A,B) share 4 items -> 1/sqrt(4*4)/(1+4); (A,C) and (B,C) share h and p -> 1/sqrt(4*2)/(1+2)
    s = summary(explain_pair(driver, snap, "h", "p"))
    assert s["swing"]["pairs"] == 3 and s["swing"]["shared_users"] == 3
    assert s["swing"]["score"] == pytest.approx(1 / 4 / 5 + 2 / 8**0.5 / 3)


def test_transitions_side_fields_and_the_blend_match_what_is_served(design_graph):
    driver = design_graph
    snap = SnapshotRetriever.from_neo4j(driver)
    g = explain_pair(driver, snap, "h", "t")
    s = summary(g)
    assert s["trans"] == {"a_to_b": 2.0, "b_to_a": 0.0}  # A and B viewed h then t; nobody t then h
    assert summary(explain_pair(driver, snap, "h", "p"))["trans"] == {"a_to_b": 1.0, "b_to_a": 0.0}  # C: h, p
    served = snap.similar_items("h", k=10, channel="blend")
    row = list(served.ids).index("t")
    assert s["blend_score"] == pytest.approx(float(served.scores[row]), rel=1e-6)
    assert sum(t["contribution"] for t in s["channels"].values()) == pytest.approx(s["blend_score"])
    for ch, t in s["channels"].items():
        nb = snap.similar_items("h", k=50, channel=ch)
        assert list(nb.ids).index("t") + 1 == t["rank"]
    # the graph: both items, the three users, the user pairs and the pair edge
    assert {"item:h", "item:t", "user:A", "user:B"} <= set(g.nodes)
    assert g.edges["item:h", "item:t"]["transitions_a_to_b"] == 2.0


def test_the_gnn_cosine_is_the_stored_gnn_score(design_graph, tmp_path):
    from graphrecall.app.pipeline import compute_gnn
    from graphrecall.embed.settings import GnnSettings

    driver = design_graph
    compute_gnn(driver, PipelineConfig(top_k=3, gnn=GnnSettings(epochs=5, dim=8)), tmp_path, progress=False)
    snap = SnapshotRetriever.from_neo4j(driver, tmp_path / "faiss")
    gnn = read_scores(driver, "GNN")
    assert len(gnn) == 4 * 3  # h, t, r, p: three neighbours each
    for (a, b), score in gnn.items():
        s = summary(explain_pair(driver, snap, a, b))
        assert s["gnn_cosine"] == pytest.approx(score, abs=1e-5) and s["stored"]["gnn"]["score"] == score
    assert "gnn cosine: " in table(explain_pair(driver, snap, "h", "t"))


def test_the_evidence_graph_round_trips_through_graphml_and_gexf(design_graph, tmp_path):
    driver = design_graph
    g = explain_pair(driver, SnapshotRetriever.from_neo4j(driver), "h", "p")
    back = nx.read_graphml(write_graph(g, tmp_path / "pair.graphml"))
    assert set(back.nodes) == set(g.nodes)
    assert back.edges["item:h", "item:p"]["swing_from_pairs"] == pytest.approx(summary(g)["swing"]["score"])
    assert set(nx.read_gexf(write_graph(g, tmp_path / "pair.gexf")).nodes) == set(g.nodes)
    with pytest.raises(ValueError, match="graphml or .gexf"):
        write_graph(g, tmp_path / "pair.txt")


def test_unknown_items_are_refused(design_graph):
    with pytest.raises(UnknownItem):
        explain_pair(design_graph, SnapshotRetriever.from_neo4j(design_graph), "h", "nope")


def test_the_api_explains_a_pair_404s_an_unknown_item_and_503s_without_neo4j(driver):
    load_triples(driver, checkerboard())
    compute_scores(driver, PipelineConfig(top_k=100), progress=False)
    snap = SnapshotRetriever.from_neo4j(driver)
    client = TestClient(create_app(snap, explain=lambda a, b: summary(explain_pair(driver, snap, a, b))))
    (a, b), score = next(iter(read_scores(driver, "SWING").items()))
    r = client.get(f"/explain/{a}/{b}")
    assert r.status_code == 200 and r.json()["swing"]["score"] == pytest.approx(score)
    assert client.get(f"/explain/{a}/nope").status_code == 404
    assert TestClient(create_app(snap)).get(f"/explain/{a}/{b}").status_code == 503


def test_the_cli_prints_the_pair_and_writes_its_graph(design_graph, neo4j_server, monkeypatch, tmp_path, capsys):
    server, settings = neo4j_server
    monkeypatch.setenv("GRAPHRECALL_NEO4J_URI", settings.uri)
    monkeypatch.setenv("GRAPHRECALL_NEO4J_PASSWORD", settings.password)
    assert (
        main(["-q", "explain", "h", "p", "--out", str(tmp_path / "hp.graphml"), "--png", str(tmp_path / "hp.png")]) == 0
    )
    out = capsys.readouterr().out
    assert "why p is in h's lists" in out and "3 shared users, 3 user pairs" in out
    assert (tmp_path / "hp.graphml").exists() and (tmp_path / "hp.png").stat().st_size > 1000
    assert main(["explain", "h", "nope"]) == 2
    assert "unknown item 'nope'" in capsys.readouterr().err
