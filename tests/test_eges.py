import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from graphrecall.embed.eges import EGES, LazyAdam, SideInfo, booked_pairs, skipgram_pairs
from graphrecall.walkers.walk import random_walks


def two_cluster_graph(n=20):
    """Items 0..n/2-1 and n/2..n-1 form two dense clusters without edges between them."""
    h = n // 2
    rows, cols = [], []
    for block in (range(h), range(h, n)):
        for a in block:
            for b in block:
                if a != b:
                    rows.append(a)
                    cols.append(b)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))


def side_for(n=20):
    h = n // 2
    return SideInfo.from_columns(
        {
            "category": ["c0" if i < h else "c1" for i in range(n)],
            "market": ["m0" if i < h else "m1" for i in range(n)],
            "brand": [None if i % 5 == 0 else f"b{i % 3}" for i in range(n)],
        }
    )


def cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("optimizer,sparse", [("adam", False), ("adam", True), ("sgd", None)])
def test_training_separates_clusters(optimizer, sparse):
    g = two_cluster_graph()
    walks = random_walks(g, walk_length=8, walks_per_node=20, random_seed=0)
    model = EGES(dim=16, epochs=6, batch_size=256, optimizer=optimizer, sparse=sparse, random_seed=0, progress=False)
    res = model.fit(walks, side_for())
    assert model.model.item.sparse is bool(sparse)
    e = res.embeddings
    within = np.mean([cos(e[a], e[b]) for a in range(10) for b in range(10) if a != b])
    across = np.mean([cos(e[a], e[b]) for a in range(10) for b in range(10, 20)])
    assert within > across + 0.3
    assert res.losses[-1] < res.losses[0]
    np.testing.assert_allclose(res.attention.sum(1), 1.0, rtol=1e-5)


def test_cold_items_get_mean_of_side_embeddings():
    g = two_cluster_graph()
    walks = random_walks(g, walk_length=6, walks_per_node=5, random_seed=0)
    side = side_for()
    model = EGES(dim=8, epochs=1, random_seed=0, progress=False)
    res = model.fit(walks, side, holdout=np.array([3, 15]))
    assert res.cold.tolist() == [i in (3, 15) for i in range(20)]
    with torch.no_grad():
        for i in (3, 15):
            parts = [model.model.side[f].weight[side.codes[i, f]].numpy() for f in range(3) if side.codes[i, f] != 0]
            np.testing.assert_allclose(res.embeddings[i], np.mean(parts, 0), rtol=1e-5, atol=1e-7)
    # item 15 has no brand (15 % 5 == 0): the mean is over category and market only
    assert side.codes[15, 2] == 0


def test_warm_vector_is_attention_weighted_sum():
    g = two_cluster_graph()
    walks = random_walks(g, walk_length=6, walks_per_node=5, random_seed=0)
    side = side_for()
    model = EGES(dim=8, epochs=1, random_seed=0, progress=False)
    res = model.fit(walks, side)
    m = model.model
    with torch.no_grad():
        i = 7
        parts = [m.item.weight[i]] + [m.side[f].weight[side.codes[i, f]] for f in range(3)]
        a = torch.softmax(m.attention.weight[i], 0)
        want = sum(w * p for w, p in zip(a, parts)).numpy()
    np.testing.assert_allclose(res.embeddings[i], want, rtol=1e-5, atol=1e-7)


def test_booked_context_pairs():
    pairs = booked_pairs([np.array([1, 2, 3]), np.array([4, 5])], np.array([3, -1]))
    assert sorted(map(tuple, pairs.tolist())) == [(1, 3), (2, 3)]


def test_skipgram_pairs_window():
    p = skipgram_pairs(np.array([[0, 1, 2, -1]]), window=1)
    assert sorted(map(tuple, p.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1)]


def test_shrunk_windows_keep_near_pairs_more_often():
    walks = np.tile(np.arange(8), (4000, 1))
    p = skipgram_pairs(walks, window=3, rng=np.random.default_rng(0))
    full = skipgram_pairs(walks[:1], window=3)
    assert set(map(tuple, p.tolist())) == set(map(tuple, full.tolist()))
    dist = np.abs(p[:, 0] - p[:, 1])
    share = np.bincount(dist, minlength=4)[1:] / len(walks)
    # a pair at distance o survives when the centre's window >= o: P = (3 - o + 1) / 3
    per_walk = np.array([2 * (8 - o) * (4 - o) / 3 for o in (1, 2, 3)])
    np.testing.assert_allclose(share, per_walk, rtol=0.05)


