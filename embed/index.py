"""Faiss inner-product index over L2-normalised item vectors (cosine), saved with its id map.

Exact (``IndexFlatIP``) below ``HNSW_FROM_ITEMS`` items, HNSW above (``IndexHNSWFlat``, inner product):
a flat search costs O(n) per query, which at 200k items and 1,000 req/s is most of a core. The HNSW
parameters are measured for recall@20 >= 0.95 against exact (``bench/speed.py``, section ``faiss``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import faiss
import numpy as np

logger = logging.getLogger(__name__)


HNSW_FROM_ITEMS = 200_000
HNSW_M = 32  # links per node
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 64


class ItemVectorIndex:
    """Cosine kNN with external string ids: exact, or HNSW (``kind``; ``"auto"`` picks HNSW from
    ``HNSW_FROM_ITEMS`` items).

    ``similar_items(item_id, k)`` returns ``(ids, scores)`` like implicit's API,
    leaving the query item out.
    """

    def __init__(self, item_ids, vectors: np.ndarray, *, kind: str = "auto", m: int = HNSW_M,
                 ef_construction: int = HNSW_EF_CONSTRUCTION, ef_search: int = HNSW_EF_SEARCH):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(item_ids) != len(vectors):
            raise ValueError(f"need one vector per id: {len(item_ids)} ids, vectors of shape {vectors.shape}")
        if kind not in ("auto", "flat", "hnsw"):
            raise ValueError(f"kind must be 'auto', 'flat' or 'hnsw', got {kind!r}")
        self.item_ids = np.array([str(i) for i in item_ids], dtype=object)
        self.row = {i: n for n, i in enumerate(self.item_ids)}
        self.vectors = vectors.copy()
        faiss.normalize_L2(self.vectors)
        if kind == "hnsw" or (kind == "auto" and len(vectors) >= HNSW_FROM_ITEMS):
            self.index = faiss.IndexHNSWFlat(self.vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = ef_construction
            self.index.hnsw.efSearch = ef_search
        else:
            self.index = faiss.IndexFlatIP(self.vectors.shape[1])
        self.index.add(self.vectors)

    @property
    def kind(self) -> str:
        return "hnsw" if isinstance(self.index, faiss.IndexHNSW) else "flat"

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __contains__(self, item_id: str) -> bool:
        return str(item_id) in self.row

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32).copy()
        faiss.normalize_L2(q)
        return self.index.search(q, min(k, self.index.ntotal))

    def similar_items(self, item_id: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        r = self.row.get(str(item_id))
        if r is None:
            raise KeyError(item_id)
        scores, rows = self.search(self.vectors[r:r + 1], k + 1)
        keep = (rows[0] >= 0) & (rows[0] != r)
        rows, scores = rows[0][keep][:k], scores[0][keep][:k]
        return self.item_ids[rows], scores

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(d / "items.faiss"))
        np.save(d / "vectors.npy", self.vectors)
        (d / "ids.json").write_text(json.dumps(list(self.item_ids)))
        logger.info("saved Faiss %s index of %d items (%d dims) to %s", self.kind, len(self.item_ids), self.dim, d)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "ItemVectorIndex":
        d = Path(directory)
        if not (d / "ids.json").exists():
            raise FileNotFoundError(f"{d} holds no Faiss index (ids.json missing); run `graphrecall embed` first")
        obj = cls.__new__(cls)
        obj.item_ids = np.array(json.loads((d / "ids.json").read_text()), dtype=object)
        obj.row = {i: n for n, i in enumerate(obj.item_ids)}
        obj.vectors = np.load(d / "vectors.npy")
        obj.index = faiss.read_index(str(d / "items.faiss"))
        if obj.index.ntotal != len(obj.item_ids):
            raise ValueError(f"{d}: index has {obj.index.ntotal} vectors but ids.json {len(obj.item_ids)}; rebuild it")
        return obj
