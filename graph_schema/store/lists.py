"""The stored top-K lists: ``(:Item)-[:SWING|COOC|RANKED|GNN {score, rank}]->(:Item)`` and ``TRANSITION`` weights."""

from __future__ import annotations

import logging
import time

from ...common.progress import progress_bar
from ..schema import VECTOR_PROPERTIES
from . import read_rows

logger = logging.getLogger(__name__)

LIST_TYPES = ("SWING", "COOC", "RANKED", "GNN")  # relationship types that hold top-K lists
WRITTEN_LISTS = ("RANKED", "GNN")  # the ones written from Python (SWING and COOC are computed in the graph)
# one query per type: a relationship type cannot be a parameter, and these are constants, never user input
_Q_DELETE = {
    rel: f"MATCH ()-[r:{rel}]->() CALL (r) {{ DELETE r }} IN TRANSACTIONS OF 50000 ROWS" for rel in WRITTEN_LISTS
}
_Q_CREATE = {
    rel: "UNWIND $rows AS r MATCH (a:Item {id: r.id}) "
    "UNWIND range(0, size(r.nbr) - 1) AS k MATCH (b:Item {id: r.nbr[k]}) "
    f"CREATE (a)-[:{rel} {{score: r.scores[k], rank: k + 1}}]->(b)"
    for rel in WRITTEN_LISTS
}


def read_scores(driver, rel: str, database: str = "neo4j") -> dict[tuple[str, str], float]:
    """All written scores of one list type (``SWING``, ``COOC``, ``RANKED`` or ``GNN``) as ``{(i, j): score}``."""
    if rel not in LIST_TYPES:
        raise ValueError(f"rel must be one of {', '.join(LIST_TYPES)}, got {rel!r}")
    with driver.session(database=database) as s:
        res = s.run(
            "MATCH (i:Item)-[r]->(j:Item) WHERE type(r) = $rel RETURN i.id AS i, j.id AS j, r.score AS s", rel=rel
        )
        return {(r["i"], r["j"]): r["s"] for r in res}


def read_top_lists(driver, rel: str, prop: str = "score", database: str = "neo4j") -> dict[str, tuple[list, list]]:
    """Each item's ``SWING``/``COOC``/``RANKED``/``GNN`` list in rank order: ``{item: (ids, values)}``; ``prop`` is
    ``"score"`` or ``"norm"`` (row-normalised; SWING and COOC only). Read-only."""
    if rel not in LIST_TYPES or prop not in ("score", "norm"):
        raise ValueError(
            f"rel must be one of {', '.join(LIST_TYPES)} and prop 'score' or 'norm', got {rel!r}, {prop!r}"
        )
    with driver.session(database=database, default_access_mode="READ") as s:
        return {
            i: (ids, vals)
            for i, ids, vals in s.run(
                "MATCH (i:Item)-[r]->(j:Item) WHERE type(r) = $rel WITH i, r, j ORDER BY r.rank "
                "RETURN i.id, collect(j.id), collect(r[$prop])",
                rel=rel,
                prop=prop,
            ).values()
        }


def write_rank_lists(driver, lists: dict, database: str = "neo4j", batch: int = 500, progress: bool = False) -> int:
    """:func:`write_item_lists` of the learned ranker's ``RANKED`` lists."""
    return write_item_lists(driver, "RANKED", lists, database, batch, progress)


