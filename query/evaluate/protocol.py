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
(:func:`build_retriever`, a :class:`~graphrecall.query.serve.snapshot.SnapshotRetriever` over arrays, the
same object the API serves) produce ``{query: [item ids]}`` lists that :func:`score_lists`
turns into per-case hits.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...ingest.sessions import DEFAULT_SESSION_GAP, session_ids, session_rows
from ..channels import BASE_CHANNELS, BLEND_DEPTH, REGISTRY, Parts, Training
from ..channels.side import SIDE_MATCH_WEIGHTS, SideIndex
from ..data import QUANTILE, Cases, Catalogue, cutoff_time
from ..serve.blend import BlendConfig, blend_many
from ..serve.retriever import UnknownItem
from ..serve.snapshot import SnapshotRetriever

__all__ = [
    "K",
    "SIDE_MATCH_WEIGHTS",
    "TemporalSplit",
    "build_retriever",
    "blend_grid",
    "blend_grid_lists",
    "case_masks",
    "covisit_lists",
    "paired_interval",
    "pad",
    "score_lists",
    "served_lists",
    "side_popularity_lists",
    "summarize",
    "temporal_split",
]

logger = logging.getLogger(__name__)

K = 20


# --------------------------------------------------------------------------- split
@dataclass
class TemporalSplit:
    cutoff: int  # T: training events are strictly before it
    train: pd.DataFrame  # events (user, item, type, ts, line) before T
    test_sessions: list[dict]  # session rows (ingest.sessions.session_rows) starting at or after T
    dropped_events: int  # late events of sessions that straddle T


def temporal_split(
    events: pd.DataFrame, quantile: float = QUANTILE, gap_seconds: int = DEFAULT_SESSION_GAP, cutoff: int | None = None
) -> TemporalSplit:
    """Split an event frame (``ingest.sessions.events_frame``) at T = the ``quantile`` of its times."""
    df = events.sort_values(["user", "ts", "line"], kind="stable").reset_index(drop=True)
    ts = df["ts"].to_numpy()
    t = cutoff_time(ts, quantile) if cutoff is None else int(cutoff)
    sid = session_ids(df["user"].to_numpy(), ts, gap_seconds)
    first = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]]) if len(sid) else np.zeros(0, np.int64)
    start = ts[first][sid] if len(sid) else ts
    train_mask, test_mask = ts < t, start >= t
    test = df[test_mask].reset_index(drop=True)
    return TemporalSplit(
        t, df[train_mask].reset_index(drop=True), session_rows(test, gap_seconds), int((~train_mask & ~test_mask).sum())
    )


# --------------------------------------------------------------------------- catalogue


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


def side_popularity_lists(
    cat: Catalogue,
    queries: Iterable[str],
    k: int = K,
    weights: dict[str, float] | None = None,
    pop: np.ndarray | None = None,
    price_weight: float = 0.0,
    price_scale: float | None = None,
) -> dict[str, list[str]]:
    """Items sharing the query's side fields (weighted match, ``weights`` default: category only),
    then training popularity, then id: the served ``side`` channel's :class:`~graphrecall.query.channels.side.SideIndex`.
    ``{"category": 1}`` is popularity in the query's category; :data:`SIDE_MATCH_WEIGHTS` is side-field
    match. ``pop`` replaces the training event counts (e.g. recency-weighted). ``price_weight``: price
    proximity as in the served channel (0, the baselines' setting, leaves it out). Queries outside the
    catalogue get nothing."""
    index = SideIndex(
        cat.item_ids,
        cat.side,
        cat.pop if pop is None else pop,
        {"category": 1.0} if weights is None else weights,
        price_weight=price_weight,
        price_scale=price_scale,
    )
    return {q: list(index.similar_items(q, k)[0]) if q in index else [] for q in set(queries)}


def covisit_lists(
    trans: dict[str, tuple[np.ndarray, np.ndarray]],
    queries: Iterable[str],
    k: int = K,
    fill: dict[str, list[str]] | None = None,
) -> dict[str, list[str]]:
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
    return {
        name: {
            f"hr@{k}": float(hit[m].mean()) if m.any() else float("nan"),
            f"ndcg@{k}": float(ndcg[m].mean()) if m.any() else float("nan"),
            "cases": int(m.sum()),
        }
        for name, m in masks.items()
    }


