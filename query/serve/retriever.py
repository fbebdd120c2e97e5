"""The one retriever interface the API depends on: :class:`ItemRetriever` (``similar_items`` and ``recall``),
its filters and results, and :class:`UserHistory` (where a user's recent items come from).

Backends: :class:`~.snapshot.SnapshotRetriever` (in memory, saved and memory-mapped),
:class:`~.neo4j.Neo4jRetriever` (live Cypher per call) and :class:`~.resilient.ResilientRetriever` (a
snapshot that survives Neo4j outages and reloads on data changes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...graph_schema.schema import INFO_FIELDS
from ..channels import BASE_CHANNELS, BLEND_DEPTH, REGISTRY, Neighbours
from .blend import DEFAULT_BLEND, BlendConfig, blend

CHANNELS = (*BASE_CHANNELS, "blend")  # the registered channels (graphrecall.query.channels) and their blend
SAME_FIELDS = ("category", "market", "brand")
COLD_MODES = ("include", "exclude", "only")
FILTER_DEPTH = 1000  # candidates read per channel when filters apply, so that k survive them when enough exist
RECALL_DEPTH = 50  # neighbours each history item contributes to a recall (row-normalised, summed)

__all__ = [
    "CHANNELS",
    "COLD_MODES",
    "FILTER_DEPTH",
    "INFO_FIELDS",
    "NO_FILTERS",
    "RECALL_DEPTH",
    "SAME_FIELDS",
    "Filters",
    "ItemRetriever",
    "Neighbours",
    "Recalled",
    "UnknownItem",
    "UserHistory",
    "check_channel",
    "decay_weights",
]


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


def check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; choose one of {', '.join(CHANNELS)}")


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
    via: str = "history lists"  # or "user vector": the channel's own vector for the user (two-tower recall)

    def __len__(self) -> int:
        return len(self.ids)


class ItemRetriever(ABC):
    """Item-to-item recall. Raises :class:`UnknownItem` for items it has never seen."""

    blend_config: BlendConfig = DEFAULT_BLEND
    blend_source: str = "built-in default"

    @abstractmethod
    def has_item(self, item_id: str) -> bool: ...

    def has_items(self, ids: list[str]) -> list[bool]:
        """:meth:`has_item` of each id (a backend may answer all at once)."""
        return [self.has_item(i) for i in ids]

    @abstractmethod
    def _channel(self, item_id: str, k: int, channel: str) -> Neighbours: ...

    def read_channels(self, item_id: str, depth: int, channels=BASE_CHANNELS) -> dict[str, Neighbours]:
        """Each channel's unfiltered top ``depth`` for a known ``item_id``: what the blend fuses."""
        return {ch: self._channel(item_id, depth, ch) for ch in channels}

    def similar_items(
        self,
        item_id: str,
        k: int = 10,
        channel: str = "blend",
        filters: Filters = NO_FILTERS,
        view: ItemRetriever | None = None,
    ) -> Neighbours:
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

    def _answer(self, v: ItemRetriever, item_id: str, k: int, channel: str, filters: Filters) -> Neighbours:
        depth = max(FILTER_DEPTH, k) if filters.active else k
        if channel != "blend":
            nb = v._channel(item_id, depth, channel)
        else:
            used = tuple(ch for ch in BASE_CHANNELS if self.blend_config.weight.get(ch, 0.0) > 0)  # others add nothing
            nb = blend(v.read_channels(item_id, max(BLEND_DEPTH, depth), used), depth, self.blend_config, v.is_new)
        if filters.active:
            nb = nb.take(np.flatnonzero(v._keep(item_id, nb.ids, filters)))
        return nb.take(slice(0, k)) if len(nb) > k else nb

    def recall(
        self,
        history,
        k: int = 10,
        channel: str = "blend",
        weights=None,
        filters: Filters = NO_FILTERS,
        depth: int = RECALL_DEPTH,
        view: ItemRetriever | None = None,
    ) -> Recalled:
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
        is_known = dict(zip(first, v.has_items(list(first))))
        known = [h for h, ok in is_known.items() if ok]
        unknown = [h for h, ok in is_known.items() if not ok]
        drop = frozenset(first)
        if filters.active:  # the filter path reads deep lists (FILTER_DEPTH) and drops the history with them
            lists, tops = [], []
            for h in known:
                best = self.similar_items(h, k=1, channel=channel, view=v)
                tops.append(float(best.scores[0]) if len(best) else 0.0)
                lists.append(
                    self.similar_items(
                        h,
                        k=depth,
                        channel=channel,
                        view=v,
                        filters=Filters(filters.exclude | drop, filters.same, filters.cold),
                    )
                )
        else:  # no filters: each list read just deep enough that dropping the history leaves ``depth``
            deep = depth + min(len(drop), FILTER_DEPTH)
            coded = v._coded_lists(self, known, deep, channel, drop)
            if coded is not None:  # the view codes ids itself (a saved snapshot): no ids to factorise
                codes, scores, lengths, tops, in_history, uniq = coded
                w = np.array([first[h] for h in known])
                return _sum_coded(codes, scores, lengths, in_history, uniq, tops, w, depth, k, known, unknown)
            lists = [self.similar_items(h, k=deep, channel=channel, view=v) for h in known]
            tops = [float(nb.scores[0]) if len(nb) else 0.0 for nb in lists]
        return _sum_lists(lists, np.array(tops), np.array([first[h] for h in known]), drop, depth, k, known, unknown)

    def _coded_lists(self, owner: ItemRetriever, known: list, k: int, channel: str, drop: frozenset):
        """For :meth:`recall`: each known item's top ``k`` (``owner.similar_items``) as codes of this view's own,
        ``(codes, scores, lengths, tops, in_history, uniq)`` as :func:`_sum_coded` takes them; None: not coded
        here (the lists are then factorised)."""
        return None

    def recall_user(
        self,
        user_id: str,
        history,
        k: int = 10,
        channel: str = "blend",
        weights=None,
        filters: Filters = NO_FILTERS,
        depth: int = RECALL_DEPTH,
        view: ItemRetriever | None = None,
    ) -> Recalled:
        """Candidates for a known user whose recent items are ``history``: from the user's own vector when
        ``channel`` has one for them (``gnn``: two-tower recall, ``history`` and ``filters.exclude`` left out,
        the ``cold`` filter applied), otherwise (a user first seen after training, another channel, or a
        ``same`` filter, which needs the history item that brings a candidate) :meth:`recall` of ``history``."""
        check_channel(channel)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        v = self.view() if view is None else view
        history = [str(h) for h in history]
        if channel in REGISTRY and filters.same is None:
            deep = k if filters.cold == "include" else max(FILTER_DEPTH, k)
            nb = REGISTRY[channel].answer_user(v, str(user_id), deep, frozenset(history) | filters.exclude)
            if nb is not None:
                if filters.cold != "include":
                    nb = nb.take(np.flatnonzero(v._keep(None, nb.ids, Filters(cold=filters.cold))))
                nb = nb.take(slice(0, k)) if len(nb) > k else nb
                return Recalled(nb.ids, nb.scores, [[] for _ in nb.ids], history, [], via="user vector")
        return self.recall(history, k=k, channel=channel, weights=weights, filters=filters, depth=depth, view=v)

    def view(self) -> ItemRetriever:
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


