import numpy as np
import pytest

from graphrecall.graph_schema.store.lists import read_scores
from graphrecall.ingest.formats import Event
from graphrecall.ingest.sessions import derive_rows
from graphrecall.ingest.writer import GraphWriter, IngestReport
from graphrecall.query.scoring.cypher import (
    BasisParams,
    basis_frame,
    compute_cooc,
    compute_swing,
    read_basis,
    refresh_scores,
)
from graphrecall.query.scoring.reference import (
    capped_basis,
    cooc_bruteforce,
    cooc_sparse,
    swing_bruteforce,
    swing_sparse,
)


@pytest.fixture(params=["cypher", "procedure"])
def engine(request):
    """Every score test runs on both engines: the Cypher reference and the graphrecall.scores procedure."""
    return request.param


def load_triples(driver, triples, key="t"):
    """Write (user, item, ts) view events straight through the ingest writer."""
    events = [Event(str(u), str(i), "view", int(t), n + 1) for n, (u, i, t) in enumerate(triples)]
    GraphWriter(driver, progress=False).write(derive_rows(events), key, key, IngestReport(key, key))


def assert_scores_equal(got: dict, want: dict, tol=1e-9):
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=tol), k


# The example of the Swing design text: A and B bought h, t, r, p; C bought h and p.
# Pairs (A,B): |I_A ∩ I_B| = 4 -> 1/5; (A,C), (B,C): intersection {h, p} -> 1/3 each.
DESIGN_EXAMPLE = [
    ("A", "h", 1),
    ("A", "t", 2),
    ("A", "r", 3),
    ("A", "p", 4),
    ("B", "h", 1),
    ("B", "t", 2),
    ("B", "r", 3),
    ("B", "p", 4),
    ("C", "h", 1),
    ("C", "p", 2),
]


def test_design_example_oracle():
    s = swing_bruteforce(capped_basis(DESIGN_EXAMPLE), alpha=1.0, user_weight=False)
    assert s[("h", "p")] == pytest.approx(13 / 15)
    assert s[("h", "t")] == pytest.approx(1 / 5)


def test_design_example_in_the_database(driver, engine):
    load_triples(driver, DESIGN_EXAMPLE)
    compute_swing(driver, alpha=1.0, user_weight=False, k=10, engine=engine)
    got = read_scores(driver, "SWING")
    assert got[("h", "p")] == pytest.approx(13 / 15)
    assert got[("p", "h")] == pytest.approx(13 / 15)
    assert got[("h", "t")] == pytest.approx(1 / 5)
    assert_scores_equal(got, swing_bruteforce(capped_basis(DESIGN_EXAMPLE), user_weight=False))


def checkerboard(n_users=6, n_items=6):
    """User u has item i when (u + i) is even: two blocks that never co-occur across."""
    return [(f"u{u}", f"i{i}", u * 10 + i) for u in range(n_users) for i in range(n_items) if (u + i) % 2 == 0]


def test_checkerboard_matches_oracle_and_blocks(driver, engine):
    t = checkerboard()
    load_triples(driver, t)
    compute_swing(driver, k=100, engine=engine)
    compute_cooc(driver, k=100, basis=None, engine=engine)
    basis = capped_basis(t)
    sw, co = read_scores(driver, "SWING"), read_scores(driver, "COOC")
    assert_scores_equal(sw, swing_bruteforce(basis))
    assert_scores_equal(co, cooc_bruteforce(basis))
    parity = lambda s: int(s[1:]) % 2
    assert all(parity(i) == parity(j) for i, j in sw)  # no cross-block scores
    # each of 3 users of i0 has 3 items: w = 1/sqrt(3); 3 pairs, each |∩| = 3 -> 3 * (1/3)/(1+3)
    assert sw[("i0", "i2")] == pytest.approx(3 * (1 / 3) / 4)
    assert co[("i0", "i2")] == pytest.approx(1.0)


