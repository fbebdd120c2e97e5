import numpy as np
import pytest

from graphrecall.common import versions
from graphrecall.embed.index import ItemVectorIndex


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
    recall = np.mean(
        [len(set(exact.similar_items(q, 20)[0]) & set(hnsw.similar_items(q, 20)[0])) / 20 for q in queries]
    )
    assert recall >= 0.95
    loaded = ItemVectorIndex.load(hnsw.save(tmp_path / "faiss"))
    assert loaded.kind == "hnsw" and loaded.index.hnsw.efSearch == hnsw.index.hnsw.efSearch
    assert list(loaded.similar_items("i7", 20)[0]) == list(hnsw.similar_items("i7", 20)[0])
    with pytest.raises(ValueError, match="kind"):
        ItemVectorIndex(ids, vec, kind="ivf")


def _mapped_files() -> set[str]:
    with open("/proc/self/maps") as fh:
        return {line.split(None, 5)[5].strip() for line in fh if len(line.split(None, 5)) == 6}


def test_saved_index_is_memory_mapped_and_a_new_version_leaves_a_loaded_one_intact(tmp_path):
    """API workers map one copy of the index; `graphrecall embed` saving a new version while they serve must
    not change (or break) what an already loaded index answers."""
    rng = np.random.default_rng(5)
    ids = [f"i{n}" for n in range(500)]
    first, second = ItemVectorIndex(ids, rng.normal(size=(500, 8))), ItemVectorIndex(ids, rng.normal(size=(500, 8)))
    d = tmp_path / "faiss"
    loaded = ItemVectorIndex.load(first.save(d))
    current = versions.current(d)
    assert isinstance(loaded.vectors, np.memmap) and isinstance(loaded.item_ids, np.memmap)
    assert str(current / "items.faiss") in _mapped_files()  # Faiss's own arrays are mapped, not read
    want = {q: list(first.similar_items(q, 10)[0]) for q in ids[::25]}
    assert {q: list(loaded.similar_items(q, 10)[0]) for q in want} == want
    for _ in range(4):  # more versions than are kept: the loaded one's folder is removed while mapped
        second.save(d)
    assert not current.exists()
    assert {q: list(loaded.similar_items(q, 10)[0]) for q in want} == want
    fresh = ItemVectorIndex.load(d)
    assert {q: list(fresh.similar_items(q, 10)[0]) for q in want} == {
        q: list(second.similar_items(q, 10)[0]) for q in want
    }
    copy = ItemVectorIndex.load(d, mmap=False)
    assert not isinstance(copy.vectors, np.memmap) and list(copy.similar_items("i3", 5)[0]) == list(
        second.similar_items("i3", 5)[0]
    )
    assert "nope" not in fresh and "i499" in fresh and list(fresh.rows(["i2", "nope"])) == [2, -1]


def test_flat_layout_of_earlier_versions_still_loads(tmp_path):
    import json

    import faiss

    rng = np.random.default_rng(6)
    ids = [f"i{n}" for n in range(50)]
    idx = ItemVectorIndex(ids, rng.normal(size=(50, 4)))
    faiss.write_index(idx.index, str(tmp_path / "items.faiss"))  # what save() wrote before version folders
    np.save(tmp_path / "vectors.npy", idx.vectors)
    (tmp_path / "ids.json").write_text(json.dumps(ids))
    old = ItemVectorIndex.load(tmp_path)
    assert list(old.similar_items("i7", 5)[0]) == list(idx.similar_items("i7", 5)[0])
    ItemVectorIndex.load(idx.save(tmp_path))  # saving over it replaces the flat files
    assert not (tmp_path / "ids.json").exists() and (tmp_path / "CURRENT").exists()
