"""Faiss inner-product index over L2-normalised item vectors (cosine), saved with its id map.

Exact (``IndexFlatIP``) below ``HNSW_FROM_ITEMS`` items, HNSW above (``IndexHNSWFlat``, inner product):
a flat search costs O(n) per query, which at 200k items and 1,000 req/s is most of a core. The HNSW
parameters are measured for recall@20 >= 0.95 against exact (``bench/speed.py``, section ``faiss``).

Saved, an index is a version folder (``items.faiss``, the normalised ``vectors.npy``, the ids as numpy
arrays) named by ``CURRENT``, written whole before ``CURRENT`` moves, so a reader never sees half of one.
:meth:`ItemVectorIndex.load` memory-maps all of it (Faiss's ``IO_FLAG_MMAP_IFC``), so the API's workers
share one copy in the page cache, and a worker still mapping an older version keeps it while it is mapped."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import faiss
import numpy as np

from ..common.versions import current, new_version, publish

logger = logging.getLogger(__name__)


HNSW_FROM_ITEMS = 200_000
HNSW_M = 32  # links per node
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 64
VERSIONS_KEPT = 3  # saved versions kept, so a worker still mapping an older one never loses its files


class ItemVectorIndex:
    """Cosine kNN with external string ids: exact, or HNSW (``kind``; ``"auto"`` picks HNSW from
    ``HNSW_FROM_ITEMS`` items).

    ``similar_items(item_id, k)`` returns ``(ids, scores)`` like implicit's API,
    leaving the query item out.
    """

    def __init__(
        self,
        item_ids,
        vectors: np.ndarray,
        *,
        kind: str = "auto",
        m: int = HNSW_M,
        ef_construction: int = HNSW_EF_CONSTRUCTION,
        ef_search: int = HNSW_EF_SEARCH,
    ):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(item_ids) != len(vectors):
            raise ValueError(f"need one vector per id: {len(item_ids)} ids, vectors of shape {vectors.shape}")
        if kind not in ("auto", "flat", "hnsw"):
            raise ValueError(f"kind must be 'auto', 'flat' or 'hnsw', got {kind!r}")
        self.item_ids = np.array([str(i) for i in item_ids], dtype=str) if len(item_ids) else np.zeros(0, "<U1")
        self._sorted_rows = np.argsort(self.item_ids, kind="stable")
        self._sorted_ids = self.item_ids[self._sorted_rows]
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
        return self._row(item_id) >= 0

    def _row(self, item_id) -> int:
        n, item_id = len(self._sorted_ids), str(item_id)
        pos = int(np.searchsorted(self._sorted_ids, item_id)) if n else 0
        return int(self._sorted_rows[pos]) if pos < n and self._sorted_ids[pos] == item_id else -1

    def rows(self, ids) -> np.ndarray:
        """Row of each id in :attr:`vectors`, -1 where unknown."""
        return np.array([self._row(i) for i in ids], dtype=np.int64)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32).copy()
        faiss.normalize_L2(q)
        return self.index.search(q, min(k, self.index.ntotal))

    def similar_items(self, item_id: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        r = self._row(item_id)
        if r < 0:
            raise KeyError(item_id)
        scores, rows = self.search(self.vectors[r : r + 1], k + 1)
        keep = (rows[0] >= 0) & (rows[0] != r)
        rows, scores = rows[0][keep][:k], scores[0][keep][:k]
        return self.item_ids[rows].astype(object), scores

    @staticmethod
    def saved_in(directory: str | Path) -> bool:
        """Whether ``directory`` holds a saved index (this layout or the older flat one)."""
        d = Path(directory)
        return (d / "CURRENT").exists() or (d / "ids.json").exists()

    def save(self, directory: str | Path) -> Path:
        """Write a new version folder under ``directory`` and point ``CURRENT`` at it; older versions beyond
        :data:`VERSIONS_KEPT` are removed. Returns ``directory``."""
        d = Path(directory)
        tmp = new_version(d, f"v{uuid.uuid4().hex[:12]}")
        faiss.write_index(self.index, str(tmp / "items.faiss"))
        np.save(tmp / "vectors.npy", np.asarray(self.vectors))
        for part, arr in (("ids", self.item_ids), ("sorted_ids", self._sorted_ids), ("sorted_rows", self._sorted_rows)):
            np.save(tmp / f"{part}.npy", np.asarray(arr))
        sub = publish(tmp, keep=VERSIONS_KEPT)
        for old in ("items.faiss", "vectors.npy", "ids.json"):  # the flat layout, superseded
            (d / old).unlink(missing_ok=True)
        logger.info("saved Faiss %s index of %d items (%d dims) to %s", self.kind, len(self.item_ids), self.dim, sub)
        return d

    @classmethod
    def load_saved(cls, directory: str | Path | None, mmap: bool = True) -> ItemVectorIndex | None:
        """:meth:`load`, or None when ``directory`` is None or holds no index yet."""
        if directory is None or not cls.saved_in(directory):
            return None
        return cls.load(directory, mmap=mmap)

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> ItemVectorIndex:
        """The index saved in ``directory``, memory-mapped read-only (``mmap=False``: a private copy)."""
        d = Path(directory)
        if not cls.saved_in(d):
            raise FileNotFoundError(f"{d} holds no Faiss index (no CURRENT or ids.json); run `graphrecall embed` first")
        obj = cls.__new__(cls)
        mode = "r" if mmap else None
        sub = current(d)
        if sub is not None:
            obj.item_ids = np.load(sub / "ids.npy", mmap_mode=mode)
            obj._sorted_ids = np.load(sub / "sorted_ids.npy", mmap_mode=mode)
            obj._sorted_rows = np.load(sub / "sorted_rows.npy", mmap_mode=mode)
        else:  # the flat layout of earlier versions: ids in JSON
            sub = d
            obj.item_ids = np.array(json.loads((d / "ids.json").read_text()), dtype=str)
            obj._sorted_rows = np.argsort(obj.item_ids, kind="stable")
            obj._sorted_ids = obj.item_ids[obj._sorted_rows]
        obj.vectors = np.load(sub / "vectors.npy", mmap_mode=mode)
        obj.index = faiss.read_index(str(sub / "items.faiss"), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
        if obj.index.ntotal != len(obj.item_ids):
            raise ValueError(
                f"{sub}: index has {obj.index.ntotal} vectors but {len(obj.item_ids)} ids; rebuild it "
                "with `graphrecall embed`"
            )
        return obj