def paired_interval(
    a: np.ndarray, b: np.ndarray, n_boot: int = 2000, random_seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over cases and its 95% bootstrap interval (cases resampled)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(random_seed)
    boots = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    return float(d.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


# --------------------------------------------------------------------------- served channels
def build_retriever(
    train_events: pd.DataFrame,
    train_sessions: list[dict],
    cat: Catalogue,
    cfg,
    random_seed: int = 0,
    channels: Sequence[str] = BASE_CHANNELS,
    progress: bool = False,
):
    """Every channel in ``channels`` from training data only (each registered channel's
    :meth:`~graphrecall.query.channels.Channel.build`), with the settings of ``cfg`` (a
    :class:`~graphrecall.query.config.PipelineConfig`, as the pipeline builds them), held as the API holds them
    (a SnapshotRetriever over top lists and a Faiss index); returns ``(retriever, seconds per channel)``."""
    training = Training(train_events, list(train_sessions), cat, cfg, random_seed, progress)
    seconds, parts = {}, Parts()
    for name in channels:
        t0 = time.perf_counter()
        parts.add(REGISTRY[name].build(training))
        seconds[name] = time.perf_counter() - t0
    return SnapshotRetriever(set(cat.item_ids), parts.lists, parts.vectors, side=parts.side, users=parts.users), seconds


def served_lists(retriever, queries: Iterable[str], channel: str, k: int = K) -> dict[str, list[str]]:
    """What the API returns for each query (``similar_items``), as id lists."""
    out = {}
    for q in set(queries):
        try:
            out[q] = list(retriever.similar_items(q, k=k, channel=channel).ids)
        except UnknownItem:
            out[q] = []
    return out


def blend_grid_lists(
    retriever, queries: Iterable[str], configs: Sequence[BlendConfig], k: int = K
) -> list[dict[str, list[str]]]:
    """``served_lists(channel="blend")`` for many blend configs at once: each channel is read once per query at
    the served depth, and :func:`~graphrecall.query.serve.blend.blend_many` (the served blend) fuses them for
    every config."""
    outs: list[dict[str, list[str]]] = [{} for _ in configs]
    depth = max(BLEND_DEPTH, k)
    for q in set(queries):
        if not retriever.has_item(q):
            for o in outs:
                o[q] = []
            continue
        for o, nb in zip(outs, blend_many(retriever.read_channels(q, depth), configs, k, retriever.is_new)):
            o[q] = list(nb.ids)
    return outs


def blend_grid() -> list:
    """The blend configs searched on validation (by the bench and ``graphrecall tune``): score fusion over
    trans {0,1,2,8}, side {0,1}, eges {0,.25,.5,1}, cooc {0,.5,1}, swing {0,.5}; then rank 1 with trans
    {0,1}, side {0,.5}, eges {0,.25,.5}; each with the weight of items without events (``new``) at 1, 0.7
    and 0.4; plus equal-weight RRF."""
    grid = [
        BlendConfig.of("score", new=new, **{c: w for c, w in zip(("trans", "side", "eges", "cooc", "swing"), ws) if w})
        for ws in itertools.product((0, 1, 2, 8), (0, 1), (0, 0.25, 0.5, 1), (0, 0.5, 1), (0, 0.5))
        if any(ws)
        for new in (1.0, 0.7, 0.4)
    ]
    grid += [
        BlendConfig.of("score", new=new, rank=1, **{c: w for c, w in zip(("trans", "side", "eges"), ws) if w})
        for ws in itertools.product((0, 1), (0, 0.5), (0, 0.25, 0.5))
        for new in (1.0, 0.7, 0.4)
    ]
    return grid + [BlendConfig.of("rrf", **{c: 1.0 for c in BASE_CHANNELS})]


REFINE_CHANNELS = ("seqrules", "gnn")  # added to stage one's choice in stage two
REFINE_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0)


def blend_refinements(
    best: BlendConfig, channels: Sequence[str] = REFINE_CHANNELS, weights: Sequence[float] = REFINE_WEIGHTS
) -> list[BlendConfig]:
    """Stage two of the blend search: stage one's choice (``best``, a score blend) with each of ``channels`` added
    at each of ``weights``, alone and together; where ``best`` has ``trans``, also with ``seqrules`` in its place
    (sequential rules generalise the adjacent-pair transitions). Empty for an rrf blend."""
    if best.method != "score":
        return []
    base, out = best.weight, []
    for combo in itertools.product((0.0, *weights), repeat=len(channels)):
        if not any(combo):
            continue
        w = {**base, **{c: x for c, x in zip(channels, combo) if x}}
        out.append(BlendConfig.of("score", new=best.new_items, **w))
        if "trans" in base and w.get("seqrules"):
            out.append(BlendConfig.of("score", new=best.new_items, **{c: x for c, x in w.items() if c != "trans"}))
    return out


def search_blend(retriever, queries: Iterable[str], score, k: int = K) -> list[tuple[BlendConfig, float, object]]:
    """The blend search of ``graphrecall tune`` and the bench: every config of :func:`blend_grid` (stage one),
    then :func:`blend_refinements` of stage one's best (stage two). ``score(lists)`` returns ``(value, detail)``
    for one config's ``{query: [ids]}``; returns ``(config, value, detail)`` for every config searched, in search
    order (on a tie, the earlier, simpler config is the one to take)."""
    queries = list(dict.fromkeys(queries))
    grid = blend_grid()
    out = [(c, *score(lists)) for c, lists in zip(grid, blend_grid_lists(retriever, queries, grid, k))]
    best = max(range(len(out)), key=lambda n: (out[n][1], -n))
    stage2 = [c for c in blend_refinements(out[best][0]) if c not in set(grid)]
    if stage2:
        out += [(c, *score(lists)) for c, lists in zip(stage2, blend_grid_lists(retriever, queries, stage2, k))]
    logger.info(
        "blend search: %d configs in stage one, %d in stage two; best %s", len(grid), len(stage2), best_of(out)[0]
    )
    return out


def best_of(scored: list[tuple[BlendConfig, float, object]]) -> tuple[BlendConfig, float, object]:
    """The highest value of :func:`search_blend`'s results, the earliest on a tie."""
    return scored[max(range(len(scored)), key=lambda n: (scored[n][1], -n))]
