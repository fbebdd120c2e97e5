"""The evidence behind one pair of items, for ``graphrecall explain``: their shared users in the Swing/ItemCF
basis with those users' basis items, the stored scores between them, their transitions and their properties."""

from __future__ import annotations

from . import read_rows
from .lists import LIST_TYPES


def shared_basis_users(driver, a: str, b: str, database: str = "neo4j") -> list:
    """``[user id, basis degree, [the user's basis item ids]]`` for every user whose basis holds both items."""
    return read_rows(
        driver,
        database,
        "MATCH (:Item {id: $a})<-[:BASIS]-(u:User)-[:BASIS]->(:Item {id: $b}) "
        "MATCH (u)-[:BASIS]->(x:Item) RETURN u.id, u.basis_deg, collect(x.id) ORDER BY u.id",
        a=a,
        b=b,
    )


def stored_pair(driver, a: str, b: str, database: str = "neo4j") -> dict[str, tuple[float, int]]:
    """``{SWING|COOC|RANKED|GNN: (score, rank)}`` of the stored relationships from ``a`` to ``b``."""
    return {
        r[0]: (r[1], r[2])
        for r in read_rows(
            driver,
            database,
            "MATCH (:Item {id: $a})-[r]->(:Item {id: $b}) WHERE type(r) IN $types RETURN type(r), r.score, r.rank",
            a=a,
            b=b,
            types=list(LIST_TYPES),
        )
    }


def transition_weights(driver, a: str, b: str, database: str = "neo4j") -> tuple[float, float]:
    """The ``TRANSITION`` weights a -> b and b -> a (0 where none)."""
    rows = read_rows(
        driver,
        database,
        "OPTIONAL MATCH (:Item {id: $a})-[t:TRANSITION]->(:Item {id: $b}) "
        "OPTIONAL MATCH (:Item {id: $b})-[u:TRANSITION]->(:Item {id: $a}) "
        "RETURN coalesce(t.weight, 0), coalesce(u.weight, 0)",
        a=a,
        b=b,
    )
    return float(rows[0][0]), float(rows[0][1])


def item_properties(driver, ids, fields, database: str = "neo4j") -> dict[str, dict]:
    """``{id: {field: value, "basis_deg": ..., "embedding": [...] or None, "gnn_embedding": [...] or None}}`` for
    the ids that exist."""
    rows = read_rows(
        driver,
        database,
        "UNWIND $ids AS id MATCH (i:Item {id: id}) "
        "RETURN id, [f IN $fields | i[f]], i.basis_deg, i.embedding, i.gnn_embedding",
        ids=[str(i) for i in ids],
        fields=list(fields),
    )
    return {
        r[0]: {**dict(zip(fields, r[1])), "basis_deg": r[2], "embedding": r[3], "gnn_embedding": r[4]} for r in rows
    }
