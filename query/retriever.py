"""The one retriever interface the API depends on, and its backends.

* :class:`ItemRetriever`: ``similar_items(item_id, k, channel) -> Neighbours``.
* :class:`SnapshotRetriever`: in-memory top-K lists and a Faiss index, loaded from
  Neo4j once (or built from arrays); serves without touching the database.
* :class:`Neo4jRetriever`: live read-only Cypher per call (SWING/COOC by rank,
  the native vector index for eges).
* :class:`ResilientRetriever`: serves a snapshot, probes Neo4j, reports
  ``degraded`` while it is down and reloads the snapshot on its own when it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

logger = logging.getLogger(__name__)

CHANNELS = ("swing", "cooc", "eges", "blend")
BASE_CHANNELS = ("swing", "cooc", "eges")
RRF_K = 60.0
BLEND_DEPTH = 200  # candidates per channel; fixed so that blend's top-k is a prefix of its top-(k+1)
BLEND_METHODS = ("score", "rrf")


@dataclass(frozen=True)
class BlendConfig:
    """How the ``blend`` channel fuses swing, cooc and eges.

    * ``score`` (default): each channel's scores divided by that channel's best score for the
      query item, then a weighted sum. The default weights were chosen on a validation split
      of MovieLens training data (``bench/funrec_cf.py``), not on its test split.
    * ``rrf``: weighted reciprocal-rank fusion, ``w / (60 + rank)``; ignores score scales entirely.
    """

    method: str = "score"
    weights: tuple[tuple[str, float], ...] = (("cooc", 1.0), ("eges", 0.5), ("swing", 0.5))  # sorted by channel

    def __post_init__(self):
        if self.method not in BLEND_METHODS:
            raise ValueError(f"unknown blend method {self.method!r}; choose one of {', '.join(BLEND_METHODS)}")
        bad = [ch for ch, w in self.weights if ch not in BASE_CHANNELS or not (w >= 0)]
        if bad:
            raise ValueError(f"blend weights need channels from {', '.join(BASE_CHANNELS)} and weights >= 0; got {dict(self.weights)}")

    @classmethod
    def of(cls, method: str = "score", **weights: float) -> "BlendConfig":
        return cls(method, tuple(sorted(weights.items()))) if weights else cls(method)  # rrf alone: default weights

    @property
    def weight(self) -> dict[str, float]:
        return dict(self.weights)

    @classmethod
    def parse(cls, spec: str) -> "BlendConfig":
        """``"score"``, ``"rrf"`` (default weights), or a method with weights,
        ``"score:cooc=1,swing=0.25,eges=0.5"``; a channel left out then gets weight 0."""
        method, _, rest = spec.strip().partition(":")
        weights = {}
        for part in filter(None, (x.strip() for x in rest.split(","))):
            ch, eq, w = part.partition("=")
            try:
                weights[ch.strip()] = float(w)
            except ValueError:
                eq = ""
            if not eq:
                raise ValueError(f"bad blend weight {part!r} in {spec!r}; write channel=weight, "
                                 "e.g. 'score:cooc=1,swing=0.25,eges=0.5'")
        return cls.of(method.strip(), **weights)

    def __str__(self) -> str:
        return f"{self.method}:" + ",".join(f"{ch}={w:g}" for ch, w in self.weights)


DEFAULT_BLEND = BlendConfig()


class UnknownItem(KeyError):
    pass


@dataclass
class Neighbours:
    """``ids[n]`` scored ``scores[n]``, found by ``channels[n]``."""

    ids: np.ndarray
    scores: np.ndarray
    channels: list[str]

    @classmethod
    def empty(cls) -> "Neighbours":
        return cls(np.array([], dtype=object), np.array([], dtype=np.float32), [])

    def __len__(self) -> int:
        return len(self.ids)


def check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; choose one of {', '.join(CHANNELS)}")


def blend(per_channel: dict[str, Neighbours], k: int, config: BlendConfig = DEFAULT_BLEND) -> Neighbours:
    """Fuse per-channel lists (each sorted best first); each item is labelled by its largest contributor."""
    weights = config.weight
    score: dict[str, float] = {}
    best: dict[str, tuple[float, str]] = {}
    for ch, nb in per_channel.items():
        w = weights.get(ch, 0.0)
        if w == 0 or not len(nb):
            continue
        if config.method == "rrf":
            contrib = w / (RRF_K + np.arange(1, len(nb) + 1))
        else:
            top = float(nb.scores[0])
            if top <= 0:
                continue
            contrib = w * np.maximum(np.asarray(nb.scores, dtype=np.float64), 0.0) / top
        for iid, c in zip(nb.ids, contrib):
            c = float(c)
            score[iid] = score.get(iid, 0.0) + c
            if c > best.get(iid, (-1.0, ""))[0]:
                best[iid] = (c, ch)
    order = sorted(score, key=lambda i: (-score[i], i))[:k]
    return Neighbours(np.array(order, dtype=object), np.array([score[i] for i in order], dtype=np.float32),
                      [best[i][1] for i in order])


class ItemRetriever(ABC):
    """Item-to-item recall. Raises :class:`UnknownItem` for items it has never seen."""

    blend_config: BlendConfig = DEFAULT_BLEND

    @abstractmethod
    def has_item(self, item_id: str) -> bool: ...

    @abstractmethod
    def _channel(self, item_id: str, k: int, channel: str) -> Neighbours: ...

    def similar_items(self, item_id: str, k: int = 10, channel: str = "blend") -> Neighbours:
        check_channel(channel)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        item_id = str(item_id)
        if not self.has_item(item_id):
            raise UnknownItem(item_id)
        if channel != "blend":
            return self._channel(item_id, k, channel)
        depth = max(BLEND_DEPTH, k)
        return blend({ch: self._channel(item_id, depth, ch) for ch in BASE_CHANNELS}, k, self.blend_config)

    def health(self) -> dict:
        return {"status": "ok"}


# --------------------------------------------------------------------------- snapshot
def _load_vectors(faiss_dir: str | Path | None):
    """The saved Faiss index with its id map, or None when there is none yet."""
    if faiss_dir is None or not (Path(faiss_dir) / "ids.json").exists():
        return None
    from embed.index import ItemVectorIndex

    return ItemVectorIndex.load(faiss_dir)


@dataclass
class SnapshotRetriever(ItemRetriever):
    items: set[str]
    lists: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)  # channel -> item -> (ids, scores)
    vectors: object | None = None  # embed.index.ItemVectorIndex
    loaded_at: float = field(default_factory=time.time)

    def has_item(self, item_id: str) -> bool:
        return item_id in self.items

    def _channel(self, item_id: str, k: int, channel: str) -> Neighbours:
        if channel == "eges":
            if self.vectors is None or item_id not in self.vectors:
                return Neighbours.empty()
            ids, scores = self.vectors.similar_items(item_id, k)
            return Neighbours(ids, scores, [channel] * len(ids))
        ids, scores = self.lists.get(channel, {}).get(item_id, (np.array([], dtype=object), np.array([], np.float32)))
        return Neighbours(ids[:k], scores[:k], [channel] * min(k, len(ids)))

    def stats(self) -> dict:
        return {"items": len(self.items), "loaded_at": self.loaded_at,
                **{f"{ch}_lists": len(v) for ch, v in self.lists.items()},
                "eges_vectors": 0 if self.vectors is None else len(self.vectors.item_ids)}

    def save(self, directory: str | Path) -> Path:
        """Write the top-K lists and item set as JSON (vectors stay in their Faiss folder)."""
        import json

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        body = {"items": sorted(self.items), "loaded_at": self.loaded_at,
                "lists": {ch: {i: [list(map(str, ids)), [float(x) for x in sc]] for i, (ids, sc) in per.items()}
                          for ch, per in self.lists.items()}}
        tmp = d / "snapshot.json.tmp"
        tmp.write_text(json.dumps(body))
        tmp.replace(d / "snapshot.json")
        return d

    @classmethod
    def load(cls, directory: str | Path, faiss_dir: str | Path | None = None) -> "SnapshotRetriever":
        import json

        path = Path(directory) / "snapshot.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; start the API once while Neo4j is up so that it saves one")
        body = json.loads(path.read_text())
        lists = {ch: {i: (np.array(v[0], dtype=object), np.array(v[1], dtype=np.float32)) for i, v in per.items()}
                 for ch, per in body["lists"].items()}
        vectors = _load_vectors(faiss_dir)
        return cls(set(body["items"]), lists, vectors, body["loaded_at"])

    @classmethod
    def from_neo4j(cls, driver, faiss_dir: str | Path | None = None, database: str = "neo4j") -> "SnapshotRetriever":
        from query.scores import read_top_lists

        t0 = time.perf_counter()
        with driver.session(database=database, default_access_mode="READ") as s:
            items = {r[0] for r in s.run("MATCH (i:Item) RETURN i.id").values()}
        lists = {ch: {i: (np.array(ids, dtype=object), np.array(sc, dtype=np.float32))
                      for i, (ids, sc) in read_top_lists(driver, ch.upper(), database=database).items()}
                 for ch in ("swing", "cooc")}
        vectors = _load_vectors(faiss_dir)
        snap = cls(items, lists, vectors)
        logger.info("snapshot loaded in %.1fs: %s", time.perf_counter() - t0, snap.stats())
        if not items:
            logger.warning("the graph has no items, so every lookup will be 404; run `graphrecall ingest`, "
                           "`graphrecall scores` and `graphrecall embed` (or `graphrecall demo`) first")
        elif not lists.get("swing") and not lists.get("cooc") and vectors is None:
            logger.warning("no SWING/COOC lists and no Faiss index yet, so lookups return empty lists; "
                           "run `graphrecall scores` and `graphrecall embed`")
        return snap


# --------------------------------------------------------------------------- live Neo4j
class Neo4jRetriever(ItemRetriever):
    """Reads each answer from Neo4j with read-only sessions."""

    def __init__(self, driver, database: str = "neo4j"):
        self.driver, self.database = driver, database

    def _read(self, query: str, **params):
        with self.driver.session(database=self.database, default_access_mode="READ") as s:
            return s.run(query, **params).values()

    def has_item(self, item_id: str) -> bool:
        return bool(self._read("MATCH (i:Item {id: $id}) RETURN count(i) > 0", id=item_id)[0][0])

    def _channel(self, item_id: str, k: int, channel: str) -> Neighbours:
        if channel == "eges":
            rows = self._read(
                "MATCH (q:Item {id: $id}) WHERE q.embedding IS NOT NULL "
                "CALL db.index.vector.queryNodes('item_embedding', $k1, q.embedding) YIELD node, score "
                "WHERE node <> q RETURN node.id, score LIMIT $k", id=item_id, k1=k + 1, k=k)
        else:
            rows = self._read("MATCH (:Item {id: $id})-[r]->(j:Item) WHERE type(r) = $rel "
                              "RETURN j.id, r.score ORDER BY r.rank LIMIT $k", id=item_id, rel=channel.upper(), k=k)
        return Neighbours(np.array([r[0] for r in rows], dtype=object), np.array([r[1] for r in rows], dtype=np.float32),
                          [channel] * len(rows))


# --------------------------------------------------------------------------- resilient
class ResilientRetriever(ItemRetriever):
    """Serves from a snapshot; probes Neo4j every ``probe_every`` seconds in a thread.

    While the probe fails, ``health()`` says ``degraded`` and answers keep coming
    from the last snapshot. When the probe succeeds again the snapshot is reloaded.
    """

    def __init__(self, load_snapshot: Callable[[], SnapshotRetriever], probe: Callable[[], None], probe_every: float = 5.0,
                 fallback: Callable[[], SnapshotRetriever] | None = None):
        """``fallback`` (e.g. :meth:`SnapshotRetriever.load` of a saved snapshot) is used when Neo4j
        is down at start-up; the service then starts ``degraded`` and recovers like after any outage."""
        self._load, self._probe, self.probe_every = load_snapshot, probe, probe_every
        self.neo4j_ok = True
        self.last_error: str | None = None
        try:
            self.snapshot = load_snapshot()
        except Exception as exc:  # noqa: BLE001
            if fallback is None:
                raise
            logger.warning("Neo4j unreachable at start-up (%s); serving the saved snapshot", exc)
            self.snapshot = fallback()
            self.neo4j_ok, self.last_error = False, f"{type(exc).__name__}: {exc}"[:300]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "ResilientRetriever":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="neo4j-probe", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def check(self) -> bool:
        """One probe; on recovery, reload the snapshot."""
        try:
            self._probe()
        except Exception as exc:  # noqa: BLE001 - any failure is "down"
            if self.neo4j_ok:
                logger.warning("Neo4j unreachable, serving the snapshot of %s: %s",
                               time.strftime("%H:%M:%S", time.localtime(self.snapshot.loaded_at)), exc)
            self.neo4j_ok, self.last_error = False, f"{type(exc).__name__}: {exc}"[:300]
            return False
        if not self.neo4j_ok:
            try:
                self.snapshot = self._load()
                logger.info("Neo4j is back; snapshot reloaded")
            except Exception as exc:  # noqa: BLE001
                self.last_error = f"reload failed: {exc}"[:300]
                return False
        self.neo4j_ok, self.last_error = True, None
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.probe_every):
            self.check()

    def has_item(self, item_id: str) -> bool:
        return self.snapshot.has_item(item_id)

    def _channel(self, item_id: str, k: int, channel: str) -> Neighbours:
        return self.snapshot._channel(item_id, k, channel)

    def health(self) -> dict:
        return {"status": "ok" if self.neo4j_ok else "degraded", "neo4j": self.neo4j_ok,
                "error": self.last_error, "snapshot": self.snapshot.stats()}
