"""The leak-free next-item protocol (graphrecall.query.evaluate.protocol) on hand-built logs with known answers."""

import numpy as np
import pandas as pd
import pytest

from graphrecall.embed.index import ItemVectorIndex
from graphrecall.query.channels.side import SideIndex
from graphrecall.query.data import matrix_lists, next_item_cases, split_stored_sessions, transition_matrix
from graphrecall.query.evaluate.protocol import (
    SIDE_MATCH_WEIGHTS,
    Catalogue,
    blend_grid,
    blend_grid_lists,
    blend_refinements,
    case_masks,
    covisit_lists,
    cutoff_time,
    paired_interval,
    score_lists,
    served_lists,
    side_popularity_lists,
    summarize,
    temporal_split,
)
from graphrecall.query.serve.retriever import BlendConfig
from graphrecall.query.serve.snapshot import SnapshotRetriever

MIN = 60


def log(rows):
    """(user, item, ts[, type]) rows as the event frame ingest builds (line = row order)."""
    return pd.DataFrame(
        [(u, i, r[3] if len(r) > 3 else "view", t, n + 1) for n, r in enumerate(rows) for u, i, t in [r[:3]]],
        columns=["user", "item", "type", "ts", "line"],
    )


# 21 events; T = their 80% quantile (numpy method 'higher': sorted index ceil(0.8 * 20) = 16) = minute 80,
# since 16 events come before minute 80 and 5 at or after it:
# u1: a(0) b(5) | gap | c(70) d(80) e(90)   -> the c-d-e session straddles T: d and e go nowhere
# u2: x(10) y(20)                            -> training
# u3: p(80) q(85) p(90)                      -> starts at T: a test session, cases p->q, q->p
# u5: w1(1) .. w11(11)                       -> training
HAND = [
    ("u1", "a", 0),
    ("u1", "b", 5 * MIN),
    ("u1", "c", 70 * MIN),
    ("u1", "d", 80 * MIN),
    ("u1", "e", 90 * MIN),
    ("u2", "x", 10 * MIN),
    ("u2", "y", 20 * MIN),
    ("u3", "p", 80 * MIN),
    ("u3", "q", 85 * MIN),
    ("u3", "p", 90 * MIN),
] + [("u5", f"w{n}", n * MIN) for n in range(1, 12)]


def test_cutoff_is_the_quantile_of_event_times():
    ts = np.array([t for _, _, t in HAND])
    assert cutoff_time(ts, 0.8) == 80 * MIN
    with pytest.raises(ValueError, match="quantile"):
        cutoff_time(ts, 1.0)
    with pytest.raises(ValueError, match="ingest"):
        cutoff_time(np.array([]), 0.8)


def test_no_event_at_or_after_the_cut_reaches_training():
    s = temporal_split(log(HAND))
    assert s.cutoff == 80 * MIN
    assert (s.train["ts"] < s.cutoff).all()
    assert sorted(set(s.train["item"]) - {f"w{n}" for n in range(1, 12)}) == ["a", "b", "c", "x", "y"]
    assert len(s.train) == 16  # c: the early part of the straddling session is training


def test_a_straddling_session_gives_its_late_events_to_neither_side():
    s = temporal_split(log(HAND))
    assert s.dropped_events == 2  # d and e
    assert [t["items"] for t in s.test_sessions] == [["p", "q", "p"]]
    assert all(t["start_ts"] >= s.cutoff for t in s.test_sessions)
    tested = {i for t in s.test_sessions for i in t["items"]}
    assert not {"d", "e"} & (tested | set(s.train["item"]))


def test_test_sessions_are_cut_on_the_whole_log():
    # u4's session starts before T and runs on past it in small steps: it straddles, so none of it is tested,
    # although its last events alone would look like a session starting after T
    rows = HAND + [("u4", "m", 75 * MIN), ("u4", "n", 82 * MIN), ("u4", "o", 88 * MIN)]
    s = temporal_split(log(rows), cutoff=80 * MIN)
    assert [t["items"] for t in s.test_sessions] == [["p", "q", "p"]]
    assert s.dropped_events == 4  # d, e, n, o
    val = temporal_split(s.train)  # validation: the same rule inside training
    assert (val.train["ts"] < val.cutoff).all() and val.cutoff < s.cutoff


def test_cases_are_consecutive_distinct_pairs():
    c = next_item_cases([{"items": ["p", "q", "p"]}, {"items": ["z"]}, {"items": ["a", "b", "c"]}])
    assert list(zip(c.query, c.target)) == [("p", "q"), ("q", "p"), ("a", "b"), ("b", "c")]


