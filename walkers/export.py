"""Read the graph out of Neo4j into arrays: item index, TRANSITION CSR, sessions, side info."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..graph_schema.schema import SIDE_INFO_FIELDS
from ..graph_schema.store.items import read_item_fields
from ..graph_schema.store.lists import read_transition_edges
from ..graph_schema.store.sessions import read_session_items

logger = logging.getLogger(__name__)


@dataclass
class GraphExport:
    item_ids: np.ndarray  # external id per internal index, sorted
    transitions: sp.csr_matrix  # item x item, weights
    side: dict[str, list[str | None]]  # field -> value per item
    sessions: list[np.ndarray]  # internal item indices per session, in order
    booked: np.ndarray  # per session: internal index of the booked item or -1


def export_graph(driver, database: str = "neo4j", side_fields: tuple[str, ...] = SIDE_INFO_FIELDS) -> GraphExport:
    t0 = time.perf_counter()
    rows = read_item_fields(driver, side_fields, database)
    item_ids = np.array([r[0] for r in rows], dtype=object)
    index = {iid: n for n, iid in enumerate(item_ids)}
    side = {f: [None if r[1][k] is None else str(r[1][k]) for r in rows] for k, f in enumerate(side_fields)}
    src, dst, w = [], [], []
    for a, b, wt in read_transition_edges(driver, database):
        src.append(index[a])
        dst.append(index[b])
        w.append(float(wt))
    n = len(item_ids)
    csr = sp.csr_matrix(
        (np.array(w, dtype=np.float64), (np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64))), shape=(n, n)
    )
    sessions, booked = [], []
    for items, bk in read_session_items(driver, database):
        sessions.append(np.array([index[i] for i in items if i in index], dtype=np.int64))
        booked.append(index.get(bk, -1) if bk is not None else -1)
    dt = time.perf_counter() - t0
    logger.info("exported %d items, %d transitions, %d sessions in %.1fs", n, csr.nnz, len(sessions), dt)
    return GraphExport(item_ids, csr, side, sessions, np.array(booked, dtype=np.int64))
