"""The one retriever interface the API depends on, and its backends.

* :class:`ItemRetriever`: ``similar_items(item_id, k, channel) -> Neighbours``.
* :class:`SnapshotRetriever`: in-memory top-K lists and a Faiss index, loaded from
  Neo4j once (or built from arrays); serves without touching the database. Saved, its lists are CSR
  arrays that :meth:`SnapshotRetriever.load` memory-maps, so API workers share one copy
  (:func:`shared_snapshot`).
* :class:`Neo4jRetriever`: live read-only Cypher per call (SWING/COOC by rank, TRANSITION by
  weight, the native vector index for eges).
* :class:`ResilientRetriever`: serves a snapshot, probes Neo4j, reports
  ``degraded`` while it is down and reloads the snapshot on its own when it is back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

CHANNELS = ("swing", "cooc", "trans", "side", "eges", "rank", "blend")
# trans: directed session co-visitation (TRANSITION edges); side: popular items sharing the query's side fields;
# rank: the learned ranker's lists (RANKED edges, query/ranker.py)
BASE_CHANNELS = ("swing", "cooc", "trans", "side", "eges", "rank")
LIST_RELATIONSHIPS = {"swing": "SWING", "cooc": "COOC", "rank": "RANKED"}  # channels stored as top-K relationships
SIDE_MATCH_WEIGHTS = {"category": 4.0, "brand": 2.0, "price_bucket": 1.0}  # lexicographic: category, brand, price
# price proximity in the side channel (SideIndex): the best NDCG@20 on REES46 validation
# (`python bench/next_item_ideas.py --only price`; 0.2955 against 0.2688 without it)
SIDE_PRICE_WEIGHT = 2.0
SIDE_PRICE_SCALE = 1.0
INFO_FIELDS = ("category", "brand", "market", "shop", "price", "price_bucket")  # item fields a client may ask for
SAME_FIELDS = ("category", "market", "brand")
COLD_MODES = ("include", "exclude", "only")
FILTER_DEPTH = 1000  # candidates read per channel when filters apply, so that k survive them when enough exist
RRF_K = 60.0
SIDE_PRUNE_FROM = 30000  # SideIndex scores every item for each query in catalogues smaller than this
EGES_TIE_DEPTH = 5000  # the eges channel searches at most this deep to see a tie at its cut whole
BLEND_DEPTH = 200  # candidates per channel; fixed so that blend's top-k is a prefix of its top-(k+1)
BLEND_METHODS = ("score", "rrf")
RECALL_DEPTH = 50  # neighbours each history item contributes to a recall (row-normalised, summed)


@dataclass(frozen=True)
class BlendConfig:
    """How the ``blend`` channel fuses swing, cooc, trans and eges.

    * ``score`` (default): each channel's scores divided by that channel's best score for the
      query item, then a weighted sum. The built-in weights were chosen on a validation split of
      MovieLens training data (``bench/funrec_cf.py``); ``graphrecall tune`` chooses weights for
      the user's own graph and stores them, and ``serve`` then uses those.
    * ``rrf``: weighted reciprocal-rank fusion, ``w / (60 + rank)``; ignores score scales entirely.

    ``new_items`` (``new=`` in a spec) multiplies the fused score of items that have no events yet
    (catalogue items reachable only through side info): below 1 they give way to items with a
    history when scores are close, without being shut out.
    """

    method: str = "score"
    weights: tuple[tuple[str, float], ...] = (("cooc", 1.0), ("eges", 0.5), ("swing", 0.5))  # sorted by channel
    new_items: float = 1.0

    def __post_init__(self):
        if self.method not in BLEND_METHODS:
            raise ValueError(f"unknown blend method {self.method!r}; choose one of {', '.join(BLEND_METHODS)}")
        bad = [ch for ch, w in self.weights if ch not in BASE_CHANNELS or not (w >= 0)]
        if bad:
            raise ValueError(f"blend weights need channels from {', '.join(BASE_CHANNELS)} and weights >= 0; got {dict(self.weights)}")
        if not 0 <= self.new_items <= 1:
            raise ValueError(f"new= (the weight of items without events) must be in 0..1, got {self.new_items}")

    @classmethod
    def of(cls, method: str = "score", new: float = 1.0, **weights: float) -> "BlendConfig":
        if not weights:  # rrf alone: default weights
            return cls(method, new_items=new)
        return cls(method, tuple(sorted(weights.items())), new)

    @property
    def weight(self) -> dict[str, float]:
        return dict(self.weights)

    @classmethod
    def parse(cls, spec: str) -> "BlendConfig":
        """``"score"``, ``"rrf"`` (default weights), or a method with weights,
        ``"score:cooc=1,swing=0.25,eges=0.5"``; a channel left out then gets weight 0; ``new=0.7`` sets
        :attr:`new_items`."""
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
        new = [] if self.new_items == 1.0 else [f"new={self.new_items:g}"]
        return f"{self.method}:" + ",".join([f"{ch}={w:g}" for ch, w in self.weights] + new)


DEFAULT_BLEND = BlendConfig()


def stored_blend(driver, database: str = "neo4j") -> tuple[BlendConfig, str]:
    """The blend ``graphrecall tune`` stored and where it came from, else the built-in default."""
    from query.scores import read_blend

    stored = read_blend(driver, database)
    if stored is None:
        return DEFAULT_BLEND, "built-in default"
    return BlendConfig.parse(stored[0]), f"graphrecall tune, {stored[1]}"


class UnknownItem(KeyError):
    pass


@dataclass(frozen=True)
class Filters:
    """Applied to a channel's candidates before the top-k cut.

    ``exclude``: ids never returned; ``same``: keep only candidates sharing that field's value with the
    query item (none when the query has no value); ``cold``: items without events ``include``d (default),
    ``exclude``d, or ``only`` those."""

    exclude: frozenset = frozenset()
    same: str | None = None
    cold: str = "include"

    def __post_init__(self):
        if self.same is not None and self.same not in SAME_FIELDS:
            raise ValueError(f"same={self.same!r}: choose one of {', '.join(SAME_FIELDS)}")
        if self.cold not in COLD_MODES:
            raise ValueError(f"cold={self.cold!r}: choose one of {', '.join(COLD_MODES)}")

    @property
    def active(self) -> bool:
        return bool(self.exclude) or self.same is not None or self.cold != "include"


NO_FILTERS = Filters()


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

    def take(self, rows) -> "Neighbours":
        """The neighbours at ``rows`` (an index array or a slice), in that order."""
        rows = np.arange(len(self.ids))[rows]
        return Neighbours(np.asarray(self.ids, dtype=object)[rows], np.asarray(self.scores)[rows],
                          [self.channels[r] for r in rows])


def check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; choose one of {', '.join(CHANNELS)}")


def blend(per_channel: dict[str, Neighbours], k: int, config: BlendConfig = DEFAULT_BLEND,
          is_new: Callable[[np.ndarray], np.ndarray] | None = None) -> Neighbours:
    """Fuse per-channel lists (each sorted best first); each item is labelled by its largest contributor
    (the first channel on a tie). ``is_new(ids)`` marks items without events, whose fused score is
    multiplied by ``config.new_items``. Ties in the fused score go to the smaller id.

    With numpy: all channels' contributions in one array, ids factorised (hashing, no string sort), summed
    per item with ``bincount`` in channel order (the same float sums as adding them one by one), and only
    the candidates that can reach the top ``k`` sorted. Equal to ``query.oracle.blend_reference``."""
    weights = config.weight
    names, ids, contribs, chans = [], [], [], []
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
        ids.append(np.asarray(nb.ids, dtype=object))
        contribs.append(contrib)
        chans.append(np.full(len(nb), len(names)))
        names.append(ch)
    if not ids:
        return Neighbours.empty()
    c, ch_of = np.concatenate(contribs), np.concatenate(chans)
    codes, uniq = pd.factorize(np.concatenate(ids))
    score = np.bincount(codes, weights=c, minlength=len(uniq))
    by = np.lexsort((-c, codes))  # stable: per item, the largest contribution first, then channel order
    best = ch_of[by[np.r_[True, codes[by][1:] != codes[by][:-1]]]]
    if config.new_items != 1.0 and is_new is not None:
        score = np.where(np.asarray(is_new(uniq), dtype=bool), score * config.new_items, score)
    n = min(k, len(score))
    kth = np.partition(-score, n - 1)[n - 1]
    order = sorted(np.flatnonzero(-score <= kth), key=lambda r: (-score[r], uniq[r]))[:k]
    return Neighbours(np.asarray(uniq, dtype=object)[order], score[order].astype(np.float32),
                      [names[b] for b in best[order]])


@dataclass
class Recalled:
    """A recall: ``ids[n]`` scored ``scores[n]`` (summed row-normalised list scores), brought by the history
    items ``sources[n]`` (largest contribution first). ``history``: the history items that were known and
    used; ``unknown``: those the retriever has never seen (skipped)."""

    ids: np.ndarray
    scores: np.ndarray
    sources: list[list[str]]
    history: list[str]
    unknown: list[str]

    def __len__(self) -> int:
        return len(self.ids)


class ItemRetriever(ABC):
    """Item-to-item recall. Raises :class:`UnknownItem` for items it has never seen."""

    blend_config: BlendConfig = DEFAULT_BLEND
    blend_source: str = "built-in default"

    @abstractmethod
    def has_item(self, item_id: str) -> bool: ...

    @abstractmethod
    def _channel(self, item_id: str, k: int, channel: str) -> Neighbours: ...

    def similar_items(self, item_id: str, k: int = 10, channel: str = "blend", filters: Filters = NO_FILTERS,
                      view: "ItemRetriever | None" = None) -> Neighbours:
        """Top-``k`` neighbours of ``item_id`` by ``channel``; ``filters`` apply before the cut. ``view``: the
        data to read (default :meth:`view`); a batch passes one view so that all its answers read one snapshot."""
        check_channel(channel)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        v = self.view() if view is None else view
        item_id = str(item_id)
        cache = None if filters.active else getattr(v, "answers", None)
        if cache is not None:  # a snapshot's answers never change: repeated lookups are a dict read
            key = (item_id, k, channel, self.blend_config)
            hit = cache.get(key)
            if hit is not None:
                return hit
        if not v.has_item(item_id):
            raise UnknownItem(item_id)
        nb = self._answer(v, item_id, k, channel, filters)
        if cache is not None:
            cache.put(key, nb)
        return nb

    def _answer(self, v: "ItemRetriever", item_id: str, k: int, channel: str, filters: Filters) -> Neighbours:
        depth = max(FILTER_DEPTH, k) if filters.active else k
        if channel != "blend":
            nb = v._channel(item_id, depth, channel)
        else:
            nb = blend({ch: v._channel(item_id, max(BLEND_DEPTH, depth), ch) for ch in BASE_CHANNELS}, depth,
                       self.blend_config, v.is_new)
        if filters.active:
            nb = nb.take(np.flatnonzero(v._keep(item_id, nb.ids, filters)))
        return nb.take(slice(0, k)) if len(nb) > k else nb

    def recall(self, history, k: int = 10, channel: str = "blend", weights=None, filters: Filters = NO_FILTERS,
               depth: int = RECALL_DEPTH, view: "ItemRetriever | None" = None) -> Recalled:
        """Candidates for a user or a cart: each history item's top-``depth`` list by ``channel`` (filters
        applied, history items excluded), divided by the best score of its unfiltered list, times the
        item's weight (``weights``, default 1 each; e.g. a time decay), summed per candidate; top ``k``, ties
        by id. History items the retriever does not know are skipped and listed in ``Recalled.unknown``."""
        check_channel(channel)
        if k < 1 or depth < 1:
            raise ValueError(f"k and depth must be >= 1, got k={k}, depth={depth}")
        history = [str(h) for h in history]
        weights = np.ones(len(history)) if weights is None else np.asarray(weights, dtype=np.float64)
        if len(weights) != len(history) or not np.all(weights >= 0):
            raise ValueError(f"weights must be one number >= 0 per history item ({len(history)}), got {len(weights)}")
        v = self.view() if view is None else view
        first: dict[str, float] = {}
        for h, w in zip(history, weights):  # a repeated item counts once, with its first (most recent) weight
            first.setdefault(h, float(w))
        is_known = {h: v.has_item(h) for h in first}
        known = [h for h, ok in is_known.items() if ok]
        unknown = [h for h, ok in is_known.items() if not ok]
        drop = frozenset(first)
        ids, contrib, src = [], [], []
        for n, h in enumerate(known):
            if filters.active:  # the filter path reads deep lists (FILTER_DEPTH) and drops the history with them
                best = self.similar_items(h, k=1, channel=channel, view=v)
                top = float(best.scores[0]) if len(best) else 0.0
                nb = self.similar_items(h, k=depth, channel=channel, view=v,
                                        filters=Filters(filters.exclude | drop, filters.same, filters.cold))
            else:  # no filters: read just deep enough that dropping the history leaves ``depth``
                nb = self.similar_items(h, k=depth + min(len(drop), FILTER_DEPTH), channel=channel, view=v)
                top = float(nb.scores[0]) if len(nb) else 0.0
                nb = nb.take(np.flatnonzero([str(i) not in drop for i in nb.ids])[:depth])
            if top <= 0 or first[h] == 0:
                continue
            ids.append(np.asarray(nb.ids, dtype=object))
            contrib.append(first[h] * np.maximum(np.asarray(nb.scores, np.float64), 0.0) / top)
            src.append(np.full(len(nb), n))
        if not ids:
            return Recalled(np.array([], dtype=object), np.array([], np.float32), [], known, unknown)
        cand, inv = np.unique(np.concatenate(ids).astype(str), return_inverse=True)
        contrib, src = np.concatenate(contrib), np.concatenate(src)
        total = np.bincount(inv, weights=contrib, minlength=len(cand))
        order = np.lexsort((cand, -total))
        order = order[total[order] > 0][:k]
        by = np.lexsort((src, -contrib, inv))  # per candidate, largest contribution first
        rows = {int(c): [] for c in order}
        for c, s_, w in zip(inv[by], src[by], contrib[by]):
            if w > 0 and int(c) in rows:
                rows[int(c)].append(known[s_])
        return Recalled(cand[order].astype(object), total[order].astype(np.float32), [rows[int(c)] for c in order],
                        known, unknown)

    def view(self) -> "ItemRetriever":
        """The object whose data answers a call (a live backend: itself; :class:`ResilientRetriever`: its
        current snapshot)."""
        return self

    def _keep(self, item_id: str, ids: np.ndarray, filters: Filters) -> np.ndarray:
        keep = np.ones(len(ids), dtype=bool)
        if filters.exclude:
            keep &= np.array([str(i) not in filters.exclude for i in ids], dtype=bool)
        if filters.same is not None:
            mine = self.item_values([item_id], filters.same)[0]
            vals = self.item_values(ids, filters.same)
            keep &= np.array([mine is not None and v == mine for v in vals], dtype=bool)
        if filters.cold != "include":
            new = self.is_new(np.asarray(ids, dtype=object))
            keep &= new if filters.cold == "only" else ~new
        return keep

    def is_new(self, ids: np.ndarray) -> np.ndarray:
        """Per id: True for an item with no events (known only from the catalogue)."""
        return np.zeros(len(ids), dtype=bool)

    def item_values(self, ids, field: str) -> list:
        """Per id: the item's ``field`` (one of :data:`INFO_FIELDS`), None where unknown."""
        return [None] * len(ids)

    def item_info(self, ids, fields) -> list[dict]:
        cols = {f: self.item_values(ids, f) for f in fields}
        return [{f: cols[f][n] for f in fields} for n in range(len(ids))]

    def health(self) -> dict:
        return {"status": "ok", "blend": str(self.blend_config), "blend_source": self.blend_source}


