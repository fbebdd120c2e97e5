"""EGES's SGD step as one compiled loop (numba), the way word2vec's C loop fuses a pair's work.

:func:`sgd_batch` does for one batch what :func:`embed.eges.pair_gradients` and the SGD update do in torch
operations: every pair's gradient is taken at the parameters the batch started from (so the result does not
depend on the order of pairs within it), then the per-item tables (ID, attention, context) move by ``-lr``
times it, and the side tables' gradients are summed into ``side_grad`` for Adam. Tested equal to
``pair_gradients`` (``tests/test_eges.py``).

Pairs are split over numba's threads. Updates are split by blocks of 16 table rows (block number modulo the
thread count; blocks, so that two threads never write one cache line), so each row is written by one thread,
in pair order: the same numbers whatever the thread count.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def sgd_batch(
    item_w,
    att_w,
    ctx_w,
    side_w,
    side_grad,
    centre,
    codes,
    context,
    weight,
    lr,
    s_buf,
    da_buf,
    h_buf,
    dh_buf,
    g_buf,
    n_threads,
):
    """One batch of weighted skip-gram SGD with EGES's attention over ``1 + F`` stacked rows.

    ``item_w`` (n, d), ``att_w`` (n, 1 + F), ``ctx_w`` (n, d): float32 tables, updated in place.
    ``side_w``: a tuple of F (c_f, d) tables, read only; ``side_grad``: a matching tuple, gradients added.
    ``centre`` (B,) items with side ``codes`` (B, F); ``context`` (B, 1 + K): the positive context first,
    then K negatives; ``weight`` (B,) per pair. They are gathered beforehand by :func:`batch_inputs`, a
    tight loop that overlaps the cache misses; gathering them from the pair table inside this loop cost
    more than that pass (profiled once: 1.7x this loop's time). Scratch: ``s_buf``, ``da_buf`` (B, 1 + F); ``h_buf``, ``dh_buf`` (B, d); ``g_buf`` (B, 1 + K),
    float32. ``n_threads``: numba's thread count (``numba.get_num_threads()``).
    Returns the summed loss ``-sum_b w_b (log s(h_b.u_pos) + sum_k log s(-h_b.u_k))``.
    """
    n_pairs, n_fields, n_ctx, dim = centre.shape[0], codes.shape[1], context.shape[1], item_w.shape[1]
    losses = np.zeros(n_pairs, np.float64)
    for b in numba.prange(n_pairs):
        c = centre[b]
        top = att_w[c, 0]
        for j in range(1, n_fields + 1):
            top = max(top, att_w[c, j])
        tot = 0.0
        for j in range(n_fields + 1):
            s_buf[b, j] = math.exp(att_w[c, j] - top)
            tot += s_buf[b, j]
        for j in range(n_fields + 1):
            s_buf[b, j] /= tot
        s0 = s_buf[b, 0]
        for x in range(dim):
            h_buf[b, x] = s0 * item_w[c, x]
            dh_buf[b, x] = 0.0
        for f in range(n_fields):
            tab, row, sj = side_w[f], codes[b, f], s_buf[b, 1 + f]
            for x in range(dim):
                h_buf[b, x] += sj * tab[row, x]
        w = weight[b]
        loss = 0.0
        for k in range(n_ctx):
            u = context[b, k]
            dot = 0.0
            for x in range(dim):
                dot += ctx_w[u, x] * h_buf[b, x]
            sign = 1.0 if k == 0 else -1.0
            z = sign * dot
            if z >= 0:  # -log s(z) and its derivative s(z) - 1, without overflow
                ez = math.exp(-z)
                loss += math.log1p(ez)
                g = -ez / (1.0 + ez)
            else:
                ez = math.exp(z)
                loss += math.log1p(ez) - z
                g = -1.0 / (1.0 + ez)
            g *= sign * w  # dL / d(h.u)
            g_buf[b, k] = g
            for x in range(dim):
                dh_buf[b, x] += g * ctx_w[u, x]
        losses[b] = loss * w
        # through the softmax: da_j = s_j (e_j.dh - sum_i s_i e_i.dh), where sum_i s_i e_i = h
        hdh = 0.0
        ds = 0.0
        for x in range(dim):
            hdh += h_buf[b, x] * dh_buf[b, x]
            ds += item_w[c, x] * dh_buf[b, x]
        da_buf[b, 0] = s0 * (ds - hdh)
        for f in range(n_fields):
            tab, row = side_w[f], codes[b, f]
            ds = 0.0
            for x in range(dim):
                ds += tab[row, x] * dh_buf[b, x]
            da_buf[b, 1 + f] = s_buf[b, 1 + f] * (ds - hdh)
    for t in numba.prange(n_threads):  # each row belongs to one thread and is updated in pair order
        for b in range(n_pairs):
            c = centre[b]
            if (c >> 4) % n_threads == t:
                step = lr * s_buf[b, 0]
                for x in range(dim):
                    item_w[c, x] -= step * dh_buf[b, x]
                for j in range(n_fields + 1):
                    att_w[c, j] -= lr * da_buf[b, j]
            for f in range(n_fields):
                row = codes[b, f]
                if (row >> 4) % n_threads == t:
                    grad, sj = side_grad[f], s_buf[b, 1 + f]
                    for x in range(dim):
                        grad[row, x] += sj * dh_buf[b, x]
            for k in range(n_ctx):
                u = context[b, k]
                if (u >> 4) % n_threads == t:
                    step = lr * g_buf[b, k]
                    for x in range(dim):
                        ctx_w[u, x] -= step * h_buf[b, x]
    return losses.sum()


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@numba.njit(inline="always")
def _uniform(key, counter):
    """A float in [0, 1) from a counter-based generator: splitmix64's finaliser of ``key + counter * golden``.
    Each draw depends only on (key, counter), so draws do not depend on the thread that makes them."""
    z = key + np.uint64(counter) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return float(z >> np.uint64(11)) * _TO_UNIT


@numba.njit(inline="always")
def _index(u, n):
    """The index in ``range(n)`` that a float ``u`` in [0, 1) picks uniformly."""
    return min(int(u * n), n - 1)


@numba.njit(parallel=True, cache=True, nogil=True)
def batch_inputs(
    pairs,
    perm,
    start,
    weight,
    side_codes,
    noise_prob,
    noise_alias,
    n_noise,
    market,
    market_order,
    market_offsets,
    market_counts,
    n_market,
    key,
    centre,
    codes,
    context,
    weights,
):
    """Fill one batch's inputs for :func:`sgd_batch` (or ``pair_gradients``) from pairs
    ``pairs[perm[start:start + B]]``, ``B = len(centre)``.

    ``context[b]`` is the pair's context, then ``n_noise`` negatives drawn from the alias table
    (``noise_prob``, ``noise_alias``: item ``k`` kept with probability ``noise_prob[k]``, else
    ``noise_alias[k]``), then ``n_market`` from the centre's market: uniform over ``market_order[o:o + n]``
    with ``o, n = market_offsets[m], market_counts[m]``, ``m = market[centre]`` (code 0, no market: uniform
    over all items). Draws come from :func:`_uniform` with ``key`` (one per epoch) and the pair's position in
    the epoch: the same inputs whatever the thread count.
    """
    n_items = noise_prob.shape[0]
    n_ctx = 1 + n_noise + n_market
    for b in numba.prange(centre.shape[0]):
        pos = start + b
        p = perm[pos]
        c = pairs[p, 0]
        centre[b] = c
        context[b, 0] = pairs[p, 1]
        weights[b] = weight[p]
        for f in range(side_codes.shape[1]):
            codes[b, f] = side_codes[c, f]
        counter = pos * n_ctx * 2
        for k in range(n_noise):
            i = _index(_uniform(key, counter), n_items)
            keep = _uniform(key, counter + 1) < noise_prob[i]
            context[b, 1 + k] = i if keep else noise_alias[i]
            counter += 2
        m = market[c] if n_market else 0
        for k in range(n_market):
            u = _uniform(key, counter)
            if m == 0:
                context[b, 1 + n_noise + k] = _index(u, n_items)
            else:
                context[b, 1 + n_noise + k] = market_order[market_offsets[m] + _index(u, market_counts[m])]
            counter += 2


@numba.njit(cache=True, nogil=True)
def window_pairs(walks, reach, window):
    """(centre, context) rows for every two distinct items at most ``reach[centre position]`` (and
    ``window``) apart in a walk; -1 is padding. Rows come offset by offset (1, then 2, ...), each as the
    pairs whose centre comes first, then those whose centre comes second, in walk order."""
    n, length = walks.shape
    total = 0
    for step in range(2):  # count, then fill
        out = np.empty((total, 2), walks.dtype)
        k = 0
        for o in range(1, min(window, length - 1) + 1):
            for second in range(2):  # the centre first (a), or second (b)
                for r in range(n):
                    for i in range(length - o):
                        a, b = walks[r, i], walks[r, i + o]
                        if a < 0 or b < 0 or a == b or reach[r, i + o * second] < o:
                            continue
                        if step == 1:
                            out[k, 0], out[k, 1] = (b, a) if second else (a, b)
                        k += 1
        total = k
    return out