def test_stored_sessions_split_by_event_weighted_start():
    sessions = [
        {"start_ts": 0, "end_ts": 10, "items": ["a", "b"], "n_events": 6},
        {"start_ts": 20, "end_ts": 60, "items": ["c", "d"], "n_events": 2},  # straddles the cut
        {"start_ts": 50, "end_ts": 55, "items": ["e", "f"], "n_events": 2},
    ]
    t, train, held = split_stored_sessions(sessions, 0.8)
    assert t == 50  # event-weighted starts: 0 x6, 20 x2, 50 x2
    assert [s["items"] for s in train] == [["a", "b"]] and [s["items"] for s in held] == [["e", "f"]]
    with pytest.raises(ValueError, match="ingest"):
        split_stored_sessions([], 0.8)


def catalogue():
    side = {
        "a": {"category": "c1", "brand": "b1", "price_bucket": "8-16"},
        "b": {"category": "c1", "brand": "b2", "price_bucket": "8-16"},
        "c": {"category": "c1", "brand": "b1", "price_bucket": "32-64"},
        "d": {"category": "c2", "brand": "b1", "price_bucket": "8-16"},
        "e": {"category": "c1", "brand": "b9", "price_bucket": "1-2"},
        "new": {"category": "c1", "brand": "b1", "price_bucket": "8-16"},
    }
    train_items = ["a"] * 5 + ["b"] * 4 + ["c"] * 1 + ["d"] * 9 + ["e"] * 2
    return Catalogue.build(side, train_items)


def test_catalogue_popularity_and_case_subsets():
    cat = catalogue()
    assert list(cat.item_ids) == ["a", "b", "c", "d", "e", "new"]
    assert cat.pop.tolist() == [5, 4, 1, 9, 2, 0] and cat.trained.tolist() == [True] * 5 + [False]
    cases = next_item_cases([{"items": ["a", "new", "b"]}])
    m = case_masks(cases, cat)
    assert m["warm"].tolist() == [False, True] and m["cold"].tolist() == [True, False]
    assert m["cold_query"].tolist() == [False, True]


def test_side_field_match_orders_category_then_brand_then_price_then_popularity():
    cat = catalogue()
    # for a (c1, b1, 8-16): new matches all three (pop 0); c category+brand; b category+price; e category; d brand+price
    assert side_popularity_lists(cat, ["a"], weights=SIDE_MATCH_WEIGHTS)["a"] == ["new", "c", "b", "e", "d"]
    # popularity in the category: c1 items by popularity, then the rest
    assert side_popularity_lists(cat, ["a"])["a"] == ["b", "e", "c", "new", "d"]
    assert side_popularity_lists(cat, ["a"], k=2)["a"] == ["b", "e"]


def test_side_price_proximity_by_hand():
    """Inside one category and brand, price proximity lifts the item nearest the query's price; items
    without a (valid) price get none; a snapshot saved before the price term keeps its old lists."""
    ids = ["q", "a", "b", "c", "d", "e"]
    side = {"category": ["c1"] * 5 + ["c2"], "brand": ["b1"] * 6, "price": [100, 1000, 110, None, "bad", 100]}
    pop = [0, 9, 1, 5, 2, 9]
    plain = SideIndex(ids, side, pop, price_weight=0.0)
    assert list(plain.similar_items("q", 10)[0]) == ["a", "c", "d", "b", "e"]
    served = SideIndex(ids, side, pop, price_weight=2.0, price_scale=1.0)  # the served defaults
    assert (SideIndex(ids, side, pop).price_weight, SideIndex(ids, side, pop).price_scale) == (2.0, 1.0)
    got, scores = served.similar_items("q", 10)
    assert list(got) == ["b", "a", "c", "d", "e"]  # b: 10% above the query's price; a: 10x, but popular
    w, s = served.price_weight, served.price_scale
    norm = 4.0 + 2.0 + w + 1.0
    assert scores[0] == pytest.approx(
        (6.0 + w * np.exp(-abs(np.log1p(110) - np.log1p(100)) / s) + 1 / 10) / norm, rel=1e-6
    )
    assert scores[4] == pytest.approx((2.0 + w + 9 / 10) / norm, rel=1e-6)  # e: brand and the same price
    again = SideIndex.from_json(served.to_json())
    assert list(again.similar_items("q", 10)[0]) == list(got)
    old = served.to_json()
    del old["price_weight"], old["price_scale"]
    assert list(SideIndex.from_json(old).similar_items("q", 10)[0]) == ["a", "c", "d", "b", "e"]
    with pytest.raises(ValueError, match="price_scale > 0"):
        SideIndex(ids, side, pop, price_scale=0.0)


