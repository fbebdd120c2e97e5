"""LightGCN (He et al. 2020) on the user-item graph, with torch-geometric's
:class:`~torch_geometric.nn.models.LightGCN` and its BPR loss: one vector per user and per item, so that the
``gnn`` channel serves item-to-item lists (cosine of item vectors) and ``/recall?channel=gnn`` a user's own
vector against the items (two-tower recall).

Propagation multiplies by the symmetric-normalised bipartite adjacency ``D^-1/2 A D^-1/2`` held as one
torch sparse CSR matrix, so a layer costs ``O(nnz * dim)`` time and ``O(nodes * dim)`` memory: no per-edge
message tensor is built (PyG's ``LGConv`` takes a sparse adjacency directly). At 10M events that is the
nodes' vectors a few times over, not the edges' (bench/scale.py times it).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..common.progress import progress_bar
from .index import ItemVectorIndex, UserTower

logger = logging.getLogger(__name__)


@dataclass
class GnnResult:
    """Row ``u`` of ``user_vectors`` is user code ``u``; row ``i`` of ``item_vectors`` item code ``i``."""

    user_vectors: np.ndarray
    item_vectors: np.ndarray
    losses: list[float]
    seconds: float


def normalised_adjacency(interactions: sp.csr_matrix):
    """``D^-1/2 [[0, R], [R^T, 0]] D^-1/2`` of the binary ``users x items`` matrix, as a torch sparse CSR
    tensor over users then items (isolated nodes keep zero rows)."""
    import torch

    r = (interactions > 0).astype(np.float32).tocsr()
    a = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv = np.zeros_like(deg)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    a = sp.diags(inv) @ a @ sp.diags(inv)
    a = a.tocsr().astype(np.float32)
    a.sort_indices()
    with warnings.catch_warnings():  # torch calls its sparse CSR support beta; the product uses matmul only
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(a.indptr.astype(np.int64)),
            torch.from_numpy(a.indices.astype(np.int64)),
            torch.from_numpy(a.data),
            size=a.shape,
        )


def train_lightgcn(
    interactions: sp.csr_matrix,
    *,
    dim: int = 64,
    layers: int = 3,
    epochs: int = 50,
    lr: float = 0.005,
    reg: float = 1e-4,
    batch_size: int = 2048,
    samples_per_epoch: int | None = None,
    max_batches: int | None = None,
    random_seed: int = 0,
    progress: bool = True,
) -> GnnResult:
    """LightGCN with BPR on ``interactions`` (``users x items``, nonzero = engaged), the paper's defaults for
    ``dim`` (64), ``layers`` (3), ``reg`` (1e-4) and uniform layer weights; Adam at ``lr``.

    Each epoch draws ``samples_per_epoch`` (default: one per engaged pair) positive pairs with one uniform
    negative item each, in batches of ``batch_size``, or in ``max_batches`` larger ones when that would take
    more: every batch propagates over the whole graph (sparse), so the batches per epoch bound its time."""
    import torch
    from torch_geometric.nn.models import LightGCN

    interactions = sp.csr_matrix(interactions)
    n_users, n_items = interactions.shape
    if interactions.nnz == 0:
        raise ValueError("LightGCN needs at least one user-item event; ingest events before `graphrecall gnn`")
    for name, value in (("dim", dim), ("layers", layers), ("epochs", epochs), ("batch_size", batch_size)) + (
        () if max_batches is None else (("max_batches", max_batches),)
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    torch.manual_seed(random_seed)
    rng = np.random.default_rng(random_seed)
    adj = normalised_adjacency(interactions)
    model = LightGCN(n_users + n_items, dim, layers)
    for conv in model.convs:  # the adjacency is normalised once above, not at every layer of every batch
        conv.normalize = False
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    coo = interactions.tocoo()
    users, items = coo.row.astype(np.int64), coo.col.astype(np.int64)
    n_pairs = len(users)
    per_epoch = n_pairs if samples_per_epoch is None else max(1, min(int(samples_per_epoch), n_pairs))
    if max_batches is not None and -(-per_epoch // batch_size) > max_batches:
        batch_size = -(-per_epoch // max_batches)
    batches = -(-per_epoch // batch_size)
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = progress_bar(enabled=progress, total=epochs * batches, desc="LightGCN", unit="batch")
    for _epoch in range(epochs):
        pick = rng.permutation(n_pairs)[:per_epoch]
        total = 0.0
        for b in range(batches):
            rows = pick[b * batch_size : (b + 1) * batch_size]
            u = torch.from_numpy(users[rows])
            i = torch.from_numpy(items[rows] + n_users)
            j = torch.from_numpy(rng.integers(0, n_items, len(rows)) + n_users)
            emb = model.get_embedding(adj)
            eu = emb[u]
            pos, neg = (eu * emb[i]).sum(-1), (eu * emb[j]).sum(-1)
            loss = model.recommendation_loss(pos, neg, node_id=torch.cat([u, i, j]), lambda_reg=reg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(rows)
            bar.update(1)
        losses.append(total / per_epoch)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    with torch.no_grad():
        emb = model.get_embedding(adj).numpy()
    dt = time.perf_counter() - t0
    logger.info(
        "LightGCN: %d users, %d items, %d pairs, %d epochs in %.1fs (%.0f pairs/s); loss %.4f",
        n_users,
        n_items,
        n_pairs,
        epochs,
        dt,
        epochs * per_epoch / dt if dt else 0.0,
        losses[-1],
    )
    return GnnResult(emb[:n_users].copy(), emb[n_users:].copy(), losses, dt)


@dataclass
class GnnModel:
    """A trained LightGCN as the ``gnn`` channel serves it: ``lists`` (each item with events: its ``k`` nearest
    items by cosine, ``{item: (ids, scores)}``), the item vectors and the :class:`UserTower`."""

    item_ids: np.ndarray
    item_vectors: np.ndarray
    lists: dict
    tower: UserTower
    result: GnnResult


def fit_gnn(users, items, settings, k: int, *, random_seed: int = 0, progress: bool = True) -> GnnModel:
    """LightGCN on the engaged pairs ``(users[n], items[n])`` (external ids; repeats count once) with
    ``settings`` (a :class:`~.settings.GnnSettings`), then every item's top ``k`` by cosine through Faiss."""
    import pandas as pd

    ucode, uids = pd.factorize(pd.Series(np.asarray(users, dtype=object)).astype(str))
    icode, iids = pd.factorize(pd.Series(np.asarray(items, dtype=object)).astype(str))
    m = sp.csr_matrix((np.ones(len(ucode), np.float32), (ucode, icode)), shape=(len(uids), len(iids)))
    res = train_lightgcn(m, random_seed=random_seed, progress=progress, **settings.train_kwargs())
    item_ids = np.asarray(iids, dtype=object)
    index = ItemVectorIndex(item_ids, res.item_vectors)
    lists = nearest_lists(index, k, progress=progress)
    tower = UserTower(np.asarray(uids, dtype=object), res.user_vectors, item_ids, res.item_vectors)
    return GnnModel(item_ids, res.item_vectors, lists, tower, res)


def nearest_lists(index: ItemVectorIndex, k: int, batch: int = 4096, progress: bool = False) -> dict:
    """Every item's ``k`` nearest others in ``index`` (batched Faiss searches), ``{item: (ids, scores)}``."""
    out = {}
    n = len(index.item_ids)
    bar = progress_bar(enabled=progress, total=n, desc="gnn lists", unit="items")
    for lo in range(0, n, batch):
        scores, rows = index.search(index.vectors[lo : lo + batch], k + 1)
        for r, (sc, nb) in enumerate(zip(scores, rows), start=lo):
            keep = (nb >= 0) & (nb != r)
            out[str(index.item_ids[r])] = (index.item_ids[nb[keep][:k]].astype(object), sc[keep][:k])
        bar.update(min(batch, n - lo))
    bar.close()
    return out
