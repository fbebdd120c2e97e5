"""How the ``blend`` channel fuses the other channels: one implementation, for serving and for tuning."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...graph_schema.store.meta import read_blend
from ..channels import BASE_CHANNELS, BLEND_DEPTH, Neighbours

__all__ = [
    "BLEND_DEPTH",
    "BLEND_METHODS",
    "DEFAULT_BLEND",
    "RRF_K",
    "BlendConfig",
    "blend",
    "blend_many",
    "stored_blend",
]


RRF_K = 60.0


BLEND_METHODS = ("score", "rrf")


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
            raise ValueError(
                f"blend weights need channels from {', '.join(BASE_CHANNELS)} and weights >= 0; got {dict(self.weights)}"
            )
        if not 0 <= self.new_items <= 1:
            raise ValueError(f"new= (the weight of items without events) must be in 0..1, got {self.new_items}")

    @classmethod
    def of(cls, method: str = "score", new: float = 1.0, **weights: float) -> BlendConfig:
        if not weights:  # rrf alone: default weights
            return cls(method, new_items=new)
        return cls(method, tuple(sorted(weights.items())), new)

    @property
    def weight(self) -> dict[str, float]:
        return dict(self.weights)

    @classmethod
    def parse(cls, spec: str) -> BlendConfig:
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
                raise ValueError(
                    f"bad blend weight {part!r} in {spec!r}; write channel=weight, "
                    "e.g. 'score:cooc=1,swing=0.25,eges=0.5'"
                )
        return cls.of(method.strip(), **weights)

    def __str__(self) -> str:
        new = [] if self.new_items == 1.0 else [f"new={self.new_items:g}"]
        return f"{self.method}:" + ",".join([f"{ch}={w:g}" for ch, w in self.weights] + new)


DEFAULT_BLEND = BlendConfig()


def stored_blend(driver, database: str = "neo4j") -> tuple[BlendConfig, str]:
    """The blend ``graphrecall tune`` stored and where it came from, else the built-in default."""
    stored = read_blend(driver, database)
    if stored is None:
        return DEFAULT_BLEND, "built-in default"
    return BlendConfig.parse(stored[0]), f"graphrecall tune, {stored[1]}"


def blend(
    per_channel: dict[str, Neighbours],
    k: int,
    config: BlendConfig = DEFAULT_BLEND,
    is_new: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Neighbours:
    """Fuse per-channel lists (each sorted best first) by one config: :func:`blend_many` with ``[config]``.
    Each item is labelled by its largest contributor (the first channel on a tie)."""
    return blend_many(per_channel, [config], k, is_new, labels=True)[0]


@dataclass
class _Entries:
    """Every list entry of the kept channels, in channel order, with its contribution under every config."""

    names: list[str]  # the channels given
    kept: list[int]  # those that count for some config, by position in names
    lengths: list[int]  # entries per kept channel
    codes: np.ndarray  # per entry: its item's position in uniq
    uniq: np.ndarray  # the items, in order of first entry
    contrib: np.ndarray  # configs x entries
    on: np.ndarray | None  # configs x entries: does the entry count (None: every one does)


def _entries(per_channel: dict[str, Neighbours], configs: Sequence[BlendConfig]) -> _Entries | None:
    names = list(per_channel)
    weights = [[c.weight.get(ch, 0.0) for ch in names] for c in configs]
    rrf_of = [c.method == "rrf" for c in configs]
    kept, ids, scores, tops, on_ch = [], [], [], [], []
    for j, ch in enumerate(names):
        nb = per_channel[ch]
        if not len(nb):
            continue
        top = float(nb.scores[0])
        counts = [wc[j] > 0 and (r or top > 0) for wc, r in zip(weights, rrf_of)]  # per config
        if not any(counts):
            continue
        kept.append(j)
        ids.append(nb.ids)
        scores.append(nb.scores)
        tops.append(top if top > 0 else 1.0)  # a list whose top is <= 0 counts under rrf only
        on_ch.append(counts)
    if not kept:
        return None
    lengths = [len(x) for x in ids]
    codes, uniq = pd.factorize(np.concatenate(ids).astype(object, copy=False))
    # every entry's contribution for every config (configs x entries), entries in channel order
    wk = np.repeat(np.array([[wc[j] for j in kept] for wc in weights]), lengths, axis=1)
    if any(rrf_of):
        rank = np.arange(1, len(codes) + 1) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        by_rank = wk / (RRF_K + rank)
    if not all(rrf_of):
        s = np.maximum(np.concatenate(scores).astype(np.float64), 0.0)
        by_score = wk * s / np.repeat(tops, lengths)
    if all(rrf_of):
        contrib = by_rank
    elif not any(rrf_of):
        contrib = by_score
    else:
        contrib = np.where(np.array(rrf_of)[:, None], by_rank, by_score)
    on = None if all(map(all, on_ch)) else np.repeat(np.array(on_ch).T, lengths, axis=1)
    if on is not None:
        contrib = np.where(on, contrib, 0.0)
    return _Entries(names, kept, lengths, codes, uniq, contrib, on)


def blend_many(
    per_channel: dict[str, Neighbours],
    configs: Sequence[BlendConfig],
    k: int,
    is_new: Callable[[np.ndarray], np.ndarray] | None = None,
    labels: bool = False,
) -> list[Neighbours]:
    """The top ``k`` of each config's fusion of the same per-channel lists: the one blend implementation,
    which serving calls with one config and ``graphrecall tune`` with its whole grid.

    A channel adds ``w * max(score, 0) / top`` per item (``score``; a list whose top score is <= 0 adds
    nothing) or ``w / (60 + rank)`` (``rrf``); an item enters only through a channel of weight > 0.
    ``is_new(ids)`` marks items without events, whose fused score is multiplied by ``new_items``. Ties in the
    fused score go to the smaller id. Ids are factorised (hashing, no string sort), contributions are added
    channel by channel (the same float sums for every config), and only the candidates that can reach the
    top ``k`` are sorted. ``labels``: each item's channel is its largest contributor, else ``"blend"``."""
    e = _entries(per_channel, configs)
    if e is None:
        return [Neighbours.empty() for _ in configs]
    names, kept, lengths, codes, uniq, contrib, on = e.names, e.kept, e.lengths, e.codes, e.uniq, e.contrib, e.on
    # summed per item in entry order (the same float sums as adding them one by one); one config: bincount
    if len(configs) == 1:
        total = np.bincount(codes, weights=contrib[0], minlength=len(uniq))[None, :]
    else:
        onehot = sp.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(uniq), len(codes)))
        total = np.asarray(onehot @ contrib.T).T
    if on is None:
        listed = None  # every kept entry counts for every config: every item is listed
    elif len(configs) == 1:
        listed = np.bincount(codes, weights=on[0], minlength=len(uniq))[None, :] > 0
    else:
        listed = np.asarray(onehot @ on.T.astype(np.float64)).T > 0
    new_w = [c.new_items for c in configs]
    if is_new is not None and any(x != 1.0 for x in new_w):
        total = total * np.where(np.asarray(is_new(uniq), dtype=bool)[None, :], np.array(new_w)[:, None], 1.0)
    ch_of = np.repeat(np.arange(len(kept)), lengths) if labels else None
    out = []
    for n in range(len(configs)):
        score = total[n] if listed is None else np.where(listed[n], total[n], -np.inf)
        m = min(k, len(uniq) if listed is None else int(listed[n].sum()))
        if m == 0:
            out.append(Neighbours.empty())
            continue
        kth = np.partition(-score, m - 1)[m - 1]
        order = sorted(np.flatnonzero(-score <= kth), key=lambda r: (-score[r], uniq[r]))[:k]
        if labels:  # per item, the largest contribution first, then channel order (a stable sort)
            by = np.lexsort((-contrib[n] if on is None else np.where(on[n], -contrib[n], np.inf), codes))
            best = ch_of[by[np.r_[True, codes[by][1:] != codes[by][:-1]]]]
            out_chans = [names[kept[b]] for b in best[order]]
        else:
            out_chans = ["blend"] * len(order)
        out.append(Neighbours(np.asarray(uniq, dtype=object)[order], score[order].astype(np.float32), out_chans))
    return out


