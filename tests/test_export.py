"""Vectors any tool can load: gensim's KeyedVectors give the eges channel's neighbours."""

from __future__ import annotations

import numpy as np
import pytest
from gensim.models import KeyedVectors

from graphrecall.app.cli import main
from graphrecall.embed.index import ItemVectorIndex
from graphrecall.query.serve.snapshot import SnapshotRetriever


def _index(n: int = 60, dim: int = 8) -> ItemVectorIndex:
    rng = np.random.default_rng(7)
    return ItemVectorIndex([f"item{r:03d}" for r in range(n)], rng.normal(size=(n, dim)))


@pytest.mark.parametrize("fmt", ["keyedvectors", "word2vec"])
def test_most_similar_from_the_exported_file_is_the_eges_channel(tmp_path, fmt, capsys):
    index = _index()
    index.save(tmp_path / "faiss")
    out = tmp_path / f"vectors.{fmt}"
    assert main(["-q", "export", "vectors", str(out), "--format", fmt, "--faiss-dir", str(tmp_path / "faiss")]) == 0
    assert str(out) in capsys.readouterr().out
    kv = KeyedVectors.load(str(out)) if fmt == "keyedvectors" else KeyedVectors.load_word2vec_format(str(out))
    served = SnapshotRetriever(items={str(i) for i in index.item_ids}, vectors=index)
    assert len(kv) == len(index.item_ids)
    for item in ("item000", "item017", "item059"):
        nb = served.similar_items(item, k=10, channel="eges")
        got = kv.most_similar(item, topn=10)
        assert [i for i, _ in got] == list(nb.ids)
        np.testing.assert_allclose([s for _, s in got], nb.scores, atol=1e-5)


def test_export_without_saved_vectors_says_how_to_make_them(tmp_path, capsys):
    assert main(["export", "vectors", str(tmp_path / "v.kv"), "--faiss-dir", str(tmp_path / "none")]) == 2
    assert "run `graphrecall embed`" in capsys.readouterr().err


def test_the_pyg_file_holds_the_graph_with_its_ids(driver, neo4j_server, monkeypatch, tmp_path, capsys):
    import torch
    from test_scores import DESIGN_EXAMPLE, load_triples
    from torch_geometric.data import HeteroData

    load_triples(driver, DESIGN_EXAMPLE)
    _, settings = neo4j_server
    monkeypatch.setenv("GRAPHRECALL_NEO4J_URI", settings.uri)
    monkeypatch.setenv("GRAPHRECALL_NEO4J_PASSWORD", settings.password)
    assert main(["-q", "export", "pyg", str(tmp_path / "graph.pt")]) == 0
    assert "weights_only=False" in capsys.readouterr().out
    data = torch.load(tmp_path / "graph.pt", weights_only=False)
    assert isinstance(data, HeteroData)
    users, items = data["user"].ids, data["item"].ids
    assert sorted(users) == ["A", "B", "C"] and sorted(items) == ["h", "p", "r", "t"]
    ei = data["user", "engaged", "item"].edge_index
    got = {(users[u], items[i]) for u, i in ei.t().tolist()}
    assert got == {(u, i) for u, i, _ in DESIGN_EXAMPLE}
    assert data["user", "engaged", "item"].edge_attr[:, 0].tolist() == [1.0] * len(DESIGN_EXAMPLE)
    trans = data["item", "transition", "item"]
    weights = {(items[a], items[b]): w for (a, b), w in zip(trans.edge_index.t().tolist(), trans.edge_weight.tolist())}
    assert weights == {("h", "t"): 2.0, ("t", "r"): 2.0, ("r", "p"): 2.0, ("h", "p"): 1.0}
    assert data["item"].x_category.tolist() == [0, 0, 0, 0]  # no side info in this log: every code is unknown
