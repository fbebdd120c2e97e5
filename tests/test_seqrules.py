"""The seqrules channel (sequential rules): its weights equal a brute-force count on hand-built sessions, and
every backend serves the same lists."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from test_scores import load_triples

from graphrecall.graph_schema.store.sessions import read_sessions
from graphrecall.query.channels import REGISTRY, Training
from graphrecall.query.channels.seqrules import SEQ_WINDOW, rule_lists
from graphrecall.query.config import PipelineConfig
from graphrecall.query.data import Catalogue
from graphrecall.query.serve.neo4j import Neo4jRetriever
from graphrecall.query.serve.snapshot import SnapshotRetriever

SESSIONS = [list("abcab"), list("acd"), list("bcdefghijklmnop"), list("a"), list("dcba")]


def brute_force(sessions, window=SEQ_WINDOW):
    w = defaultdict(float)
    for s in sessions:
        for i, a in enumerate(s):
            for j in range(i + 1, min(len(s), i + window + 1)):
                if s[j] != a:
                    w[a, s[j]] += 1.0 / (j - i)
    return w


def test_weights_equal_a_brute_force_count_with_ties_by_id():
    want = brute_force(SESSIONS)
    got = rule_lists(SESSIONS, depth=100)
    assert {(a, b): float(s) for a, (ids, sc) in got.items() for b, s in zip(ids, sc)} == pytest.approx(dict(want))
    for ids, sc in got.values():
        assert [(-round(float(s), 6), b) for b, s in zip(ids, sc)] == sorted(
            (-round(float(s), 6), b) for b, s in zip(ids, sc)
        )
    # in "abcab" b follows the first a at steps 1 and 4 and the second a at step 1
    assert dict(zip(*got["a"]))["b"] == pytest.approx(1 + 1 / 4 + 1)
    assert "p" not in dict(zip(*got["b"]))  # 14 steps after b: past the window
    assert "o" in dict(zip(*got["e"]))  # 10 steps after e: inside it
    assert rule_lists(SESSIONS, window=1, depth=100)["c"][0].tolist() == ["d", "a", "b"]  # adjacent pairs, like trans


def test_every_backend_serves_the_rules_of_the_graphs_sessions(driver):
    triples = [(f"u{n}", item, 10 * n + t) for n, s in enumerate(SESSIONS) for t, item in enumerate(s)]
    load_triples(driver, triples)
    stored = [s["items"] for s in read_sessions(driver)]
    want = rule_lists(stored)
    snap = SnapshotRetriever.from_neo4j(driver)
    live = Neo4jRetriever(driver)
    events = pd.DataFrame(triples, columns=["user", "item", "ts"])
    built = (
        REGISTRY["seqrules"]
        .build(Training(events, read_sessions(driver), Catalogue.build({}, events["item"]), PipelineConfig()))
        .lists["seqrules"]
    )
    for item, (ids, scores) in want.items():
        for backend in (snap, live):
            nb = backend.similar_items(item, k=10, channel="seqrules")
            assert list(nb.ids) == list(ids[:10])
            np.testing.assert_allclose(nb.scores, scores[:10], rtol=1e-6)
        assert list(built[item][0]) == list(ids)


def test_the_rank_models_seq_rule_feature_is_the_channels_weight():
    from graphrecall.query.channels.rank import FEATURES, RankFeatures

    sessions = [{"items": s, "user": f"u{n}", "start_ts": n, "booked": None} for n, s in enumerate(SESSIONS)]
    cat = Catalogue.build({}, [i for s in SESSIONS for i in s])
    feats = RankFeatures(sessions, cat)
    want = brute_force(SESSIONS)
    q, c = np.array([cat.index[a] for a, _ in want]), np.array([cat.index[b] for _, b in want])
    got = feats.features(q, c)
    np.testing.assert_allclose(got[:, FEATURES.index("seq_rule")], [want[k] for k in want])
    out = defaultdict(float)
    for (a, _), w in want.items():
        out[a] += w
    np.testing.assert_allclose(got[:, FEATURES.index("log_query_seq_out")], [np.log1p(out[a]) for a, _ in want])
