"""The vectorised recall returns exactly what the loop over history items returned (tests/oracles.py)."""

from __future__ import annotations

import numpy as np
import pytest
from oracles import recall_reference

from graphrecall.query.serve.snapshot import SnapshotRetriever


def _random_snapshot(seed: int, n: int = 300) -> SnapshotRetriever:
    rng = np.random.default_rng(seed)
    ids = [f"i{r:04d}" for r in range(n)]
    lists = {}
    for ch in ("swing", "cooc", "trans"):
        per = {}
        for item in ids:
            if rng.random() < 0.15:  # some items have no list
                continue
            m = int(rng.integers(1, 80))
            nbr = rng.choice([i for i in ids if i != item], m, replace=False)
            sc = np.sort(rng.choice([0.0, 0.5, 1.0, 2.0, 3.5], m) if rng.random() < 0.3 else rng.random(m))[::-1]
            per[item] = (np.asarray(nbr, dtype=object), sc.astype(np.float32))
        lists[ch] = per
    return SnapshotRetriever(items=set(ids), lists=lists)


@pytest.mark.parametrize("saved", [False, True], ids=["in-memory", "saved"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("channel", ["swing", "trans", "blend"])
def test_recall_equals_the_loop_over_history_items(seed, channel, saved, tmp_path):
    """In memory, the lists are factorised; saved and loaded, they are gathered from the CSR arrays (stored
    channels) or coded once per item (blend). Both equal the loop, byte for byte."""
    snap = _random_snapshot(seed)
    if saved:
        snap = SnapshotRetriever.load(snap.save(tmp_path / "snap"))
        assert snap._coded_lists(snap, ["i0001"], 5, channel, frozenset()) is not None  # the coded path is taken
    rng = np.random.default_rng(100 + seed)
    for case in range(25):
        h = list(rng.choice(sorted(snap.items), int(rng.integers(1, 90))))
        h += ["unknown-a", h[0]] if case % 3 == 0 else []  # an unknown item and a repeat
        weights = rng.choice([0.0, 0.25, 1.0, 2.0], len(h)) if case % 2 else None
        depth, k = int(rng.choice([1, 5, 50])), int(rng.choice([1, 10, 40]))
        got = snap.recall(h, k=k, channel=channel, weights=weights, depth=depth)
        want = recall_reference(snap, h, k=k, channel=channel, weights=weights, depth=depth)
        assert list(got.ids) == list(want.ids)
        assert got.scores.tobytes() == want.scores.tobytes()
        assert got.sources == want.sources
        assert (got.history, got.unknown) == (want.history, want.unknown)


def test_saved_blend_recall_gathers_the_stored_blend_lists(tmp_path):
    """A saved snapshot stores each item's blend list: recall with that blend reads them (no blend computed per
    history item) and equals the loop; another blend, or lists read deeper than stored, compute instead."""
    from graphrecall.query.serve.blend import BlendConfig
    from graphrecall.query.serve.snapshot import SERVED_BLEND_DEPTH

    mem = _random_snapshot(3)
    snap = SnapshotRetriever.load(mem.save(tmp_path / "snap"))
    assert snap.served_blend_config == str(mem.blend_config)
    assert len(snap.served_blend) == sum(len(mem.similar_items(i, k=1)) > 0 for i in mem.items)
    h = sorted(snap.items)[:60]
    got = snap.recall(h, k=20)
    assert snap._coded == {}  # gathered, nothing computed per item
    want = recall_reference(snap, h, k=20)
    assert (list(got.ids), got.scores.tobytes(), got.sources) == (list(want.ids), want.scores.tobytes(), want.sources)
    deep = snap.recall(h, k=20, depth=SERVED_BLEND_DEPTH)  # read deeper than stored: computed per item
    assert snap._coded and list(deep.ids) == list(recall_reference(snap, h, k=20, depth=SERVED_BLEND_DEPTH).ids)
    other = BlendConfig.parse("rrf:swing=1,trans=2")
    assert snap._served_blend(snap, 10) is not None
    snap.blend_config = other
    assert snap._served_blend(snap, 10) is None  # lists of another blend are never gathered
    assert list(snap.recall(h, k=20).ids) == list(recall_reference(snap, h, k=20).ids)
