"""EGES (Wang et al. 2018, "Billion-scale Commodity Embedding for E-commerce Recommendation in Alibaba").

* Each item has an ID embedding plus one embedding per side-info field
  (category, brand, shop, price bucket, market); the item vector is their
  softmax-weighted sum with per-item attention weights ``a_v`` (``H_v = sum_j softmax(a_v)_j W^j_v``).
* A separate context table; skip-gram with negative sampling (unigram^0.75).
* Airbnb-style booked-item global context (Grbovic & Cheng 2018): in a session
  with a booking/purchase, the booked item is a positive context for every item of it.
* Airbnb-style market negatives: for each positive pair, extra negatives drawn
  from the centre item's market (a configurable side field).
* Cold items (never seen in training) get the mean of their side-info embeddings.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from graphrecall.progress import progress_bar

logger = logging.getLogger(__name__)

UNKNOWN = 0  # index of the "missing value" row in every side table


@dataclass
class SideInfo:
    """Side-info codes per item: ``codes[:, f]`` indexes ``vocab[f]`` (0 = missing)."""

    fields: tuple[str, ...]
    codes: np.ndarray  # (n_items, n_fields) int64
    vocab: list[list[str | None]]

    @classmethod
    def from_columns(cls, columns: dict[str, list[str | None]]) -> "SideInfo":
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
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise ValueError("LazyAdam takes sparse gradients (nn.Embedding(sparse=True)); use Adam for dense")
                g = p.grad.coalesce()
                rows, vals = g.indices()[0], g.values()
                st = self.state[p]
                if not st:
                    st["step"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                st["step"] += 1
                m = st["m"].index_select(0, rows).mul_(b1).add_(vals, alpha=1 - b1)
                v = st["v"].index_select(0, rows).mul_(b2).addcmul_(vals, vals, value=1 - b2)
                st["m"].index_copy_(0, rows, m)
                st["v"].index_copy_(0, rows, v)
                step_size = group["lr"] * (1 - b2 ** st["step"]) ** 0.5 / (1 - b1 ** st["step"])
                p.index_add_(0, rows, m.div_(v.sqrt_().add_(group["eps"])), alpha=-step_size)


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


def skipgram_pairs(walks: np.ndarray, window: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """(centre, context) pairs within ``window`` of each other; -1 padding skipped.

    With ``rng``, each centre draws its own window in ``1..window`` as word2vec does
    (nearer contexts count more, and about half the pairs remain); without, the full window.
    """
    out = []
    reach = None if rng is None else rng.integers(1, window + 1, size=walks.shape)
    for o in range(1, window + 1):
        if o >= walks.shape[1]:
            break
        a, b = walks[:, :-o], walks[:, o:]
        ok = (a >= 0) & (b >= 0) & (a != b)
        fwd = ok if reach is None else ok & (reach[:, :-o] >= o)  # a is the centre
        bwd = ok if reach is None else ok & (reach[:, o:] >= o)  # b is the centre
        out.append(np.stack([a[fwd], b[fwd]], 1))
        out.append(np.stack([b[bwd], a[bwd]], 1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def booked_pairs(sessions: list[np.ndarray], booked: np.ndarray) -> np.ndarray:
    """Airbnb global context: (item, booked item) for every other item of a booking session."""
    rows = []
    for items, b in zip(sessions, booked):
        if b >= 0:
            others = items[items != b]
            if len(others):
                rows.append(np.stack([others, np.full(len(others), b)], 1))
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 2), np.int64)


def pad_sequences(seqs: list[np.ndarray], max_len: int = 64) -> np.ndarray:
    """Sequences of item indices as a -1 padded array (longer ones cut into ``max_len`` pieces)."""
    pieces = [s[o:o + max_len] for s in seqs for o in range(0, len(s), max_len) if len(s) >= 2]
    out = np.full((len(pieces), max_len), -1, dtype=np.int64)
    for n, piece in enumerate(pieces):
        out[n, :len(piece)] = piece
    return out


@dataclass
class EGESResult:
    embeddings: np.ndarray  # (n_items, dim) float32, cold items filled from side info
    cold: np.ndarray  # bool per item: True when it got the side-info mean
    losses: list[float] = field(default_factory=list)
    attention: np.ndarray | None = None  # (n_items, 1 + F) softmax weights
    state: "EGESState | None" = None  # the trained tables by item id (when fit got item_ids): a later warm start


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
        torch.save({"item_ids": [str(i) for i in self.item_ids], "fields": list(self.fields), "vocab": self.vocab,
                    "tensors": self.tensors}, path)

    @classmethod
    def load(cls, path) -> "EGESState":
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
        lr: float = 0.01,
        sparse: bool | None = None,
        random_seed: int = 0,
        progress: bool = True,
    ):
        """``booked_weight``: loss weight of a booked-context pair (Airbnb's global context) against 1 for
        a window pair. ``sparse``: sparse embedding gradients with SparseAdam, so that a step touches only its batch's
        rows; dense Adam updates every row of every table on every step, which is faster on small
        catalogues and far slower on large ones. ``None`` picks sparse from ``SPARSE_FROM_ITEMS`` items."""
        if dim < 1 or window < 1 or negatives < 0 or market_negatives < 0 or epochs < 1 or batch_size < 1 \
                or not booked_weight >= 0:
            raise ValueError("dim, window, epochs and batch_size must be >= 1; negatives, market_negatives and "
                             "booked_weight >= 0")
        self.dim, self.window, self.negatives = dim, window, negatives
        self.market_negatives, self.market_field, self.booked_context = market_negatives, market_field, booked_context
        self.booked_weight = booked_weight
        self.ns_exponent, self.epochs, self.batch_size, self.lr = ns_exponent, epochs, batch_size, lr
        self.shrink_window, self.sparse = shrink_window, sparse
        self.random_seed, self.progress = random_seed, progress
        self.model: EGESModel | None = None
        self.trained_values: list[np.ndarray] = []  # per side field: which values trained items carry
        self.side: SideInfo | None = None

    # ------------------------------------------------------------------ sampling
    def _market_sampler(self, rng: np.random.Generator):
        if not self.market_negatives or self.market_field is None or self.market_field not in self.side.fields:
            return None
        m = self.side.codes[:, self.side.fields.index(self.market_field)]
        order = np.argsort(m, kind="stable")
        counts = np.bincount(m, minlength=len(self.side.vocab[self.side.fields.index(self.market_field)]))
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])

        def sample(centres: np.ndarray) -> np.ndarray:
            mk = m[centres]
            pick = offsets[mk][:, None] + (rng.random((len(centres), self.market_negatives)) * counts[mk][:, None]).astype(np.int64)
            out = order[pick]
            unknown = mk == UNKNOWN  # no market: fall back to a uniform item
            if unknown.any():
                out[unknown] = rng.integers(0, len(m), size=(int(unknown.sum()), self.market_negatives))
            return out

        return sample

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
            raise ValueError(f"walks reference item {walks.max()} but side info has {n_items} items; export both from one graph")
        self.side = side
        rng = np.random.default_rng(self.random_seed)
        torch.manual_seed(self.random_seed)
        pairs = skipgram_pairs(walks, self.window, rng if self.shrink_window else None)
        weight = np.ones(len(pairs), dtype=np.float32)
        if self.booked_context and self.booked_weight > 0 and sessions is not None and booked is not None:
            bp = booked_pairs(sessions, booked)
            logger.info("EGES: %d booked-context pairs (weight %g) added to %d window pairs", len(bp),
                        self.booked_weight, len(pairs))
            pairs = np.concatenate([pairs, bp])
            weight = np.concatenate([weight, np.full(len(bp), self.booked_weight, dtype=np.float32)])
        if holdout is not None and len(holdout):
            mask = np.zeros(n_items, bool)
            mask[holdout] = True
            keep = ~(mask[pairs[:, 0]] | mask[pairs[:, 1]])
            pairs, weight = pairs[keep], weight[keep]
        if len(pairs) == 0:
            raise ValueError("no training pairs: the walks are empty or all of length 1. Ingest sessions with at "
                             "least two items (TRANSITION edges), or lower min session length.")
        freq = np.bincount(pairs[:, 1], minlength=n_items).astype(np.float64)
        noise = freq ** self.ns_exponent
        noise /= noise.sum()
        noise_cdf = np.cumsum(noise)
        market = self._market_sampler(rng)

        sparse = self.sparse if self.sparse is not None else n_items >= SPARSE_FROM_ITEMS
        self.model = EGESModel(n_items, side.cardinalities(), self.dim, sparse=sparse)
        if warm_start is not None:
            if item_ids is None:
                raise ValueError("warm_start maps rows by item id: pass item_ids as well")
            self._warm_start(warm_start, np.asarray(item_ids, dtype=object), side)
        params = list(self.model.parameters())
        if sparse:  # per-item tables: Adam on the touched rows; the small side tables: dense Adam
            side_params = list(self.model.side.parameters())
            item_params = [p for p in params if all(p is not q for q in side_params)]
            opts = [LazyAdam(item_params, lr=self.lr)] + ([torch.optim.Adam(side_params, lr=self.lr)] if side_params else [])
        else:
            opts = [torch.optim.Adam(params, lr=self.lr)]
        logger.info("EGES: %d items, %d pairs, %s Adam", n_items, len(pairs), "sparse" if sparse else "dense")
        codes_t = torch.from_numpy(side.codes)
        losses = []
        t0 = time.perf_counter()
        bar = progress_bar(total=self.epochs * len(pairs), unit="pairs", desc="EGES", enabled=self.progress)
        for epoch in range(self.epochs):
            perm = rng.permutation(len(pairs))
            total, n_batches = 0.0, 0
            for s in range(0, len(perm), self.batch_size):
                sel = perm[s:s + self.batch_size]
                b = pairs[sel]
                negs = np.searchsorted(noise_cdf, rng.random((len(b), self.negatives)) * noise_cdf[-1])
                negs = np.minimum(negs, n_items - 1)
                if market is not None:
                    negs = np.concatenate([negs, market(b[:, 0])], 1)
                centre = torch.from_numpy(b[:, 0])
                h = self.model(centre, codes_t[centre])
                pos = self.model.context(torch.from_numpy(b[:, 1]))
                neg = self.model.context(torch.from_numpy(negs))
                pos_logit = (h * pos).sum(-1)
                neg_logit = torch.bmm(neg, h.unsqueeze(-1)).squeeze(-1)
                per_pair = nn.functional.logsigmoid(pos_logit) + nn.functional.logsigmoid(-neg_logit).sum(-1)
                loss = -(torch.from_numpy(weight[sel]) * per_pair).mean()
                for opt in opts:
                    opt.zero_grad()
                loss.backward()
                for opt in opts:
                    opt.step()
                total += loss.item()
                n_batches += 1
                bar.update(len(b))
            losses.append(total / max(n_batches, 1))
            dt = time.perf_counter() - t0
            logger.info("EGES epoch %d/%d: loss %.4f, %.0f pairs/s", epoch + 1, self.epochs, losses[-1],
                        len(pairs) * (epoch + 1) / dt)
        bar.close()
        seen = np.zeros(n_items, bool)
        seen[pairs[:, 0]] = True
        # a side value that only untrained items carry has a random, never-updated embedding: cold
        # vectors leave it out like a missing value
        self.trained_values = [np.bincount(side.codes[seen, f], minlength=c) > 0
                               for f, c in enumerate(side.cardinalities())]
        state = None if item_ids is None else EGESState(
            np.asarray(item_ids, dtype=object), side.fields, side.vocab,
            {k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return EGESResult(self.embed_all(seen), ~seen, losses, self.attention_weights(), state)

    @torch.no_grad()
    def _warm_start(self, prev: EGESState, item_ids: np.ndarray, side: SideInfo) -> None:
        if prev.dim != self.dim:
            raise ValueError(f"the stored EGES state has dim {prev.dim}, not {self.dim}: pass dim={prev.dim} "
                             f"(--dim {prev.dim}), or train from scratch with `graphrecall embed`")
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
        logger.info("EGES warm start: %d of %d items and their side values from the stored state", len(rows),
                    len(item_ids))

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
