"""``graphrecall spark scores``: Swing and ItemCF on Spark (local[2]) equal the oracle and the Cypher
path, read from and written back to the test server through the Neo4j Connector for Apache Spark."""

import csv
import logging

import numpy as np
import pytest
from conftest import DATA
from test_ingest import BAD, GOOD, mixed_file  # noqa: F401 - the fixture, shared with the Bolt ingest tests
from test_scores import DESIGN_EXAMPLE, _lists, assert_scores_equal, checkerboard, load_triples, random_triples

from graphrecall.graph_schema.store.meta import read_score_settings
from graphrecall.ingest.formats import RejectSink, read_events
from graphrecall.query.scoring import spark as S
from graphrecall.query.scoring.cypher import BasisParams, compute_cooc, compute_swing, read_basis
from graphrecall.query.scoring.reference import capped_basis, cooc_bruteforce, swing_bruteforce


@pytest.fixture(scope="module")
def spark():
    session = S.spark_session("local[2]", partitions=4, driver_memory="1g", progress=False)
    yield session
    session.stop()


def spark_basis(spark, triples, caps=(1000, 1000), salts=S.DEFAULT_SALTS):
    ev = S.local_frame_to_events(spark, triples)
    return S.capped_basis(
        ev, event_types=("view",), max_items_per_user=caps[0], max_users_per_item=caps[1], salts=salts
    ).cache()


@pytest.mark.parametrize("plan", S.SWING_PLANS)
def test_design_example_on_spark(spark, plan):
    b = spark_basis(spark, DESIGN_EXAMPLE)
    got = S.collect_topk(S.swing(b, user_weight=False, k=10, plan=plan))
    assert got[("h", "p")] == pytest.approx(13 / 15)
    assert got[("p", "h")] == pytest.approx(13 / 15)
    assert got[("h", "t")] == pytest.approx(1 / 5)
    assert_scores_equal(got, swing_bruteforce(capped_basis(DESIGN_EXAMPLE), user_weight=False))


@pytest.mark.parametrize("plan", S.SWING_PLANS)
def test_checkerboard_on_spark(spark, plan):
    t = checkerboard()
    b = spark_basis(spark, t)
    sw, co = S.collect_topk(S.swing(b, k=100, plan=plan)), S.collect_topk(S.cooc(b, k=100))
    assert_scores_equal(sw, swing_bruteforce(capped_basis(t)))
    assert_scores_equal(co, cooc_bruteforce(capped_basis(t)))
    assert all(int(i[1:]) % 2 == int(j[1:]) % 2 for i, j in sw)  # no cross-block scores
    assert sw[("i0", "i2")] == pytest.approx(3 * (1 / 3) / 4)


@pytest.mark.parametrize(
    "seed,caps,alpha,uw,salts,plan",
    [
        (1, (1000, 1000), 1.0, True, 16, "items"),
        (2, (4, 6), 0.5, True, 3, "items"),
        (3, (5, 3), 2.0, False, 1, "items"),
        (1, (1000, 1000), 1.0, True, 16, "pairs"),
        (2, (4, 6), 0.5, True, 3, "pairs"),
    ],
)
def test_random_graphs_with_caps_equal_the_oracle(spark, seed, caps, alpha, uw, salts, plan):
    """Caps taken in salted stages (3 salts, 1 = one stage) keep exactly the oracle's basis."""
    t = random_triples(seed)
    b = spark_basis(spark, t, caps, salts)
    basis = capped_basis(t, *caps)
    assert {(r.u, r.i) for r in b.collect()} == basis
    assert_scores_equal(
        S.collect_topk(S.swing(b, alpha=alpha, user_weight=uw, k=1000, plan=plan)), swing_bruteforce(basis, alpha, uw)
    )
    assert_scores_equal(S.collect_topk(S.cooc(b, k=1000, iuf=True)), cooc_bruteforce(basis, iuf=True))


