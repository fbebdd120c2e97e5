"""The ``rank`` channel: a learned ranker over the cheap signals, trained on the graph's own later sessions.

For a query item q, candidates come from directed co-visitation in both directions (the ``TRANSITION``
counts), co-visitation within 3 steps, user co-occurrence, the side channel (:class:`~.side.SideIndex`:
category, brand, price bucket, price proximity), the top items of the categories that most often follow q's
category, and global popularity. Each (q, candidate) pair gets :data:`FEATURES` and gradient-boosted trees
trained for the order of each query's candidates (LightGBM's LambdaMART, ``objective="lambdarank"``, which
optimises NDCG over each case's candidate list) score it; the top ``k`` of every item are the channel's
lists. A list's scores are ``exp(s - s_top)``: 1 for its first item, and a candidate scored one unit lower
gets 1/e, so they stay positive for the blend, whose ``new=`` weight then acts as a fixed penalty.

Labels never come from the data the features see. :func:`fit_ranker` cuts the training sessions at several
time quantiles (:data:`CUTOFF_QUANTILES`); at each cut, features come from the sessions that end before it and
labels from the consecutive pairs (a -> b) of the sessions that start after it, so the model learns which
candidate a shopper opens *next*, on traffic it did not see. Only sessions are read (user, start time, items),
so the pipeline builds the same features from the graph's ``Session`` nodes that the bench builds from a log.

On the next-item bench's validation split (``python bench/next_item_ranker.py``) it raised HR@20 over all
cases above every baseline and every other served channel on REES46 and Taobao; on warm targets it does
not beat the best baseline by the issue's 10% (README, "Next item").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...common.progress import progress_bar
from ..config import MAX_CASES_PER_CUT, MAX_POSITIVE_CASES_PER_CUT, NEGATIVES
from ..data import SEQ_WINDOW, Cases, Catalogue, next_item_cases, split_stored_sessions, transition_matrix
from .base import Parts, StoredListChannel, Training, register
from .side import SideIndex

logger = logging.getLogger(__name__)

CUTOFF_QUANTILES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
# user co-occurrence leaves out users with more distinct items than this (crawlers), whose pairs would
# grow with the square of their items; Swing caps the same way (max_items_per_user)
UCOOC_MAX_ITEMS_PER_USER = 500
WINDOW = 3  # co-visitation window (steps, weight 1/distance, both directions)
SEQ_CANDIDATES = 20  # candidates from the query's sequential rules (the strongest)
RECENCY_HALF_LIFE = 1800.0  # seconds; e-folding time of the recency-weighted popularity
SIDE_DEPTH = 100
UCOOC_DEPTH = 50
NEXT_CATEGORIES = 3
CATEGORY_TOP = 10
GLOBAL_TOP = 30
# LightGBM LGBMRanker settings. Chosen on the next-item bench's validation split (bench/next_item_ranker.py):
# over 3 seeds, lambdarank (with the scale-free features) raised NDCG@20 on REES46 from 0.294 to 0.313 and warm
# HR@20 from 0.546 to 0.567 against a pointwise HistGradientBoostingClassifier (100 trees of 15 leaves; Taobao:
# NDCG@20 0.064 to 0.066); 400 trees or 31 leaves did worse.
GBDT = dict(n_estimators=200, learning_rate=0.05, num_leaves=15, min_child_samples=50, lambdarank_truncation_level=20)
SIDE_FIELDS = ("category", "brand", "price_bucket", "shop")
FEATURES = (
    "next_count",
    "next_share",
    "prev_count",
    "window",
    "users_both",
    "users_cosine",
    *(f"same_{f}" for f in SIDE_FIELDS),
    "price_proximity",
    "log_pop",
    "log_recent",
    "log_users",
    "pop_in_category",
    "new",
    "log_query_pop",
    "log_query_out",
    "category_next",
    # scale-free popularity: training cuts see shorter logs than serving, so absolute counts shift
    "log_rank_in_category",
    "log_rank_global",
    "log_pop_share",
    "log_recent_share",
    "log_query_pop_share",
    # sequential rules (the seqrules channel's weights: b up to 10 steps after a, 1/steps), and how much of
    # that evidence the query has: lets the trees treat queries with and without co-visitation apart
    "seq_rule",
    "seq_share",
    "log_query_seq_out",
)


def _codes(values) -> np.ndarray:
    codes, _ = pd.factorize(pd.Series(list(values), dtype=object))
    return codes.astype(np.int64)  # -1 where missing


def _row(m: sp.csr_matrix, r: int) -> np.ndarray:
    return m.indices[m.indptr[r] : m.indptr[r + 1]]


class RankFeatures:
    """Candidates and features for one set of training sessions over one catalogue."""

    def __init__(self, sessions: Sequence[dict], cat: Catalogue):
        self.cat = cat
        n = len(cat)
        rows = [r[r >= 0] for r in (cat.rows(s["items"]) for s in sessions)]
        self.trans = transition_matrix(sessions, cat).tocsr()
        self.trans_t = self.trans.T.tocsr()
        self.out_deg = np.asarray(self.trans.sum(axis=1)).ravel()
        self.win = window_covisit(rows, n)
        self.seq = window_covisit(rows, n, window=SEQ_WINDOW, reverse=0.0)  # directed: the seqrules channel's
        self.seq.eliminate_zeros()
        self.seq_out = np.asarray(self.seq.sum(axis=1)).ravel()
        flat = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        lens = np.array([len(r) for r in rows], dtype=np.int64)
        users = np.repeat(_codes([s["user"] for s in sessions]), lens) if len(flat) else np.zeros(0, np.int64)
        ui = sp.csr_matrix((np.ones(len(flat)), (users, flat)), shape=(int(users.max(initial=-1)) + 1, n))
        ui.sum_duplicates()
        ui.data[:] = 1.0
        self.users = np.asarray(ui.sum(axis=0)).ravel()
        heavy = np.diff(ui.indptr) > UCOOC_MAX_ITEMS_PER_USER
        if heavy.any():
            ui = sp.diags((~heavy).astype(np.float64)) @ ui
            ui.eliminate_zeros()
        self.ucooc = (ui.T @ ui).tocsr()
        self.ucooc.setdiag(0)
        self.ucooc.eliminate_zeros()
        # events per item where sessions carry run lengths (``counts``), else session occurrences
        weights = (
            np.concatenate(
                [
                    np.asarray(s.get("counts") or np.ones(len(s["items"])), np.float64)[cat.rows(s["items"]) >= 0]
                    for s in sessions
                ]
            )
            if len(flat)
            else None
        )
        self.pop = np.bincount(flat, weights=weights, minlength=n).astype(np.float64)
        starts = np.repeat(np.array([s["start_ts"] for s in sessions], dtype=np.float64), lens)
        t_end = starts.max(initial=0.0) + 1.0
        self.recent = np.bincount(flat, weights=np.exp(-(t_end - starts) / RECENCY_HALF_LIFE), minlength=n)
        self.field = {f: _codes(cat.side[f]) if f in cat.side else np.full(n, -1, np.int64) for f in SIDE_FIELDS}
        c = self.field["category"]
        nc = int(c.max(initial=-1)) + 2
        self.catc = np.where(c < 0, nc - 1, c)  # items without a category share the last code
        self.cat_max = np.zeros(nc)
        np.maximum.at(self.cat_max, self.catc, self.pop)
        onehot = sp.csr_matrix((np.ones(n), (np.arange(n), self.catc)), shape=(n, nc))
        ct = (onehot.T @ self.trans @ onehot).toarray() + 1e-3
        self.cat_next = ct / ct.sum(axis=1, keepdims=True)  # P(category of the next item | category)
        self.lp = np.log1p(cat.price) if cat.price is not None else np.full(n, np.nan)
        self.side = SideIndex(cat.item_ids, cat.side_with_price(), self.pop)
        self.top_global = np.argsort(-self.pop, kind="stable")[:GLOBAL_TOP]
        order = np.lexsort((-self.pop, self.catc))
        lo = np.searchsorted(self.catc[order], np.arange(nc))
        hi = np.searchsorted(self.catc[order], np.arange(nc), side="right")
        self.cat_top = [order[a : min(b, a + CATEGORY_TOP)] for a, b in zip(lo, hi)]
        self.next_cats = np.argsort(-self.cat_next, axis=1, kind="stable")[:, :NEXT_CATEGORIES]
        self.rank_in_cat = np.empty(n)
        self.rank_in_cat[order] = np.arange(n) - lo[self.catc[order]]  # 0 = the category's most popular
        self.rank_global = np.empty(n)
        self.rank_global[np.argsort(-self.pop, kind="stable")] = np.arange(n)
        self.pop_share = self.pop / max(self.pop.sum(), 1.0)
        self.recent_share = self.recent / max(self.recent.sum(), 1e-12)

    def candidates(self, q: int) -> np.ndarray:
        lo, hi = self.seq.indptr[q], self.seq.indptr[q + 1]
        seq = self.seq.indices[lo:hi][np.argsort(-self.seq.data[lo:hi], kind="stable")[:SEQ_CANDIDATES]]
        parts = [_row(self.trans, q), _row(self.trans_t, q), _row(self.win, q), seq, self.top_global]
        uc = self.ucooc
        lo, hi = uc.indptr[q], uc.indptr[q + 1]
        if hi > lo:
            parts.append(uc.indices[lo:hi][np.argsort(-uc.data[lo:hi], kind="stable")[:UCOOC_DEPTH]])
        ids, _ = self.side.similar_items(self.cat.item_ids[q], SIDE_DEPTH)
        parts.append(self.cat.rows(ids))
        parts += [self.cat_top[c] for c in self.next_cats[self.catc[q]]]
        c = np.unique(np.concatenate(parts).astype(np.int64))
        return c[(c != q) & (c >= 0)]

    def features(self, q: np.ndarray, c: np.ndarray) -> np.ndarray:
        """One row of :data:`FEATURES` per pair (q[i], c[i]) of catalogue rows."""

        def pair(m):
            return np.asarray(m[q, c]).ravel() if len(q) else np.zeros(0)

        t_fw, t_bw, w, uc = pair(self.trans), pair(self.trans_t), pair(self.win), pair(self.ucooc)
        cols = [
            t_fw,
            t_fw / np.maximum(self.out_deg[q], 1),
            t_bw,
            w,
            uc,
            uc / np.sqrt(np.maximum(self.users[q], 1) * np.maximum(self.users[c], 1)),
        ]
        cols += [((v[q] == v[c]) & (v[q] >= 0)).astype(np.float64) for v in self.field.values()]
        with np.errstate(invalid="ignore"):
            prox = np.exp(-np.abs(self.lp[q] - self.lp[c]))
        cols += [
            np.nan_to_num(prox, nan=-1.0),
            np.log1p(self.pop[c]),
            np.log1p(self.recent[c]),
            np.log1p(self.users[c]),
            self.pop[c] / np.maximum(self.cat_max[self.catc[c]], 1),
            (self.pop[c] == 0).astype(np.float64),
            np.log1p(self.pop[q]),
            np.log1p(self.out_deg[q]),
            self.cat_next[self.catc[q], self.catc[c]],
            np.log1p(self.rank_in_cat[c]),
            np.log1p(self.rank_global[c]),
            np.log(self.pop_share[c] + 1e-7),
            np.log(self.recent_share[c] + 1e-9),
            np.log(self.pop_share[q] + 1e-7),
        ]
        sr = pair(self.seq)
        cols += [sr, sr / np.maximum(self.seq_out[q], 1e-9), np.log1p(self.seq_out[q])]
        return np.column_stack(cols)

    def pairs(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every (query, candidate) row pair for catalogue rows ``queries``."""
        cand = [self.candidates(int(q)) for q in queries]
        return (
            np.repeat(np.asarray(queries, np.int64), [len(c) for c in cand]),
            np.concatenate(cand) if cand else np.zeros(0, np.int64),
        )


