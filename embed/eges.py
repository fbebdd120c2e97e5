"""EGES (Wang et al. 2018, "Billion-scale Commodity Embedding for E-commerce Recommendation in Alibaba").

* Each item has an ID embedding plus one embedding per side-info field
  (category, brand, shop, price bucket, market); the item vector is their
  softmax-weighted sum with per-item attention weights ``a_v`` (``H_v = sum_j softmax(a_v)_j W^j_v``).
* A separate context table; skip-gram with negative sampling (unigram^0.75, one alias table), the
  negatives drawn by a counter-based generator (``embed.kernels.batch_inputs``).
* The loss and its gradient are written out, not left to autograd. With SGD (the default) one batch is one
  compiled loop over its pairs (``embed.kernels.sgd_batch``), as word2vec's C loop is; with Adam, a few torch
  gathers, products and ``index_add_`` calls (``pair_gradients``). The two are tested equal.
* Airbnb-style booked-item global context (Grbovic & Cheng 2018): in a session
  with a booking/purchase, the booked item is a positive context for every item of it.
* Airbnb-style market negatives: for each positive pair, extra negatives drawn
  from the centre item's market (a configurable side field).
* Cold items (never seen in training) get the mean of their side-info embeddings.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import numba
import numpy as np
import torch
from torch import nn

from ..common.progress import progress_bar
from ..walkers.walk import build_alias
from .kernels import batch_inputs, sgd_batch, window_pairs

logger = logging.getLogger(__name__)

UNKNOWN = 0  # index of the "missing value" row in every side table


@dataclass
class SideInfo:
    """Side-info codes per item: ``codes[:, f]`` indexes ``vocab[f]`` (0 = missing)."""

    fields: tuple[str, ...]
    codes: np.ndarray  # (n_items, n_fields) int64
    vocab: list[list[str | None]]

    @classmethod
    def from_columns(cls, columns: dict[str, list[str | None]]) -> SideInfo:
        fields = tuple(columns)
        n = len(next(iter(columns.values()))) if columns else 0
        codes = np.zeros((n, len(fields)), dtype=np.int64)
        vocab = []
        for f, name in enumerate(fields):
            values = columns[name]
            uniq = sorted({v for v in values if v is not None})
            lookup = {v: k + 1 for k, v in enumerate(uniq)}
            codes[:, f] = [lookup.get(v, UNKNOWN) if v is not None else UNKNOWN for v in values]
            vocab.append([None, *uniq])
        return cls(fields, codes, vocab)

    def cardinalities(self) -> list[int]:
        return [len(v) for v in self.vocab]


# measured (bench/speed.py, section eges_scaling): one epoch takes about the same at 6.5k items
# (dense 1.1-1.5x faster), and sparse is 12x faster at 200k items
SPARSE_FROM_ITEMS = 20_000


# default learning rate per optimizer: Adam's as tuned for EGES here; SGD's is word2vec's (gensim's alpha,
# decayed linearly to MIN_SGD_LR over the run)
OPTIMIZERS = {"adam": 0.01, "sgd": 0.025}
MIN_SGD_LR = 1e-4


class LazyAdam(torch.optim.Optimizer):
    """``torch.optim.SparseAdam``'s update, Adam on the rows a step touches with bias correction by the
    parameter's step count, done with row gathers and ``index_add_`` instead of sparse-tensor masks and
    adds: the same numbers (tested against SparseAdam), in fewer passes over the rows."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if not lr > 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1 or not eps > 0:
            raise ValueError(f"LazyAdam needs lr > 0, 0 <= betas < 1 and eps > 0, got {lr}, {betas}, {eps}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise ValueError("LazyAdam takes sparse gradients (nn.Embedding(sparse=True)); use Adam for dense")
                g = p.grad.coalesce()
                self.update_rows(p, g.indices()[0], g.values())

    @torch.no_grad()
    def update_rows(self, p: torch.Tensor, rows: torch.Tensor, vals: torch.Tensor) -> None:
        """One Adam step of parameter ``p`` for its gradient ``vals`` on ``rows`` (distinct, as coalesced)."""
        group = next(g for g in self.param_groups if any(p is q for q in g["params"]))
        b1, b2 = group["betas"]
        st = self.state[p]
        if not st:
            st["step"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
        st["step"] += 1
        m = st["m"].index_select(0, rows).mul_(b1).add_(vals, alpha=1 - b1)
        v = st["v"].index_select(0, rows).mul_(b2).addcmul_(vals, vals, value=1 - b2)
        st["m"].index_copy_(0, rows, m)
        st["v"].index_copy_(0, rows, v)
        step_size = group["lr"] * (1 - b2 ** st["step"]) ** 0.5 / (1 - b1 ** st["step"])
        p.index_add_(0, rows, m.div_(v.sqrt_().add_(group["eps"])).mul_(-step_size))  # (alpha= is 4x slower)


class EGESModel(nn.Module):
    def __init__(self, n_items: int, side_cardinalities: list[int], dim: int = 32, sparse: bool = False):
        """``sparse``: sparse gradients for the tables with a row per item; side-info tables (a few
        thousand rows at most) stay dense."""
        super().__init__()
        self.item = nn.Embedding(n_items, dim, sparse=sparse)
        self.side = nn.ModuleList(nn.Embedding(c, dim) for c in side_cardinalities)
        self.attention = nn.Embedding(n_items, 1 + len(side_cardinalities), sparse=sparse)
        self.context = nn.Embedding(n_items, dim, sparse=sparse)
        bound = 0.5 / dim
        for emb in [self.item, *self.side]:
            nn.init.uniform_(emb.weight, -bound, bound)
        nn.init.zeros_(self.attention.weight)
        nn.init.zeros_(self.context.weight)

    def stacked(self, items: torch.Tensor, side_codes: torch.Tensor) -> torch.Tensor:
        parts = [self.item(items)] + [emb(side_codes[:, f]) for f, emb in enumerate(self.side)]
        return torch.stack(parts, dim=1)  # (B, 1 + F, dim)

    def attention_weights(self, items: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.attention(items), dim=-1)

    def forward(self, items: torch.Tensor, side_codes: torch.Tensor) -> torch.Tensor:
        e = self.stacked(items, side_codes)
        a = self.attention_weights(items)
        return (a.unsqueeze(-1) * e).sum(dim=1)

    def cold(self, side_codes: torch.Tensor) -> torch.Tensor:
        """Mean of the known side-info embeddings (missing fields are left out)."""
        if not self.side:
            raise ValueError("cold-start needs side info; train EGES with at least one side field")
        parts = torch.stack([emb(side_codes[:, f]) for f, emb in enumerate(self.side)], dim=1)
        known = (side_codes != UNKNOWN).unsqueeze(-1).float()
        return (parts * known).sum(1) / known.sum(1).clamp(min=1.0)


@torch.no_grad()
def pair_gradients(
    model: EGESModel, centre: torch.Tensor, codes: torch.Tensor, context: torch.Tensor, weight: torch.Tensor
) -> tuple[float, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The weighted skip-gram loss of one batch and its gradient, by hand instead of autograd.

    ``centre`` (B,) items with side ``codes`` (B, F); ``context`` (B, 1 + K): the positive context first,
    then K negatives; ``weight`` (B,) per pair. Loss ``-sum_b w_b (log s(h_b.u_pos) + sum_k log s(-h_b.u_k))``
    with ``h_b = sum_j softmax(a_b)_j e_bj``. Returns the loss and, per parameter name of ``model``,
    ``(rows, grads)``: one gradient row per use of a table row (repeats not summed). Tested equal to autograd.
    (The loss is summed over the batch: pass ``weight / B`` for the mean.)
    """
    b, fields = len(centre), len(model.side)
    e = torch.empty((1 + fields, b, model.item.embedding_dim))  # field-major: each field's rows contiguous
    torch.index_select(model.item.weight, 0, centre, out=e[0])
    for f, emb in enumerate(model.side):
        torch.index_select(emb.weight, 0, codes[:, f], out=e[1 + f])
    s = (
        torch.softmax(model.attention.weight.index_select(0, centre), dim=-1).T.contiguous().unsqueeze(-1)
    )  # (1+F, B, 1)
    h = (s * e).sum(0)  # (B, d)
    flat = context.reshape(-1)
    u = model.context.weight.index_select(0, flat).view(b, context.shape[1], -1)  # (B, 1 + K, d)
    logit = (u * h.unsqueeze(1)).sum(-1)  # (B, 1 + K); products and sums, not bmm (slow on tiny matrices)
    logit[:, 1:].neg_()  # the sign of each term's logit: + for the positive, - for the negatives
    loss = -float((nn.functional.logsigmoid(logit).sum(1) * weight).sum())
    g = torch.sigmoid(logit).sub_(1.0)  # d(-log s(x))/dx = s(x) - 1 ...
    g[:, 1:].neg_()  # ... and through x = -logit for the negatives
    g.mul_(weight.unsqueeze(1))  # (B, 1 + K): dL / d(h.u)
    dh = (g.unsqueeze(-1) * u).sum(1)  # (B, d)
    du = g.unsqueeze(-1) * h.unsqueeze(1)  # (B, 1 + K, d)
    de = s * dh  # (1 + F, B, d)
    ds = (e * dh).sum(-1, keepdim=True)  # (1 + F, B, 1)
    da = (s * (ds - (s * ds).sum(0, keepdim=True))).squeeze(-1).T  # through the softmax: (B, 1 + F)
    grads = {
        "item.weight": (centre, de[0]),
        "attention.weight": (centre, da.contiguous()),
        "context.weight": (flat, du.view(len(flat), -1)),
    }
    for f in range(fields):
        grads[f"side.{f}.weight"] = (codes[:, f], de[1 + f])
    return loss, grads


class Negatives(NamedTuple):
    """The arguments of :func:`embed.kernels.batch_inputs` that say how negatives are drawn, in its order:
    ``n_noise`` per pair from an alias table (Walker/Vose: two random numbers per draw, whatever the number of
    items), then ``n_market`` from the centre's market (``market`` codes per item; the items sorted by market
    in ``order``, each market's ``offsets`` and ``counts`` into it)."""

    prob: np.ndarray
    alias: np.ndarray
    n_noise: int
    market: np.ndarray
    order: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    n_market: int


class _SGDKernel:
    """The model's tables as numpy views for :func:`embed.kernels.sgd_batch` (word2vec's update, compiled),
    its scratch buffers, and the side tables' gradients as ``p.grad``, which Adam then reads."""

    def __init__(self, model: EGESModel, batch_size: int, n_context: int):
        def view(p: torch.Tensor) -> np.ndarray:
            return p.detach().numpy()

        dim, j = model.item.embedding_dim, 1 + len(model.side)
        self.tables = view(model.item.weight), view(model.attention.weight), view(model.context.weight)
        for emb in model.side:
            emb.weight.grad = torch.zeros_like(emb.weight)
        none = (np.zeros((1, dim), np.float32),)  # numba needs a typed tuple; no field reads it
        self.side = tuple(view(e.weight) for e in model.side) or none
        self.side_grad = tuple(e.weight.grad.numpy() for e in model.side) or none
        self.scratch = (
            np.empty((batch_size, j), np.float32),
            np.empty((batch_size, j), np.float32),
            np.empty((batch_size, dim), np.float32),
            np.empty((batch_size, dim), np.float32),
            np.empty((batch_size, n_context), np.float32),
        )

    def step(self, centre: np.ndarray, codes: np.ndarray, context: np.ndarray, weight: np.ndarray, lr: float) -> float:
        """One batch (as :func:`pair_gradients` takes it); returns its summed loss."""
        for g in self.side_grad:
            g.fill(0.0)
        return float(
            sgd_batch(
                *self.tables,
                self.side,
                self.side_grad,
                centre,
                codes,
                context,
                weight,
                lr,
                *self.scratch,
                numba.get_num_threads(),
            )
        )


@contextmanager
def compute_threads(numba_threads: int, torch_threads: int):
    """numba's and torch's thread counts set inside the block (numba's at most its configured maximum),
    restored after. Both run OpenMP pools whose idle threads wait by spinning, so the cores go to one of
    them at a time."""
    before = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(max(1, min(numba_threads, numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(torch_threads)
    try:
        yield
    finally:
        numba.set_num_threads(before[0])
        torch.set_num_threads(before[1])


def skipgram_pairs(walks: np.ndarray, window: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """(centre, context) pairs within ``window`` of each other; -1 padding skipped.

    With ``rng``, each centre draws its own window in ``1..window`` as word2vec does
    (nearer contexts count more, and about half the pairs remain); without, the full window.
    """
    walks = np.ascontiguousarray(walks, dtype=np.int64)
    reach = np.full(walks.shape, window, np.int64) if rng is None else rng.integers(1, window + 1, size=walks.shape)
    return window_pairs(walks, reach, window)


def booked_pairs(sessions: list[np.ndarray], booked: np.ndarray) -> np.ndarray:
    """Airbnb global context: (item, booked item) for every other item of a booking session."""
    if not len(sessions):
        return np.zeros((0, 2), np.int64)
    lens = np.fromiter((len(s) for s in sessions), dtype=np.int64, count=len(sessions))
    items = np.concatenate(sessions).astype(np.int64) if lens.sum() else np.zeros(0, np.int64)
    b = np.repeat(np.asarray(booked, dtype=np.int64), lens)
    keep = (b >= 0) & (items != b)
    return np.stack([items[keep], b[keep]], 1)


def pad_sequences(seqs: list[np.ndarray], max_len: int = 64) -> np.ndarray:
    """Sequences of item indices as a -1 padded array (longer ones cut into ``max_len`` pieces)."""
    pieces = [s[o : o + max_len] for s in seqs for o in range(0, len(s), max_len) if len(s) >= 2]
    out = np.full((len(pieces), max_len), -1, dtype=np.int64)
    for n, piece in enumerate(pieces):
        out[n, : len(piece)] = piece
    return out


@dataclass
class EGESResult:
    embeddings: np.ndarray  # (n_items, dim) float32, cold items filled from side info
    cold: np.ndarray  # bool per item: True when it got the side-info mean
    losses: list[float] = field(default_factory=list)
    attention: np.ndarray | None = None  # (n_items, 1 + F) softmax weights
    state: EGESState | None = None  # the trained tables by item id (when fit got item_ids): a later warm start


@dataclass
class EGESState:
    """A trained model's tables keyed by item id and side value, so that a warm start can map them onto a
    catalogue that has grown or been reordered (``EGES.fit(..., warm_start=state)``)."""

    item_ids: np.ndarray
    fields: tuple[str, ...]
    vocab: list[list[str | None]]
    tensors: dict[str, torch.Tensor]

    @property
    def dim(self) -> int:
        return int(self.tensors["item.weight"].shape[1])

    def save(self, path) -> None:
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "item_ids": [str(i) for i in self.item_ids],
                "fields": list(self.fields),
                "vocab": self.vocab,
                "tensors": self.tensors,
            },
            path,
        )

    @classmethod
    def load(cls, path) -> EGESState:
        d = torch.load(path, weights_only=True)
        return cls(np.array(d["item_ids"], dtype=object), tuple(d["fields"]), d["vocab"], d["tensors"])


class EGES:
    """Trainer. Keyword defaults follow the paper (dim 160 in production; 32 here for small data)."""

    def __init__(
        self,
        *,
        dim: int = 32,
        window: int = 5,
        negatives: int = 5,
        market_negatives: int = 2,
        market_field: str | None = "market",
        booked_context: bool = True,
        booked_weight: float = 1.0,
        ns_exponent: float = 0.75,
        shrink_window: bool = True,
        epochs: int = 5,
        batch_size: int = 512,
        lr: float | None = None,
        optimizer: str = "sgd",
        sparse: bool | None = None,
        random_seed: int = 0,
        progress: bool = True,
    ):
        """``booked_weight``: loss weight of a booked-context pair (Airbnb's global context) against 1 for
        a window pair. Each batch's loss and gradient are written out by hand (:func:`pair_gradients`, tested
        equal to autograd). ``optimizer``: ``"adam"`` (``lr`` default 0.01), or ``"sgd"``: word2vec's update
        on the per-item tables (``lr`` default 0.025, decayed linearly to 1e-4 as gensim does; the batch's
        gradients summed, not averaged) with Adam on the small side tables (at ``lr * 0.4``), compiled
        (:func:`embed.kernels.sgd_batch`, on as many threads as torch has). ``sparse`` (Adam only): Adam on
        the per-item rows a step touches (:class:`LazyAdam`); dense Adam updates every row of every table on
        every step, which is faster on small catalogues and far slower on large ones. ``None`` picks sparse
        from ``SPARSE_FROM_ITEMS`` items."""
        if (
            dim < 1
            or window < 1
            or negatives < 0
            or market_negatives < 0
            or epochs < 1
            or batch_size < 1
            or not booked_weight >= 0
        ):
            raise ValueError(
                "dim, window, epochs and batch_size must be >= 1; negatives, market_negatives and booked_weight >= 0"
            )
        self.dim, self.window, self.negatives = dim, window, negatives
        self.market_negatives, self.market_field, self.booked_context = market_negatives, market_field, booked_context
        self.booked_weight = booked_weight
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        if lr is not None and not lr >= 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        self.optimizer = optimizer
        self.lr = OPTIMIZERS[optimizer] if lr is None else lr
        self.ns_exponent, self.epochs, self.batch_size = ns_exponent, epochs, batch_size
        self.shrink_window, self.sparse = shrink_window, sparse
        self.random_seed, self.progress = random_seed, progress
        self.model: EGESModel | None = None
        self.trained_values: list[np.ndarray] = []  # per side field: which values trained items carry
        self.side: SideInfo | None = None

    # ------------------------------------------------------------------ sampling
    def _negative_tables(self, weights: np.ndarray) -> Negatives:
        """How negatives are drawn (:class:`Negatives`): an alias table for ``weights``, and the market
        field's codes with the items grouped by market."""
        prob, alias = build_alias(np.array([0, len(weights)], dtype=np.int64), np.asarray(weights, np.float64))
        none = np.zeros(1, np.int64)
        if not self.market_negatives or self.market_field is None or self.market_field not in self.side.fields:
            return Negatives(prob, alias, self.negatives, none, none, none, none, 0)
        f = self.side.fields.index(self.market_field)
        m = np.ascontiguousarray(self.side.codes[:, f])
        counts = np.bincount(m, minlength=len(self.side.vocab[f]))
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return Negatives(
            prob, alias, self.negatives, m, np.argsort(m, kind="stable"), offsets, counts, self.market_negatives
        )

    def fit(
        self,
        walks: np.ndarray,
        side: SideInfo,
        *,
        sessions: list[np.ndarray] | None = None,
        booked: np.ndarray | None = None,
        holdout: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
        warm_start: EGESState | None = None,
    ) -> EGESResult:
        """Train on ``walks`` (int array, -1 padded; session sequences can be stacked in too, see
        :func:`pad_sequences`). ``holdout`` items are treated as cold (never trained).

        ``item_ids`` (one per row of ``side``) names the rows, so that the result carries an
        :class:`EGESState`; ``warm_start`` (which needs them) starts every table from that state's rows
        for the same item ids and side values instead of from random; new items and values start random."""
        n_items = side.codes.shape[0]
        if walks.size and walks.max() >= n_items:
            raise ValueError(
                f"walks reference item {walks.max()} but side info has {n_items} items; export both from one graph"
            )
        self.side = side
        rng = np.random.default_rng(self.random_seed)
        torch.manual_seed(self.random_seed)
        pairs = skipgram_pairs(walks, self.window, rng if self.shrink_window else None)
        weight = np.ones(len(pairs), dtype=np.float32)
        if self.booked_context and self.booked_weight > 0 and sessions is not None and booked is not None:
            bp = booked_pairs(sessions, booked)
            logger.info(
                "EGES: %d booked-context pairs (weight %g) added to %d window pairs",
                len(bp),
                self.booked_weight,
                len(pairs),
            )
            pairs = np.concatenate([pairs, bp])
            weight = np.concatenate([weight, np.full(len(bp), self.booked_weight, dtype=np.float32)])
        if holdout is not None and len(holdout):
            mask = np.zeros(n_items, bool)
            mask[holdout] = True
            keep = ~(mask[pairs[:, 0]] | mask[pairs[:, 1]])
            pairs, weight = pairs[keep], weight[keep]
        if len(pairs) == 0:
            raise ValueError(
                "no training pairs: the walks are empty or all of length 1. Ingest sessions with at "
                "least two items (TRANSITION edges), or lower min session length."
            )
        freq = np.bincount(pairs[:, 1], minlength=n_items).astype(np.float64)
        negatives = self._negative_tables(freq**self.ns_exponent)

        sparse = self.sparse if self.sparse is not None else n_items >= SPARSE_FROM_ITEMS
        self.model = EGESModel(n_items, side.cardinalities(), self.dim, sparse=sparse)
        if warm_start is not None:
            if item_ids is None:
                raise ValueError("warm_start maps rows by item id: pass item_ids as well")
            self._warm_start(warm_start, np.asarray(item_ids, dtype=object), side)
        params = dict(self.model.named_parameters())
        sgd = self.optimizer == "sgd"
        per_item = {"item.weight", "attention.weight", "context.weight"}
        # adam, sparse: the per-item tables get Adam on the rows a step touches (LazyAdam), the small side
        # tables dense Adam; adam, dense: Adam on every row of every table. sgd: word2vec's update on the
        # per-item tables (the rows a pair uses moved by lr times its gradient, no per-batch mean) and dense
        # Adam on the side tables, which every pair of a batch shares, at lr scaled as the defaults are
        # (0.025 -> 0.01). Plain SGD on them measured cold HR@20 0.34 against Adam's 0.56 on REES46
        # validation (bench/eges_optimizer.py)
        lazy = per_item if sparse and not sgd else set()
        lazy_opt = LazyAdam([params[k] for k in sorted(lazy)], lr=self.lr) if lazy else None
        dense = [p for k, p in params.items() if k not in lazy and not (sgd and k in per_item)]
        side_lr = self.lr * OPTIMIZERS["adam"] / OPTIMIZERS["sgd"] if sgd else self.lr
        dense_opt = torch.optim.Adam(dense, lr=side_lr, fused=True) if dense else None  # fused: 2.7x faster
        logger.info(
            "EGES: %d items, %d pairs, %s",
            n_items,
            len(pairs),
            "SGD" if sgd else "sparse Adam" if sparse else "dense Adam",
        )
        n_context = 1 + negatives.n_noise + negatives.n_market
        kernel = _SGDKernel(self.model, self.batch_size, n_context) if sgd else None
        batch = (
            np.empty(self.batch_size, np.int64),
            np.empty((self.batch_size, len(side.fields)), np.int64),
            np.empty((self.batch_size, n_context), np.int64),
            np.empty(self.batch_size, np.float32),
        )
        losses = []
        t0 = time.perf_counter()
        n_steps, step = self.epochs * -(-len(pairs) // self.batch_size), 0
        bar = progress_bar(total=self.epochs * len(pairs), unit="pairs", desc="EGES", enabled=self.progress)
        # the threads torch is given (the pipeline's --torch-threads) go to the compiled SGD step, or to torch
        # for Adam; the other side gets one
        threads = torch.get_num_threads()
        with compute_threads(threads, 1) if sgd else compute_threads(1, threads):
            for epoch in range(self.epochs):
                perm = rng.permutation(len(pairs))
                total, n_batches = 0.0, 0
                key = np.uint64(rng.integers(0, 2**63))  # the epoch's negatives: see kernels.batch_inputs
                for s in range(0, len(perm), self.batch_size):
                    n = min(self.batch_size, len(perm) - s)
                    centre, codes, context, w = (a[:n] for a in batch)
                    batch_inputs(pairs, perm, s, weight, side.codes, *negatives, key, centre, codes, context, w)
                    if sgd:
                        lr = self.lr - (self.lr - min(MIN_SGD_LR, self.lr)) * step / n_steps
                        loss = kernel.step(centre, codes, context, w, lr) / n
                    else:
                        loss = self._adam_step(centre, codes, context, w / n, params, lazy, lazy_opt)
                    if dense_opt is not None:
                        dense_opt.step()
                    step += 1
                    total += loss
                    n_batches += 1
                    bar.update(n)
                losses.append(total / max(n_batches, 1))
                dt = time.perf_counter() - t0
                logger.info(
                    "EGES epoch %d/%d: loss %.4f, %.0f pairs/s",
                    epoch + 1,
                    self.epochs,
                    losses[-1],
                    len(pairs) * (epoch + 1) / dt,
                )
        bar.close()
        seen = np.zeros(n_items, bool)
        seen[pairs[:, 0]] = True
        # a side value that only untrained items carry has a random, never-updated embedding: cold
        # vectors leave it out like a missing value
        self.trained_values = [
            np.bincount(side.codes[seen, f], minlength=c) > 0 for f, c in enumerate(side.cardinalities())
        ]
        state = (
            None
            if item_ids is None
            else EGESState(
                np.asarray(item_ids, dtype=object),
                side.fields,
                side.vocab,
                {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            )
        )
        return EGESResult(self.embed_all(seen), ~seen, losses, self.attention_weights(), state)

    def _adam_step(
        self,
        centre: np.ndarray,
        codes: np.ndarray,
        context: np.ndarray,
        weight: np.ndarray,
        params,
        lazy: set[str],
        lazy_opt: LazyAdam | None,
    ) -> float:
        """One batch for Adam: the gradient by :func:`pair_gradients`, then LazyAdam's row update for the
        ``lazy`` tables and ``p.grad`` for the dense optimizer. Returns the batch's loss."""
        as_t = torch.from_numpy
        loss, grads = pair_gradients(self.model, as_t(centre), as_t(codes), as_t(context), as_t(weight))
        with torch.no_grad():
            merged = {}  # item and attention rows are the same centres: coalesce them once
            for name, (rows, vals) in grads.items():
                p = params[name]
                if name in lazy:
                    if id(rows) not in merged:
                        merged[id(rows)] = torch.unique(rows, return_inverse=True)
                    uniq, inv = merged[id(rows)]
                    lazy_opt.update_rows(p, uniq, vals.new_zeros((len(uniq), vals.shape[1])).index_add_(0, inv, vals))
                else:
                    p.grad = torch.zeros_like(p).index_add_(0, rows, vals)
        return loss

    @torch.no_grad()
    def _warm_start(self, prev: EGESState, item_ids: np.ndarray, side: SideInfo) -> None:
        if prev.dim != self.dim:
            raise ValueError(
                f"the stored EGES state has dim {prev.dim}, not {self.dim}: pass dim={prev.dim} "
                f"(--dim {prev.dim}), or train from scratch with `graphrecall embed`"
            )
        pos = {str(v): k for k, v in enumerate(prev.item_ids)}
        rows = [(r, pos[str(i)]) for r, i in enumerate(item_ids) if str(i) in pos]
        new, old = (torch.tensor(x, dtype=torch.long) for x in zip(*rows)) if rows else (None, None)
        tables = ["item", "context"] + (["attention"] if tuple(prev.fields) == tuple(side.fields) else [])
        if new is not None:
            for name in tables:
                getattr(self.model, name).weight[new] = prev.tensors[f"{name}.weight"][old]
        for f, name in enumerate(side.fields):
            if name not in prev.fields:
                continue
            g = prev.fields.index(name)
            lookup = {v: k for k, v in enumerate(prev.vocab[g])}
            pairs = [(k, lookup[v]) for k, v in enumerate(side.vocab[f]) if v in lookup]
            a, b = (torch.tensor(x, dtype=torch.long) for x in zip(*pairs))
            self.model.side[f].weight[a] = prev.tensors[f"side.{g}.weight"][b]
        logger.info(
            "EGES warm start: %d of %d items and their side values from the stored state", len(rows), len(item_ids)
        )

    def _known_codes(self, codes: np.ndarray) -> np.ndarray:
        """``codes`` with values never seen on a trained item set to UNKNOWN."""
        codes = np.array(codes, dtype=np.int64, copy=True)
        for f, ok in enumerate(self.trained_values):
            codes[:, f] = np.where(ok[codes[:, f]], codes[:, f], UNKNOWN)
        return codes

    # ------------------------------------------------------------------ outputs
    @torch.no_grad()
    def embed_all(self, seen: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("call fit() first")
        n = len(seen)
        items = torch.arange(n)
        codes = torch.from_numpy(self.side.codes)
        warm = self.model(items, codes)
        cold = self.model.cold(torch.from_numpy(self._known_codes(self.side.codes))) if self.side.fields else warm
        out = torch.where(torch.from_numpy(seen).unsqueeze(-1), warm, cold)
        return out.numpy().astype(np.float32)

    @torch.no_grad()
    def embed_cold(self, side_codes: np.ndarray) -> np.ndarray:
        """Vectors for new items from side-info codes only."""
        return self.model.cold(torch.from_numpy(self._known_codes(np.asarray(side_codes)))).numpy().astype(np.float32)

    @torch.no_grad()
    def attention_weights(self) -> np.ndarray:
        return self.model.attention_weights(torch.arange(self.model.item.num_embeddings)).numpy()
