"""The FunRec bench's metric, split and reference-UserCF helpers, on cases small enough to do by hand."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from common import evaluate, make_split, paired_bootstrap, train_test_split_rows, usercf_scores  # noqa: E402


def test_evaluate_hit_rate_precision_and_exclusion():
    # user 0 has item 0 in history; ranks 1 > 2 > 3; relevant {2}; item 0 scores highest but is excluded
    # user 1 has no history; only item 3 scores (one recommendation), relevant {3}
    scores = np.array([[9.0, 3.0, 2.0, 1.0], [0.0, 0.0, 0.0, 5.0]])
    hist = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0]]))
    r = evaluate(scores, hist, [{2}, {3}], ks=(1, 5), per_user=True)
    assert r["hr@1"].tolist() == [0.0, 1.0]
    assert r["hr@5"].tolist() == [1.0, 1.0]
    assert np.allclose(r["p@5"], [1 / 3, 1.0])  # P@K divides by min(K, #recommended)
    assert np.isclose(r["ndcg@10"][0], 1 / np.log2(3))  # hit at rank 2, one relevant item
    assert np.isclose(evaluate(scores, hist, [{2}, {3}], ks=(1, 5))["p@5"], (1 / 3 + 1) / 2)


def test_evaluate_breaks_ties_by_lower_item_index():
    scores = np.array([[1.0, 1.0, 1.0]])
    r = evaluate(scores, sp.csr_matrix((1, 3)), [{0}], ks=(1,))
    assert r["hr@1"] == 1.0
    r = evaluate(scores, sp.csr_matrix((1, 3)), [{2}], ks=(1,))
    assert r["hr@1"] == 0.0


def test_split_is_sklearn_shuffle_split():
    # sklearn's train_test_split(test_size=0.2, random_state=42) draws RandomState(42).permutation
    tr, te = train_test_split_rows(10)
    perm = np.random.RandomState(42).permutation(10)
    assert te.tolist() == perm[:2].tolist() and tr.tolist() == perm[2:].tolist()
    assert sorted(tr.tolist() + te.tolist()) == list(range(10))


def test_split_equals_sklearn_itself():
    from sklearn.model_selection import train_test_split

    for n in (10, 1001):
        tr, te = train_test_split_rows(n)
        a, b = train_test_split(np.arange(n), test_size=0.2, random_state=42)
        assert a.tolist() == tr.tolist() and b.tolist() == te.tolist()


def test_usercf_reference_on_three_users():
    # u0 {a, b}; u1 {a, b, c}; u2 {d}: cos(u0, u1) = 2 / sqrt(6); u2 shares nothing
    x = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1]], float))
    s = usercf_scores(x, np.array([0, 2]), k_neighbors=1, min_similarity=0.1)
    assert np.allclose(s[0], 2 / np.sqrt(6) * np.array([1, 1, 1, 0]))
    assert np.allclose(s[1], 0.0)
    # below min_similarity a neighbour does not vote
    assert np.allclose(usercf_scores(x, np.array([0]), k_neighbors=1, min_similarity=0.9), 0.0)


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(0)
    a = rng.random(200)
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)
    d, lo, hi = paired_bootstrap(a + 0.1, a)
    assert np.isclose(d, 0.1) and np.isclose(lo, 0.1) and np.isclose(hi, 0.1)
    d, lo, hi = paired_bootstrap(a, rng.random(200))
    assert lo < d < hi and lo < 0 < hi  # two independent uniform samples: no clear difference


def test_make_split_keeps_users_on_both_sides_and_drops_unseen_items():
    train = pd.DataFrame({"userId": [1, 1, 2, 3], "movieId": [10, 11, 10, 12]})
    test = pd.DataFrame({"userId": [1, 2, 4], "movieId": [12, 99, 10]})
    s = make_split(train, test)
    assert s.item_ids.tolist() == ["10", "11", "12"]
    assert s.hist.shape == (2, 3) and s.all_users.shape == (3, 3)  # users 1 and 2 evaluated, 3 only trains
    assert s.truth == [{2}, set()]  # item 99 never seen in training
    assert s.hist.toarray().tolist() == [[1, 1, 0], [1, 0, 0]]
