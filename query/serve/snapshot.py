"""The saved and in-memory snapshot: every channel's lists, the side index and the Faiss index, served without the database."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from cachetools import LRUCache

from ...common.versions import current, new_version, publish
from ...embed.index import ItemVectorIndex, UserTower
from ...graph_schema.store.items import read_item_ids
from ...graph_schema.store.meta import read_data_version
from ..channels import REGISTRY, GraphSource, Neighbours, Parts
from ..channels.base import ListChannel, list_arrays
from ..channels.side import SideIndex
from ..data import SortedIds
from .blend import DEFAULT_BLEND, BlendConfig, stored_blend
from .retriever import NO_FILTERS, ItemRetriever

logger = logging.getLogger(__name__)


ANSWER_CACHE_SIZE = 200_000  # unfiltered answers kept per snapshot (LRU); a new snapshot starts empty


class AnswerCache:
    """A thread-safe LRU of ``(item, k, channel, blend config) -> Neighbours`` (read-only results)."""

    def __init__(self, maxsize: int):
        self._lru, self._lock = LRUCache(maxsize=maxsize), threading.Lock()
        self.hits = self.misses = 0

    def get(self, key):
        with self._lock:
            got = self._lru.get(key)
            if got is None:
                self.misses += 1
            else:
                self.hits += 1
            return got

    def put(self, key, value) -> None:
        with self._lock:
            self._lru[key] = value

    def __len__(self) -> int:
        return len(self._lru)


SNAPSHOT_FORMAT = 3  # a folder of .npy arrays (memory-mapped by every worker) and meta.json; 1 was snapshot.json,
# 2 kept the side index in meta.json (one copy of Python objects per worker)


# 2 kept the side index in meta.json (one copy of Python objects per worker)
SNAPSHOTS_KEPT = 3  # saved versions kept, so a worker still mapping an older one never loses its files
# A saved snapshot also stores every item's served blend list (the blend config it was saved with), this deep,
# so that ``recall`` with that blend is one CSR gather instead of a blend per history item: its lists are read
# ``RECALL_DEPTH`` + history length deep, so this covers histories of up to 100 items; deeper reads compute.
SERVED_BLEND_DEPTH = 150
SERVED_BLEND_MAX_ITEMS = 300_000  # above this many items the served blend lists are not stored (memory, build time)


class CsrLists:
    """One channel's top lists, ``item -> (ids, scores)``, as CSR arrays over a shared id array: what a
    saved snapshot maps into every worker's memory instead of one Python object per neighbour."""

    def __init__(self, ids: SortedIds, indptr: np.ndarray, nbr: np.ndarray, scores: np.ndarray):
        self.ids, self.indptr, self.nbr, self.scores = ids, indptr, nbr, scores

    @staticmethod
    def arrays(per: dict, ids: SortedIds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(indptr, nbr, scores)`` of ``{item: (ids, scores)}`` over ``ids``' rows."""
        lengths = np.zeros(len(ids.ids), np.int64)
        rows = {}
        for item, (nb, _) in per.items():
            r = ids.index(str(item))
            rows[r] = item
            lengths[r] = len(nb)
        indptr = np.zeros(len(ids.ids) + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        nbr = np.zeros(int(indptr[-1]), np.int32)
        scores = np.zeros(int(indptr[-1]), np.float32)
        for r, item in rows.items():
            nb, sc = per[item]
            nbr[indptr[r] : indptr[r + 1]] = [ids.index(str(x)) for x in nb]
            scores[indptr[r] : indptr[r + 1]] = sc
        return indptr, nbr, scores

    def get(self, item_id, default=None):
        r = self.ids.index(str(item_id))
        if r < 0 or self.indptr[r] == self.indptr[r + 1]:
            return default
        a, b = int(self.indptr[r]), int(self.indptr[r + 1])
        return self.ids.ids[self.nbr[a:b]].astype(object), np.asarray(self.scores[a:b], dtype=np.float32)

    def __getitem__(self, item_id):
        got = self.get(item_id)
        if got is None:
            raise KeyError(item_id)
        return got

    def __contains__(self, item_id) -> bool:
        return self.get(item_id) is not None

    def __iter__(self):
        return (str(self.ids.ids[r]) for r in np.flatnonzero(np.diff(self.indptr)))

    def __len__(self) -> int:
        return int(np.count_nonzero(np.diff(self.indptr)))

    def items(self):
        return ((i, self[i]) for i in self)


def _gather(indptr: np.ndarray, nbr: np.ndarray, scores: np.ndarray, rows: np.ndarray, k: int):
    """The top ``k`` of CSR rows ``rows`` (-1: none) at once: ``(codes, scores, lengths, tops)``, lists in row order."""
    start = np.where(rows >= 0, indptr[np.maximum(rows, 0)], 0)
    lengths = np.where(rows >= 0, np.minimum(indptr[np.maximum(rows, 0) + 1] - start, k), 0)
    at = np.repeat(start - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
    tops = np.where(lengths > 0, scores[np.minimum(start, max(len(scores) - 1, 0))], 0.0)
    return nbr[at].astype(np.int64), scores[at].astype(np.float64), lengths, tops.astype(np.float64)


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive ``flock`` on ``path``: one worker builds a snapshot, the rest wait."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def saved_snapshot_key(directory: str | Path) -> str | None:
    """The data key (:func:`~graphrecall.graph_schema.store.meta.read_data_key`) the newest snapshot in ``directory`` was saved
    under, or None."""
    sub = current(directory)
    try:
        return None if sub is None else json.loads((sub / "meta.json").read_text()).get("key")
    except (FileNotFoundError, ValueError):
        return None


def shared_snapshot(
    directory: str | Path, key: str | None, build: Callable[[], SnapshotRetriever], faiss_dir: str | Path | None = None
) -> SnapshotRetriever:
    """The snapshot of the graph's data ``key``, memory-mapped from ``directory``. The first worker that
    needs it builds it (``build()``) and saves it under a file lock; the others wait, then map the same
    files, so the OS keeps one copy of the lists for all of them. ``key`` None always builds."""
    d = Path(directory)
    with _lock(d / ".lock"):
        if key is None or saved_snapshot_key(d) != key:
            t0 = time.perf_counter()
            build().save(d, key=key)
            logger.info("snapshot %s built and saved to %s in %.1fs", key, d, time.perf_counter() - t0)
        return SnapshotRetriever.load(d, faiss_dir)


@dataclass
class SnapshotRetriever(ItemRetriever):
    items: set[str]
    lists: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(
        default_factory=dict
    )  # channel -> item -> (ids, scores)
    vectors: object | None = None  # embed.index.ItemVectorIndex
    loaded_at: float = field(default_factory=time.time)
    side: SideIndex | None = None
    blend_config: BlendConfig = DEFAULT_BLEND
    blend_source: str = "built-in default"
    answers: AnswerCache = field(default_factory=lambda: AnswerCache(ANSWER_CACHE_SIZE), repr=False)
    # recall's coded answers: (channel, k, blend config) -> item -> (codes, scores); plain dicts, read per
    # history item without a lock (a dict read or write is atomic), emptied with the answer cache
    _coded: dict = field(default_factory=dict, repr=False)
    version: int = 0  # the graph's data version when this snapshot was read (graph_schema.store.meta.read_data_version)
    users: object | None = None  # embed.index.UserTower: the gnn channel's user vectors (two-tower recall)
    # a saved snapshot's stored blend lists (SERVED_BLEND_DEPTH deep) and the blend config they were made with
    served_blend: CsrLists | None = field(default=None, repr=False)
    served_blend_config: str | None = None

    def __setattr__(self, name, value):
        # the answer cache holds answers computed from these fields: replacing one (the benches swap in
        # other vectors) starts an empty cache, or lookups would keep returning the old data's answers
        if name in ("items", "lists", "vectors", "side", "users") and "answers" in self.__dict__:
            object.__setattr__(self, "answers", AnswerCache(ANSWER_CACHE_SIZE))
            object.__setattr__(self, "_coded", {})
            object.__setattr__(self, "served_blend", None)
        object.__setattr__(self, name, value)

    def has_item(self, item_id: str) -> bool:
        return item_id in self.items

    def has_items(self, ids: list[str]) -> list[bool]:
        if not isinstance(self.items, SortedIds) or self.items.rows is not None:
            return [i in self.items for i in ids]
        rows = self.items.indices(ids)
        member = self.items.member
        ok = rows >= 0
        if member is not None:
            ok &= np.asarray(member)[np.maximum(rows, 0)]
        return ok.tolist()

    def _channel(self, item_id: str, k: int, channel: str) -> Neighbours:
        return REGISTRY[channel].answer(self, item_id, k)

    def is_new(self, ids: np.ndarray) -> np.ndarray:
        return np.zeros(len(ids), dtype=bool) if self.side is None else self.side.is_new(ids)

    def _coded_lists(self, owner: ItemRetriever, known: list, k: int, channel: str, drop: frozenset):
        """A saved snapshot's recall input as row codes of its sorted ids: a stored list channel's top ``k`` are
        gathered from its CSR arrays for all history items at once; another channel's answers (blend, eges, side)
        are coded once per item and cached. None for an in-memory snapshot (ids in a set)."""
        ids = self.items
        if not isinstance(ids, SortedIds) or ids.rows is not None:
            return None
        per = self.lists.get(channel) if channel != "blend" else self._served_blend(owner, k)
        if (
            isinstance(per, CsrLists)
            and per.ids is ids
            and (channel == "blend" or type(REGISTRY[channel]).answer is ListChannel.answer)
        ):
            codes, scores, lengths, tops = _gather(per.indptr, per.nbr, per.scores, ids.indices(known), k)
        else:
            parts = [self._coded_answer(owner, h, k, channel) for h in known]
            if any(p is None for p in parts):
                return None
            lengths = np.array([len(c) for c, _ in parts], dtype=np.int64)
            codes = np.concatenate([c for c, _ in parts]) if parts else np.zeros(0, np.int64)
            scores = np.concatenate([sc for _, sc in parts]) if parts else np.zeros(0)
            tops = np.array([float(sc[0]) if len(sc) else 0.0 for _, sc in parts])
        dropped = ids.indices(sorted(drop))
        inv, local = pd.factorize(np.concatenate([codes, dropped[dropped >= 0]]))  # hashing, no sort
        in_history = np.zeros(len(local), dtype=bool)
        in_history[inv[len(codes) :]] = True
        return inv[: len(codes)], scores, lengths, tops.astype(np.float64), in_history, np.asarray(ids.ids[local])

    def _served_blend(self, owner: ItemRetriever, k: int) -> CsrLists | None:
        """The stored blend lists when they answer ``owner``'s blend ``k`` deep (the same config, deep enough)."""
        if self.served_blend is None or k > SERVED_BLEND_DEPTH or self.served_blend_config != str(owner.blend_config):
            return None
        return self.served_blend

    def blend_arrays(self, sid: SortedIds, member: np.ndarray, depth: int = SERVED_BLEND_DEPTH):
        """Every member item's blend list (this snapshot's blend config), ``depth`` deep, as CSR ``(indptr, nbr,
        scores)`` over ``sid``'s rows: what :meth:`save` stores for recall. The lists are this snapshot's own
        blend answers, so a recall that gathers them gives the same answers. None if an answer holds an id
        outside ``sid`` (not expected)."""
        rows = np.flatnonzero(member)
        lengths = np.zeros(len(sid.ids) + 1, np.int64)
        nbrs, scores = [], []
        t0 = last = time.perf_counter()
        for n, r in enumerate(rows.tolist()):
            nb = self._answer(self, str(sid.ids[r]), depth, "blend", NO_FILTERS)
            codes = sid.indices(nb.ids)
            if (codes < 0).any():
                logger.warning("a blend answer holds an item outside the snapshot; blend lists not stored")
                return None
            nbrs.append(codes.astype(np.int32))
            scores.append(np.asarray(nb.scores, dtype=np.float32))
            lengths[r + 1] = len(codes)
            now = time.perf_counter()
            if now - last > 10:
                last = now
                logger.info("blend lists: %d/%d items, %.0f items/s", n + 1, len(rows), (n + 1) / (now - t0))
        logger.info("blend lists of %d items (%d deep) in %.1fs", len(rows), depth, time.perf_counter() - t0)
        nbr = np.concatenate(nbrs) if nbrs else np.zeros(0, np.int32)
        return np.cumsum(lengths), nbr, np.concatenate(scores) if scores else np.zeros(0, np.float32)

    def _coded_answer(self, owner: ItemRetriever, item_id: str, k: int, channel: str):
        per = self._coded.get((channel, k, owner.blend_config))
        if per is None:
            per = self._coded.setdefault((channel, k, owner.blend_config), {})
        hit = per.get(item_id)
        if hit is None:
            nb = owner.similar_items(item_id, k=k, channel=channel, view=self)
            codes = self.items.indices(nb.ids)
            if (codes < 0).any():  # an answer outside the snapshot's ids (not expected): not coded
                return None
            if len(per) >= ANSWER_CACHE_SIZE:  # bounded like the answer cache; starts over when full
                per.clear()
            hit = per[item_id] = (codes, np.asarray(nb.scores, dtype=np.float64))
        return hit

    def item_values(self, ids, field: str) -> list:
        return [None] * len(ids) if self.side is None else self.side.value(ids, field)

    def stats(self) -> dict:
        return {
            "items": len(self.items),
            "loaded_at": self.loaded_at,
            "version": self.version,
            **{f"{ch}_lists": len(v) for ch, v in self.lists.items()},
            "eges_vectors": 0 if self.vectors is None else len(self.vectors.item_ids),
            "gnn_users": 0 if self.users is None else len(self.users),
            "side_items": 0 if self.side is None else len(self.side.item_ids),
            "cached_answers": len(self.answers),
        }

    def save(self, directory: str | Path, key: str | None = None) -> Path:
        """Write the snapshot into a new folder under ``directory`` and point ``CURRENT`` at it: the item ids
        and each channel's lists as CSR ``.npy`` arrays (memory-mapped by :meth:`load`), the rest in
        ``meta.json``. Vectors stay in their Faiss folder. Older versions beyond :data:`SNAPSHOTS_KEPT` are
        removed (a worker that still maps one keeps its pages until it lets go). ``key``: the graph's data
        key this snapshot was read at (:func:`shared_snapshot` reuses a saved snapshot of the same key)."""
        d = Path(directory)
        universe = set(map(str, self.items))
        for per in self.lists.values():
            for item, (nb, _) in per.items():
                universe.add(str(item))
                universe.update(map(str, nb))
        ids = np.array(sorted(universe), dtype=str) if universe else np.zeros(0, dtype="<U1")
        sid = SortedIds(ids)
        member = np.array([i in self.items for i in ids.tolist()], dtype=bool)
        tmp = new_version(d, f"v{self.version}-{uuid.uuid4().hex[:8]}")
        np.save(tmp / "ids.npy", ids)
        np.save(tmp / "member.npy", member)
        for ch, per in self.lists.items():
            arrays = (per.indptr, per.nbr, per.scores) if isinstance(per, CsrLists) else CsrLists.arrays(per, sid)
            for part, arr in zip(("indptr", "nbr", "scores"), arrays):
                np.save(tmp / f"{ch}.{part}.npy", np.asarray(arr))
        served = None
        if not 0 < int(member.sum()) <= SERVED_BLEND_MAX_ITEMS:
            logger.info("%d items: blend lists not stored (recall computes them per item)", int(member.sum()))
        else:
            served = self.blend_arrays(sid, member)
        if served is not None:
            for part, arr in zip(("indptr", "nbr", "scores"), served):
                np.save(tmp / f"served_blend.{part}.npy", arr)
        side = None
        if self.side is not None:
            arrays, side = self.side.arrays()
            side = {"layout": "arrays", **side}
            for part, arr in arrays.items():
                np.save(tmp / f"side.{part}.npy", np.asarray(arr))
        meta = {
            "format": SNAPSHOT_FORMAT,
            "key": key,
            "loaded_at": self.loaded_at,
            "version": self.version,
            "blend": str(self.blend_config),
            "blend_source": self.blend_source,
            "channels": sorted(self.lists),
            "served_blend": None if served is None else {"blend": str(self.blend_config), "depth": SERVED_BLEND_DEPTH},
            "side": side,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        publish(tmp, keep=SNAPSHOTS_KEPT)
        (d / "snapshot.json").unlink(missing_ok=True)  # format 1, superseded
        return d

    @classmethod
    def load(cls, directory: str | Path, faiss_dir: str | Path | None = None, mmap: bool = True) -> SnapshotRetriever:
        """The snapshot saved in ``directory``, its arrays (lists, side index, Faiss index) memory-mapped
        read-only, so the processes that load it share one copy; ``mmap=False`` reads a private copy
        instead. A format-1 ``snapshot.json`` and a format-2 side index (``meta.json``) are still read."""
        sub = current(directory)
        if sub is None:
            return cls._load_json(Path(directory), faiss_dir)
        meta = json.loads((sub / "meta.json").read_text())
        mode = "r" if mmap else None
        ids = np.load(sub / "ids.npy", mmap_mode=mode)
        sid = SortedIds(ids, np.load(sub / "member.npy", mmap_mode=mode))
        lists = {
            ch: CsrLists(
                sid, *(np.load(sub / f"{ch}.{part}.npy", mmap_mode=mode) for part in ("indptr", "nbr", "scores"))
            )
            for ch in meta["channels"]
        }
        blend_config = BlendConfig.parse(meta["blend"]) if meta.get("blend") else DEFAULT_BLEND
        served = meta.get("served_blend")
        served_lists = None
        if served and served.get("depth", 0) >= SERVED_BLEND_DEPTH:
            served_lists = CsrLists(
                sid,
                *(np.load(sub / f"served_blend.{part}.npy", mmap_mode=mode) for part in ("indptr", "nbr", "scores")),
            )
        side = meta.get("side")
        if side and side.get("layout") == "arrays":
            arrays = {p.name[len("side.") : -len(".npy")]: np.load(p, mmap_mode=mode) for p in sub.glob("side.*.npy")}
            side = SideIndex.from_arrays(arrays, side)
        elif side:
            side = SideIndex.from_json(side)
        return cls(
            sid,
            lists,
            ItemVectorIndex.load_saved(faiss_dir, mmap),
            meta["loaded_at"],
            side,
            blend_config,
            meta.get("blend_source", "built-in default"),
            version=int(meta.get("version", 0)),
            users=UserTower.load_saved(GraphSource(None, faiss_dir=faiss_dir).gnn_dir, mmap),
            served_blend=served_lists,
            served_blend_config=served["blend"] if served_lists is not None else None,
        )

    @classmethod
    def _load_json(cls, d: Path, faiss_dir) -> SnapshotRetriever:
        path = d / "snapshot.json"
        if not path.exists():
            raise FileNotFoundError(
                f"{d} holds no saved snapshot; start the API once while Neo4j is up so that it saves one"
            )
        body = json.loads(path.read_text())
        lists = {ch: list_arrays(per) for ch, per in body["lists"].items()}
        vectors = ItemVectorIndex.load_saved(faiss_dir)
        blend_config = BlendConfig.parse(body["blend"]) if body.get("blend") else DEFAULT_BLEND
        side = SideIndex.from_json(body["side"]) if body.get("side") else None
        return cls(
            set(body["items"]),
            lists,
            vectors,
            body["loaded_at"],
            side,
            blend_config,
            body.get("blend_source", "built-in default"),
            version=int(body.get("version", 0)),
        )

    @classmethod
    def from_neo4j(cls, driver, faiss_dir: str | Path | None = None, database: str = "neo4j") -> SnapshotRetriever:
        t0 = time.perf_counter()
        version = read_data_version(driver, database)  # first: a change while loading makes the next probe reload
        items = read_item_ids(driver, database)
        parts, source = Parts(), GraphSource(driver, database, faiss_dir)
        for channel in REGISTRY.values():
            parts.add(channel.read(source))
        lists, vectors = parts.lists, parts.vectors
        snap = cls(items, lists, vectors, side=parts.side, version=version, users=parts.users)
        snap.blend_config, snap.blend_source = stored_blend(driver, database)
        logger.info("snapshot loaded in %.1fs: %s", time.perf_counter() - t0, snap.stats())
        if not items:
            logger.warning(
                "the graph has no items, so every lookup will be 404; run `graphrecall ingest`, "
                "`graphrecall scores` and `graphrecall embed` (or `graphrecall demo`) first"
            )
        elif not lists.get("swing") and not lists.get("cooc") and vectors is None:
            logger.warning(
                "no SWING/COOC lists and no Faiss index yet, so lookups return empty lists; "
                "run `graphrecall scores` and `graphrecall embed`"
            )
        return snap