@dataclass
class FitReport:
    cutoffs: int
    cases: int
    rows: int
    positives: int
    candidate_recall: float  # share of training cases whose target was among the candidates
    seconds: float
    written: int = 0  # RANKED relationships written (the pipeline fills it in)


class Ranker:
    """A fitted ranker; :meth:`top_lists` scores candidates with features from any set of sessions."""

    def __init__(self, model, report: FitReport):
        self.model = model
        self.report = report

    def scores(self, feats: RankFeatures, q: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The model's raw score of each pair (q[i], c[i]): comparable within one query only."""
        return self.model.predict(feats.features(q, c)) if len(q) else np.zeros(0)

    def top_lists(
        self,
        feats: RankFeatures,
        items: Sequence[str] | None = None,
        k: int = 50,
        chunk: int = 2000,
        progress: bool = False,
        new_weight: float = 1.0,
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The top ``k`` candidates of each item (default: every catalogue item), by score, ties by id:
        ``{item: (ids, scores)}`` as the snapshot holds lists, with scores ``exp(s - s_top)`` (1 for the
        best-scored candidate). ``new_weight`` then scales the scores of items without events (as the blend's
        ``new=`` does)."""
        cat = feats.cat
        rows = np.arange(len(cat)) if items is None else cat.rows(items)
        rows = rows[rows >= 0]
        out = {}
        t0 = time.perf_counter()
        bar = progress_bar(total=len(rows), unit="items", desc="rank lists", enabled=progress)
        for lo in range(0, len(rows), chunk):
            q, c = feats.pairs(rows[lo : lo + chunk])  # each query's pairs are contiguous
            s = self.scores(feats, q, c)
            if len(q):
                first = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
                s = np.exp(s - np.repeat(np.maximum.reduceat(s, first), np.diff(np.r_[first, len(q)])))
            if new_weight != 1.0:
                s = s * np.where(feats.pop[c] == 0, new_weight, 1.0)
            order = np.lexsort((cat.item_ids[c].astype(str), -s, q))
            q, c, s = q[order], c[order], s[order]
            bounds = np.flatnonzero(np.r_[True, q[1:] != q[:-1], True]) if len(q) else np.zeros(1, np.int64)
            for a, b in zip(bounds[:-1], bounds[1:]):
                b = min(b, a + k)
                out[str(cat.item_ids[q[a]])] = (cat.item_ids[c[a:b]], s[a:b].astype(np.float32))
            bar.update(len(rows[lo : lo + chunk]))
        bar.close()
        logger.info(
            "rank lists: %d items in %.1fs (%.0f items/s)",
            len(rows),
            time.perf_counter() - t0,
            len(rows) / max(time.perf_counter() - t0, 1e-9),
        )
        return out


def training_rows(
    sessions: Sequence[dict],
    item_side: dict[str, dict],
    *,
    quantiles: Sequence[float] = CUTOFF_QUANTILES,
    negatives: int = NEGATIVES,
    max_cases: int = MAX_CASES_PER_CUT,
    max_positives: int = MAX_POSITIVE_CASES_PER_CUT,
    random_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, FitReport]:
    """The ranker's training matrix: at each time quantile, features from the sessions that end before it
    (:func:`~graphrecall.query.data.split_stored_sessions`) and labels from the consecutive pairs of the sessions
    that start after it; ``negatives`` candidates sampled per case, at most ``max_cases`` cases per cut
    (a uniform sample). Cases whose target is not among the candidates get no rows (they carry no
    gradient); of the others, at most ``max_positives`` per cut are kept (a uniform sample where there are
    more, so the rows stay bounded; below it, the rows do not depend on it). Returns ``(X, y, group, report)``,
    where ``group`` numbers the cases (one query and its candidates at one cut)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(random_seed)
    X, Y, G, n_cases, found = [], [], [], 0, 0
    for n_cut, qt in enumerate(quantiles):
        _, train, held = split_stored_sessions(sessions, qt)
        cases = next_item_cases(held)
        if not train or not len(cases):
            continue
        if len(cases) > max_cases:
            keep = np.sort(rng.choice(len(cases), max_cases, replace=False))
            cases = Cases(cases.query[keep], cases.target[keep])
        cat = Catalogue.build(item_side, (i for s in train for i in s["items"]))
        feats = RankFeatures(train, cat)
        qs, ts = cat.rows(cases.query), cat.rows(cases.target)
        Q, C, L = [], [], []
        cache: dict[int, np.ndarray] = {}

        def cands(q: int) -> np.ndarray:
            if q not in cache:
                cache[q] = feats.candidates(q)
            return cache[q]

        hits = np.array([q >= 0 and bool((cands(int(q)) == t).any()) for q, t in zip(qs, ts)], dtype=bool)
        found += int(hits.sum())
        if hits.sum() > max_positives:
            # a uniform sample of the cases with rows (its own stream), so the mix of targets (new or not)
            # stays the log's: keeping every new-target case instead raised cold HR@20 on a generated log
            # from 0.30 to 0.94 and cut warm HR@20 from 0.925 to 0.910, a different model, not a cheaper one
            keep = np.sort(
                np.random.default_rng([random_seed, n_cut]).choice(np.flatnonzero(hits), max_positives, replace=False)
            )
            qs, ts = qs[keep], ts[keep]
        for q, t in zip(qs, ts):
            if q < 0:
                continue
            cand = cands(int(q))
            pos = cand == t
            neg = cand[~pos]
            if len(neg) > negatives:
                neg = rng.choice(neg, negatives, replace=False)
            # no positive, no gradient for LambdaMART: no rows (the negatives were drawn first all the same,
            # so the random stream, and the fitted model, do not depend on this shortcut)
            if not pos.any():
                continue
            Q.append(np.full(int(pos.sum()) + len(neg), q))
            C.append(np.concatenate([cand[pos], neg]))
            L.append(np.r_[np.ones(int(pos.sum())), np.zeros(len(neg))])
            G.append(np.full(len(L[-1]), len(G)))
        n_cases += len(cases)
        if Q:
            X.append(feats.features(np.concatenate(Q), np.concatenate(C)))
            Y.append(np.concatenate(L))
        logger.info(
            "rank training cut at quantile %.2f: %d sessions before, %d cases after", qt, len(train), len(cases)
        )
    y = np.concatenate(Y) if Y else np.zeros(0)
    if y.sum() == 0 or y.sum() == len(y):
        raise ValueError(
            "the rank channel has no training cases: no later session repeats an earlier item pair's "
            "candidates. Ingest a longer log (it needs sessions with two or more items on both sides of "
            "each time cut), or serve without it (--no-rank)."
        )
    report = FitReport(len(quantiles), n_cases, len(y), int(y.sum()), found / max(n_cases, 1), time.perf_counter() - t0)
    return np.vstack(X), y, np.concatenate(G), report


def fit_ranker(
    sessions: Sequence[dict],
    item_side: dict[str, dict],
    *,
    quantiles: Sequence[float] = CUTOFF_QUANTILES,
    negatives: int = NEGATIVES,
    max_cases: int = MAX_CASES_PER_CUT,
    max_positives: int = MAX_POSITIVE_CASES_PER_CUT,
    random_seed: int = 0,
    threads: int = 1,
    **gbdt,
) -> Ranker:
    """Train on the sessions' own future (:func:`training_rows`): LightGBM's lambdarank over each case's
    candidates; ``gbdt`` overrides :data:`GBDT`."""
    import lightgbm

    t0 = time.perf_counter()
    X, y, group, report = training_rows(
        sessions,
        item_side,
        quantiles=quantiles,
        negatives=negatives,
        max_cases=max_cases,
        max_positives=max_positives,
        random_seed=random_seed,
    )
    model = lightgbm.LGBMRanker(
        objective="lambdarank", random_state=random_seed, n_jobs=threads, verbose=-1, **{**GBDT, **gbdt}
    )
    model.fit(X, y, group=np.bincount(group))  # every case has its positive (training_rows)
    report.seconds = time.perf_counter() - t0
    logger.info(
        "rank model: %d cases at %d cuts, %d rows (%d positives, candidate recall %.3f) in %.1fs",
        report.cases,
        report.cutoffs,
        report.rows,
        report.positives,
        report.candidate_recall,
        report.seconds,
    )
    return Ranker(model, report)


def rank_lists(
    sessions: Sequence[dict],
    item_side: dict[str, dict],
    *,
    k: int = 50,
    items: Sequence[str] | None = None,
    random_seed: int = 0,
    threads: int = 1,
    progress: bool = False,
    **fit_options,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], FitReport]:
    """Fit on ``sessions`` (:func:`fit_ranker`) and list the top ``k`` of every item with features from all of
    them: the ``rank`` channel's lists and the fit's report."""
    from threadpoolctl import threadpool_limits

    ranker = fit_ranker(sessions, item_side, random_seed=random_seed, threads=threads, **fit_options)
    cat = Catalogue.build(item_side, (i for s in sessions for i in s["items"]))
    with threadpool_limits(threads):
        return ranker.top_lists(RankFeatures(sessions, cat), items, k=k, progress=progress), ranker.report


def window_covisit(rows: Sequence[np.ndarray], n: int, window: int = WINDOW, reverse: float = 1.0) -> sp.csr_matrix:
    """Co-visitation within ``window`` steps of each session (catalogue rows, in order): a pair d steps apart
    adds 1/d from the earlier item to the later one and ``reverse``/d the other way."""
    src, dst, wt = [], [], []
    for r in rows:
        for d in range(1, window + 1):
            if len(r) <= d:
                break
            a, b = r[:-d], r[d:]
            ok = a != b
            src += [a[ok], b[ok]]
            dst += [b[ok], a[ok]]
            wt += [np.full(int(ok.sum()), 1.0 / d), np.full(int(ok.sum()), reverse / d)]
    if not src:
        return sp.csr_matrix((n, n))
    m = sp.csr_matrix((np.concatenate(wt), (np.concatenate(src), np.concatenate(dst))), shape=(n, n))
    m.sum_duplicates()
    return m


class Rank(StoredListChannel):
    """The learned ranker's lists, stored as ``RANKED`` edges."""

    name = "rank"
    relationship = "RANKED"

    def build(self, training: Training) -> Parts:
        cfg = training.settings
        lists, _ = rank_lists(
            training.sessions,
            training.catalogue.item_side(),
            k=cfg.top_k,
            random_seed=training.random_seed,
            progress=training.progress,
            negatives=cfg.rank.negatives,
            max_cases=cfg.rank.cases_per_cut,
            max_positives=cfg.rank.positives_per_cut,
        )
        return Parts(lists={self.name: lists})


register(Rank())