def write_item_lists(
    driver, rel: str, lists: dict, database: str = "neo4j", batch: int = 500, progress: bool = False
) -> int:
    """Replace every ``rel`` relationship (``RANKED`` or ``GNN``) with ``lists`` (``{item: (ids, scores)}``,
    best first), as ``(:Item)-[:REL {score, rank}]->(:Item)`` with rank 1 the best; returns the relationships
    written."""
    if rel not in WRITTEN_LISTS:
        raise ValueError(f"rel must be one of {', '.join(WRITTEN_LISTS)}, got {rel!r}")
    t0 = time.perf_counter()
    with driver.session(database=database) as s:
        s.run(_Q_DELETE[rel]).consume()
    rows = [
        {"id": str(i), "nbr": [str(x) for x in ids], "scores": [float(x) for x in sc]}
        for i, (ids, sc) in sorted(lists.items())
        if len(ids)
    ]
    bar = progress_bar(total=len(rows), unit="items", desc=f"{rel} write", enabled=progress)
    written = 0
    with driver.session(database=database) as s:
        for lo in range(0, len(rows), batch):
            part = rows[lo : lo + batch]
            s.execute_write(lambda tx, part=part: tx.run(_Q_CREATE[rel], rows=part).consume())
            written += sum(len(r["nbr"]) for r in part)
            bar.update(len(part))
    bar.close()
    secs = time.perf_counter() - t0
    logger.info(
        "%s: %d relationships for %d items in %.1fs (%.0f rels/s)",
        rel,
        written,
        len(rows),
        secs,
        written / max(secs, 1e-9),
    )
    return written


def read_transition_lists(driver, depth: int, database: str = "neo4j") -> dict[str, tuple[list, list]]:
    """Each item's most frequent next items from its ``TRANSITION`` edges (directed session
    co-visitation), weight descending, ties by id: ``{item: (ids, weights)}``. Read-only."""
    with driver.session(database=database, default_access_mode="READ") as s:
        return {
            i: (ids, w)
            for i, ids, w in s.run(
                "MATCH (i:Item)-[t:TRANSITION]->(j:Item) WHERE i <> j WITH i, t, j ORDER BY t.weight DESC, j.id "
                "WITH i, collect(j.id) AS ids, collect(t.weight) AS w RETURN i.id, ids[..$depth], w[..$depth]",
                depth=depth,
            ).values()
        }


def read_transition_edges(driver, database: str = "neo4j") -> list:
    """``[from, to, weight]`` of every ``TRANSITION`` edge."""
    with driver.session(database=database, default_access_mode="READ") as s:
        return s.run("MATCH (a:Item)-[t:TRANSITION]->(b:Item) RETURN a.id, b.id, t.weight").values()


def read_list(driver, rel: str, item_id: str, k: int, database: str = "neo4j") -> list:
    """One item's ``SWING``/``COOC``/``RANKED`` list by rank: ``[id, score]`` rows, at most ``k``."""
    if rel not in LIST_TYPES:
        raise ValueError(f"rel must be one of {', '.join(LIST_TYPES)}, got {rel!r}")
    return read_rows(
        driver,
        database,
        "MATCH (:Item {id: $id})-[r]->(j:Item) WHERE type(r) = $rel RETURN j.id, r.score ORDER BY r.rank LIMIT $k",
        id=item_id,
        rel=rel,
        k=k,
    )


def read_transitions(driver, item_id: str, k: int, database: str = "neo4j") -> list:
    """One item's most frequent next items: ``[id, weight]`` rows, weight descending, ties by id."""
    return read_rows(
        driver,
        database,
        "MATCH (q:Item {id: $id})-[t:TRANSITION]->(j:Item) WHERE j <> q "
        "RETURN j.id, t.weight ORDER BY t.weight DESC, j.id LIMIT $k",
        id=item_id,
        k=k,
    )


def read_nearest_vectors(driver, item_id: str, k: int, database: str = "neo4j", index: str = "item_embedding") -> list:
    """The ``k`` nearest items by the native vector ``index`` (``item_embedding`` or ``item_gnn_embedding``):
    ``[id, score]`` rows, the item itself left out."""
    if index not in VECTOR_PROPERTIES:
        raise ValueError(f"index must be one of {', '.join(VECTOR_PROPERTIES)}, got {index!r}")
    return read_rows(
        driver,
        database,
        "MATCH (q:Item {id: $id}) WHERE q[$prop] IS NOT NULL "
        "CALL db.index.vector.queryNodes($index, $k1, q[$prop]) YIELD node, score "
        "WHERE node <> q RETURN node.id, score LIMIT $k",
        id=item_id,
        index=index,
        prop=VECTOR_PROPERTIES[index],
        k1=k + 1,
        k=k,
    )
