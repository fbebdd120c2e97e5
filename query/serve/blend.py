"""How the ``blend`` channel fuses the other channels: one implementation, for serving and for tuning."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

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
    names = list(per_channel)
    w = np.array([[c.weight.get(ch, 0.0) for ch in names] for c in configs], dtype=np.float64).reshape(
        len(configs), len(names)
    )
    rrf = np.array([c.method == "rrf" for c in configs], dtype=bool)
    lists, active = [], []
    for j, ch in enumerate(names):
        nb = per_channel[ch]
        if not len(nb):
            continue
        top = float(nb.scores[0])
        on = (w[:, j] > 0) & (rrf | (top > 0))  # per config: does this channel count
        if on.any():
            lists.append((j, nb, top))
            active.append(on)
    if not lists:
        return [Neighbours.empty() for _ in configs]
    codes, uniq = pd.factorize(np.concatenate([np.asarray(nb.ids, dtype=object) for _, nb, _ in lists]))
    total = np.zeros((len(configs), len(uniq)))
    listed = np.zeros((len(configs), len(uniq)), dtype=bool)
    best_c = np.full((len(configs), len(uniq)), -np.inf) if labels else None
    best = np.zeros((len(configs), len(uniq)), dtype=np.int64) if labels else None
    start = 0
    for (j, nb, top), on in zip(lists, active):
        cols = codes[start : start + len(nb)]  # one list holds an id once
        start += len(nb)
        rank = w[:, j, None] / (RRF_K + np.arange(1, len(nb) + 1))[None, :]
        score = (
            w[:, j, None] * np.maximum(np.asarray(nb.scores, dtype=np.float64), 0.0)[None, :] / top
            if top > 0
            else np.zeros_like(rank)
        )
        contrib = np.where(on[:, None], np.where(rrf[:, None], rank, score), 0.0)
        total[:, cols] += contrib
        listed[:, cols] |= on[:, None]
        if labels:
            better = on[:, None] & (contrib > best_c[:, cols])
            best_c[:, cols] = np.where(better, contrib, best_c[:, cols])
            best[:, cols] = np.where(better, j, best[:, cols])
    new_w = np.array([c.new_items for c in configs])
    if is_new is not None and (new_w != 1.0).any():
        total = total * np.where(np.asarray(is_new(uniq), dtype=bool)[None, :], new_w[:, None], 1.0)
    out = []
    for n in range(len(configs)):
        score = np.where(listed[n], total[n], -np.inf)
        m = min(k, int(listed[n].sum()))
        if m == 0:
            out.append(Neighbours.empty())
            continue
        kth = np.partition(-score, m - 1)[m - 1]
        order = sorted(np.flatnonzero(-score <= kth), key=lambda r: (-score[r], uniq[r]))[:k]
        chans = [names[b] for b in best[n, order]] if labels else ["blend"] * len(order)
        out.append(Neighbours(np.asarray(uniq, dtype=object)[order], score[order].astype(np.float32), chans))
    return out
