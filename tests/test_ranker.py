"""The rank channel (query/ranker.py): features on a hand-built log, labels only from after each cut,
and the pipeline's RANKED lists served by both retrievers."""

import numpy as np
import pytest

import graphrecall.query.channels.rank as ranker_mod
from graphrecall.query.channels.rank import FEATURES, RankFeatures, fit_ranker, rank_lists
from graphrecall.query.data import split_stored_sessions
from graphrecall.query.evaluate.protocol import Catalogue

HOUR = 3600
SIDE = {
    "a": {"category": "X", "brand": "p"},
    "b": {"category": "X", "brand": "q"},
    "z": {"category": "X"},
    "c": {"category": "Y"},
    "d": {"category": "Y"},
    "y": {"category": "Y"},
    "n": {"category": "X"},
}


def sessions(hours: int = 40) -> list[dict]:
    """Each hour: one shopper opens a then b, one opens c then d, and three open z (or y) alone, so z and y are
    the most popular items of their categories but never follow anything. n has no events (new)."""
    out = []
    for h in range(hours):
        t = h * HOUR
        out += [
            {"user": f"u{h}", "start_ts": t, "end_ts": t + 60, "items": ["a", "b"]},
            {"user": f"v{h}", "start_ts": t + 100, "end_ts": t + 160, "items": ["c", "d"]},
        ]
        out += [
            {"user": f"w{h}_{k}", "start_ts": t + 200 + k, "end_ts": t + 200 + k, "items": ["z" if k % 2 else "y"]}
            for k in range(6)
        ]
    return out


def test_features_on_a_hand_built_log():
    s = sessions(4)
    cat = Catalogue.build(SIDE, (i for x in s for i in x["items"]))
    f = RankFeatures(s, cat)
    a, b, z, n, c = cat.rows(["a", "b", "z", "n", "c"])
    assert set(cat.item_ids[f.candidates(a)]) >= {"b", "z", "n"}  # co-visited, same category, new
    x = dict(zip(FEATURES, f.features(np.array([a, a, a, b]), np.array([b, z, n, a])).T))
    assert list(x["next_count"]) == [4, 0, 0, 0] and list(x["prev_count"]) == [0, 0, 0, 4]
    assert list(x["next_share"]) == [1, 0, 0, 0]
    assert list(x["same_category"]) == [1, 1, 1, 1] and list(x["same_brand"]) == [0, 0, 0, 0]
    assert list(x["new"]) == [0, 0, 1, 0]
    assert x["log_pop"][1] == pytest.approx(np.log1p(12)) and x["log_pop"][0] == pytest.approx(np.log1p(4))
    assert x["category_next"][0] > 0.99  # every transition out of category X stays in X
    # scale-free popularity: z leads category X (12 of 40 events), a and b have 4 and n none
    assert list(x["log_rank_in_category"][:3]) == [pytest.approx(np.log1p(2)), 0.0, pytest.approx(np.log1p(3))]
    assert x["log_pop_share"][1] == pytest.approx(np.log(12 / 40 + 1e-7))
    assert dict(zip(FEATURES, f.features(np.array([a]), np.array([c])).T))["category_next"][0] < 0.01


def test_the_model_learns_that_the_next_item_beats_category_popularity():
    lists, report = rank_lists(sessions(), SIDE, k=5)
    assert report.positives > 0 and report.candidate_recall == 1.0
    assert lists["a"][0][0] == "b" and lists["c"][0][0] == "d"  # side-field match alone would put z and y first
    assert all(np.all(np.diff(sc) <= 0) for _, sc in lists.values())
    assert all(sc[0] == 1.0 and np.all(sc > 0) for _, sc in lists.values())  # exp(s - s_top)


def test_new_weight_is_a_fixed_penalty_on_items_without_events():
    s = sessions()
    ranker = fit_ranker(s, SIDE)
    cat = Catalogue.build(SIDE, (i for x in s for i in x["items"]))
    feats = RankFeatures(s, cat)
    plain, damped = ranker.top_lists(feats, ["a"], k=10), ranker.top_lists(feats, ["a"], k=10, new_weight=0.5)
    ids, sc = plain["a"]
    n = list(ids).index("n")
    dids, dsc = damped["a"]
    assert dsc[list(dids).index("n")] == pytest.approx(0.5 * sc[n], rel=1e-6)
    assert [i for i in dids if i != "n"] == [i for i in ids if i != "n"]  # the others keep their order and scores
    assert np.allclose(dsc[dids != "n"], sc[ids != "n"])


def test_labels_come_only_from_sessions_after_each_cut(monkeypatch):
    seen = []
    real = ranker_mod.RankFeatures

    class Spy(real):
        def __init__(self, s, cat):
            seen.append(list(s))
            super().__init__(s, cat)

    cases_from = []
    real_cases = ranker_mod.next_item_cases

    def spy_cases(held):
        cases_from.append(list(held))
        return real_cases(held)

    monkeypatch.setattr(ranker_mod, "RankFeatures", Spy)
    monkeypatch.setattr(ranker_mod, "next_item_cases", spy_cases)
    s = sessions()
    fit_ranker(s, SIDE, quantiles=(0.5, 0.8))
    assert len(seen) == len(cases_from) == 2
    for q, feats_sessions, held in zip((0.5, 0.8), seen, cases_from):
        cut, train, later = split_stored_sessions(s, q)
        assert feats_sessions == train and held == later
        assert max(x["end_ts"] for x in feats_sessions) < cut <= min(x["start_ts"] for x in held)


