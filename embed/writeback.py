"""Write item vectors back to Neo4j as ``Item.embedding`` (EGES) or ``Item.gnn_embedding`` (LightGCN), each
with a native vector index."""

from __future__ import annotations

import logging
import time

import numpy as np

from ..graph_schema.schema import VECTOR_INDEX, VECTOR_PROPERTIES, create_vector_index

logger = logging.getLogger(__name__)

Q_SET_VECTORS = """
UNWIND $rows AS r
MATCH (i:Item {id: r.id})
CALL db.create.setNodeVectorProperty(i, $prop, r.v)
SET i[$prop + '_cold'] = r.cold
"""


def write_embeddings(
    driver,
    item_ids,
    vectors: np.ndarray,
    cold: np.ndarray | None = None,
    database: str = "neo4j",
    batch_size: int = 1000,
    index: str = VECTOR_INDEX,
) -> int:
    """Set each item's vector property of ``index`` (:data:`~graphrecall.graph_schema.schema.VECTOR_PROPERTIES`)
    and ``<property>_cold``; returns the items written."""
    vectors = np.asarray(vectors, dtype=np.float32)
    create_vector_index(driver, vectors.shape[1], database=database, name=index)
    prop = VECTOR_PROPERTIES[index]
    cold = np.zeros(len(item_ids), bool) if cold is None else np.asarray(cold, bool)
    t0 = time.perf_counter()
    n = 0
    with driver.session(database=database) as s:
        for start in range(0, len(item_ids), batch_size):
            rows = [
                {"id": str(i), "v": v.tolist(), "cold": bool(c)}
                for i, v, c in zip(
                    item_ids[start : start + batch_size],
                    vectors[start : start + batch_size],
                    cold[start : start + batch_size],
                )
            ]
            s.execute_write(lambda tx, rows=rows: tx.run(Q_SET_VECTORS, rows=rows, prop=prop).consume())
            n += len(rows)
        s.run("CALL db.awaitIndex($name, 300)", name=index).consume()
    dt = time.perf_counter() - t0
    logger.info("wrote %d %s vectors to Neo4j in %.1fs (%.0f items/s)", n, prop, dt, n / dt if dt else 0.0)
    return n