def _draw(model, side, centres, weights, key=7, threads=1):
    """Batch inputs for ``centres`` (each paired with context 0) from kernels.batch_inputs."""
    from graphrecall.embed.eges import compute_threads
    from graphrecall.embed.kernels import batch_inputs

    model.side = side
    negatives = model._negative_tables(np.asarray(weights, np.float64))
    n, n_ctx = len(centres), 1 + negatives.n_noise + negatives.n_market
    pairs = np.stack([centres, np.zeros_like(centres)], 1)
    out = (
        np.empty(n, np.int64),
        np.empty((n, len(side.fields)), np.int64),
        np.empty((n, n_ctx), np.int64),
        np.empty(n, np.float32),
    )
    with compute_threads(threads, torch.get_num_threads()):
        batch_inputs(
            pairs, np.arange(n), 0, np.arange(n, dtype=np.float32), side.codes, *negatives, np.uint64(key), *out
        )
    return out


def test_batch_inputs_gather_pairs_and_draw_negatives_by_weight_and_market():
    side = side_for()
    centres = np.arange(20).repeat(500)
    weights = np.arange(20, dtype=np.float64) ** 2  # item 0 is never drawn
    model = EGES(negatives=3, market_negatives=4, random_seed=0, progress=False)
    centre, codes, context, w = _draw(model, side, centres, weights)
    np.testing.assert_array_equal(centre, centres)
    np.testing.assert_array_equal(codes, side.codes[centres])
    np.testing.assert_array_equal(w, np.arange(len(centres)))
    assert (context[:, 0] == 0).all()
    noise, market = context[:, 1:4], context[:, 4:]
    freq = np.bincount(noise.ravel(), minlength=20) / noise.size
    np.testing.assert_allclose(freq, weights / weights.sum(), atol=0.01)
    mk = side.codes[:, side.fields.index("market")]
    assert (mk[market] == mk[centres][:, None]).all()
    assert len(np.unique(market[centres == 3])) == 10  # uniform over the 10 items of the market
    # the draws depend on the key and the pair's position only: not on the thread count
    for got, want in zip(_draw(model, side, centres, weights, threads=2), (centre, codes, context, w)):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(_draw(model, side, centres, weights, key=8)[2], context)
    # no market field: only the unigram negatives
    _, _, context, _ = _draw(EGES(negatives=2, market_field=None, progress=False), side, centres, weights)
    assert context.shape[1] == 3


@pytest.mark.parametrize("negatives,threads", [(0, 1), (3, 1), (3, 2)])
def test_sgd_kernel_step_equals_pair_gradients(negatives, threads):
    """The compiled SGD step moves the per-item tables by -lr times pair_gradients' gradient and sums the
    side tables' gradient, with repeated centres, contexts and side values and weighted pairs; the numbers do
    not depend on the thread count."""
    import numba

    from graphrecall.embed.eges import EGESModel, _SGDKernel, compute_threads, pair_gradients

    torch.manual_seed(0)
    model = EGESModel(30, [4, 6], dim=8)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    b, lr = 64, 0.05
    centre = torch.randint(0, 30, (b,))
    codes = torch.stack([torch.randint(0, 4, (b,)), torch.randint(0, 6, (b,))], 1)
    context = torch.randint(0, 30, (b, 1 + negatives))
    weight = torch.rand(b) * 3
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    loss, grads = pair_gradients(model, centre, codes, context, weight)
    want = {
        k: before[k].clone().index_add_(0, rows, vals * -lr)
        for k, (rows, vals) in grads.items()
        if not k.startswith("side")
    }
    want_grad = {
        k: torch.zeros_like(before[k]).index_add_(0, rows, vals)
        for k, (rows, vals) in grads.items()
        if k.startswith("side")
    }
    kernel = _SGDKernel(model, b, 1 + negatives)
    with compute_threads(threads, 1):
        assert numba.get_num_threads() == min(threads, numba.config.NUMBA_NUM_THREADS)
        got_loss = kernel.step(centre.numpy(), codes.numpy(), context.numpy(), weight.numpy(), lr)
    assert got_loss == pytest.approx(loss, rel=1e-5)
    params = dict(model.named_parameters())
    for k, v in want.items():
        torch.testing.assert_close(params[k].detach(), v, rtol=1e-5, atol=1e-6)
        assert not torch.equal(params[k].detach(), before[k]), k
    for k, v in want_grad.items():
        torch.testing.assert_close(params[k].grad, v, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(params[k].detach(), before[k])  # Adam's to move, not the kernel's


def test_sgd_training_is_the_same_with_one_or_two_threads():
    from graphrecall.common.threads import torch_threads

    g = two_cluster_graph()
    walks = random_walks(g, walk_length=8, walks_per_node=20, random_seed=0)
    runs = []
    for threads in (1, 2):
        with torch_threads(threads):
            runs.append(EGES(dim=8, epochs=2, batch_size=64, random_seed=0, progress=False).fit(walks, side_for()))
    np.testing.assert_array_equal(runs[0].embeddings, runs[1].embeddings)
    assert runs[0].losses == runs[1].losses


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="no training pairs"):
        EGES(progress=False).fit(np.array([[0, -1]]), side_for())


