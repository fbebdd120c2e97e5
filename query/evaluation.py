"""Leak-free next-item evaluation, shared by ``bench/next_item.py`` and ``graphrecall tune``.

Protocol (an i2i model rebuilt each night is used on the traffic that follows):

* T is the ``quantile`` (0.8) of event times; training is every event before T;
* test sessions are the 30-minute sessions, cut on the whole log, that start at or after T;
  a session that straddles T gives its late events to neither side;
* every consecutive distinct pair (a -> b) inside a test session is a case: a is the query,
  b the target;
* validation is the same split made inside the training events, so hyperparameters never
  see the test period.

Cases are reported on overlapping subsets: ``warm`` (the target has training events),
``cold`` (the target is new: in the catalogue, no training event) and ``cold_query`` (the
query is new). Every model answers from one :class:`Catalogue`.

Baselines (:func:`side_popularity_lists`, :func:`covisit_lists`) and the served channels
(:func:`build_retriever`, a :class:`~query.retriever.SnapshotRetriever` over arrays, the
same object the API serves) produce ``{query: [item ids]}`` lists that :func:`score_lists`
turns into per-case hits.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ingest.sessions import DEFAULT_SESSION_GAP, session_ids, session_rows
from query.retriever import SIDE_MATCH_WEIGHTS  # noqa: F401 - re-exported for the bench
from query.scores import TRANS_DEPTH
from walkers.export import SIDE_INFO_FIELDS  # the side fields EGES embeds

logger = logging.getLogger(__name__)

K = 20
QUANTILE = 0.8


# --------------------------------------------------------------------------- split
@dataclass
class TemporalSplit:
    cutoff: int  # T: training events are strictly before it
    train: pd.DataFrame  # events (user, item, type, ts, line) before T
    test_sessions: list[dict]  # session rows (ingest.sessions.session_rows) starting at or after T
    dropped_events: int  # late events of sessions that straddle T


def cutoff_time(ts: np.ndarray, quantile: float = QUANTILE) -> int:
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if len(ts) == 0:
        raise ValueError("no events to split; ingest an event log first")
    return int(np.quantile(np.asarray(ts), quantile, method="higher"))


def temporal_split(events: pd.DataFrame, quantile: float = QUANTILE, gap_seconds: int = DEFAULT_SESSION_GAP,
                   cutoff: int | None = None) -> TemporalSplit:
    """Split an event frame (``ingest.sessions.events_frame``) at T = the ``quantile`` of its times."""
    df = events.sort_values(["user", "ts", "line"], kind="stable").reset_index(drop=True)
    ts = df["ts"].to_numpy()
    t = cutoff_time(ts, quantile) if cutoff is None else int(cutoff)
    sid = session_ids(df["user"].to_numpy(), ts, gap_seconds)
    first = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]]) if len(sid) else np.zeros(0, np.int64)
    start = ts[first][sid] if len(sid) else ts
    train_mask, test_mask = ts < t, start >= t
    test = df[test_mask].reset_index(drop=True)
    return TemporalSplit(t, df[train_mask].reset_index(drop=True), session_rows(test, gap_seconds),
                         int((~train_mask & ~test_mask).sum()))


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


# --------------------------------------------------------------------------- catalogue
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
    def build(cls, item_side: dict[str, dict], train_items: Iterable[str], fields: Sequence[str] = SIDE_INFO_FIELDS
              ) -> "Catalogue":
        """``item_side``: item -> side props (an item catalogue); ``train_items``: the item of every
        training event (popularity). Training items missing from ``item_side`` are added."""
        counts = pd.Series(list(train_items), dtype=object).value_counts()
        ids = np.array(sorted(set(item_side) | set(counts.index)), dtype=object)
        side = {f: [None if item_side.get(i, {}).get(f) is None else str(item_side[i][f]) for i in ids] for f in fields}
        side = {f: v for f, v in side.items() if any(x is not None for x in v)}
        pop = counts.reindex(ids, fill_value=0).to_numpy(dtype=np.float64)
        price = pd.to_numeric(pd.Series([item_side.get(i, {}).get("price") for i in ids], dtype=object),
                              errors="coerce").to_numpy(dtype=np.float64)
        return cls(ids, side, pop, price if np.isfinite(price).any() else None)

    def side_with_price(self) -> dict[str, list]:
        """The side fields plus ``price`` where known: what the served side channel ranks by."""
        return self.side if self.price is None else self.side | {"price": [None if np.isnan(p) else float(p)
                                                                            for p in self.price]}

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


def case_masks(cases: Cases, cat: Catalogue) -> dict[str, np.ndarray]:
    trained = set(cat.item_ids[cat.trained])
    warm_t = np.array([t in trained for t in cases.target], dtype=bool)
    warm_q = np.array([q in trained for q in cases.query], dtype=bool)
    in_cat = np.array([t in cat.index for t in cases.target], dtype=bool)
    return {"all": np.ones(len(cases), bool), "warm": warm_t, "cold": ~warm_t & in_cat, "cold_query": ~warm_q}


# --------------------------------------------------------------------------- ranking helpers
def pad(primary: Sequence[str], fill: Sequence[str], k: int, exclude: str | None = None) -> list[str]:
    out, seen = [], {exclude}
    for i in list(primary) + list(fill):
        if i not in seen:
            seen.add(i)
            out.append(i)
            if len(out) == k:
                break
    return out


def side_popularity_lists(cat: Catalogue, queries: Iterable[str], k: int = K,
                          weights: dict[str, float] | None = None, pop: np.ndarray | None = None,
                          price_weight: float = 0.0, price_scale: float | None = None) -> dict[str, list[str]]:
    """Items sharing the query's side fields (weighted match, ``weights`` default: category only),
    then training popularity, then id: the served ``side`` channel's :class:`~query.retriever.SideIndex`.
    ``{"category": 1}`` is popularity in the query's category; :data:`SIDE_MATCH_WEIGHTS` is side-field
    match. ``pop`` replaces the training event counts (e.g. recency-weighted). ``price_weight``: price
    proximity as in the served channel (0, the baselines' setting, leaves it out). Queries outside the
    catalogue get nothing."""
    from query.retriever import SideIndex

    index = SideIndex(cat.item_ids, cat.side, cat.pop if pop is None else pop,
                      {"category": 1.0} if weights is None else weights, price_weight=price_weight,
                      price_scale=price_scale)
    return {q: list(index.similar_items(q, k)[0]) if q in index else [] for q in set(queries)}


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
        cols, vals = m.indices[m.indptr[r]:m.indptr[r + 1]], m.data[m.indptr[r]:m.indptr[r + 1]]
        keep = (cols != r) & (vals > 0)
        cols, vals = cols[keep], vals[keep]
        order = np.lexsort((item_ids[cols].astype(str), -vals))[:depth]
        out[str(item_ids[r])] = (item_ids[cols[order]], vals[order].astype(np.float32))
    return out


def topk_lists(tk) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:class:`query.oracle.TopK` as the snapshot's list format."""
    out = {}
    for r, iid in enumerate(tk.item_ids):
        ok = tk.ids[r] >= 0
        if ok.any():
            out[str(iid)] = (np.asarray(tk.item_ids, dtype=object)[tk.ids[r][ok]], tk.scores[r][ok])
    return out


def covisit_lists(trans: dict[str, tuple[np.ndarray, np.ndarray]], queries: Iterable[str], k: int = K,
                  fill: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Directed co-visitation (most frequent next items), then ``fill`` for the rest of the list."""
    return {q: pad(list(trans.get(q, ((), ()))[0]), (fill or {}).get(q, ()), k, exclude=q) for q in set(queries)}


# --------------------------------------------------------------------------- scoring
def score_lists(lists: dict[str, Sequence[str]], cases: Cases, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Per case: hit@k (0/1) and NDCG@k (one relevant item)."""
    hit = np.zeros(len(cases))
    ndcg = np.zeros(len(cases))
    pos_cache: dict[str, dict[str, int]] = {}
    for n, (q, t) in enumerate(zip(cases.query, cases.target)):
        pos = pos_cache.get(q)
        if pos is None:
            pos = pos_cache[q] = {i: p for p, i in enumerate(list(lists.get(q, ()))[:k])}
        p = pos.get(t)
        if p is not None:
            hit[n] = 1.0
            ndcg[n] = 1.0 / np.log2(p + 2)
    return hit, ndcg


def summarize(hit: np.ndarray, ndcg: np.ndarray, masks: dict[str, np.ndarray], k: int = K) -> dict:
    return {name: {f"hr@{k}": float(hit[m].mean()) if m.any() else float("nan"),
                   f"ndcg@{k}": float(ndcg[m].mean()) if m.any() else float("nan"), "cases": int(m.sum())}
            for name, m in masks.items()}


def paired_interval(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, random_seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` over cases and its 95% bootstrap interval (cases resampled)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(random_seed)
    boots = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    return float(d.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


# --------------------------------------------------------------------------- served channels
def build_retriever(train_events: pd.DataFrame, train_sessions: list[dict], cat: Catalogue, cfg,
                    random_seed: int = 0, channels: Sequence[str] = ("swing", "cooc", "trans", "side", "eges", "rank"),
                    progress: bool = False):
    """Every channel from training data only, with the settings of ``cfg`` (a
    :class:`graphrecall.pipeline.PipelineConfig`, as the pipeline builds them), held as the API holds
    them (a SnapshotRetriever over top lists and a Faiss index); returns ``(retriever, seconds per channel)``."""
    from graphrecall.pipeline import eges_settings
    from query.oracle import capped_basis, cooc_sparse, swing_sparse
    from query.retriever import SideIndex, SnapshotRetriever

    seconds, lists, vectors = {}, {}, None
    if "swing" in channels or "cooc" in channels:
        t0 = time.perf_counter()
        basis = capped_basis(zip(train_events["user"], train_events["item"], train_events["ts"]),
                             cfg.max_items_per_user, cfg.max_users_per_item)
        if "swing" in channels:
            lists["swing"] = topk_lists(swing_sparse(basis, alpha=cfg.swing_alpha, k=cfg.top_k))
        if "cooc" in channels:
            lists["cooc"] = topk_lists(cooc_sparse(basis, k=cfg.top_k, iuf=cfg.cooc_iuf))
        seconds["swing+cooc"] = time.perf_counter() - t0
    trans = transition_matrix(train_sessions, cat)
    if "trans" in channels:
        lists["trans"] = matrix_lists(trans, cat.item_ids, TRANS_DEPTH)
    if "eges" in channels:
        t0 = time.perf_counter()
        vectors = eges_vectors(train_sessions, cat, eges_settings(cfg), random_seed, progress, trans)
        seconds["eges"] = time.perf_counter() - t0
    if "rank" in channels:
        from query.ranker import rank_lists

        t0 = time.perf_counter()
        lists["rank"], _ = rank_lists(train_sessions, cat.item_side(), k=cfg.top_k, random_seed=random_seed,
                                      progress=progress, negatives=cfg.rank_negatives,
                                      max_cases=cfg.rank_cases_per_cut,
                                      max_positives=cfg.rank_positives_per_cut)
        seconds["rank"] = time.perf_counter() - t0
    side = SideIndex(cat.item_ids, cat.side_with_price(), cat.pop) if "side" in channels else None
    return SnapshotRetriever(set(cat.item_ids), lists, vectors, side=side), seconds


def eges_vectors(train_sessions: list[dict], cat: Catalogue, settings: dict, random_seed: int = 0,
                 progress: bool = False, trans: sp.csr_matrix | None = None):
    """The eges channel's Faiss index: :func:`embed.train.train_item_vectors` on the training sessions'
    transitions and sequences (``settings``: its keyword arguments), one vector per catalogue item."""
    from embed.index import ItemVectorIndex
    from embed.train import train_item_vectors

    sess = [r[r >= 0] for r in (cat.rows(s["items"]) for s in train_sessions)]
    booked = np.array([cat.index.get(s["booked"], -1) if s["booked"] else -1 for s in train_sessions], np.int64)
    trans = transition_matrix(train_sessions, cat) if trans is None else trans
    res = train_item_vectors(trans, cat.side, sess, booked, random_seed=random_seed, progress=progress, **settings)
    return ItemVectorIndex(cat.item_ids, res.embeddings)


def served_lists(retriever, queries: Iterable[str], channel: str, k: int = K) -> dict[str, list[str]]:
    """What the API returns for each query (``similar_items``), as id lists."""
    from query.retriever import UnknownItem

    out = {}
    for q in set(queries):
        try:
            out[q] = list(retriever.similar_items(q, k=k, channel=channel).ids)
        except UnknownItem:
            out[q] = []
    return out


def blend_grid_lists(retriever, queries: Iterable[str], configs: Sequence, k: int = K) -> list[dict[str, list[str]]]:
    """``served_lists(channel="blend")`` for many blend configs at once: each channel is read once per
    query at the served depth, and every score-fusion config is one matrix product (the same sums and
    tie order as :func:`query.retriever.blend`; checked in the tests)."""
    from query.retriever import BASE_CHANNELS, BLEND_DEPTH, RRF_K

    W = np.array([[c.weight.get(ch, 0.0) for ch in BASE_CHANNELS] for c in configs])
    rrf = np.array([c.method == "rrf" for c in configs])
    new_w = np.array([c.new_items for c in configs])
    outs: list[dict[str, list[str]]] = [{} for _ in configs]
    depth = max(BLEND_DEPTH, k)
    for q in set(queries):
        per = [retriever._channel(q, depth, ch) if retriever.has_item(q) else None for ch in BASE_CHANNELS]
        ids = [np.asarray(nb.ids, dtype=object) for nb in per if nb is not None and len(nb)]
        if not ids:
            for o in outs:
                o[q] = []
            continue
        cand = np.unique(np.concatenate(ids).astype(str))
        where = {c: n for n, c in enumerate(cand)}
        S = np.zeros((len(BASE_CHANNELS), len(cand)))  # score fusion contributions at weight 1
        R = np.zeros((len(BASE_CHANNELS), len(cand)))  # rank fusion contributions at weight 1
        in_s = np.zeros((len(BASE_CHANNELS), len(cand)))  # listed by the channel (score fusion: with top > 0)
        in_r = np.zeros((len(BASE_CHANNELS), len(cand)))
        for c, nb in enumerate(per):
            if nb is None or not len(nb):
                continue
            cols = np.array([where[str(i)] for i in nb.ids])
            top = float(nb.scores[0])
            if top > 0:
                S[c, cols] = np.maximum(np.asarray(nb.scores, np.float64), 0.0) / top
                in_s[c, cols] = 1.0
            R[c, cols] = 1.0 / (RRF_K + np.arange(1, len(nb) + 1))
            in_r[c, cols] = 1.0
        total = np.where(rrf[:, None], W @ R, W @ S)
        total = total * np.where(retriever.is_new(cand)[None, :], new_w[:, None], 1.0)
        # blend() keeps an item only if a channel with weight > 0 listed it
        listed = np.where(rrf[:, None], (W > 0) @ in_r, (W > 0) @ in_s) > 0
        for n, o in enumerate(outs):
            sc = np.where(listed[n], total[n], -np.inf)
            order = np.lexsort((cand, -sc))
            order = order[np.isfinite(sc[order])][:k]
            o[q] = list(cand[order])
    return outs


def blend_grid() -> list:
    """The blend configs searched on validation (by the bench and ``graphrecall tune``): score fusion over
    trans {0,1,2,8}, side {0,1}, eges {0,.25,.5,1}, cooc {0,.5,1}, swing {0,.5}; then rank 1 with trans
    {0,1}, side {0,.5}, eges {0,.25,.5}; each with the weight of items without events (``new``) at 1, 0.7
    and 0.4; plus equal-weight RRF."""
    from query.retriever import BASE_CHANNELS, BlendConfig

    grid = [BlendConfig.of("score", new=new, **{c: w for c, w in zip(("trans", "side", "eges", "cooc", "swing"), ws) if w})
            for ws in itertools.product((0, 1, 2, 8), (0, 1), (0, 0.25, 0.5, 1), (0, 0.5, 1), (0, 0.5)) if any(ws)
            for new in (1.0, 0.7, 0.4)]
    grid += [BlendConfig.of("score", new=new, rank=1, **{c: w for c, w in zip(("trans", "side", "eges"), ws) if w})
             for ws in itertools.product((0, 1), (0, 0.5), (0, 0.25, 0.5)) for new in (1.0, 0.7, 0.4)]
    return grid + [BlendConfig.of("rrf", **{c: 1.0 for c in BASE_CHANNELS})]
