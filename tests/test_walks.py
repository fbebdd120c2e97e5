import numpy as np
import pytest
import scipy.sparse as sp

from graphrecall.walkers.walk import AliasGraph, python_alias_walks, random_walks, walks_to_corpus


def three_node():
    # 0 -> 1 (w 1), 0 -> 2 (w 3); 1 -> 0 (w 1); 2 has no out-edges
    return sp.csr_matrix((np.array([1.0, 3.0, 1.0]), (np.array([0, 0, 1]), np.array([1, 2, 0]))), shape=(3, 3))


def test_transition_frequencies_follow_weights():
    walks = random_walks(three_node(), walk_length=2, walks_per_node=20000, start_nodes=np.array([0]), random_seed=1)
    frac_to_2 = (walks[:, 1] == 2).mean()
    # binomial sd = sqrt(.75*.25/20000) ~ 0.003
    assert abs(frac_to_2 - 0.75) < 0.015


def test_dead_end_pads_and_walks_are_valid_edges():
    m = three_node()
    walks = random_walks(m, walk_length=6, walks_per_node=50, random_seed=0)
    dense = m.toarray()
    for w in walks:
        n = (w >= 0).sum()
        assert (w[n:] == -1).all()
        for a, b in zip(w[: n - 1], w[1:n]):
            assert dense[a, b] > 0
        if n < 6:
            assert w[n - 1] == 2  # only node 2 is a dead end
    assert len(walks) == 2 * 50  # nodes 0 and 1 have out-edges


def test_seed_determinism():
    a = random_walks(three_node(), walk_length=5, walks_per_node=10, random_seed=3)
    b = random_walks(three_node(), walk_length=5, walks_per_node=10, random_seed=3)
    c = random_walks(three_node(), walk_length=5, walks_per_node=10, random_seed=4)
    assert (a == b).all() and not (a == c).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alias_tables_reproduce_row_distributions(seed):
    rng = np.random.default_rng(seed)
    m = sp.random(30, 30, density=0.3, random_state=seed, data_rvs=lambda n: rng.random(n) + 0.01, format="csr")
    g = AliasGraph.from_csr(m)
    for r in range(30):
        lo, hi = g.indptr[r], g.indptr[r + 1]
        d = hi - lo
        if d == 0:
            continue
        # exact probability of each column from the alias table
        p = np.zeros(d)
        for k in range(d):
            p[k] += g.prob[lo + k] / d
            p[g.alias[lo + k]] += (1 - g.prob[lo + k]) / d
        want = m.data[lo:hi] / m.data[lo:hi].sum()
        np.testing.assert_allclose(p, want, atol=1e-9)


def test_negative_weights_refused():
    m = sp.csr_matrix(np.array([[0, -1.0], [1.0, 0]]))
    with pytest.raises(ValueError, match="non-negative"):
        AliasGraph.from_csr(m)


def test_corpus_drops_padding():
    w = np.array([[1, 2, -1], [3, -1, -1]])
    assert [c.tolist() for c in walks_to_corpus(w)] == [[1, 2]]


def test_python_baseline_walker_samples_the_same_distribution():
    g = AliasGraph.from_csr(three_node())
    walks = python_alias_walks(g, walk_length=2, walks_per_node=20000, random_seed=1)
    from_0 = [w[1] for w in walks if w[0] == 0]
    assert abs(np.mean(np.array(from_0) == 2) - 0.75) < 0.015
