"""The ``gnn`` channel: LightGCN (torch-geometric, :mod:`graphrecall.embed.gnn`) on the user-item graph.

Its i2i lists are each item's nearest items by cosine of the LightGCN vectors, stored as ``GNN`` top-K
relationships (the vectors themselves as ``Item.gnn_embedding`` with the vector index ``item_gnn_embedding``).
Its user vectors answer ``/recall/{user}?channel=gnn`` directly (:meth:`Gnn.answer_user`, two-tower recall
through Faiss); a user first seen after training falls back to summing the history items' lists. Items
without events have no vector and no list."""

from __future__ import annotations

import numpy as np

from ...embed.gnn import fit_gnn
from ...embed.index import UserTower
from .base import GraphSource, Neighbours, Parts, StoredListChannel, Training, register


class Gnn(StoredListChannel):
    name = "gnn"
    relationship = "GNN"

    def build(self, training: Training) -> Parts:
        cfg = training.settings
        pairs = 0 if training.events.empty else len(training.events[["user", "item"]].drop_duplicates())
        if not cfg.gnn.enabled or pairs == 0 or pairs > cfg.gnn.max_pairs:  # as the pipeline skips it
            return Parts(lists={self.name: {}})
        model = fit_gnn(
            training.events["user"].to_numpy(),
            training.events["item"].to_numpy(),
            cfg.gnn,
            cfg.top_k,
            random_seed=training.random_seed,
            progress=training.progress,
        )
        return Parts(lists={self.name: model.lists}, users=model.tower)

    def read(self, source: GraphSource) -> Parts:
        parts = super().read(source)
        parts.users = UserTower.load_saved(source.gnn_dir)
        return parts

    def answer_user(self, snapshot, user_id: str, k: int, exclude: frozenset) -> Neighbours | None:
        tower = getattr(snapshot, "users", None)
        if tower is None or user_id not in tower:
            return None
        ids, scores = tower.recall(user_id, k, exclude)
        return Neighbours(np.asarray(ids, dtype=object), scores, [self.name] * len(ids))


register(Gnn())
