"""The ``cooc`` channel: ItemCF cosine co-occurrence (IUF-weighted users by default) over the capped basis,
stored as ``COOC`` edges (:mod:`graphrecall.query.scoring` computes them in the graph)."""

from __future__ import annotations

from ..data import topk_lists
from ..scoring.reference import cooc_sparse
from .base import Parts, StoredListChannel, Training, register


class Cooc(StoredListChannel):
    name = "cooc"
    relationship = "COOC"

    def build(self, training: Training) -> Parts:
        cfg = training.settings
        return Parts(lists={self.name: topk_lists(cooc_sparse(training.basis, k=cfg.top_k, iuf=cfg.scores.cooc_iuf))})


register(Cooc())
