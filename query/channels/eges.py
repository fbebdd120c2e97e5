"""The ``eges`` channel: nearest items by EGES vectors (:mod:`graphrecall.embed`), searched in a Faiss index
(the snapshot) or in Neo4j's native vector index (live)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import scipy.sparse as sp

from ...embed.index import ItemVectorIndex
from ...embed.train import train_item_vectors
from ...graph_schema.schema import VECTOR_INDEX
from ...graph_schema.store.lists import read_nearest_vectors
from ..data import Catalogue, transition_matrix
from .base import Channel, GraphSource, Neighbours, Parts, Training, register

EGES_TIE_DEPTH = 5000  # the eges channel searches at most this deep to see a tie at its cut whole


def eges_vectors(
    train_sessions: list[dict],
    cat: Catalogue,
    settings,
    random_seed: int = 0,
    progress: bool = False,
    trans: sp.csr_matrix | None = None,
) -> ItemVectorIndex:
    """The eges channel's Faiss index: :func:`~graphrecall.embed.train.train_item_vectors` on the training
    sessions' transitions and sequences (``settings``: an :class:`~graphrecall.embed.settings.EgesSettings` or a
    dict of its keyword arguments), one vector per catalogue item."""
    settings = settings if isinstance(settings, dict) else asdict(settings)
    sess = [r[r >= 0] for r in (cat.rows(s["items"]) for s in train_sessions)]
    booked = np.array([cat.index.get(s["booked"], -1) if s["booked"] else -1 for s in train_sessions], np.int64)
    trans = transition_matrix(train_sessions, cat) if trans is None else trans
    res = train_item_vectors(trans, cat.side, sess, booked, random_seed=random_seed, progress=progress, **settings)
    return ItemVectorIndex(cat.item_ids, res.embeddings)


def nearest(vectors: ItemVectorIndex, side, item_id: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest vectors, equal scores ordered by price proximity to the query.

    Items without events that share side info share one vector, so they tie exactly; Faiss leaves them
    in an order of its own search, which means nothing. Here a tie puts the item whose price is
    nearest the query's first (as the side channel does inside a match; items without a price last),
    and the search is widened until the tie at the k-th score is whole, so the cut takes the nearest.
    Without prices (or side info, ``side`` None) ties keep Faiss's order."""
    lp = None if side is None else side.log_prices([item_id])[0]
    if lp is None or np.isnan(lp):
        return vectors.similar_items(item_id, k)
    n = len(vectors.item_ids) - 1
    depth = min(2 * k, n)
    while True:
        ids, scores = vectors.similar_items(item_id, depth)
        if depth >= n or len(scores) <= k or scores[-1] != scores[k - 1] or depth >= EGES_TIE_DEPTH:
            break
        depth = min(4 * depth, n, EGES_TIE_DEPTH)
    new_score = np.r_[True, scores[1:] != scores[:-1]]
    if new_score.all():  # no tie at all
        return ids[:k], scores[:k]
    group = np.cumsum(new_score)
    dist = np.abs(side.log_prices(ids) - lp)
    order = np.lexsort((np.nan_to_num(dist, nan=np.inf), group))[:k]
    return ids[order], scores[order]


class Eges(Channel):
    name = "eges"

    def build(self, training: Training) -> Parts:
        cfg = training.settings
        return Parts(
            vectors=eges_vectors(
                training.sessions,
                training.catalogue,
                cfg.eges,
                training.random_seed,
                training.progress,
                training.transitions,
            )
        )

    def read(self, source: GraphSource) -> Parts:
        return Parts(vectors=ItemVectorIndex.load_saved(source.faiss_dir))

    def answer(self, snapshot, item_id: str, k: int) -> Neighbours:
        if snapshot.vectors is None or item_id not in snapshot.vectors:
            return Neighbours.empty()
        return self._neighbours(*nearest(snapshot.vectors, snapshot.side, item_id, k))

    def answer_live(self, driver, database: str, item_id: str, k: int) -> Neighbours:
        rows = read_nearest_vectors(driver, item_id, k, database, index=VECTOR_INDEX)
        return self._neighbours([r[0] for r in rows], [r[1] for r in rows])


register(Eges())
