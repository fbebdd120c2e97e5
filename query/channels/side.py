"""The side channel: popular items that share the query's side fields (:class:`SideIndex`)."""

from __future__ import annotations

import numpy as np

from ...graph_schema.schema import INFO_FIELDS
from ...graph_schema.store.items import read_side_and_popularity
from ..data import SortedIds
from .base import BLEND_DEPTH, Channel, GraphSource, Neighbours, Parts, Training, register

SIDE_MATCH_WEIGHTS = {"category": 4.0, "brand": 2.0, "price_bucket": 1.0}  # lexicographic: category, brand, price
# price proximity in the side channel (SideIndex): the best NDCG@20 on REES46 validation
# (`python bench/next_item_ideas.py --only price`; 0.2955 against 0.2688 without it)
SIDE_PRICE_WEIGHT = 2.0
SIDE_PRICE_SCALE = 1.0


SIDE_PRUNE_FROM = 30000  # SideIndex scores every item for each query in catalogues smaller than this


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
    if present and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in present
    ):
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

    def __init__(
        self,
        item_ids,
        side: dict[str, list],
        pop,
        weights: dict[str, float] | None = None,
        cache_size: int = 4096,
        price_weight: float | None = None,
        price_scale: float | None = None,
    ):
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
        arrays = {
            "ids": ids,
            "sorted_rows": sorted_rows,
            "sorted_ids": ids[sorted_rows],
            "codes": codes,
            "pop": pop,
            "base": pop / (pop.max(initial=0.0) + 1.0) / norm,
            "block_order": order,
            "block_codes": np.take_along_axis(codes.T, order, axis=1),
        }
        if lp is not None:
            arrays["log_price"] = lp
        meta = {
            "fields": fields,
            "weights": {f: float(weights[f]) for f in fields},
            "price_weight": price_weight,
            "price_scale": price_scale,
            "norm": float(norm),
            "values": {},
        }
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
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict, cache_size: int = 4096) -> SideIndex:
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
        return order[np.searchsorted(sorted_codes, code) : np.searchsorted(sorted_codes, code, side="right")]

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
                if np.partition(tie, len(tie) - d)[len(tie) - d] > self._w[fields[j + 1 :]].sum() + rest + 1e-9:
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
        return {
            "item_ids": self.item_ids.tolist(),
            "side": {f: self.value(self.item_ids, f) for f in self._value_kinds},
            "pop": self.pop.tolist(),
            "weights": self.field_weights,
            "price_weight": self.price_weight,
            "price_scale": self.price_scale,
        }

    @classmethod
    def from_json(cls, body: dict) -> SideIndex:
        # a snapshot saved before price proximity existed keeps its lists: no price term
        return cls(
            body["item_ids"],
            body["side"],
            body["pop"],
            body["weights"],
            price_weight=body.get("price_weight", 0.0),
            price_scale=body.get("price_scale"),
        )

    @classmethod
    def from_neo4j(cls, driver, database: str = "neo4j") -> SideIndex:
        """Side fields of every item and its popularity (events, summed over its ENGAGED edges)."""
        rows = read_side_and_popularity(driver, database)
        side = {
            f: [None if r[1][c] is None else (r[1][c] if f == "price" else str(r[1][c])) for r in rows]
            for c, f in enumerate(INFO_FIELDS)
        }
        return cls([r[0] for r in rows], side, [r[2] for r in rows])


class Side(Channel):
    """Items sharing the query's side fields, popular first (:class:`SideIndex`)."""

    name = "side"

    def build(self, training: Training) -> Parts:
        cat = training.catalogue
        return Parts(side=SideIndex(cat.item_ids, cat.side_with_price(), cat.pop))

    def read(self, source: GraphSource) -> Parts:
        return Parts(side=SideIndex.from_neo4j(source.driver, source.database))

    def answer(self, snapshot, item_id: str, k: int) -> Neighbours:
        if snapshot.side is None or item_id not in snapshot.side:
            return Neighbours.empty()
        return self._neighbours(*snapshot.side.similar_items(item_id, k))

    def answer_live(self, driver, database: str, item_id: str, k: int) -> Neighbours:
        # the reference backend recomputes it from the graph on every call
        return self._neighbours(*SideIndex.from_neo4j(driver, database).similar_items(item_id, k))


register(Side())