# --------------------------------------------------------------------------- snapshot


# --------------------------------------------------------------------------- user histories
class UserHistory(ABC):
    """Where ``GET /recall/{user_id}`` finds a user's recent items."""

    @abstractmethod
    def recent_items(self, user_id: str, n: int) -> list[tuple[str, int]] | None:
        """The user's ``n`` most recent distinct items with their last event time (epoch seconds), most
        recent first (ties by id); ``[]`` for a user without events; None for a user it does not know."""


def decay_weights(times, half_life_seconds: float | None) -> np.ndarray:
    """``0.5 ** (age / half_life)``, age counted from the most recent of ``times``; all 1 without a half-life."""
    t = np.asarray(times, dtype=np.float64)
    if half_life_seconds is None or not len(t):
        return np.ones(len(t))
    if not half_life_seconds > 0:
        raise ValueError(f"the half-life must be > 0 seconds, got {half_life_seconds}")
    return 0.5 ** ((t.max() - t) / half_life_seconds)


# --------------------------------------------------------------------------- live Neo4j


# --------------------------------------------------------------------------- resilient


def _sum_lists(lists, tops, weights, drop, depth: int, k: int, known: list, unknown: list) -> Recalled:
    """The recall of :meth:`ItemRetriever.recall` from each known history item's list, in one pass over all of
    them: history items dropped (each list then cut at ``depth``), scores over the list's ``top`` times the item's
    weight (a list whose top is <= 0 or whose weight is 0 adds nothing), summed per candidate in list order;
    top ``k`` by score, ties by id; each candidate's sources by contribution, then history order. The ids are
    coded here (factorised); :func:`_sum_coded` is the rest, which a snapshot enters with codes of its own."""
    lengths = np.array([len(nb) for nb in lists], dtype=np.int64)
    if not lengths.sum():
        return Recalled(np.array([], dtype=object), np.array([], np.float32), [], known, unknown)
    entries = np.concatenate([np.asarray(nb.ids, dtype=object) for nb in lists])
    scores = np.concatenate([np.asarray(nb.scores, dtype=np.float64) for nb in lists])
    codes, uniq = pd.factorize(np.concatenate([entries, np.array(sorted(drop), dtype=object)]))
    in_history = np.zeros(len(uniq), dtype=bool)
    in_history[codes[len(entries) :]] = True
    return _sum_coded(
        codes[: len(entries)],
        scores,
        lengths,
        in_history,
        np.asarray(uniq, dtype=object),
        tops,
        weights,
        depth,
        k,
        known,
        unknown,
    )