@pytest.mark.parametrize("plan", S.SWING_PLANS)
def test_topk_ranks_norms_and_ties_like_cypher(spark, plan):
    """Few timestamps and small k: many ties, broken by the other item's id; norm = score / best."""
    rng = np.random.default_rng(4)
    t = [(f"u{u}", f"i{i}", int(rng.integers(0, 3))) for u in range(30) for i in range(20) if rng.random() < 0.3]
    full = swing_bruteforce(capped_basis(t))
    rows = S.swing(spark_basis(spark, t), k=3, plan=plan).orderBy("i", "rank").collect()
    by_item = {}
    for r in rows:
        by_item.setdefault(r.i, []).append(r)
        assert r.norm == pytest.approx(r.score / by_item[r.i][0].score)
    for i, lst in by_item.items():
        assert [r.rank for r in lst] == list(range(1, len(lst) + 1))
        want = sorted(((j, s) for (a, j), s in full.items() if a == i), key=lambda x: (-round(x[1], 12), x[0]))[:3]
        assert [r.j for r in lst] == [j for j, _ in want]


def test_bad_parameters_are_refused_with_the_fix(spark):
    ev = S.local_frame_to_events(spark, DESIGN_EXAMPLE)
    with pytest.raises(ValueError, match="max_users_per_item must be >= 1"):
        S.capped_basis(ev, max_users_per_item=0)
    with pytest.raises(ValueError, match="event_types is empty"):
        S.capped_basis(ev, event_types=())
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        S.swing(S.capped_basis(ev), alpha=-1)
    with pytest.raises(ValueError, match="plan must be one of"):
        S.swing(S.capped_basis(ev), plan="hash")
    with pytest.raises(ValueError, match="choose rees46, taobao or movielens"):
        S.events_from_file(spark, DATA / "rees46_head300.csv", "generic")


def test_connector_round_trip_equals_the_cypher_path(spark, driver, neo4j_server):
    """Events read from the graph's ENGAGED edges through the connector; the SWING/COOC lists written
    back through it equal, rank for rank, those of the in-database Cypher path on the same graph."""
    _, settings = neo4j_server
    rng = np.random.default_rng(11)
    pop = 1.0 / (np.arange(120) + 10.0)
    triples = [
        (f"u{u}", f"i{int(i)}", int(rng.integers(0, 50)))
        for u in range(90)
        for i in rng.choice(120, size=int(rng.integers(2, 12)), replace=False, p=pop / pop.sum())
    ]
    load_triples(driver, triples)
    params = BasisParams(event_types=("view",), max_items_per_user=8, max_users_per_item=10)
    compute_swing(driver, k=5, basis=params, engine="cypher", progress=False)
    compute_cooc(driver, k=5, iuf=True, basis=None, engine="cypher", progress=False)
    assert set(read_basis(driver)) == capped_basis(triples, 8, 10)
    want = {rel: _lists(driver, rel) for rel in ("SWING", "COOC")}
    with driver.session() as s:
        want_norm = s.run("MATCH (i:Item)-[r:SWING]->(j:Item) RETURN i.id, j.id, r.norm, r.rank").values()
    rep = S.run_spark_scores(
        spark,
        settings,
        k=5,
        iuf=True,
        event_types=("view",),
        max_items_per_user=8,
        max_users_per_item=10,
        salts=3,
        write_partitions=2,
    )
    for rel in ("SWING", "COOC"):
        have = _lists(driver, rel)
        assert len(want[rel]) > 60 and set(have) == set(want[rel])
        for i, (js, ss) in want[rel].items():
            assert have[i][0] == js, (rel, i)
            assert have[i][1] == pytest.approx(ss, abs=1e-12)
    with driver.session() as s:
        got_norm = s.run("MATCH (i:Item)-[r:SWING]->(j:Item) RETURN i.id, j.id, r.norm, r.rank").values()
    got_nr = {(i, j): (n, r) for i, j, n, r in got_norm}
    want_nr = {(i, j): (n, r) for i, j, n, r in want_norm}
    assert got_nr.keys() == want_nr.keys()
    for key, (n, r) in want_nr.items():
        assert got_nr[key][1] == r and got_nr[key][0] == pytest.approx(n, abs=1e-12), key
    assert rep.swing_rows == sum(len(v[0]) for v in want["SWING"].values())
    assert rep.events == len({(u, i) for u, i, _ in triples})  # one ENGAGED edge per (user, item, type)
    assert read_score_settings(driver)["engine"] == "spark"
    assert read_basis(driver) == []  # cleared: a later refresh recomputes every row


