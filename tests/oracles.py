"""Test oracles: plain implementations written to be obviously right, for the vectorised product code to equal."""

from __future__ import annotations

import numpy as np

from graphrecall.query.serve.blend import RRF_K


def blend_reference(per_channel, k, config, is_new=None):
    """:func:`graphrecall.query.serve.blend.blend` one item at a time, with dicts, written to be obviously right: the
    reference the vectorised blend must equal (``tests/test_retrievers.py``) and race (``bench/speed.py``).
    Returns ``(ids, float32 scores, channels)``."""
    score, best = {}, {}
    for ch, nb in per_channel.items():
        w = config.weight.get(ch, 0.0)
        if w == 0 or not len(nb):
            continue
        if config.method == "rrf":
            contrib = w / (RRF_K + np.arange(1, len(nb) + 1))
        else:
            if nb.scores[0] <= 0:
                continue
            contrib = w * np.maximum(np.asarray(nb.scores, dtype=np.float64), 0.0) / float(nb.scores[0])
        for i, c in zip(nb.ids, contrib):
            score[i] = score.get(i, 0.0) + float(c)
            if float(c) > best.get(i, (-1.0, ""))[0]:
                best[i] = (float(c), ch)
    if is_new is not None and config.new_items != 1.0:
        for i, new in zip(list(score), is_new(np.array(list(score), dtype=object))):
            score[i] *= config.new_items if new else 1.0
    order = sorted(score, key=lambda i: (-score[i], i))[:k]
    return order, [np.float32(score[i]) for i in order], [best[i][1] for i in order]


def recall_reference(retriever, history, k=10, channel="blend", weights=None, depth=50):
    """The unfiltered ``ItemRetriever.recall`` as it was before it was vectorised (2026-12-03): one
    ``similar_items`` call, one drop filter and one contribution array per history item, and a Python loop
    over every entry for the sources. The vectorised recall must return exactly this."""
    from graphrecall.query.serve.retriever import FILTER_DEPTH, Recalled

    history = [str(h) for h in history]
    weights = np.ones(len(history)) if weights is None else np.asarray(weights, dtype=np.float64)
    v = retriever.view()
    first = {}
    for h, w in zip(history, weights):
        first.setdefault(h, float(w))
    is_known = {h: v.has_item(h) for h in first}
    known = [h for h, ok in is_known.items() if ok]
    unknown = [h for h, ok in is_known.items() if not ok]
    drop = frozenset(first)
    ids, contrib, src = [], [], []
    for n, h in enumerate(known):
        nb = retriever.similar_items(h, k=depth + min(len(drop), FILTER_DEPTH), channel=channel, view=v)
        top = float(nb.scores[0]) if len(nb) else 0.0
        nb = nb.take(np.flatnonzero([str(i) not in drop for i in nb.ids])[:depth])
        if top <= 0 or first[h] == 0:
            continue
        ids.append(np.asarray(nb.ids, dtype=object))
        contrib.append(first[h] * np.maximum(np.asarray(nb.scores, np.float64), 0.0) / top)
        src.append(np.full(len(nb), n))
    if not ids:
        return Recalled(np.array([], dtype=object), np.array([], np.float32), [], known, unknown)
    cand, inv = np.unique(np.concatenate(ids).astype(str), return_inverse=True)
    contrib, src = np.concatenate(contrib), np.concatenate(src)
    total = np.bincount(inv, weights=contrib, minlength=len(cand))
    order = np.lexsort((cand, -total))
    order = order[total[order] > 0][:k]
    by = np.lexsort((src, -contrib, inv))
    rows = {int(c): [] for c in order}
    for c, s_, w in zip(inv[by], src[by], contrib[by]):
        if w > 0 and int(c) in rows:
            rows[int(c)].append(known[s_])
    return Recalled(
        cand[order].astype(object), total[order].astype(np.float32), [rows[int(c)] for c in order], known, unknown
    )
