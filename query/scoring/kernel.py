"""Swing top-k for a batch of items over an in-memory CSR basis, compiled with numba.

The same algorithm as the in-database procedure (``java-procedures/.../Scores.java``): for item
``i``, each pair of its users ``u < v`` (in basis order) is intersected with a stamp array (cost
``|I_v|`` per pair); a pair with ``>= 2`` common items adds ``w / (alpha + |I_u ∩ I_v|)`` to every
common item ``j != i``, with ``w = 1 / sqrt(|I_u| |I_v|)`` (or 1). The top ``k`` with
``score > min_score`` are ordered by the score rounded to 12 decimals, then by the other item's
index; index the items in id order and this is Cypher's ``ORDER BY round(score, 12) DESC, j.id``.

Memory is ``O(items)`` per call plus the shared CSR arrays, so Spark tasks can each take a slice of
the items against one broadcast basis (:func:`~graphrecall.query.scoring.spark.swing`, ``plan="items"``).
"""

from __future__ import annotations

import os

import numba
import numpy as np


# numba caches compiled code beside the source file, which a zipped package (spark-submit --py-files) has not
@numba.njit(cache=os.path.isfile(__file__), nogil=True)
def swing_topk(items, i_start, i_users, u_start, u_items, alpha, user_weight, k, min_score):
    """Top-``k`` Swing neighbours of each item in ``items``.

    ``i_start``/``i_users``: item -> users CSR; ``u_start``/``u_items``: user -> items CSR (item
    indices in id order). Returns ``(i, j, score, rank)`` arrays, best first per item, rank from 1.
    """
    n_items = len(i_start) - 1
    stamp = np.zeros(n_items, np.int64)
    seen = np.full(n_items, -1, np.int64)
    acc = np.zeros(n_items, np.float64)
    touched = np.empty(n_items, np.int64)
    max_deg = 0
    for u in range(len(u_start) - 1):
        max_deg = max(max_deg, u_start[u + 1] - u_start[u])
    buf = np.empty(max_deg + 1, np.int64)
    cap = len(items) * k
    out_i = np.empty(cap, np.int64)
    out_j = np.empty(cap, np.int64)
    out_s = np.empty(cap, np.float64)
    out_r = np.empty(cap, np.int64)
    n_out = 0
    token = 0
    for q in range(len(items)):
        i = items[q]
        n_touched = 0
        s, e = i_start[i], i_start[i + 1]
        for a in range(s, e - 1):
            u = i_users[a]
            token += 1
            for p in range(u_start[u], u_start[u + 1]):
                stamp[u_items[p]] = token
            du = u_start[u + 1] - u_start[u]
            for c in range(a + 1, e):
                v = i_users[c]
                cnt = 0
                for p in range(u_start[v], u_start[v + 1]):
                    j = u_items[p]
                    if stamp[j] == token:
                        buf[cnt] = j
                        cnt += 1
                if cnt < 2:
                    continue
                w = 1.0 / np.sqrt(float(du) * (u_start[v + 1] - u_start[v])) if user_weight else 1.0
                add = w / (alpha + cnt)
                for t in range(cnt):
                    j = buf[t]
                    if j != i:
                        if seen[j] != i:
                            seen[j] = i
                            acc[j] = 0.0
                            touched[n_touched] = j
                            n_touched += 1
                        acc[j] += add
        # top k: ascending index first, then a stable sort on the rounded score, descending
        cand = np.sort(touched[:n_touched])
        keys = np.empty(n_touched, np.float64)
        m = 0
        for t in range(n_touched):
            j = cand[t]
            if acc[j] > min_score:
                cand[m] = j
                keys[m] = -(np.rint(acc[j] * 1e12) / 1e12)
                m += 1
        order = np.argsort(keys[:m], kind="mergesort")
        for r in range(min(k, m)):
            j = cand[order[r]]
            out_i[n_out] = i
            out_j[n_out] = j
            out_s[n_out] = acc[j]
            out_r[n_out] = r + 1
            n_out += 1
    return out_i[:n_out], out_j[:n_out], out_s[:n_out], out_r[:n_out]


def csr_from_edges(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int):
    """``(i_start, i_users, u_start, u_items)`` of the edges ``(users[e], items[e])``, int32 where it fits."""
    dt = np.int32 if max(n_users, n_items, len(users)) < 2**31 - 1 else np.int64
    by_item = np.lexsort((users, items))
    i_start = np.zeros(n_items + 1, np.int64)
    np.cumsum(np.bincount(items, minlength=n_items), out=i_start[1:])
    by_user = np.lexsort((items, users))
    u_start = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=u_start[1:])
    return i_start, users[by_item].astype(dt), u_start, items[by_user].astype(dt)


def work_estimate(i_start, i_users, u_start) -> np.ndarray:
    """Per item, the stamp-intersection work: ``|U_i| * sum_{u in U_i} |I_u|`` (for balancing slices)."""
    deg = np.diff(u_start)
    n = np.diff(i_start)
    sums = np.zeros(len(n), np.float64)
    nz = n > 0
    if nz.any():
        sums[nz] = np.add.reduceat(deg[i_users].astype(np.float64), i_start[:-1][nz])
    return n * sums
