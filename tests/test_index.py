import numpy as np
import pytest

from embed.index import ItemVectorIndex


def exact_knn(vectors, q, k):
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    s = v @ v[q]
    s[q] = -np.inf
    order = np.argsort(-s, kind="stable")[:k]
    return order, s[order]


@pytest.mark.parametrize("seed", [0, 1])
def test_faiss_topk_equals_exact_knn(seed, tmp_path):
    rng = np.random.default_rng(seed)
    vec = rng.normal(size=(300, 16)).astype(np.float32)
    ids = [f"item-{n}" for n in range(300)]
    idx = ItemVectorIndex(ids, vec)
    for q in range(0, 300, 37):
        got_ids, got_s = idx.similar_items(ids[q], 10)
        want, want_s = exact_knn(vec.astype(np.float64), q, 10)
        assert list(got_ids) == [ids[w] for w in want]
        np.testing.assert_allclose(got_s, want_s, atol=1e-5)
    loaded = ItemVectorIndex.load(idx.save(tmp_path / "faiss"))
    assert list(loaded.similar_items("item-5", 10)[0]) == list(idx.similar_items("item-5", 10)[0])


def test_unknown_item_and_mismatched_shapes(tmp_path):
    idx = ItemVectorIndex(["a", "b"], np.eye(2, dtype=np.float32))
    with pytest.raises(KeyError):
        idx.similar_items("zzz")
    with pytest.raises(ValueError, match="one vector per id"):
        ItemVectorIndex(["a"], np.eye(2, dtype=np.float32))
    with pytest.raises(FileNotFoundError, match="graphrecall embed"):
        ItemVectorIndex.load(tmp_path / "nothing")


def test_hnsw_finds_the_exact_top20_and_survives_save_and_load(tmp_path):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 32))
    vec = (centres[rng.integers(0, 40, 4000)] + 0.7 * rng.normal(size=(4000, 32))).astype(np.float32)
    ids = [f"i{n}" for n in range(4000)]
    exact, hnsw = ItemVectorIndex(ids, vec), ItemVectorIndex(ids, vec, kind="hnsw")
    assert (exact.kind, hnsw.kind) == ("flat", "hnsw")  # auto: exact below HNSW_FROM_ITEMS
    queries = ids[::20]
    recall = np.mean([len(set(exact.similar_items(q, 20)[0]) & set(hnsw.similar_items(q, 20)[0])) / 20 for q in queries])
    assert recall >= 0.95
    loaded = ItemVectorIndex.load(hnsw.save(tmp_path / "faiss"))
    assert loaded.kind == "hnsw" and loaded.index.hnsw.efSearch == hnsw.index.hnsw.efSearch
    assert list(loaded.similar_items("i7", 20)[0]) == list(hnsw.similar_items("i7", 20)[0])
    with pytest.raises(ValueError, match="kind"):
        ItemVectorIndex(ids, vec, kind="ivf")