# --------------------------------------------------------------------------- side channel
def _log_prices(values, n: int) -> np.ndarray | None:
    """``log(1 + price)`` per item (NaN where missing, unparsable or negative); None when no item has one."""
    if values is None:
        return None
    out = np.full(n, np.nan)
    for r, v in enumerate(values):
        try:
            p = float(v) if v is not None else np.nan
        except (TypeError, ValueError):
            p = np.nan
        if p >= 0:
            out[r] = np.log1p(p)
    return out if np.isfinite(out).any() else None


def _raise_mmap_threshold(nbytes: int) -> None:
    """Allocate and free one block of ``nbytes`` (at most 32 MiB), which glibc's malloc serves by mmap; freeing
    it raises malloc's mmap threshold to that size. A query's temporaries (a few arrays the size of the
    catalogue) then come from the heap instead of a fresh mmap, page-faulted in, per query. A memory-mapped
    index frees no large block of its own, so without this a side query took 1.22 ms instead of 0.87 ms
    (114k items, one run). Other allocators ignore it."""
    if nbytes > 256 * 1024:
        np.empty(min(nbytes, 32 << 20), dtype=np.uint8)


def _value_column(values: list) -> tuple[str, np.ndarray, list | None]:
    """One side field as an array: ``("num"|"int", float64 with NaN for None, None)`` when every value is a
    number, else ``("str", int32 codes, vocabulary)`` with code -1 for None (vocabulary in first-seen order)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                       for v in present):
        kind = "int" if all(isinstance(v, (int, np.integer)) for v in present) else "num"
        return kind, np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64), None
    vocab: dict = {}
    codes = np.array([-1 if v is None else vocab.setdefault(v, len(vocab)) for v in values], dtype=np.int32)
    return "str", codes, list(vocab)


class SideIndex:
    """Popular items that share the query's side fields: items matching on category first, then brand,
    then price bucket (:data:`SIDE_MATCH_WEIGHTS`), each group by training popularity, ties by id.

    ``price_weight`` > 0 (where items have prices) adds price proximity,
    ``price_weight * exp(-|log(1 + p_query) - log(1 + p_item)| / price_scale)``, so that inside a
    category and brand the items nearest in price come first (defaults chosen on REES46 validation,
    :data:`SIDE_PRICE_WEIGHT`). The score is ``(matched weight + proximity + pop / (max pop + 1)) /
    (sum of weights + price_weight + 1)``, in [0, 1). Lists depend only on the query's field values and
    price, so they are computed once per distinct key (LRU cache).

    Everything it reads per query is a numpy array (:meth:`arrays`), so a saved snapshot memory-maps the
    index into every API worker once (:meth:`from_arrays`) instead of one copy of Python objects each."""

    def __init__(self, item_ids, side: dict[str, list], pop, weights: dict[str, float] | None = None,
                 cache_size: int = 4096, price_weight: float | None = None, price_scale: float | None = None):
        weights = SIDE_MATCH_WEIGHTS if weights is None else weights
        price_weight = SIDE_PRICE_WEIGHT if price_weight is None else float(price_weight)
        price_scale = SIDE_PRICE_SCALE if price_scale is None else float(price_scale)
        if price_weight < 0 or price_scale <= 0:
            raise ValueError(f"price_weight must be >= 0 and price_scale > 0, got {price_weight} and {price_scale}")
        ids = np.array([str(i) for i in item_ids], dtype=str) if len(item_ids) else np.zeros(0, dtype="<U1")
        n = len(ids)
        fields = [f for f in weights if f in side and any(v is not None for v in side[f])]
        codes = np.zeros((n, len(fields)), dtype=np.int32)
        for c, f in enumerate(fields):
            uniq = {v: k + 1 for k, v in enumerate(sorted({str(v) for v in side[f] if v is not None}))}
            codes[:, c] = [0 if v is None else uniq[str(v)] for v in side[f]]
        pop = np.asarray(pop, dtype=np.float64)
        lp = _log_prices(side.get("price"), n) if price_weight > 0 else None
        w = np.array([weights[f] for f in fields], dtype=np.float64)
        norm = w.sum() + (price_weight if lp is not None else 0.0) + 1.0
        order = np.argsort(codes.T, axis=1, kind="stable")  # per field, rows by code (ascending within a code)
        sorted_rows = np.argsort(ids, kind="stable")
        arrays = {"ids": ids, "sorted_rows": sorted_rows, "sorted_ids": ids[sorted_rows], "codes": codes, "pop": pop,
                  "base": pop / (pop.max(initial=0.0) + 1.0) / norm, "block_order": order,
                  "block_codes": np.take_along_axis(codes.T, order, axis=1)}
        if lp is not None:
            arrays["log_price"] = lp
        meta = {"fields": fields, "weights": {f: float(weights[f]) for f in fields}, "price_weight": price_weight,
                "price_scale": price_scale, "norm": float(norm), "values": {}}
        for f, vals in side.items():
            kind, col, vocab = _value_column(list(vals))
            arrays[f"value.{f}"] = col
            meta["values"][f] = {"kind": kind, "vocab": vocab}
        self._setup(arrays, meta, cache_size)

    def _setup(self, arrays: dict[str, np.ndarray], meta: dict, cache_size: int = 4096) -> None:
        from functools import lru_cache

        self._arrays, self._meta = arrays, meta
        self.item_ids = arrays["ids"]
        self._lookup = SortedIds(arrays["sorted_ids"], rows=arrays["sorted_rows"])
        self.codes, self.pop, self._base = arrays["codes"], arrays["pop"], arrays["base"]
        self._lp = arrays.get("log_price")
        self._block_order, self._block_codes = arrays["block_order"], arrays["block_codes"]
        self.fields = list(meta["fields"])
        self.field_weights = dict(meta["weights"])
        self.price_weight, self.price_scale = float(meta["price_weight"]), float(meta["price_scale"])
        self._value_kinds = {f: (v["kind"], v["vocab"]) for f, v in meta["values"].items()}
        self.weights = np.array([self.field_weights[f] for f in self.fields], dtype=np.float64)
        self._w = self.weights / meta["norm"]
        self._wp = self.price_weight / meta["norm"]
        self._base_max = float(np.max(self._base, initial=0.0))
        self.prune_from = SIDE_PRUNE_FROM
        self._ranked = lru_cache(maxsize=cache_size)(self._rank_key)
        _raise_mmap_threshold(32 * len(self.item_ids))

    def arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """``(arrays, meta)``: every array the index reads, and the small rest (JSON-able), for
        :meth:`from_arrays`."""
        return self._arrays, self._meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict, cache_size: int = 4096) -> "SideIndex":
        """The index over ``arrays`` as given (memory-mapped ones stay mapped: nothing is copied)."""
        obj = cls.__new__(cls)
        obj._setup(arrays, meta, cache_size)
        return obj

    def __contains__(self, item_id: str) -> bool:
        return self._lookup.index(str(item_id)) >= 0

    def __len__(self) -> int:
        return len(self.item_ids)

    def value(self, ids, field: str) -> list:
        if field not in self._value_kinds:
            return [None] * len(ids)
        kind, vocab = self._value_kinds[field]
        rows = self._lookup.indices(ids)
        col = self._arrays[f"value.{field}"][np.maximum(rows, 0)] if len(self.item_ids) else np.zeros(len(rows))
        if kind == "str":
            return [None if r < 0 or c < 0 else vocab[c] for r, c in zip(rows.tolist(), col.tolist())]
        cast = int if kind == "int" else float
        return [None if r < 0 or v != v else cast(v) for r, v in zip(rows.tolist(), col.tolist())]

    def log_prices(self, ids) -> np.ndarray:
        """``log(1 + price)`` of each id; NaN where unknown, without a price, or when prices are not used."""
        rows = self._lookup.indices(ids)
        if self._lp is None or not len(rows):
            return np.full(len(rows), np.nan)
        return np.where(rows >= 0, self._lp[np.maximum(rows, 0)], np.nan)

    def is_new(self, ids: np.ndarray) -> np.ndarray:
        """True where an id has no events (popularity 0); ids it does not know are not new."""
        rows = self._lookup.indices(ids)
        if not len(rows) or not len(self.pop):
            return np.zeros(len(rows), dtype=bool)
        return (rows >= 0) & (self.pop[np.maximum(rows, 0)] == 0)

    def _score(self, rows: np.ndarray, key: tuple, log_price: float | None) -> np.ndarray:
        score = self._base[rows]  # a copy (fancy indexing); the same operations, in the same order, per row
        for c, code in enumerate(key):
            if code:
                score += self._w[c] * (self.codes[rows, c] == code)
        if log_price is not None:  # items without a price get no proximity
            score += self._wp * np.nan_to_num(np.exp(-np.abs(self._lp[rows] - log_price) / self.price_scale), nan=0.0)
        return score

    def _block(self, c: int, code: int) -> np.ndarray:
        """Rows whose field ``c`` has ``code``, ascending."""
        order, sorted_codes = self._block_order[c], self._block_codes[c]
        return order[np.searchsorted(sorted_codes, code):np.searchsorted(sorted_codes, code, side="right")]

    def _rank_key(self, key: tuple, log_price: float | None, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``depth`` best rows for one key, exactly as a scan of every item (:meth:`_rank_key_scan`) ranks
        them, but scoring only the items that share a field with the query where that suffices: fields are
        added heaviest first, and once the depth-th best score so far beats the most that any item outside
        the added fields could score (the other fields' weights, full price proximity, the top popularity
        term), the rest cannot enter the list. A full catalogue pass per query would make listing every item
        quadratic (the rank channel lists 500k items at 10M events)."""
        n = len(self.item_ids)
        d = min(depth, n)
        fields = sorted((c for c, code in enumerate(key) if code), key=lambda c: -self._w[c])
        if n < self.prune_from or not fields:
            return self._rank_key_scan(key, log_price, depth)
        rest = self._base_max + (self._wp if log_price is not None else 0.0)
        rows, scores = [], []
        for j, c in enumerate(fields):
            block = self._block(c, key[c])
            if j:  # rows already added through a heavier field
                block = block[(self.codes[block][:, fields[:j]] != np.asarray(key)[fields[:j]]).all(axis=1)]
            rows.append(block)
            scores.append(self._score(block, key, log_price))
            if sum(map(len, rows)) > d:
                r, score = np.concatenate(rows), np.concatenate(scores)
                tie = self._tie(r, score)
                if np.partition(tie, len(tie) - d)[len(tie) - d] > self._w[fields[j + 1:]].sum() + rest + 1e-9:
                    return self._top(r, score, tie, d)
        return self._rank_key_scan(key, log_price, depth)

    def _rank_key_scan(self, key: tuple, log_price: float | None, depth: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(len(self.item_ids))
        score = self._score(rows, key, log_price)
        return self._top(rows, score, self._tie(rows, score), min(depth, len(score)))

    @staticmethod
    def _tie(rows: np.ndarray, score: np.ndarray) -> np.ndarray:
        """Scores to order by: equal scores put the lower row (id order) first."""
        return score - rows * 1e-12

    @staticmethod
    def _top(rows: np.ndarray, score: np.ndarray, tie: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
        if d == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        part = np.argpartition(-tie, d - 1)[:d] if d < len(score) else np.arange(len(score))
        part = part[np.argsort(-tie[part], kind="stable")]
        part = part[score[part] > 0]
        return rows[part], score[part].astype(np.float32)

    def similar_items(self, item_id: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        r = self._lookup.index(str(item_id))
        if r < 0:
            raise KeyError(item_id)
        lp = None if self._lp is None or np.isnan(self._lp[r]) else float(self._lp[r])
        rows, scores = self._ranked(tuple(int(c) for c in self.codes[r]), lp, max(k + 1, BLEND_DEPTH + 1))
        keep = rows != r
        return self.item_ids[rows[keep][:k]].astype(object), scores[keep][:k]

    def to_json(self) -> dict:
        """The format-1 and format-2 snapshots' form (Python lists); :meth:`arrays` is the mapped one."""
        return {"item_ids": self.item_ids.tolist(), "side": {f: self.value(self.item_ids, f) for f in self._value_kinds},
                "pop": self.pop.tolist(), "weights": self.field_weights, "price_weight": self.price_weight,
                "price_scale": self.price_scale}

    @classmethod
    def from_json(cls, body: dict) -> "SideIndex":
        # a snapshot saved before price proximity existed keeps its lists: no price term
        return cls(body["item_ids"], body["side"], body["pop"], body["weights"],
                   price_weight=body.get("price_weight", 0.0), price_scale=body.get("price_scale"))

    @classmethod
    def from_neo4j(cls, driver, database: str = "neo4j") -> "SideIndex":
        """Side fields of every item and its popularity (events, summed over its ENGAGED edges)."""
        with driver.session(database=database, default_access_mode="READ") as s:
            rows = s.run("MATCH (i:Item) OPTIONAL MATCH ()-[e:ENGAGED]->(i) "
                         "RETURN i.id, [f IN $fields | i[f]], coalesce(sum(e.count), 0) ORDER BY i.id",
                         fields=list(INFO_FIELDS)).values()
        side = {f: [None if r[1][c] is None else (r[1][c] if f == "price" else str(r[1][c])) for r in rows]
                for c, f in enumerate(INFO_FIELDS)}
        return cls([r[0] for r in rows], side, [r[2] for r in rows])


# --------------------------------------------------------------------------- snapshot
ANSWER_CACHE_SIZE = 200_000  # unfiltered answers kept per snapshot (LRU); a new snapshot starts empty


class AnswerCache:
    """A thread-safe LRU of ``(item, k, channel, blend config) -> Neighbours`` (read-only results)."""

    def __init__(self, maxsize: int):
        from cachetools import LRUCache

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


def _load_vectors(faiss_dir: str | Path | None, mmap: bool = True):
    """The saved Faiss index with its id map (memory-mapped unless ``mmap=False``), or None when there is
    none yet."""
    from embed.index import ItemVectorIndex

    if faiss_dir is None or not ItemVectorIndex.saved_in(faiss_dir):
        return None
    return ItemVectorIndex.load(faiss_dir, mmap=mmap)


SNAPSHOT_FORMAT = 3  # a folder of .npy arrays (memory-mapped by every worker) and meta.json; 1 was snapshot.json,
# 2 kept the side index in meta.json (one copy of Python objects per worker)
SNAPSHOTS_KEPT = 3  # saved versions kept, so a worker still mapping an older one never loses its files


class SortedIds:
    """A sorted array of item ids (numpy unicode, memory-mappable) as a read-only set with row lookup.
    ``rows``: the row each sorted id stands for elsewhere (default: its position here)."""

    def __init__(self, ids: np.ndarray, member: np.ndarray | None = None, rows: np.ndarray | None = None):
        self.ids = ids
        self.member = member  # which ids are items (the rest only appear as neighbours); None: all
        self.rows = rows

    def index(self, item_id: str) -> int:
        n = len(self.ids)
        if n == 0:
            return -1
        r = int(np.searchsorted(self.ids, item_id))
        if r >= n or self.ids[r] != item_id:
            return -1
        return r if self.rows is None else int(self.rows[r])

    def indices(self, ids) -> np.ndarray:
        """:meth:`index` of each id (any iterable), vectorised; -1 where unknown."""
        q = np.array([str(i) for i in ids], dtype=str) if len(ids) else np.zeros(0, dtype="<U1")
        n = len(self.ids)
        if not len(q) or not n:
            return np.full(len(q), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.ids, q), n - 1)
        found = self.ids[pos] == q
        return np.where(found, pos if self.rows is None else self.rows[pos], -1).astype(np.int64)

    def __contains__(self, item_id) -> bool:
        r = self.index(str(item_id))
        return r >= 0 and (self.member is None or bool(self.member[r]))

    def __iter__(self):
        rows = range(len(self.ids)) if self.member is None else np.flatnonzero(self.member)
        return (str(self.ids[r]) for r in rows)

    def __len__(self) -> int:
        return len(self.ids) if self.member is None else int(np.count_nonzero(self.member))


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
            nbr[indptr[r]:indptr[r + 1]] = [ids.index(str(x)) for x in nb]
            scores[indptr[r]:indptr[r + 1]] = sc
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
    """The data key (:func:`query.scores.read_data_key`) the newest snapshot in ``directory`` was saved
    under, or None."""
    import json

    from graphrecall.versions import current

    sub = current(directory)
    try:
        return None if sub is None else json.loads((sub / "meta.json").read_text()).get("key")
    except (FileNotFoundError, ValueError):
        return None


def shared_snapshot(directory: str | Path, key: str | None, build: Callable[[], "SnapshotRetriever"],
                    faiss_dir: str | Path | None = None) -> "SnapshotRetriever":
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
    lists: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)  # channel -> item -> (ids, scores)
    vectors: object | None = None  # embed.index.ItemVectorIndex
    loaded_at: float = field(default_factory=time.time)
    side: SideIndex | None = None
    blend_config: BlendConfig = DEFAULT_BLEND
    blend_source: str = "built-in default"
    answers: "AnswerCache" = field(default_factory=lambda: AnswerCache(ANSWER_CACHE_SIZE), repr=False)
    version: int = 0  # the graph's data version when this snapshot was read (query.scores.read_data_version)

    def __setattr__(self, name, value):
        # the answer cache holds answers computed from these fields: replacing one (the benches swap in
        # other vectors) starts an empty cache, or lookups would keep returning the old data's answers
        if name in ("items", "lists", "vectors", "side") and "answers" in self.__dict__:
            object.__setattr__(self, "answers", AnswerCache(ANSWER_CACHE_SIZE))
        object.__setattr__(self, name, value)

    def has_item(self, item_id: str) -> bool:
        return item_id in self.items

    def _channel(self, item_id: str, k: int, channel: str) -> Neighbours:
        if channel == "eges":
            if self.vectors is None or item_id not in self.vectors:
                return Neighbours.empty()
            ids, scores = self._eges(item_id, k)
            return Neighbours(ids, scores, [channel] * len(ids))
        if channel == "side":
            if self.side is None or item_id not in self.side:
                return Neighbours.empty()
            ids, scores = self.side.similar_items(item_id, k)
            return Neighbours(ids, scores, [channel] * len(ids))
        ids, scores = self.lists.get(channel, {}).get(item_id, (np.array([], dtype=object), np.array([], np.float32)))
        return Neighbours(ids[:k], scores[:k], [channel] * min(k, len(ids)))

    def _eges(self, item_id: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest vectors, equal scores ordered by price proximity to the query.

        Items without events that share side info share one vector, so they tie exactly; Faiss leaves them
        in an order of its own search, which means nothing. Here a tie puts the item whose price is
        nearest the query's first (as the side channel does inside a match; items without a price last),
        and the search is widened until the tie at the k-th score is whole, so the cut takes the nearest.
        Without prices (or side info) ties keep Faiss's order."""
        lp = None if self.side is None else self.side.log_prices([item_id])[0]
        if lp is None or np.isnan(lp):
            return self.vectors.similar_items(item_id, k)
        n = len(self.vectors.item_ids) - 1
        depth = min(2 * k, n)
        while True:
            ids, scores = self.vectors.similar_items(item_id, depth)
            if depth >= n or len(scores) <= k or scores[-1] != scores[k - 1] or depth >= EGES_TIE_DEPTH:
                break
            depth = min(4 * depth, n, EGES_TIE_DEPTH)
        new_score = np.r_[True, scores[1:] != scores[:-1]]
        if new_score.all():  # no tie at all
            return ids[:k], scores[:k]
        group = np.cumsum(new_score)
        dist = np.abs(self.side.log_prices(ids) - lp)
        order = np.lexsort((np.nan_to_num(dist, nan=np.inf), group))[:k]
        return ids[order], scores[order]

    def is_new(self, ids: np.ndarray) -> np.ndarray:
        return np.zeros(len(ids), dtype=bool) if self.side is None else self.side.is_new(ids)

    def item_values(self, ids, field: str) -> list:
        return [None] * len(ids) if self.side is None else self.side.value(ids, field)

    def stats(self) -> dict:
        return {"items": len(self.items), "loaded_at": self.loaded_at, "version": self.version,
                **{f"{ch}_lists": len(v) for ch, v in self.lists.items()},
                "eges_vectors": 0 if self.vectors is None else len(self.vectors.item_ids),
                "side_items": 0 if self.side is None else len(self.side.item_ids), "cached_answers": len(self.answers)}

    def save(self, directory: str | Path, key: str | None = None) -> Path:
        """Write the snapshot into a new folder under ``directory`` and point ``CURRENT`` at it: the item ids
        and each channel's lists as CSR ``.npy`` arrays (memory-mapped by :meth:`load`), the rest in
        ``meta.json``. Vectors stay in their Faiss folder. Older versions beyond :data:`SNAPSHOTS_KEPT` are
        removed (a worker that still maps one keeps its pages until it lets go). ``key``: the graph's data
        key this snapshot was read at (:func:`shared_snapshot` reuses a saved snapshot of the same key)."""
        import json
        import uuid

        from graphrecall.versions import new_version, publish

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
        side = None
        if self.side is not None:
            arrays, side = self.side.arrays()
            side = {"layout": "arrays", **side}
            for part, arr in arrays.items():
                np.save(tmp / f"side.{part}.npy", np.asarray(arr))
        meta = {"format": SNAPSHOT_FORMAT, "key": key, "loaded_at": self.loaded_at, "version": self.version,
                "blend": str(self.blend_config), "blend_source": self.blend_source, "channels": sorted(self.lists),
                "side": side}
        (tmp / "meta.json").write_text(json.dumps(meta))
        publish(tmp, keep=SNAPSHOTS_KEPT)
        (d / "snapshot.json").unlink(missing_ok=True)  # format 1, superseded
        return d

    @classmethod
    def load(cls, directory: str | Path, faiss_dir: str | Path | None = None, mmap: bool = True) -> "SnapshotRetriever":
        """The snapshot saved in ``directory``, its arrays (lists, side index, Faiss index) memory-mapped
        read-only, so the processes that load it share one copy; ``mmap=False`` reads a private copy
        instead. A format-1 ``snapshot.json`` and a format-2 side index (``meta.json``) are still read."""
        import json

        from graphrecall.versions import current

        sub = current(directory)
        if sub is None:
            return cls._load_json(Path(directory), faiss_dir)
        meta = json.loads((sub / "meta.json").read_text())
        mode = "r" if mmap else None
        ids = np.load(sub / "ids.npy", mmap_mode=mode)
        sid = SortedIds(ids, np.load(sub / "member.npy", mmap_mode=mode))
        lists = {ch: CsrLists(sid, *(np.load(sub / f"{ch}.{part}.npy", mmap_mode=mode)
                                     for part in ("indptr", "nbr", "scores")))
                 for ch in meta["channels"]}
        blend_config = BlendConfig.parse(meta["blend"]) if meta.get("blend") else DEFAULT_BLEND
        side = meta.get("side")
        if side and side.get("layout") == "arrays":
            arrays = {p.name[len("side."):-len(".npy")]: np.load(p, mmap_mode=mode) for p in sub.glob("side.*.npy")}
            side = SideIndex.from_arrays(arrays, side)
        elif side:
            side = SideIndex.from_json(side)
        return cls(sid, lists, _load_vectors(faiss_dir, mmap), meta["loaded_at"], side, blend_config,
                   meta.get("blend_source", "built-in default"), version=int(meta.get("version", 0)))

    @classmethod
    def _load_json(cls, d: Path, faiss_dir) -> "SnapshotRetriever":
        import json

        path = d / "snapshot.json"
        if not path.exists():
            raise FileNotFoundError(f"{d} holds no saved snapshot; start the API once while Neo4j is up so that "
                                    "it saves one")
        body = json.loads(path.read_text())
        lists = {ch: {i: (np.array(v[0], dtype=object), np.array(v[1], dtype=np.float32)) for i, v in per.items()}
                 for ch, per in body["lists"].items()}
        vectors = _load_vectors(faiss_dir)
        blend_config = BlendConfig.parse(body["blend"]) if body.get("blend") else DEFAULT_BLEND
        side = SideIndex.from_json(body["side"]) if body.get("side") else None
        return cls(set(body["items"]), lists, vectors, body["loaded_at"], side, blend_config,
                   body.get("blend_source", "built-in default"), version=int(body.get("version", 0)))

    @classmethod
    def from_neo4j(cls, driver, faiss_dir: str | Path | None = None, database: str = "neo4j") -> "SnapshotRetriever":
        from query.scores import read_data_version, read_top_lists, read_transition_lists

        t0 = time.perf_counter()
        version = read_data_version(driver, database)  # first: a change while loading makes the next probe reload
        with driver.session(database=database, default_access_mode="READ") as s:
            items = {r[0] for r in s.run("MATCH (i:Item) RETURN i.id").values()}
        raw = {ch: read_top_lists(driver, rel, database=database) for ch, rel in LIST_RELATIONSHIPS.items()}
        raw["trans"] = read_transition_lists(driver, database=database)
        lists = {ch: {i: (np.array(ids, dtype=object), np.array(sc, dtype=np.float32)) for i, (ids, sc) in per.items()}
                 for ch, per in raw.items()}
        vectors = _load_vectors(faiss_dir)
        snap = cls(items, lists, vectors, side=SideIndex.from_neo4j(driver, database), version=version)
        snap.blend_config, snap.blend_source = stored_blend(driver, database)
        logger.info("snapshot loaded in %.1fs: %s", time.perf_counter() - t0, snap.stats())
        if not items:
            logger.warning("the graph has no items, so every lookup will be 404; run `graphrecall ingest`, "
                           "`graphrecall scores` and `graphrecall embed` (or `graphrecall demo`) first")
        elif not lists.get("swing") and not lists.get("cooc") and vectors is None:
            logger.warning("no SWING/COOC lists and no Faiss index yet, so lookups return empty lists; "
                           "run `graphrecall scores` and `graphrecall embed`")
        return snap


# --------------------------------------------------------------------------- user histories
class UserHistory(ABC):
    """Where ``GET /recall/{user_id}`` finds a user's recent items."""

    @abstractmethod
    def recent_items(self, user_id: str, n: int) -> list[tuple[str, int]] | None:
        """The user's ``n`` most recent distinct items with their last event time (epoch seconds), most
        recent first (ties by id); ``[]`` for a user without events; None for a user it does not know."""


class Neo4jHistory(UserHistory):
    """Recent items from the ``ENGAGED`` edges (their ``last_ts``), read-only."""

    QUERY = ("MATCH (u:User {id: $id}) "
             "CALL { WITH u MATCH (u)-[e:ENGAGED]->(i:Item) WITH i, max(e.last_ts) AS ts "
             "       ORDER BY ts DESC, i.id LIMIT $n RETURN collect([i.id, ts]) AS recent } "
             "RETURN recent")

    def __init__(self, driver, database: str = "neo4j"):
        self.driver, self.database = driver, database

    def recent_items(self, user_id: str, n: int) -> list[tuple[str, int]] | None:
        with self.driver.session(database=self.database, default_access_mode="READ") as s:
            rows = s.run(self.QUERY, id=str(user_id), n=int(n)).values()
        return None if not rows else [(str(i), int(ts)) for i, ts in rows[0][0]]


def decay_weights(times, half_life_seconds: float | None) -> np.ndarray:
    """``0.5 ** (age / half_life)``, age counted from the most recent of ``times``; all 1 without a half-life."""
    t = np.asarray(times, dtype=np.float64)
    if half_life_seconds is None or not len(t):
        return np.ones(len(t))
    if not half_life_seconds > 0:
        raise ValueError(f"the half-life must be > 0 seconds, got {half_life_seconds}")
    return 0.5 ** ((t.max() - t) / half_life_seconds)


# --------------------------------------------------------------------------- live Neo4j
class Neo4jRetriever(ItemRetriever):
    """Reads each answer from Neo4j with read-only sessions."""

    def __init__(self, driver, database: str = "neo4j"):
        self.driver, self.database = driver, database
        self.blend_config, self.blend_source = stored_blend(driver, database)

    def _read(self, query: str, **params):
        with self.driver.session(database=self.database, default_access_mode="READ") as s:
            return s.run(query, **params).values()

    def has_item(self, item_id: str) -> bool:
        return bool(self._read("MATCH (i:Item {id: $id}) RETURN count(i) > 0", id=item_id)[0][0])

    def item_values(self, ids, field: str) -> list:
        if field not in INFO_FIELDS:
            raise ValueError(f"unknown item field {field!r}; choose from {', '.join(INFO_FIELDS)}")
        got = dict(self._read("UNWIND $ids AS id MATCH (i:Item {id: id}) RETURN id, i[$field]",
                              ids=[str(i) for i in ids], field=field))
        return [got.get(str(i)) for i in ids]

    def is_new(self, ids: np.ndarray) -> np.ndarray:
        new = {r[0] for r in self._read("UNWIND $ids AS id MATCH (i:Item {id: id}) "
                                        "WHERE NOT EXISTS { ()-[:ENGAGED]->(i) } RETURN id", ids=[str(i) for i in ids])}
        return np.array([str(i) in new for i in ids], dtype=bool)

    def _channel(self, item_id: str, k: int, channel: str) -> Neighbours:
        if channel == "eges":
            rows = self._read(
                "MATCH (q:Item {id: $id}) WHERE q.embedding IS NOT NULL "
                "CALL db.index.vector.queryNodes('item_embedding', $k1, q.embedding) YIELD node, score "
                "WHERE node <> q RETURN node.id, score LIMIT $k", id=item_id, k1=k + 1, k=k)
        elif channel == "side":  # the reference backend recomputes it from the graph on every call
            side = SideIndex.from_neo4j(self.driver, self.database)
            ids, scores = side.similar_items(item_id, k)
            return Neighbours(ids, scores, [channel] * len(ids))
        elif channel == "trans":
            rows = self._read("MATCH (q:Item {id: $id})-[t:TRANSITION]->(j:Item) WHERE j <> q "
                              "RETURN j.id, t.weight ORDER BY t.weight DESC, j.id LIMIT $k", id=item_id, k=k)
        else:
            rows = self._read("MATCH (:Item {id: $id})-[r]->(j:Item) WHERE type(r) = $rel "
                              "RETURN j.id, r.score ORDER BY r.rank LIMIT $k", id=item_id,
                              rel=LIST_RELATIONSHIPS[channel], k=k)
        return Neighbours(np.array([r[0] for r in rows], dtype=object), np.array([r[1] for r in rows], dtype=np.float32),
                          [channel] * len(rows))


# --------------------------------------------------------------------------- resilient
class ResilientRetriever(ItemRetriever):
    """Serves from a snapshot; probes Neo4j every ``probe_every`` seconds in a thread.

    While the probe fails, ``health()`` says ``degraded`` and answers keep coming
    from the last snapshot. When the probe succeeds again the snapshot is reloaded.

    A probe may return the graph's data version (:func:`query.scores.read_data_version`); when it differs
    from the snapshot's, a new snapshot is loaded in the probe thread while the old one keeps answering,
    then swapped in with one assignment. A request reads :meth:`view` once, so it never mixes the two.
    """

    def __init__(self, load_snapshot: Callable[[], SnapshotRetriever], probe: Callable[[], int | None],
                 probe_every: float = 5.0,
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
        self.blend_override: BlendConfig | None = None
        self.reloads = 0

    @property
    def blend_config(self) -> BlendConfig:
        """``--blend``/``GRAPHRECALL_BLEND`` when given, else the snapshot's (stored by ``graphrecall tune``)."""
        return self.blend_override or self.snapshot.blend_config

    @blend_config.setter
    def blend_config(self, config: BlendConfig) -> None:
        self.blend_override = config

    @property
    def blend_source(self) -> str:
        return "--blend / GRAPHRECALL_BLEND" if self.blend_override else self.snapshot.blend_source

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
            version = self._probe()
        except Exception as exc:  # noqa: BLE001 - any failure is "down"
            if self.neo4j_ok:
                logger.warning("Neo4j unreachable, serving the snapshot of %s: %s",
                               time.strftime("%H:%M:%S", time.localtime(self.snapshot.loaded_at)), exc)
            self.neo4j_ok, self.last_error = False, f"{type(exc).__name__}: {exc}"[:300]
            return False
        changed = version is not None and version != self.snapshot.version
        if not self.neo4j_ok or changed:
            why = "Neo4j is back" if not self.neo4j_ok else \
                f"data version {self.snapshot.version} -> {version}"
            try:
                t0 = time.perf_counter()
                fresh = self._load()
                self.snapshot = fresh  # the swap: one reference assignment
                self.reloads += 1
                import gc

                gc.freeze()  # keep the new snapshot's objects out of the cyclic collector's scans
                logger.info("%s; snapshot reloaded in %.1fs (version %d)", why, time.perf_counter() - t0, fresh.version)
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

    def is_new(self, ids: np.ndarray) -> np.ndarray:
        return self.snapshot.is_new(ids)

    def item_values(self, ids, field: str) -> list:
        return self.snapshot.item_values(ids, field)

    def view(self) -> "ItemRetriever":
        return self.snapshot  # read once per call (or per batch), so a reload mid-request cannot mix snapshots

    def health(self) -> dict:
        snap = self.snapshot
        return {"status": "ok" if self.neo4j_ok else "degraded", "neo4j": self.neo4j_ok, "version": snap.version,
                "reloads": self.reloads, "error": self.last_error, "snapshot": snap.stats(), "blend": str(self.blend_config),
                "blend_source": self.blend_source}
