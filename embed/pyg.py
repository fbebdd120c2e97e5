"""The graph as a PyTorch Geometric ``HeteroData`` file, so that users can train their own GNNs on it.

Node types ``user`` and ``item``; edge types ``(user, engaged, item)`` (``edge_attr``: the event count and
the event type's code; ``edge_time``: the last event's time) and ``(item, transition, item)`` (``edge_weight``:
consecutive views in sessions). Items carry one ``long`` code per side field (``x_<field>``, 0 where unknown,
vocabulary in ``<field>_vocab``) and ``price`` (NaN where unknown). ``ids`` on each node type maps a row back
to the graph's id. Load it with ``torch.load(path, weights_only=False)``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData

from ..graph_schema.schema import SIDE_INFO_FIELDS
from ..graph_schema.store.items import read_engaged_edges, read_item_fields, read_user_ids
from ..graph_schema.store.lists import read_transition_edges

logger = logging.getLogger(__name__)


def _codes(values: list) -> tuple[torch.Tensor, list[str]]:
    """Codes 1.. per distinct value in sorted order, 0 for None; and the vocabulary (index 0: ``None``)."""
    vocab = sorted({str(v) for v in values if v is not None})
    where = {v: n + 1 for n, v in enumerate(vocab)}
    return torch.tensor([0 if v is None else where[str(v)] for v in values], dtype=torch.long), [None, *vocab]


def graph_data(driver, database: str = "neo4j") -> HeteroData:
    """The user-item graph and the item transition graph of ``database`` as one ``HeteroData``."""
    t0 = time.perf_counter()
    fields = [*SIDE_INFO_FIELDS, "price"]
    items = read_item_fields(driver, fields, database)
    item_ids = [r[0] for r in items]
    item_row = {i: n for n, i in enumerate(item_ids)}
    user_ids = read_user_ids(driver, database)
    user_row = {u: n for n, u in enumerate(user_ids)}
    data = HeteroData()
    data["user"].num_nodes = len(user_ids)
    data["user"].ids = user_ids
    data["item"].num_nodes = len(item_ids)
    data["item"].ids = item_ids
    for c, f in enumerate(SIDE_INFO_FIELDS):
        data["item"][f"x_{f}"], data["item"][f"{f}_vocab"] = _codes([r[1][c] for r in items])
    price = [r[1][len(SIDE_INFO_FIELDS)] for r in items]
    data["item"].price = torch.tensor([np.nan if p is None else float(p) for p in price], dtype=torch.float32)

    engaged = read_engaged_edges(driver, database)
    types = sorted({r[2] for r in engaged})
    type_code = {t: n for n, t in enumerate(types)}
    rel = data["user", "engaged", "item"]
    rel.edge_index = torch.tensor(
        [[user_row[r[0]] for r in engaged], [item_row[r[1]] for r in engaged]], dtype=torch.long
    ).reshape(2, len(engaged))
    rel.edge_attr = torch.tensor(
        [[float(r[3] or 0), float(type_code[r[2]])] for r in engaged], dtype=torch.float32
    ).reshape(len(engaged), 2)
    rel.edge_time = torch.tensor([int(r[4] or 0) for r in engaged], dtype=torch.long)
    rel.event_types = types
    trans = read_transition_edges(driver, database)
    rel = data["item", "transition", "item"]
    rel.edge_index = torch.tensor(
        [[item_row[a] for a, _, _ in trans], [item_row[b] for _, b, _ in trans]], dtype=torch.long
    ).reshape(2, len(trans))
    rel.edge_weight = torch.tensor([float(w) for _, _, w in trans], dtype=torch.float32)
    logger.info(
        "graph for PyG: %d users, %d items, %d engaged and %d transition edges in %.1fs",
        len(user_ids),
        len(item_ids),
        len(engaged),
        len(trans),
        time.perf_counter() - t0,
    )
    return data


def export_pyg(driver, path: str | Path, database: str = "neo4j") -> Path:
    """Write :func:`graph_data` to ``path`` (``torch.save``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = graph_data(driver, database)
    data.validate(raise_on_error=True)
    torch.save(data, path)
    return path