def test_cold_vector_leaves_out_side_values_no_trained_item_carries():
    # item 3 is held out and is the only one with brand "rare": that embedding is never trained (random),
    # so its cold vector is the mean of category and market only
    side = side_for()
    cols = {
        "category": [side.vocab[0][c] for c in side.codes[:, 0]],
        "market": [side.vocab[1][c] for c in side.codes[:, 1]],
        "brand": [side.vocab[2][c] for c in side.codes[:, 2]],
    }
    cols["brand"][3] = "rare"
    side = SideInfo.from_columns(cols)
    walks = random_walks(two_cluster_graph(), walk_length=6, walks_per_node=5, random_seed=0)
    model = EGES(dim=8, epochs=1, random_seed=0, progress=False)
    res = model.fit(walks, side, holdout=np.array([3]))
    with torch.no_grad():
        want = np.mean([model.model.side[f].weight[side.codes[3, f]].numpy() for f in (0, 1)], 0)
    np.testing.assert_allclose(res.embeddings[3], want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.embed_cold(side.codes[3:4])[0], want, rtol=1e-5, atol=1e-7)


def test_booked_weight_raises_the_predicted_probability_of_the_booked_context():
    # item 0 (cluster A) is viewed in sessions that end with booking item 15 (cluster B); walks never join them
    g = two_cluster_graph()
    walks = random_walks(g, walk_length=6, walks_per_node=10, random_seed=0)
    sessions = [np.array([0, 1, 15])] * 30
    booked = np.array([15] * 30)

    def p_booked(weight):
        model = EGES(
            dim=16, epochs=10, batch_size=256, booked_weight=weight, market_negatives=0, random_seed=0, progress=False
        )
        model.fit(walks, side_for(), sessions=sessions, booked=booked)
        with torch.no_grad():
            centre = model.model(torch.tensor([0]), torch.from_numpy(side_for().codes[:1]))
            return float(torch.sigmoid((centre * model.model.context(torch.tensor([15]))).sum()))

    none, some, much = p_booked(0.0), p_booked(1.0), p_booked(20.0)
    # measured over seeds 0-3: none 0.004-0.006, some 0.088-0.094, much 0.56-0.60
    assert 3 * none < some and 3 * some < much
    with pytest.raises(ValueError, match="booked_weight"):
        EGES(booked_weight=-1)


def test_pad_sequences_cuts_long_sessions_and_drops_single_items():
    from graphrecall.embed.eges import pad_sequences

    out = pad_sequences([np.arange(5), np.array([7]), np.array([8, 9])], max_len=3)
    assert out.tolist() == [[0, 1, 2], [3, 4, -1], [8, 9, -1]]


def test_warm_start_maps_rows_by_item_id_and_side_value():
    g = two_cluster_graph()
    walks = random_walks(g, walk_length=8, walks_per_node=20, random_seed=0)
    ids = np.array([f"i{k}" for k in range(20)], dtype=object)
    first = EGES(dim=16, epochs=6, batch_size=256, random_seed=0, progress=False).fit(walks, side_for(), item_ids=ids)
    assert list(first.state.item_ids) == list(ids)
    # the catalogue grows by two items with a new brand, and comes back in another order
    order = np.r_[np.arange(20)[::-1], 20, 21]
    new_ids = np.r_[ids, ["n0", "n1"]][order]
    old_side = side_for()
    cols = {
        f: [old_side.vocab[k][c] for c in old_side.codes[:, k]] + ["c0", "c1"] for k, f in enumerate(old_side.fields)
    }
    cols["brand"][20:] = ["bnew", "bnew"]
    side = SideInfo.from_columns({f: [v[r] for r in order] for f, v in cols.items()})
    back = {int(r): n for n, r in enumerate(order)}  # old row -> new row
    new_walks = np.vectorize(lambda x: back.get(int(x), -1))(walks)
    # with lr 0 the warm-started model is the stored one: every old item gets its old vector
    frozen = EGES(dim=16, epochs=1, lr=0.0, random_seed=1, progress=False).fit(
        new_walks, side, item_ids=new_ids, warm_start=first.state
    )
    for r in range(20):
        np.testing.assert_allclose(frozen.embeddings[back[r]], first.embeddings[r], rtol=1e-5, atol=1e-6)
    # one more epoch from the state keeps the clusters that one epoch from scratch does not reach
    e = (
        EGES(dim=16, epochs=1, batch_size=256, random_seed=1, progress=False)
        .fit(new_walks, side, item_ids=new_ids, warm_start=first.state)
        .embeddings
    )
    gap = lambda e: (
        np.mean([cos(e[back[a]], e[back[b]]) for a in range(10) for b in range(10) if a != b])
        - np.mean([cos(e[back[a]], e[back[b]]) for a in range(10) for b in range(10, 20)])
    )
    scratch = EGES(dim=16, epochs=1, batch_size=256, random_seed=1, progress=False).fit(new_walks, side).embeddings
    assert gap(e) > 0.3 and gap(e) > gap(scratch) + 0.1
    with pytest.raises(ValueError, match="--dim 16"):
        EGES(dim=8, epochs=1, progress=False).fit(new_walks, side, item_ids=new_ids, warm_start=first.state)
    with pytest.raises(ValueError, match="item_ids"):
        EGES(dim=16, epochs=1, progress=False).fit(new_walks, side, warm_start=first.state)