def test_side_index_pruned_lists_equal_a_full_scan():
    """SideIndex scores only the items sharing a field with the query when the rest cannot reach its list;
    on a catalogue with big and small categories, missing fields and prices, new items and tied scores,
    every list equals the one a scan of every item gives, and the pruning does skip items."""
    rng = np.random.default_rng(3)
    n = 3000
    cats = np.where(rng.random(n) < 0.9, rng.integers(0, 4, n), rng.integers(4, 60, n))  # 4 big, 56 small
    side = {
        "category": [f"c{c}" if rng.random() > 0.02 else None for c in cats],
        "brand": [f"b{b}" if rng.random() > 0.3 else None for b in rng.integers(0, 40, n)],
        "price_bucket": [f"p{b}" for b in rng.integers(0, 8, n)],
        "price": [
            None if rng.random() < 0.1 else float(rng.choice([10.0, 20.0, 30.0, 99.0]) * rng.integers(1, 4))
            for _ in range(n)
        ],
    }
    pop = np.where(rng.random(n) < 0.2, 0, rng.integers(1, 5, n))  # new items and many equal counts
    ids = [f"i{r:05d}" for r in range(n)]
    for price_weight in (0.0, 2.0):
        index = SideIndex(ids, side, pop, price_weight=price_weight)
        index.prune_from = 0  # prune at any size
        full_scan, calls = index._rank_key_scan, []
        index._rank_key_scan = lambda *a: calls.append(a) or full_scan(*a)  # counts the fallbacks
        for r in range(0, n, 7):
            key = tuple(int(c) for c in index.codes[r])
            lp = None if index._lp is None or np.isnan(index._lp[r]) else float(index._lp[r])
            for depth in (1, 21, 201):
                fast, slow = index._rank_key(key, lp, depth), full_scan(key, lp, depth)
                np.testing.assert_array_equal(fast[0], slow[0])
                np.testing.assert_array_equal(fast[1], slow[1])
        assert len(calls) < 0.1 * 3 * len(range(0, n, 7))  # the pruning does skip the full scan
        nothing = (0,) * len(index.fields)  # a query without side fields: every item is scanned
        np.testing.assert_array_equal(index._rank_key(nothing, None, 50)[0], full_scan(nothing, None, 50)[0])
        assert calls[-1][0] == nothing


def test_covisitation_is_directed_and_filled():
    cat = catalogue()
    sessions = [{"items": ["a", "b", "a", "c"]}, {"items": ["a", "b"]}, {"items": ["x-unknown", "a"]}]
    m = transition_matrix(sessions, cat)
    assert m[cat.index["a"], cat.index["b"]] == 2 and m[cat.index["a"], cat.index["c"]] == 1
    assert m[cat.index["b"], cat.index["a"]] == 1 and m.sum() == 4  # the unknown item's pair is left out
    trans = matrix_lists(m, cat.item_ids, 10)
    assert list(trans["a"][0]) == ["b", "c"]
    fill = side_popularity_lists(cat, ["a", "d"])
    got = covisit_lists(trans, ["a", "d"], k=4, fill=fill)
    assert got["a"] == ["b", "c", "e", "new"] and got["d"] == fill["d"][:4]


def test_hits_and_ndcg_by_hand():
    cases = next_item_cases([{"items": ["a", "b"]}, {"items": ["a", "c"]}, {"items": ["d", "a"]}])
    hit, ndcg = score_lists({"a": ["x", "b", "y"], "d": []}, cases, k=2)
    assert hit.tolist() == [1, 0, 0] and ndcg.tolist() == pytest.approx([1 / np.log2(3), 0, 0])
    s = summarize(hit, ndcg, {"all": np.ones(3, bool), "none": np.zeros(3, bool)}, k=2)
    assert s["all"]["hr@2"] == pytest.approx(1 / 3) and np.isnan(s["none"]["hr@2"])


def test_paired_interval():
    a = np.array([1.0, 0, 1, 1, 0, 1] * 50)
    assert paired_interval(a, a) == (0.0, 0.0, 0.0)
    d, lo, hi = paired_interval(a, np.zeros_like(a))
    assert d == pytest.approx(2 / 3) and lo < d < hi


