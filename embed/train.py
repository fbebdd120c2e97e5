"""Walks + EGES from arrays: the one training recipe behind ``graphrecall embed``, ``graphrecall tune``
and the next-item bench, so that what is measured is what is served."""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from ..walkers.walk import random_walks
from .eges import EGES, EGESResult, EGESState, SideInfo, pad_sequences

logger = logging.getLogger(__name__)


def train_item_vectors(
    transitions: sp.csr_matrix,
    side_columns: dict[str, list[str | None]],
    sessions: list[np.ndarray],
    booked: np.ndarray,
    *,
    walk_length: int = 10,
    walks_per_node: int = 10,
    train_on_sessions: bool = True,
    dim: int = 32,
    epochs: int = 10,
    window: int = 5,
    negatives: int = 5,
    booked_context: bool = True,
    booked_weight: float = 1.0,
    market_field: str | None = "market",
    market_negatives: int = 0,
    lr: float | None = None,
    optimizer: str = "sgd",  # sgd at batch 4096 against adam at 1024: 0.221 vs 0.212 validation NDCG@20 on
    batch_size: int = 4096,  # REES46, 0.0453 vs 0.0447 on Taobao, 2.1-2.9x faster (bench/eges_optimizer.py)
    random_seed: int = 0,
    progress: bool = True,
    item_ids: np.ndarray | None = None,
    warm_start: EGESState | None = None,
) -> EGESResult:
    """Weighted walks on the directed ``transitions`` graph (plus the session sequences themselves when
    ``train_on_sessions``), then EGES over ID + side-info embeddings; one vector per row of ``side_columns``.

    ``market_field`` falls back to no market negatives when the catalogue has no such field. The defaults
    are :class:`EgesSettings`'s (``**asdict(settings)`` passes all of them).
    ``item_ids`` and ``warm_start``: see :meth:`embed.eges.EGES.fit`."""
    n = transitions.shape[0]
    parts = []
    if walks_per_node > 0 and transitions.nnz:
        parts.append(
            random_walks(transitions, walk_length=walk_length, walks_per_node=walks_per_node, random_seed=random_seed)
        )
    if train_on_sessions and sessions:
        seq = pad_sequences([s for s in sessions if len(s) >= 2], max_len=max(walk_length, 2))
        if len(seq):
            parts.append(seq)
    width = max((p.shape[1] for p in parts), default=2)
    walks = (
        np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=-1) for p in parts])
        if parts
        else np.zeros((0, 2), np.int64)
    )
    side = SideInfo.from_columns(side_columns) if side_columns else SideInfo((), np.zeros((n, 0), np.int64), [])
    if market_field is not None and market_field not in side.fields:
        logger.info("EGES: no %r field in the catalogue; no same-market negatives", market_field)
        market_field = None
    model = EGES(
        dim=dim,
        epochs=epochs,
        window=window,
        negatives=negatives,
        booked_context=booked_context,
        booked_weight=booked_weight,
        market_field=market_field,
        market_negatives=market_negatives,
        lr=lr,
        optimizer=optimizer,
        batch_size=batch_size,
        random_seed=random_seed,
        progress=progress,
    )
    return model.fit(walks, side, sessions=sessions, booked=booked, item_ids=item_ids, warm_start=warm_start)