def test_event_file_parsed_with_the_ingest_rules(spark, mixed_file, tmp_path, caplog):  # noqa: F811
    """Good rows all kept, bad rows rejected with file:line and the reasons of the Bolt ingest."""
    path, expected_bad = mixed_file
    with caplog.at_level(logging.WARNING):
        got = S.events_from_file(spark, path, "rees46", reject_path=tmp_path / "rej.csv")
    sink = RejectSink(path, tmp_path / "bolt_rej.csv")
    want = sorted((e.user, e.item, e.event_type, e.ts) for e in read_events(path, "rees46", sink))
    sink.close()
    assert sorted(tuple(r) for r in got.events.collect()) == want and len(want) == len(GOOD)
    assert got.rejected == len(BAD)
    with open(tmp_path / "rej.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(tmp_path / "bolt_rej.csv", newline="") as fh:
        bolt = list(csv.DictReader(fh))
    assert sorted(int(r["line"]) for r in rows) == sorted(expected_bad)
    assert {r["line"]: r["reason"].split(":")[0] for r in rows} == {r["line"]: r["reason"].split(":")[0] for r in bolt}
    for line in expected_bad:
        assert any(f"{path}:{line}:" in m for m in caplog.messages), f"no log naming {path}:{line}"


@pytest.mark.parametrize(
    "fmt,name", [("rees46", "rees46_head300.csv"), ("taobao", "taobao_300.csv"), ("movielens", "ml_ratings_300.csv")]
)
def test_fixture_files_read_like_the_ingest_readers(spark, fmt, name, tmp_path):
    got = S.events_from_file(spark, DATA / name, fmt)
    sink = RejectSink(DATA / name, None)
    want = sorted((e.user, e.item, e.event_type, e.ts) for e in read_events(DATA / name, fmt, sink))
    assert sorted(tuple(r) for r in got.events.collect()) == want
    assert got.rejected == sink.count


def test_cli_end_to_end_equals_graphrecall_scores(driver, neo4j_server, tmp_path, monkeypatch, capsys):
    """`graphrecall spark scores`, run as a user runs it (its own process and Spark session), writes the
    lists `graphrecall scores` writes on the same graph; errors name the fix before Spark starts."""
    import os
    import subprocess
    import sys

    from graphrecall.app.cli import main

    _, settings = neo4j_server
    env = dict(GRAPHRECALL_NEO4J_URI=settings.uri, GRAPHRECALL_NEO4J_PASSWORD=settings.password)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["-q", "spark", "scores", "--events", str(DATA / "rees46_head300.csv")]) == 2
    assert "--events needs --format" in capsys.readouterr().err
    from graphrecall.ingest.synthetic import generate_rees46

    log = generate_rees46(tmp_path / "gen.csv", n_users=150, random_seed=3)
    assert main(["-q", "ingest", "events", str(log), "--format", "rees46"]) == 0
    assert main(["-q", "scores", "--top-k", "7"]) == 0
    want = {rel: _lists(driver, rel) for rel in ("SWING", "COOC")}
    assert len(want["SWING"]) > 5 and len(want["COOC"]) > 20
    with driver.session() as s:
        s.run("MATCH ()-[r:SWING|COOC]->() DELETE r").consume()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "graphrecall",
            "-q",
            "spark",
            "scores",
            "--top-k",
            "7",
            "--partitions",
            "2",
            "--driver-memory",
            "1g",
        ],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_swing = sum(len(v[0]) for v in want["SWING"].values())
    assert f"wrote {n_swing} SWING" in proc.stdout
    for rel in ("SWING", "COOC"):
        have = _lists(driver, rel)
        assert set(have) == set(want[rel])
        for i, (js, ss) in want[rel].items():
            assert have[i][0] == js and have[i][1] == pytest.approx(ss, abs=1e-12), (rel, i)