def _sum_coded(codes, scores, lengths, in_history, uniq, tops, weights, depth, k, known, unknown) -> Recalled:
    """:func:`_sum_lists` after coding: ``codes`` (every list entry's id as a position in ``uniq``, lists
    concatenated in history order), their ``scores`` (float64), the ``lengths`` of the lists, and which codes
    are ``in_history``."""
    if not lengths.sum():
        return Recalled(np.array([], dtype=object), np.array([], np.float32), [], known, unknown)
    src = np.repeat(np.arange(len(lengths)), lengths)
    keep = ~in_history[codes]
    kept_before = np.cumsum(keep) - keep  # kept entries before each entry, over all lists
    start = np.cumsum(lengths) - lengths
    keep &= (kept_before - kept_before[np.minimum(start, len(codes) - 1)][src]) < depth  # at most depth per list
    keep &= ((tops > 0) & (weights != 0))[src]
    inv, src, scores = codes[keep], src[keep], scores[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        contrib = weights[src] * np.maximum(scores, 0.0) / tops[src]
    total = np.bincount(inv, weights=contrib, minlength=len(uniq))
    positive = np.flatnonzero(total > 0)
    if len(positive) > k:  # only the candidates that can reach the top k are sorted
        kth = np.partition(-total[positive], k - 1)[k - 1]
        positive = positive[-total[positive] <= kth]
    order = positive[np.lexsort((uniq[positive].astype(str), -total[positive]))][:k]
    chosen = np.zeros(len(uniq), dtype=bool)
    chosen[order] = True
    sel = np.flatnonzero((contrib > 0) & chosen[inv])  # the chosen candidates' entries only
    by = sel[np.lexsort((src[sel], -contrib[sel], inv[sel]))]  # per candidate, largest contribution first
    cut = np.flatnonzero(np.r_[True, inv[by][1:] != inv[by][:-1]]) if len(by) else np.zeros(0, np.int64)
    sources = {int(inv[by[c0]]): [known[s_] for s_ in src[by[c0:c1]]] for c0, c1 in zip(cut, [*cut[1:], len(by)])}
    return Recalled(
        np.asarray(uniq[order], dtype=object),
        total[order].astype(np.float32),
        [sources[int(c)] for c in order],
        known,
        unknown,
    )