def test_blend_grid_equals_the_served_blend():
    """The grid search reads the same lists and ranks exactly as ``SnapshotRetriever.similar_items(channel='blend')``."""
    rng = np.random.default_rng(3)
    ids = np.array([f"i{n:02d}" for n in range(40)], dtype=object)

    def rand_lists(depth):
        out = {}
        for q in ids:
            pick = rng.choice(40, size=depth, replace=False)
            sc = np.sort(rng.integers(1, 5, size=depth).astype(np.float32))[::-1]  # many ties
            out[q] = (ids[pick], sc)
        return out

    side = {"category": [f"c{n % 3}" for n in range(40)], "brand": [f"b{n % 5}" for n in range(40)]}
    r = SnapshotRetriever(
        set(ids),
        {"swing": rand_lists(8), "cooc": rand_lists(12), "trans": rand_lists(3)},
        ItemVectorIndex(ids, rng.normal(size=(40, 6)).astype(np.float32)),
        side=SideIndex(ids, side, rng.integers(0, 9, size=40)),
    )
    grid = blend_grid()
    assert len(grid) > 100
    configs = grid[::7] + [BlendConfig.parse("rrf:swing=1,side=0.5")]
    got = blend_grid_lists(r, ids, configs, k=10)
    for cfg, lists in zip(configs, got):
        r.blend_config = cfg
        assert lists == served_lists(r, ids, "blend", k=10), cfg


def test_blend_refinements_add_the_later_channels_to_stage_ones_choice():
    best = BlendConfig.parse("score:rank=1,trans=1,new=0.7")
    got = blend_refinements(best, weights=(0.5, 1.0))
    assert all(c.new_items == 0.7 and c.weight.get("rank") == 1 for c in got)
    specs = {str(c) for c in got}
    assert "score:rank=1,seqrules=0.5,trans=1,new=0.7" in specs  # seqrules added
    assert "score:rank=1,seqrules=0.5,new=0.7" in specs  # seqrules in trans's place
    assert "score:gnn=1,rank=1,trans=1,new=0.7" in specs  # gnn added
    assert "score:gnn=0.5,rank=1,seqrules=1,trans=1,new=0.7" in specs  # both
    assert len(got) == 8 + 6  # 3 x 3 - 1 combinations, and the 6 with seqrules once more without trans
    assert blend_refinements(BlendConfig.parse("rrf:swing=1")) == []


def test_search_blend_takes_the_best_of_both_stages(monkeypatch):
    """A stage-two config wins when it scores best; on a tie the earlier one does."""
    import graphrecall.query.evaluate.protocol as protocol

    grid = [BlendConfig.parse("score:trans=1"), BlendConfig.parse("score:rank=1")]
    monkeypatch.setattr(protocol, "blend_grid", lambda: grid)
    monkeypatch.setattr(protocol, "blend_grid_lists", lambda r, q, configs, k=20: [{"c": str(c)} for c in configs])
    value = {"score:trans=1": 1.0, "score:rank=1": 2.0, "score:rank=1,seqrules=0.5": 3.0, "score:gnn=4,rank=1": 3.0}
    scored = protocol.search_blend(None, ["q"], lambda lists: (value.get(lists["c"], 0.0), lists["c"]))
    assert [str(c) for c, _, _ in scored[:2]] == ["score:trans=1", "score:rank=1"]
    assert len(scored) == 2 + len(blend_refinements(grid[1]))
    best = protocol.best_of(scored)
    # gnn alone comes first in stage two's order (seqrules 0, gnn 0.25..4, then seqrules 0.25, ...)
    assert str(best[0]) == "score:gnn=4,rank=1" and best[1] == 3.0


def test_session_rows_accept_a_frame_in_file_order():
    """Two users interleaved in time, as a log file has them: the sessions are whole, not one event each."""
    from graphrecall.ingest.formats import Event
    from graphrecall.ingest.sessions import events_frame, session_rows

    events = [
        Event("u1", "a", "view", 100, 1),
        Event("u2", "x", "view", 110, 2),
        Event("u1", "b", "view", 120, 3),
        Event("u2", "y", "purchase", 130, 4),
        Event("u1", "c", "view", 9000, 5),
    ]
    rows = session_rows(events_frame(events))
    assert [(r["user"], r["items"], r["booked"]) for r in rows] == [
        ("u1", ["a", "b"], None),
        ("u1", ["c"], None),
        ("u2", ["x", "y"], "y"),
    ]
