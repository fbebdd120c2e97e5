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
