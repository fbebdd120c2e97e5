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


class UserTower:
    """Two-tower recall (as in YouTube DNN): each user's vector against every item's by inner product, the
    score a LightGCN is trained on (not cosine: an item's norm carries its popularity). Exact search in a
    Faiss ``IndexFlatIP`` over the raw item vectors.

    Saved like :class:`ItemVectorIndex` (a version folder named by ``CURRENT``), memory-mapped by :meth:`load`."""

    def __init__(self, user_ids, user_vectors: np.ndarray, item_ids, item_vectors: np.ndarray):
        user_vectors = np.ascontiguousarray(user_vectors, dtype=np.float32)
        item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        if len(user_ids) != len(user_vectors) or len(item_ids) != len(item_vectors):
            raise ValueError(
                f"need one vector per id: {len(user_ids)} users for {len(user_vectors)} vectors, "
                f"{len(item_ids)} items for {len(item_vectors)} vectors"
            )
        if user_vectors.shape[1:] != item_vectors.shape[1:]:
            raise ValueError(f"user and item vectors differ in size: {user_vectors.shape} and {item_vectors.shape}")
        self.user_ids = np.array([str(u) for u in user_ids], dtype=str) if len(user_ids) else np.zeros(0, "<U1")
        self._sorted_rows = np.argsort(self.user_ids, kind="stable")
        self._sorted_ids = self.user_ids[self._sorted_rows]
        self.user_vectors = user_vectors
        self.item_ids = np.array([str(i) for i in item_ids], dtype=str) if len(item_ids) else np.zeros(0, "<U1")
        self.item_vectors = item_vectors
        self.index = faiss.IndexFlatIP(item_vectors.shape[1])
        self.index.add(item_vectors)

    def _row(self, user_id) -> int:
        n, user_id = len(self._sorted_ids), str(user_id)
        pos = int(np.searchsorted(self._sorted_ids, user_id)) if n else 0
        return int(self._sorted_rows[pos]) if pos < n and self._sorted_ids[pos] == user_id else -1

    def __contains__(self, user_id) -> bool:
        return self._row(user_id) >= 0

    def __len__(self) -> int:
        return len(self.user_ids)

    def recall(self, user_id, k: int = 10, exclude=frozenset(), depth: int | None = None):
        """The user's top ``k`` items by inner product, ``exclude``d ids left out: ``(ids, scores)``. Searches
        ``depth`` deep (default ``k`` plus the exclusions) before leaving them out. :class:`KeyError` for a user
        without a vector."""
        r = self._row(user_id)
        if r < 0:
            raise KeyError(user_id)
        depth = min(self.index.ntotal, k + len(exclude) if depth is None else depth)
        scores, rows = self.index.search(np.asarray(self.user_vectors[r : r + 1]), depth)
        rows, scores = rows[0], scores[0]
        keep = rows >= 0
        ids = self.item_ids[rows[keep]].astype(object)
        scores = scores[keep]
        if exclude:
            ok = np.array([i not in exclude for i in ids], dtype=bool)
            ids, scores = ids[ok], scores[ok]
        return ids[:k], scores[:k].astype(np.float32)

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        tmp = new_version(d, f"v{uuid.uuid4().hex[:12]}")
        for part, arr in (
            ("user_ids", self.user_ids),
            ("user_vectors", self.user_vectors),
            ("item_ids", self.item_ids),
            ("item_vectors", self.item_vectors),
        ):
            np.save(tmp / f"{part}.npy", np.asarray(arr))
        sub = publish(tmp, keep=VERSIONS_KEPT)
        logger.info("saved user tower of %d users, %d items to %s", len(self.user_ids), len(self.item_ids), sub)
        return d

    @classmethod
    def load_saved(cls, directory: str | Path | None, mmap: bool = True) -> UserTower | None:
        """The tower saved in ``directory``, or None when it holds none. The user vectors are memory-mapped
        (``mmap``); the item index is rebuilt from the item vectors (a flat index is a copy of them)."""
        sub = None if directory is None else current(directory)
        if sub is None:
            return None
        mode = "r" if mmap else None
        obj = cls(
            np.load(sub / "user_ids.npy", mmap_mode=mode),
            np.load(sub / "user_vectors.npy", mmap_mode=mode),
            np.load(sub / "item_ids.npy", mmap_mode=mode),
            np.load(sub / "item_vectors.npy"),
        )
        return obj
