"""The ``seqrules`` channel: sequential rules (Ludewig & Jannach 2018). In every session, an item a is followed
by each item b up to :data:`SEQ_WINDOW` steps later, and the rule a -> b gains ``1 / steps``; each item's list
is its rules by weight, ties by id. It generalises ``trans`` (adjacent pairs only, every pair weight 1) to the
items a shopper opens a few clicks later, and needs nothing but sessions, so it serves click-only logs too.

The lists are computed from the sessions (the graph's ``Session`` nodes when read into a snapshot, a query's
sessions when answered live, the training sessions when built for evaluation), not stored as relationships.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...graph_schema.store import read_rows
from ...graph_schema.store.sessions import read_sessions
from ..data import SEQ_WINDOW, matrix_lists
from .base import GraphSource, ListChannel, Neighbours, Parts, Training, register

SEQ_DEPTH = 50  # rules kept per item


def rule_matrix(sessions: list, window: int = SEQ_WINDOW) -> tuple[sp.csr_matrix, np.ndarray]:
    """``(weights, item ids)``: ``weights[a, b]`` sums ``1 / steps`` over every time b follows a within
    ``window`` steps of a session (``sessions``: lists of item ids, in order); a -> a is left out."""
    if window < 1:
        raise ValueError(f"the sequential-rules window must be >= 1 step, got {window}")
    lengths = np.array([len(s) for s in sessions], dtype=np.int64)
    flat = np.array([i for s in sessions for i in s], dtype=object)
    codes, ids = pd.factorize(flat) if len(flat) else (np.zeros(0, np.int64), np.zeros(0, dtype=object))
    sid = np.repeat(np.arange(len(sessions)), lengths)
    src, dst, w = [], [], []
    for d in range(1, window + 1):  # every pair d steps apart in one session, all sessions at once
        same = sid[:-d] == sid[d:] if len(sid) > d else np.zeros(0, bool)
        a, b = codes[:-d][same], codes[d:][same]
        keep = a != b
        src.append(a[keep])
        dst.append(b[keep])
        w.append(np.full(int(keep.sum()), 1.0 / d))
    n = len(ids)
    m = sp.csr_matrix((np.concatenate(w), (np.concatenate(src), np.concatenate(dst))), shape=(n, n))
    m.sum_duplicates()
    return m, np.asarray(ids, dtype=object)


def rule_lists(sessions: list, window: int = SEQ_WINDOW, depth: int = SEQ_DEPTH) -> dict:
    """Each item's top ``depth`` rules, ``{item: (ids, weights)}`` (the snapshot's list format)."""
    m, ids = rule_matrix(sessions, window)
    return matrix_lists(m, ids, depth)


class SeqRules(ListChannel):
    name = "seqrules"

    def build(self, training: Training) -> Parts:
        return Parts(lists={self.name: rule_lists([s["items"] for s in training.sessions])})

    def read(self, source: GraphSource) -> Parts:
        sessions = read_sessions(source.driver, source.database)
        return Parts(lists={self.name: rule_lists([s["items"] for s in sessions])})

    def answer_live(self, driver, database: str, item_id: str, k: int) -> Neighbours:
        rows = read_rows(
            driver, database, "MATCH (s:Session) WHERE $id IN s.items RETURN s.items ORDER BY s.id", id=item_id
        )
        ids, weights = rule_lists([r[0] for r in rows], depth=k).get(item_id, ((), ()))
        return self._neighbours(list(ids), list(weights))


register(SeqRules())