def test_a_log_too_short_to_train_says_how_to_fix_it():
    with pytest.raises(ValueError, match="Ingest a longer log"):
        fit_ranker(
            [
                {"user": "u", "start_ts": 0, "end_ts": 1, "items": ["a"]},
                {"user": "v", "start_ts": 5, "end_ts": 6, "items": ["b"]},
            ],
            SIDE,
        )


@pytest.mark.slow
def test_pipeline_rank_lists_are_what_both_retrievers_serve(driver, tmp_path):
    from graphrecall.app.pipeline import PipelineConfig, compute_rank, compute_scores
    from graphrecall.ingest.synthetic import generate_rees46
    from graphrecall.ingest.writer import ingest_events
    from graphrecall.query.evaluate.tune import read_item_side, read_sessions
    from graphrecall.query.serve.neo4j import Neo4jRetriever
    from graphrecall.query.serve.snapshot import SnapshotRetriever

    data = generate_rees46(tmp_path / "gen.csv", n_users=150, random_seed=2)
    ingest_events(driver, data, "rees46", progress=False)
    cfg = PipelineConfig(top_k=10)
    compute_scores(driver, cfg, progress=False)
    report = compute_rank(driver, cfg, progress=False)
    expected, _ = rank_lists(read_sessions(driver), read_item_side(driver), k=10)
    assert report.written == sum(len(ids) for ids, _ in expected.values()) > 0
    snap, live = SnapshotRetriever.from_neo4j(driver), Neo4jRetriever(driver)
    items = sorted(expected)[:25]
    for item in items:
        ids, scores = expected[item]
        s = snap.similar_items(item, k=10, channel="rank")
        assert list(s.ids) == list(ids) and np.allclose(s.scores, scores)
        assert list(live.similar_items(item, k=10, channel="rank").ids) == list(ids)
    # a refit replaces the relationships instead of adding to them
    assert compute_rank(driver, cfg, progress=False).written == report.written
    with driver.session() as s:
        assert s.run("MATCH ()-[r:RANKED]->() RETURN count(r)").single()[0] == report.written
    # the training budget reaches the fit: at most 4 cases per cut, each with its positive and 3 negatives
    from dataclasses import replace

    small = compute_rank(driver, replace(cfg, rank=replace(cfg.rank, cases_per_cut=4, negatives=3)), progress=False)
    assert report.cases > 24 >= small.cases > 0 and small.rows <= 4 * small.cases


def test_a_skipped_fit_removes_the_lists_of_an_earlier_one(driver, caplog):
    from graphrecall.app.pipeline import PipelineConfig, _rank_or_warn
    from graphrecall.graph_schema.store.lists import write_rank_lists

    with driver.session() as s:
        s.run("UNWIND ['a', 'b'] AS id CREATE (:Item {id: id})").consume()
    assert write_rank_lists(driver, {"a": (["b"], [1.0])}) == 1
    # no sessions at all: nothing to train on, so the old list would be stale
    assert _rank_or_warn(driver, PipelineConfig(), "neo4j", progress=False) is None
    with driver.session() as s:
        assert s.run("MATCH ()-[r:RANKED]->() RETURN count(r)").single()[0] == 0
    assert "RANKED lists of an earlier fit removed: the graph has no sessions" in caplog.text


def test_training_cases_per_cut_are_capped():
    from graphrecall.query.channels.rank import training_rows

    s = sessions()
    _, _, _, full = training_rows(s, SIDE, quantiles=(0.5, 0.8))
    _, _, capped_group, capped = training_rows(s, SIDE, quantiles=(0.5, 0.8), max_cases=7)
    assert full.cases > 14 and capped.cases == 14  # 7 at each of the 2 cuts
    assert len(np.unique(capped_group)) == 14


def test_cases_with_rows_per_cut_are_capped_and_the_rows_unchanged_below_the_cap():
    from graphrecall.query.channels.rank import training_rows

    s = sessions()
    X, y, _, full = training_rows(s, SIDE, quantiles=(0.5, 0.8))
    per_cut = int(y.sum())  # one positive per case with rows
    X2, y2, _, _ = training_rows(s, SIDE, quantiles=(0.5, 0.8), max_positives=per_cut)  # cannot bind
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    _, y3, g3, capped = training_rows(s, SIDE, quantiles=(0.5, 0.8), max_positives=3)
    assert per_cut > 6 and y3.sum() == 6 and len(np.unique(g3)) == 6  # 3 cases with rows at each of the 2 cuts
    assert capped.candidate_recall == full.candidate_recall  # recall is of every case looked at, not the kept


def test_user_cooccurrence_leaves_out_users_above_the_item_cap(monkeypatch):
    s = sessions(4)
    cat = Catalogue.build(SIDE, (i for x in s for i in x["items"]))
    a, b = cat.rows(["a", "b"])
    assert RankFeatures(s, cat).ucooc[a, b] == 4  # four shoppers opened both
    monkeypatch.setattr(ranker_mod, "UCOOC_MAX_ITEMS_PER_USER", 1)
    f = RankFeatures(s, cat)
    assert f.ucooc.nnz == 0 and f.users[a] == 4  # their pairs are gone; item user counts are not
