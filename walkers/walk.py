"""Weighted random walks on a CSR graph, vectorised over all walkers.

The next node is drawn with probability proportional to the edge weight, using
per-row alias tables (Walker/Vose), built once with numba. A step for all live
walkers is a handful of numpy array operations: no per-step Python.
Walks stop early at nodes without out-edges; they are padded with -1.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)


@numba.njit(cache=True)
def build_alias(indptr, weights):  # pragma: no cover - compiled
    n_edges = weights.shape[0]
    prob = np.ones(n_edges, dtype=np.float64)
    alias = np.zeros(n_edges, dtype=np.int64)
    for r in range(indptr.shape[0] - 1):
        lo, hi = indptr[r], indptr[r + 1]
        d = hi - lo
        if d == 0:
            continue
        total = 0.0
        for e in range(lo, hi):
            total += weights[e]
        scaled = np.empty(d, dtype=np.float64)
        for e in range(d):
            scaled[e] = weights[lo + e] * d / total
        small = np.empty(d, dtype=np.int64)
        large = np.empty(d, dtype=np.int64)
        ns = 0
        nl = 0
        for e in range(d):
            if scaled[e] < 1.0:
                small[ns] = e
                ns += 1
            else:
                large[nl] = e
                nl += 1
        while ns > 0 and nl > 0:
            ns -= 1
            s = small[ns]
            nl -= 1
            g = large[nl]
            prob[lo + s] = scaled[s]
            alias[lo + s] = g
            scaled[g] = scaled[g] + scaled[s] - 1.0
            if scaled[g] < 1.0:
                small[ns] = g
                ns += 1
            else:
                large[nl] = g
                nl += 1
        while nl > 0:
            nl -= 1
            prob[lo + large[nl]] = 1.0
            alias[lo + large[nl]] = large[nl]
        while ns > 0:
            ns -= 1
            prob[lo + small[ns]] = 1.0
            alias[lo + small[ns]] = small[ns]
    return prob, alias


@dataclass
class AliasGraph:
    """CSR graph with alias tables; ``alias`` holds row-local offsets."""

    indptr: np.ndarray
    indices: np.ndarray
    prob: np.ndarray
    alias: np.ndarray

    @classmethod
    def from_csr(cls, m: sp.csr_matrix) -> AliasGraph:
        m = sp.csr_matrix(m)
        m.sum_duplicates()
        if m.nnz and (m.data < 0).any():
            raise ValueError("edge weights must be non-negative; drop or clip negative TRANSITION weights")
        m.eliminate_zeros()
        indptr = m.indptr.astype(np.int64)
        prob, alias = build_alias(indptr, m.data.astype(np.float64))
        return cls(indptr, m.indices.astype(np.int64), prob, alias)

    @property
    def n_nodes(self) -> int:
        return len(self.indptr) - 1

    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    def step(self, cur: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One step for every walker in ``cur`` (all must have out-degree > 0)."""
        start = self.indptr[cur]
        deg = self.indptr[cur + 1] - start
        k = (rng.random(len(cur)) * deg).astype(np.int64)
        k = np.minimum(k, deg - 1)
        e = start + k
        take_alias = rng.random(len(cur)) >= self.prob[e]
        off = np.where(take_alias, self.alias[e], k)
        return self.indices[start + off]


def random_walks(
    graph: sp.csr_matrix | AliasGraph,
    *,
    walk_length: int = 10,
    walks_per_node: int = 10,
    start_nodes: np.ndarray | None = None,
    random_seed: int = 0,
) -> np.ndarray:
    """Weighted walks: ``(n_walks, walk_length)`` int64 array, -1 after a dead end.

    Defaults follow DeepWalk/EGES practice (10 walks of length 10 per node);
    ``start_nodes`` defaults to every node with out-edges.
    """
    if walk_length < 1 or walks_per_node < 1:
        raise ValueError(f"walk_length and walks_per_node must be >= 1, got {walk_length}, {walks_per_node}")
    g = graph if isinstance(graph, AliasGraph) else AliasGraph.from_csr(graph)
    rng = np.random.default_rng(random_seed)
    if start_nodes is None:
        start_nodes = np.flatnonzero(g.degree() > 0)
    start_nodes = np.asarray(start_nodes, dtype=np.int64)
    if start_nodes.size and (start_nodes.min() < 0 or start_nodes.max() >= g.n_nodes):
        raise ValueError(f"start_nodes must be in [0, {g.n_nodes})")
    starts = np.tile(start_nodes, walks_per_node)
    rng.shuffle(starts)
    walks = np.full((len(starts), walk_length), -1, dtype=np.int64)
    walks[:, 0] = starts
    alive = np.flatnonzero(g.degree()[starts] > 0) if len(starts) else np.zeros(0, np.int64)
    t0 = time.perf_counter()
    deg = g.degree()
    for t in range(1, walk_length):
        if alive.size == 0:
            break
        nxt = g.step(walks[alive, t - 1], rng)
        walks[alive, t] = nxt
        alive = alive[deg[nxt] > 0]
    dt = time.perf_counter() - t0
    logger.info(
        "random_walks: %d walks x %d steps in %.2fs (%.0f walks/s)",
        len(starts),
        walk_length,
        dt,
        len(starts) / dt if dt else float("inf"),
    )
    return walks


def walks_to_corpus(walks: np.ndarray, min_len: int = 2) -> list[np.ndarray]:
    """Drop the -1 padding; keep walks of at least ``min_len`` nodes."""
    lengths = (walks >= 0).sum(axis=1)
    return [w[:n] for w, n in zip(walks, lengths) if n >= min_len]


def python_alias_walks(
    graph: AliasGraph, walk_length: int, walks_per_node: int, random_seed: int = 0
) -> list[list[int]]:
    """The same alias sampling, one walker and one step at a time in Python; the benchmark baseline only."""
    import random

    rnd = random.Random(random_seed)
    indptr, indices, prob, alias = (
        graph.indptr.tolist(),
        graph.indices.tolist(),
        graph.prob.tolist(),
        graph.alias.tolist(),
    )
    out = []
    for _ in range(walks_per_node):
        for s in range(graph.n_nodes):
            if indptr[s + 1] == indptr[s]:
                continue
            walk = [s]
            while len(walk) < walk_length:
                c = walk[-1]
                lo, deg = indptr[c], indptr[c + 1] - indptr[c]
                if deg == 0:
                    break
                k = int(rnd.random() * deg)
                off = k if rnd.random() < prob[lo + k] else alias[lo + k]
                walk.append(indices[lo + off])
            out.append(walk)
    return out