def random_triples(seed, n_users=25, n_items=18, density=0.3):
    rng = np.random.default_rng(seed)
    return [
        (f"u{u}", f"i{i}", int(rng.integers(0, 1000)))
        for u in range(n_users)
        for i in range(n_items)
        if rng.random() < density
    ]


@pytest.mark.parametrize(
    "seed,caps,alpha,uw", [(1, (1000, 1000), 1.0, True), (2, (4, 6), 0.5, True), (3, (5, 3), 2.0, False)]
)
def test_random_graph_equals_bruteforce(driver, engine, seed, caps, alpha, uw):
    t = random_triples(seed)
    load_triples(driver, t)
    params = BasisParams(event_types=("view",), max_items_per_user=caps[0], max_users_per_item=caps[1])
    compute_swing(driver, alpha=alpha, user_weight=uw, k=1000, basis=params, engine=engine)
    compute_cooc(driver, k=1000, basis=None, engine=engine)
    basis = capped_basis(t, *caps)
    assert set(read_basis(driver)) == basis
    assert_scores_equal(read_scores(driver, "SWING"), swing_bruteforce(basis, alpha, uw))
    assert_scores_equal(read_scores(driver, "COOC"), cooc_bruteforce(basis))


def test_cooc_iuf_equals_bruteforce(driver, engine):
    t = random_triples(7)
    load_triples(driver, t)
    compute_cooc(driver, k=1000, iuf=True, engine=engine)
    basis = capped_basis(t)
    want = cooc_bruteforce(basis, iuf=True)
    assert want != cooc_bruteforce(basis)
    assert_scores_equal(read_scores(driver, "COOC"), want)
    assert_scores_equal(cooc_sparse(basis, k=1000, iuf=True).as_dict(), want, tol=1e-6)


def test_topk_keeps_the_best_with_ranks(driver, engine):
    t = random_triples(4)
    load_triples(driver, t)
    compute_swing(driver, k=3, engine=engine)
    full = swing_bruteforce(capped_basis(t))
    with driver.session() as s:
        rows = s.run(
            "MATCH (i:Item)-[r:SWING]->(j:Item) RETURN i.id, j.id, r.score, r.rank, r.norm ORDER BY i.id, r.rank"
        ).values()
    by_item = {}
    for i, j, sc, rank, norm in rows:
        by_item.setdefault(i, []).append((j, sc, rank))
        assert norm == pytest.approx(sc / by_item[i][0][1])
    for i, lst in by_item.items():
        assert [r for _, _, r in lst] == list(range(1, len(lst) + 1))
        want = sorted(((j, s) for (a, j), s in full.items() if a == i), key=lambda x: (-x[1], x[0]))[:3]
        assert [j for j, _, _ in lst] == [j for j, _ in want]


@pytest.mark.parametrize("seed", [5, 6])
def test_sparse_versions_equal_bruteforce(seed):
    basis = capped_basis(random_triples(seed, 40, 30), 8, 10)
    assert_scores_equal(swing_sparse(basis, k=1000).as_dict(), swing_bruteforce(basis), tol=1e-6)
    assert_scores_equal(cooc_sparse(basis, k=1000).as_dict(), cooc_bruteforce(basis), tol=1e-6)


