"""The numpy reference engine for Swing and co-occurrence: a brute-force oracle and a vectorised scipy version.

Both take the same capped basis as the Cypher path (:func:`capped_basis`), so that
tests can compare the three on one graph:

* :func:`swing_bruteforce` / :func:`cooc_bruteforce`: plain loops over user pairs,
  written to be obviously right, for small graphs;
* :func:`swing_sparse` / :func:`cooc_sparse`: CSR matrices, per-item sparse
  products and ``argpartition`` top-k; what the benchmarks and FunRec protocol use;
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)


def capped_basis(
    triples: list[tuple[str, str, int]],
    max_items_per_user: int = 1000,
    max_users_per_item: int = 1000,
) -> set[tuple[str, str]]:
    """Apply the caps of :mod:`~graphrecall.query.scoring.cypher` to ``(user, item, last_ts)`` triples.

    Keeps each user's ``max_items_per_user`` most recent items (ties: item id), then
    each item's ``max_users_per_item`` most recent users (ties: user id).
    """
    latest: dict[tuple[str, str], int] = {}
    for u, i, t in triples:
        key = (str(u), str(i))
        latest[key] = max(latest.get(key, t), t)
    by_user: dict[str, list[tuple[int, str]]] = {}
    for (u, i), t in latest.items():
        by_user.setdefault(u, []).append((t, i))
    kept: dict[str, list[tuple[int, str]]] = {}
    for u, lst in by_user.items():
        lst.sort(key=lambda x: (-x[0], x[1]))
        for t, i in lst[:max_items_per_user]:
            kept.setdefault(i, []).append((t, u))
    basis = set()
    for i, lst in kept.items():
        lst.sort(key=lambda x: (-x[0], x[1]))
        for _, u in lst[:max_users_per_item]:
            basis.add((u, i))
    return basis


def _sets(basis: set[tuple[str, str]]):
    items_of: dict[str, set[str]] = {}
    users_of: dict[str, set[str]] = {}
    for u, i in basis:
        items_of.setdefault(u, set()).add(i)
        users_of.setdefault(i, set()).add(u)
    return items_of, users_of


def swing_bruteforce(
    basis: set[tuple[str, str]], alpha: float = 1.0, user_weight: bool = True
) -> dict[tuple[str, str], float]:
    """``s(i,j) = sum_{u<v, both have i and j} w_u w_v / (alpha + |I_u ∩ I_v|)``."""
    items_of, users_of = _sets(basis)
    w = {u: (1.0 / np.sqrt(len(s)) if user_weight else 1.0) for u, s in items_of.items()}
    scores: dict[tuple[str, str], float] = {}
    for i, us in users_of.items():
        for u, v in combinations(sorted(us), 2):
            common = items_of[u] & items_of[v]
            c = w[u] * w[v] / (alpha + len(common))
            for j in common:
                if j != i:
                    scores[(i, j)] = scores.get((i, j), 0.0) + c
    return scores


def cooc_bruteforce(basis: set[tuple[str, str]], iuf: bool = False) -> dict[tuple[str, str], float]:
    """ItemCF cosine ``C_ij / sqrt(N_i N_j)``; ``iuf``: users count ``1/log(1 + |I_u|)``."""
    items_of, users_of = _sets(basis)
    scores: dict[tuple[str, str], float] = {}
    for i, ui in users_of.items():
        for j, uj in users_of.items():
            if i != j:
                common = ui & uj
                c = sum(1.0 / np.log(1.0 + len(items_of[u])) for u in common) if iuf else len(common)
                if c:
                    scores[(i, j)] = c / np.sqrt(len(ui) * len(uj))
    return scores


# --------------------------------------------------------------------------- sparse
@dataclass
class TopK:
    """Top-k neighbours per item: ``ids[row]``/``scores[row]`` padded with -1 / 0."""

    item_ids: np.ndarray  # external id per row index
    ids: np.ndarray  # (n_items, k) int, -1 padding
    scores: np.ndarray  # (n_items, k) float32

    def as_dict(self) -> dict[tuple[str, str], float]:
        out = {}
        for r, (row_ids, row_sc) in enumerate(zip(self.ids, self.scores)):
            for j, s in zip(row_ids, row_sc):
                if j >= 0:
                    out[(str(self.item_ids[r]), str(self.item_ids[j]))] = float(s)
        return out


def basis_matrix(basis, users=None, items=None):
    """CSR user x item 0/1 matrix and the id arrays of its rows and columns."""
    pairs = sorted(basis)
    users = np.array(sorted({u for u, _ in pairs})) if users is None else np.asarray(users)
    items = np.array(sorted({i for _, i in pairs})) if items is None else np.asarray(items)
    uix = {u: n for n, u in enumerate(users)}
    iix = {i: n for n, i in enumerate(items)}
    rows = np.fromiter((uix[u] for u, _ in pairs), dtype=np.int64, count=len(pairs))
    cols = np.fromiter((iix[i] for _, i in pairs), dtype=np.int64, count=len(pairs))
    m = sp.csr_matrix((np.ones(len(pairs), dtype=np.float64), (rows, cols)), shape=(len(users), len(items)))
    return m, users, items


def _topk_rows(row_scores: np.ndarray, k: int, exclude: int) -> tuple[np.ndarray, np.ndarray]:
    row_scores[exclude] = 0.0
    nz = np.flatnonzero(row_scores > 0)
    if len(nz) > k:
        part = nz[np.argpartition(-row_scores[nz], k - 1)[:k]]
    else:
        part = nz
    order = np.lexsort((part, -row_scores[part]))
    sel = part[order]
    return sel, row_scores[sel]


def swing_sparse(
    basis,
    alpha: float = 1.0,
    user_weight: bool = True,
    k: int = 50,
    progress_every: int = 0,
) -> TopK:
    """Vectorised Swing: for item i with users P (rows of B), ``s_i = 0.5 * colsum(P ∘ (W P))``
    where ``W_uv = w_u w_v / (alpha + |I_u ∩ I_v|)`` with a zero diagonal."""
    B, users, items = basis_matrix(basis)
    Bt = B.T.tocsr()
    deg = np.asarray(B.sum(axis=1)).ravel()
    w = 1.0 / np.sqrt(np.maximum(deg, 1)) if user_weight else np.ones(len(users))
    n_items = len(items)
    ids = np.full((n_items, k), -1, dtype=np.int64)
    scores = np.zeros((n_items, k), dtype=np.float32)
    t0 = time.perf_counter()
    for i in range(n_items):
        us = Bt.indices[Bt.indptr[i] : Bt.indptr[i + 1]]
        if len(us) < 2:
            continue
        P = B[us]  # |U_i| x items, sparse
        inter = (P @ P.T).toarray()  # |I_u ∩ I_v|
        W = np.outer(w[us], w[us]) / (alpha + inter)
        np.fill_diagonal(W, 0.0)
        WP = sp.csr_matrix(W) @ P
        s = 0.5 * np.asarray(P.multiply(WP).sum(axis=0)).ravel()
        sel, sc = _topk_rows(s, k, i)
        ids[i, : len(sel)] = sel
        scores[i, : len(sel)] = sc
        if progress_every and (i + 1) % progress_every == 0:
            dt = time.perf_counter() - t0
            logger.info("swing_sparse: %d/%d items (%.0f items/s)", i + 1, n_items, (i + 1) / dt)
    return TopK(items, ids, scores)


def cooc_sparse(basis, k: int = 50, iuf: bool = False) -> TopK:
    """ItemCF cosine with one sparse product ``B^T B`` and per-row top-k."""
    B, users, items = basis_matrix(basis)
    if iuf:
        deg = np.asarray(B.sum(axis=1)).ravel()
        C = (B.T @ sp.diags(1.0 / np.log1p(deg)) @ B).tocsr()
    else:
        C = (B.T @ B).tocsr()
    n = np.asarray(B.sum(axis=0)).ravel()
    n_items = len(items)
    ids = np.full((n_items, k), -1, dtype=np.int64)
    scores = np.zeros((n_items, k), dtype=np.float32)
    for i in range(n_items):
        cols = C.indices[C.indptr[i] : C.indptr[i + 1]]
        vals = C.data[C.indptr[i] : C.indptr[i + 1]] / np.sqrt(n[i] * n[cols])
        keep = cols != i
        cols, vals = cols[keep], vals[keep]
        if len(cols) > k:
            sel = np.argpartition(-vals, k - 1)[:k]
            cols, vals = cols[sel], vals[sel]
        order = np.lexsort((cols, -vals))
        ids[i, : len(cols)] = cols[order]
        scores[i, : len(cols)] = vals[order]
    return TopK(items, ids, scores)