def channel_contributions(
    per_channel: dict[str, Neighbours],
    config: BlendConfig,
    item_id: str,
    is_new: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[dict[str, dict[str, float | int]], float]:
    """Per channel that lists ``item_id``: its rank there (1 is the top), its score, and what it adds to the
    item's fused score under ``config`` (the terms :func:`blend_many` sums); and that fused score, summed and
    weighted for items without events (``is_new``) as :func:`blend_many` does (0 when no counted channel lists it)."""
    out = {
        ch: {"rank": int(r) + 1, "score": float(nb.scores[r]), "contribution": 0.0}
        for ch, nb in per_channel.items()
        for r in np.flatnonzero(np.asarray(nb.ids, dtype=object) == item_id)[:1]
    }
    e = _entries(per_channel, [config])
    at = np.flatnonzero(e.uniq == item_id) if e is not None else []
    if not len(at):
        return out, 0.0
    counted = (e.codes == at[0]) & (True if e.on is None else e.on[0])
    start = 0
    for j, n in zip(e.kept, e.lengths):
        rows = np.flatnonzero(counted[start : start + n])
        if len(rows):
            out[e.names[j]]["contribution"] = float(e.contrib[0, start + rows[0]])
        start += n
    fused = float(np.bincount(e.codes, weights=e.contrib[0], minlength=len(e.uniq))[at[0]])
    if config.new_items != 1.0 and is_new is not None and np.asarray(is_new(e.uniq[at]), dtype=bool)[0]:
        fused *= config.new_items
    return out, fused
