"""The ``trans`` channel: directed session co-visitation, each item's most frequent next items (the
``TRANSITION`` edges that ingest counts)."""

from __future__ import annotations

from ...graph_schema.store.lists import read_transition_lists, read_transitions
from ..data import matrix_lists
from .base import GraphSource, ListChannel, Neighbours, Parts, Training, list_arrays, register

TRANS_DEPTH = 50  # most frequent next items kept per item by the trans channel


class Trans(ListChannel):
    name = "trans"

    def build(self, training: Training) -> Parts:
        return Parts(lists={self.name: matrix_lists(training.transitions, training.catalogue.item_ids, TRANS_DEPTH)})

    def read(self, source: GraphSource) -> Parts:
        return Parts(
            lists={self.name: list_arrays(read_transition_lists(source.driver, TRANS_DEPTH, database=source.database))}
        )

    def answer_live(self, driver, database: str, item_id: str, k: int) -> Neighbours:
        rows = read_transitions(driver, item_id, k, database)
        return self._neighbours([r[0] for r in rows], [r[1] for r in rows])


register(Trans())