@pytest.mark.parametrize(
    "seed,caps,alpha,uw,k",
    [(5, (8, 10), 1.0, True, 1000), (6, (1000, 1000), 0.5, False, 1000), (7, (1000, 1000), 1.0, True, 2)],
)
def test_swing_kernel_equals_bruteforce_with_ties_by_id(seed, caps, alpha, uw, k):
    """The numba kernel of Spark's items plan: the oracle's scores, top k by round(score, 12) then id."""
    from graphrecall.query.scoring.kernel import csr_from_edges, swing_topk

    basis = capped_basis(random_triples(seed, 40, 30), *caps)
    users, items = sorted({u for u, _ in basis}), sorted({i for _, i in basis})
    ux, ix = {u: n for n, u in enumerate(users)}, {i: n for n, i in enumerate(items)}
    u = np.array([ux[a] for a, _ in basis])
    csr = csr_from_edges(u, np.array([ix[b] for _, b in basis]), len(users), len(items))
    oi, oj, osc, rank = swing_topk(np.arange(len(items)), *csr, alpha, uw, k, 0.0)
    full = {key: v for key, v in swing_bruteforce(basis, alpha, uw).items() if v > 0}
    got = {(items[a], items[b]): s for a, b, s in zip(oi, oj, osc)}
    for i in items:
        want = sorted(((j, s) for (a, j), s in full.items() if a == i), key=lambda x: (-round(x[1], 12), x[0]))[:k]
        mine = [(items[b], r) for a, b, r in zip(oi, oj, rank) if items[a] == i]
        assert [j for j, _ in mine] == [j for j, _ in want], i
        assert [r for _, r in mine] == list(range(1, len(mine) + 1))
    assert_scores_equal(got, {key: full[key] for key in got}, tol=1e-12)
    if k >= 1000:
        assert got.keys() == full.keys()


def test_bad_parameters_are_refused(driver):
    with pytest.raises(ValueError, match="alpha"):
        compute_swing(driver, alpha=-1)
    with pytest.raises(ValueError, match="event_types"):
        compute_swing(driver, basis=BasisParams(event_types=()))


@pytest.mark.parametrize("caps,iuf", [((1000, 1000), False), ((6, 5), True)])
def test_refresh_equals_a_full_recompute_and_touches_only_changed_rows(driver, engine, caps, iuf):
    """Two blocks of items that never share a user: new events in one block leave the other's rows alone."""
    rng = np.random.default_rng(5)
    old = [
        (f"u{u}", f"i{b * 10 + i}", int(rng.integers(0, 1000)))
        for b in (0, 1)
        for u in range(b * 20, b * 20 + 20)
        for i in range(10)
        if rng.random() < 0.4
    ]
    new = [
        (f"u{u}", f"i{i}", int(rng.integers(1000, 2000))) for u in range(3, 8) for i in range(10) if rng.random() < 0.5
    ]
    new += [("u99", "i5", 2000), ("u99", "i55", 2001), ("u98", "i55", 2002), ("u98", "i5", 2003)]  # a new item
    params = BasisParams(event_types=("view",), max_items_per_user=caps[0], max_users_per_item=caps[1])
    load_triples(driver, old, key="old")
    compute_swing(driver, k=1000, basis=params, engine=engine)
    compute_cooc(driver, k=1000, iuf=iuf, basis=None, engine=engine)
    before = basis_frame(driver)
    untouched = {k: v for k, v in read_scores(driver, "SWING").items() if int(k[0][1:]) >= 10}
    load_triples(driver, new, key="new")
    rep = refresh_scores(driver, before, k=1000, iuf=iuf, basis=params, full_above=1.0, progress=False, engine=engine)
    basis = capped_basis(old + new, *caps)
    assert set(read_basis(driver)) == basis
    assert_scores_equal(read_scores(driver, "SWING"), swing_bruteforce(basis))
    assert_scores_equal(read_scores(driver, "COOC"), cooc_bruteforce(basis, iuf=iuf))
    # block 1 (items 10-19, users 20-39) saw no new event: not one of its rows was recomputed
    assert rep.changed_users >= 5 and 0 < rep.swing_items <= rep.cooc_items <= 11 < rep.basis_items
    assert {k: v for k, v in read_scores(driver, "SWING").items() if int(k[0][1:]) >= 10 and k[0] != "i55"} == {
        k: v for k, v in untouched.items()
    }
    # the same file again changes nothing, and recomputes nothing
    again = refresh_scores(driver, basis_frame(driver), k=1000, iuf=iuf, basis=params, progress=False, engine=engine)
    assert (again.changed_users, again.swing_items, again.cooc_items) == (0, 0, 0)
    assert_scores_equal(read_scores(driver, "SWING"), swing_bruteforce(basis))
    # past full_above, every row is recomputed: the same lists
    load_triples(driver, [(f"u{u}", "i12", 3000 + u) for u in range(20, 40)], key="more")
    rep = refresh_scores(
        driver, basis_frame(driver), k=1000, iuf=iuf, basis=params, full_above=0.2, progress=False, engine=engine
    )
    basis = capped_basis(old + new + [(f"u{u}", "i12", 3000 + u) for u in range(20, 40)], *caps)
    assert rep.swing_full and rep.cooc_full
    assert_scores_equal(read_scores(driver, "SWING"), swing_bruteforce(basis))
    assert_scores_equal(read_scores(driver, "COOC"), cooc_bruteforce(basis, iuf=iuf))


