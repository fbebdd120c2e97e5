"""The ``swing`` channel: Swing (Yang et al. 2020) over the capped user-item basis, stored as ``SWING`` edges
(:mod:`graphrecall.query.scoring` computes them in the graph)."""

from __future__ import annotations

from ..data import topk_lists
from ..scoring.reference import swing_sparse
from .base import Parts, StoredListChannel, Training, register


class Swing(StoredListChannel):
    name = "swing"
    relationship = "SWING"

    def build(self, training: Training) -> Parts:
        cfg = training.settings
        return Parts(
            lists={self.name: topk_lists(swing_sparse(training.basis, alpha=cfg.scores.swing_alpha, k=cfg.top_k))}
        )


register(Swing())
