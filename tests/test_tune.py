"""`graphrecall tune` end to end on a real Neo4j: it picks a blend on the held-out last 20% of time,
stores it, and what `serve` returns changes with it."""

import pytest
from fastapi.testclient import TestClient

from graphrecall.app.cli import main
from graphrecall.app.pipeline import PipelineConfig, run_pipeline
from graphrecall.embed.settings import EgesSettings
from graphrecall.graph_schema.store.meta import read_blend, store_blend
from graphrecall.ingest.synthetic import generate_rees46
from graphrecall.query.evaluate.tune import tune_blend
from graphrecall.query.serve.api import create_app
from graphrecall.query.serve.resilient import ResilientRetriever
from graphrecall.query.serve.retriever import DEFAULT_BLEND, BlendConfig
from graphrecall.query.serve.snapshot import SnapshotRetriever

CFG = PipelineConfig(eges=EgesSettings(epochs=2, walks_per_node=3, dim=16))


@pytest.fixture
def demo_graph(driver, tmp_path):
    data = generate_rees46(tmp_path / "gen.csv", n_users=150, random_seed=2)
    res = run_pipeline(driver, [(data, "rees46")], tmp_path / "artifacts", CFG, progress=False)
    return driver, res.faiss_dir


@pytest.mark.slow
def test_tune_stores_the_best_blend_and_serve_uses_it(demo_graph):
    driver, faiss_dir = demo_graph
    assert read_blend(driver) is None
    report = tune_blend(driver, CFG, progress=False)
    assert report.cases["all"] > 50 and report.train_sessions > report.validation_sessions > 0
    assert {"swing", "cooc", "trans", "side", "eges"} <= set(report.channels)
    assert report.chosen == report.ranking[0][0] and report.chosen_ndcg == max(s for _, s in report.ranking)
    best_single = max(report.channels[ch]["all"]["ndcg@20"] for ch in ("swing", "cooc", "trans", "side", "eges"))
    assert report.chosen_ndcg >= best_single - 1e-9  # every single channel is in the grid
    stored = read_blend(driver)
    assert stored[0] == report.chosen

    # the API serves the stored blend and says so; --blend (an override) still wins
    r = ResilientRetriever(lambda: SnapshotRetriever.from_neo4j(driver, faiss_dir), lambda: None, probe_every=3600)
    assert str(r.blend_config) == report.chosen and r.blend_source.startswith("graphrecall tune")
    with TestClient(create_app(r)) as c:
        h = c.get("/health").json()
        assert h["blend"] == report.chosen and h["blend_source"].startswith("graphrecall tune")
    r.blend_config = DEFAULT_BLEND
    assert r.health()["blend_source"] == "--blend / GRAPHRECALL_BLEND"


def test_stored_blend_changes_what_serve_returns(driver, tmp_path):
    from test_retrievers import build_tiny_graph

    faiss_dir = build_tiny_graph(driver, tmp_path)
    before = SnapshotRetriever.from_neo4j(driver, faiss_dir)
    store_blend(driver, "score:trans=1", {})
    after = SnapshotRetriever.from_neo4j(driver, faiss_dir)
    with TestClient(create_app(ResilientRetriever(lambda: after, lambda: None, probe_every=3600))) as c:
        served = [x["item_id"] for x in c.get("/i2i/h", params={"k": 5}).json()["items"]]
    assert served == ["t", "p"] == list(after.similar_items("h", k=5, channel="trans").ids)
    assert served != list(before.similar_items("h", k=5, channel="blend").ids)
    assert before.blend_config == DEFAULT_BLEND and after.blend_config == BlendConfig.parse("score:trans=1")


@pytest.mark.slow
def test_tune_cli_prints_the_table(demo_graph, neo4j_server, capsys, monkeypatch):
    _, settings = neo4j_server
    monkeypatch.setenv("GRAPHRECALL_NEO4J_URI", settings.uri)
    monkeypatch.setenv("GRAPHRECALL_NEO4J_PASSWORD", settings.password)
    assert main(["-q", "tune", "--dry-run", "--epochs", "1", "--walks-per-node", "2", "--dim", "8"]) == 0
    out = capsys.readouterr().out
    assert "chosen blend: score:" in out or "chosen blend: rrf:" in out
    assert "trans" in out and "not stored (--dry-run)" in out
    assert read_blend(demo_graph[0]) is None


def test_tune_on_a_graph_without_sessions_says_what_to_do(driver):
    with pytest.raises(ValueError, match="ingest"):
        tune_blend(driver, progress=False)