def _lists(driver, rel):
    with driver.session() as s:
        return {
            i: (js, ss)
            for i, js, ss in s.run(
                "MATCH (i:Item)-[r]->(j:Item) WHERE type(r) = $rel WITH i, r, j ORDER BY r.rank "
                "RETURN i.id, collect(j.id), collect(r.score)",
                rel=rel,
            ).values()
        }


def test_procedure_equals_cypher_lists_across_chunks_and_threads(driver, monkeypatch):
    """Many chunks of 16 items, two worker threads, small k and caps: the procedure writes the same
    ranked lists as the Cypher reference, ties broken by id alike."""
    monkeypatch.setattr("graphrecall.query.scoring.cypher.PROCEDURE_CHUNK", 16)
    rng = np.random.default_rng(11)
    pop = 1.0 / (np.arange(400) + 10.0)  # skewed popularity, so that users share items
    triples = [
        (f"u{u}", f"i{int(i)}", int(rng.integers(0, 50)))  # few timestamps: many ties
        for u in range(250)
        for i in rng.choice(400, size=int(rng.integers(2, 20)), replace=False, p=pop / pop.sum())
    ]
    load_triples(driver, triples)
    params = BasisParams(event_types=("view",), max_items_per_user=12, max_users_per_item=10)
    got = {}
    for engine in ("cypher", "procedure"):
        compute_swing(
            driver, k=5, basis=params if engine == "cypher" else None, engine=engine, threads=2, progress=False
        )
        compute_cooc(driver, k=5, basis=None, engine=engine, threads=2, progress=False)
        got[engine] = {rel: _lists(driver, rel) for rel in ("SWING", "COOC")}
    for rel in ("SWING", "COOC"):
        want, have = got["cypher"][rel], got["procedure"][rel]
        assert len(want) > 150 and set(have) == set(want)
        for i in want:
            assert have[i][0] == want[i][0], (rel, i)
            assert have[i][1] == pytest.approx(want[i][1], abs=1e-12)


def test_engine_choice_and_a_stale_build(driver, monkeypatch, caplog):
    load_triples(driver, DESIGN_EXAMPLE)
    with pytest.raises(ValueError, match="engine must be one of"):
        compute_swing(driver, engine="spark")
    monkeypatch.setattr("graphrecall.query.scoring.procedure.build_id", lambda: "not-the-running-build")
    with pytest.raises(RuntimeError, match="restart the server"):
        compute_swing(driver, engine="procedure")
    with caplog.at_level("WARNING", logger="graphrecall.query.scoring.cypher"):
        compute_swing(driver, alpha=1.0, user_weight=False, k=10)  # auto: falls back to Cypher, and says why
    assert "scores run in Cypher" in caplog.text and "restart the server" in caplog.text
    assert read_scores(driver, "SWING")[("h", "p")] == pytest.approx(13 / 15)


def test_procedure_refuses_bad_arguments_with_the_fix(driver):
    from neo4j.exceptions import ClientError

    for kind, config, message in [
        ("FOO", {}, "kind must be 'SWING' or 'COOC'"),
        ("SWING", {"k": 0}, "k must be >= 1"),
        ("COOC", {"iuf": "yes"}, "iuf must be true or false"),
        ("COOC", {"chunk": 0}, "chunk must be >= 1"),
    ]:
        with driver.session() as s, pytest.raises(ClientError, match=message):
            s.run("CALL graphrecall.scores($kind, $config)", kind=kind, config=config).consume()