def test_state_saves_and_loads(tmp_path):
    g = two_cluster_graph()
    walks = random_walks(g, walk_length=6, walks_per_node=5, random_seed=0)
    ids = np.array([f"i{k}" for k in range(20)], dtype=object)
    st = EGES(dim=8, epochs=1, random_seed=0, progress=False).fit(walks, side_for(), item_ids=ids).state
    st.save(tmp_path / "eges" / "state.pt")
    back = type(st).load(tmp_path / "eges" / "state.pt")
    assert list(back.item_ids) == list(ids) and back.fields == st.fields and back.vocab == st.vocab and back.dim == 8
    for k, v in st.tensors.items():
        assert torch.equal(back.tensors[k], v)


def test_lazy_adam_equals_sparse_adam():
    """Same rows, same numbers as torch's SparseAdam, over steps with repeated and untouched rows."""
    torch.manual_seed(0)
    a = torch.nn.Embedding(50, 8, sparse=True)
    b = torch.nn.Embedding(50, 8, sparse=True)
    b.weight.data.copy_(a.weight.data)
    opt_a, opt_b = torch.optim.SparseAdam(a.parameters(), lr=0.05), LazyAdam(b.parameters(), lr=0.05)
    for step in range(12):
        idx = torch.randint(0, 30 if step < 6 else 50, (40,))  # rows 30-49 join late: their own bias correction
        target = torch.randn(40, 8)
        for emb, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            ((emb(idx) - target) ** 2).sum().backward()
            opt.step()
    assert not torch.equal(a.weight, torch.nn.Embedding(50, 8).weight)
    torch.testing.assert_close(b.weight, a.weight, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="sparse gradients"):
        dense = torch.nn.Embedding(3, 2)
        opt = LazyAdam(dense.parameters())
        dense(torch.tensor([0])).sum().backward()
        opt.step()


@pytest.mark.parametrize("negatives", [0, 3])
def test_pair_gradients_equal_autograd(negatives):
    """The hand-written loss and gradient of a batch equal autograd's on the module's own forward pass, with
    repeated centres, contexts and side values, weighted pairs and a second side field."""
    from graphrecall.embed.eges import EGESModel, pair_gradients

    torch.manual_seed(0)
    model = EGESModel(30, [4, 6], dim=8)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)  # attention and context start at zero otherwise
    b = 64
    centre = torch.randint(0, 30, (b,))
    codes = torch.stack([torch.randint(0, 4, (b,)), torch.randint(0, 6, (b,))], 1)
    context = torch.randint(0, 30, (b, 1 + negatives))
    weight = torch.rand(b) * 3
    loss, grads = pair_gradients(model, centre, codes, context, weight / b)

    h = model(centre, codes)
    logit = torch.bmm(model.context(context), h.unsqueeze(-1)).squeeze(-1)
    per_pair = nn.functional.logsigmoid(logit[:, 0]) + nn.functional.logsigmoid(-logit[:, 1:]).sum(-1)
    want = -(weight * per_pair).mean()
    want.backward()
    assert loss == pytest.approx(float(want.detach()), rel=1e-6)
    assert set(grads) == {name for name, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        rows, vals = grads[name]
        got = torch.zeros_like(p).index_add_(0, rows, vals)
        torch.testing.assert_close(got, p.grad, rtol=1e-5, atol=1e-7)
        assert p.grad.abs().sum() > 0, name
