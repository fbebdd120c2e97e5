"""The live backend: every answer read from Neo4j per call, with read-only sessions (the reference the snapshot
is tested against), and users' recent items from the graph."""

from __future__ import annotations

import numpy as np

from ...graph_schema.store import items as store_items
from ...graph_schema.store.sessions import recent_items
from ..channels import REGISTRY, Neighbours
from .blend import stored_blend
from .retriever import ItemRetriever, UserHistory


class Neo4jHistory(UserHistory):
    """Recent items from the ``ENGAGED`` edges (their ``last_ts``), read-only."""

    def __init__(self, driver, database: str = "neo4j"):
        self.driver, self.database = driver, database

    def recent_items(self, user_id: str, n: int) -> list[tuple[str, int]] | None:
        return recent_items(self.driver, user_id, n, self.database)


class Neo4jRetriever(ItemRetriever):
    """Reads each answer from Neo4j (each channel's :meth:`~graphrecall.query.channels.Channel.answer_live`)."""

    def __init__(self, driver, database: str = "neo4j"):
        self.driver, self.database = driver, database
        self.blend_config, self.blend_source = stored_blend(driver, database)

    def has_item(self, item_id: str) -> bool:
        return store_items.has_item(self.driver, item_id, self.database)

    def item_values(self, ids, field: str) -> list:
        got = store_items.item_values(self.driver, ids, field, self.database)
        return [got.get(str(i)) for i in ids]

    def is_new(self, ids: np.ndarray) -> np.ndarray:
        new = store_items.new_items(self.driver, ids, self.database)
        return np.array([str(i) in new for i in ids], dtype=bool)

    def _channel(self, item_id: str, k: int, channel: str) -> Neighbours:
        return REGISTRY[channel].answer_live(self.driver, self.database, item_id, k)
