"""Sessions as arrays for the models and their evaluation: the catalogue, next-item cases, time splits,
transition counts and the snapshot's list format."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..graph_schema.schema import SIDE_INFO_FIELDS  # the side fields EGES embeds

QUANTILE = 0.8

SEQ_WINDOW = 10  # sequential rules: steps after an item that still count, weight 1/steps (Ludewig & Jannach 2018)


def cutoff_time(ts: np.ndarray, quantile: float = QUANTILE) -> int:
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if len(ts) == 0:
        raise ValueError("no events to split; ingest an event log first")
    return int(np.quantile(np.asarray(ts), quantile, method="higher"))


def split_stored_sessions(sessions: Sequence[dict], quantile: float = QUANTILE) -> tuple[int, list[dict], list[dict]]:
    """The same split for sessions read back from the graph, which keep no per-event times:
    T is the event-weighted ``quantile`` of session starts; sessions that end before T train,
    sessions that start at or after T validate, and the few that straddle T are left out."""
    if not sessions:
        raise ValueError("the graph has no sessions; ingest an event log first (`graphrecall ingest events`)")
    starts = np.array([s["start_ts"] for s in sessions], dtype=np.int64)
    t = cutoff_time(np.repeat(starts, [max(int(s.get("n_events") or len(s["items"])), 1) for s in sessions]), quantile)
    train = [s for s in sessions if s["end_ts"] < t]
    held = [s for s in sessions if s["start_ts"] >= t]
    return t, train, held


@dataclass
class Cases:
    query: np.ndarray  # item id per case
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.query)


def next_item_cases(sessions: Iterable[dict]) -> Cases:
    """Every consecutive distinct pair (a -> b) of every session (``items`` has no consecutive repeats)."""
    q, t = [], []
    for s in sessions:
        items = s["items"]
        for a, b in zip(items[:-1], items[1:]):
            if a != b:
                q.append(a)
                t.append(b)
    return Cases(np.array(q, dtype=object), np.array(t, dtype=object))


@dataclass
class Catalogue:
    """Every item a model may answer with: side info per item, training popularity."""

    item_ids: np.ndarray  # sorted external ids
    side: dict[str, list[str | None]]  # field -> value per item (fields with at least one value)
    pop: np.ndarray  # training events per item
    price: np.ndarray | None = None  # per item, NaN where missing (the served side channel's price proximity)
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.index = {i: n for n, i in enumerate(self.item_ids)}

    @classmethod
    def build(
        cls, item_side: dict[str, dict], train_items: Iterable[str], fields: Sequence[str] = SIDE_INFO_FIELDS
    ) -> Catalogue:
        """``item_side``: item -> side props (an item catalogue); ``train_items``: the item of every
        training event (popularity). Training items missing from ``item_side`` are added."""
        counts = pd.Series(list(train_items), dtype=object).value_counts()
        ids = np.array(sorted(set(item_side) | set(counts.index)), dtype=object)
        side = {f: [None if item_side.get(i, {}).get(f) is None else str(item_side[i][f]) for i in ids] for f in fields}
        side = {f: v for f, v in side.items() if any(x is not None for x in v)}
        pop = counts.reindex(ids, fill_value=0).to_numpy(dtype=np.float64)
        price = pd.to_numeric(
            pd.Series([item_side.get(i, {}).get("price") for i in ids], dtype=object), errors="coerce"
        ).to_numpy(dtype=np.float64)
        return cls(ids, side, pop, price if np.isfinite(price).any() else None)

    def side_with_price(self) -> dict[str, list]:
        """The side fields plus ``price`` where known: what the served side channel ranks by."""
        return (
            self.side
            if self.price is None
            else self.side | {"price": [None if np.isnan(p) else float(p) for p in self.price]}
        )

    def item_side(self) -> dict[str, dict]:
        """The catalogue back as ``{item: side props}`` (price included where known)."""
        fields = self.side_with_price()
        return {str(i): {f: v[n] for f, v in fields.items() if v[n] is not None} for n, i in enumerate(self.item_ids)}

    @property
    def trained(self) -> np.ndarray:
        return self.pop > 0

    def __len__(self) -> int:
        return len(self.item_ids)

    def rows(self, ids: Iterable[str]) -> np.ndarray:
        return np.array([self.index.get(i, -1) for i in ids], dtype=np.int64)


def transition_matrix(sessions: Iterable[dict], cat: Catalogue) -> sp.csr_matrix:
    """Directed counts of consecutive distinct items (the ``TRANSITION`` edges), catalogue-indexed."""
    src, dst = [], []
    for s in sessions:
        rows = cat.rows(s["items"])
        ok = (rows[:-1] >= 0) & (rows[1:] >= 0) & (rows[:-1] != rows[1:])
        src.append(rows[:-1][ok])
        dst.append(rows[1:][ok])
    n = len(cat)
    src = np.concatenate(src) if src else np.zeros(0, np.int64)
    dst = np.concatenate(dst) if dst else np.zeros(0, np.int64)
    m = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    m.sum_duplicates()
    return m


def matrix_lists(m: sp.csr_matrix, item_ids: np.ndarray, depth: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Top-``depth`` of each row of an item x item score matrix, ties by id: the snapshot's list format."""
    m = sp.csr_matrix(m)
    out = {}
    for r in np.flatnonzero(np.diff(m.indptr)):
        cols, vals = m.indices[m.indptr[r] : m.indptr[r + 1]], m.data[m.indptr[r] : m.indptr[r + 1]]
        keep = (cols != r) & (vals > 0)
        cols, vals = cols[keep], vals[keep]
        order = np.lexsort((item_ids[cols].astype(str), -vals))[:depth]
        out[str(item_ids[r])] = (item_ids[cols[order]], vals[order].astype(np.float32))
    return out


def topk_lists(tk) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:class:`~graphrecall.query.scoring.reference.TopK` as the snapshot's list format."""
    out = {}
    for r, iid in enumerate(tk.item_ids):
        ok = tk.ids[r] >= 0
        if ok.any():
            out[str(iid)] = (np.asarray(tk.item_ids, dtype=object)[tk.ids[r][ok]], tk.scores[r][ok])
    return out


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
