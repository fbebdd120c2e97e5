"""Items: ids, side fields and popularity (events summed over their ``ENGAGED`` edges)."""

from __future__ import annotations

from ..schema import INFO_FIELDS, SIDE_INFO_FIELDS
from . import read_rows


def read_item_ids(driver, database: str = "neo4j") -> set[str]:
    return {r[0] for r in read_rows(driver, database, "MATCH (i:Item) RETURN i.id")}


def read_item_fields(driver, fields, database: str = "neo4j") -> list:
    """``[id, [value per field]]`` of every item, by id."""
    return read_rows(
        driver,
        database,
        "MATCH (i:Item) RETURN i.id AS id, [f IN $fields | i[f]] AS side ORDER BY id",
        fields=list(fields),
    )


def read_item_side(driver, database: str = "neo4j") -> dict[str, dict]:
    """``{item: {field: value}}`` over the side fields EGES embeds plus ``price`` (the side channel's price
    proximity), values that are set only."""
    fields = [*SIDE_INFO_FIELDS, "price"]
    rows = read_rows(driver, database, "MATCH (i:Item) RETURN i.id, [f IN $fields | i[f]]", fields=fields)
    return {r[0]: {f: v for f, v in zip(fields, r[1]) if v is not None} for r in rows}


def read_side_and_popularity(driver, database: str = "neo4j") -> list:
    """``[id, [value per INFO_FIELDS], events]`` of every item, by id."""
    return read_rows(
        driver,
        database,
        "MATCH (i:Item) OPTIONAL MATCH ()-[e:ENGAGED]->(i) "
        "RETURN i.id, [f IN $fields | i[f]], coalesce(sum(e.count), 0) ORDER BY i.id",
        fields=list(INFO_FIELDS),
    )


def has_item(driver, item_id: str, database: str = "neo4j") -> bool:
    return bool(read_rows(driver, database, "MATCH (i:Item {id: $id}) RETURN count(i) > 0", id=item_id)[0][0])


def item_values(driver, ids, field: str, database: str = "neo4j") -> dict:
    """``{id: value of field}`` for the ids that exist."""
    if field not in INFO_FIELDS:
        raise ValueError(f"unknown item field {field!r}; choose from {', '.join(INFO_FIELDS)}")
    return dict(
        read_rows(
            driver,
            database,
            "UNWIND $ids AS id MATCH (i:Item {id: id}) RETURN id, i[$field]",
            ids=[str(i) for i in ids],
            field=field,
        )
    )


def new_items(driver, ids, database: str = "neo4j") -> set[str]:
    """The ids among ``ids`` of items without events (catalogue-only)."""
    return {
        r[0]
        for r in read_rows(
            driver,
            database,
            "UNWIND $ids AS id MATCH (i:Item {id: id}) WHERE NOT EXISTS { ()-[:ENGAGED]->(i) } RETURN id",
            ids=[str(i) for i in ids],
        )
    }


def most_listed_items(driver, n: int = 3, database: str = "neo4j") -> list[str]:
    """Items with the most SWING neighbours (the demo's sample items)."""
    return [
        r[0]
        for r in read_rows(
            driver,
            database,
            "MATCH (i:Item)-[:SWING]->() WITH i, count(*) AS n ORDER BY n DESC, i.id LIMIT $n RETURN i.id",
            n=n,
        )
    ]


def read_user_ids(driver, database: str = "neo4j") -> list[str]:
    return [r[0] for r in read_rows(driver, database, "MATCH (u:User) RETURN u.id ORDER BY u.id")]


def read_engaged_edges(driver, database: str = "neo4j") -> list:
    """``[user id, item id, event type, count, last_ts]`` of every ``ENGAGED`` edge."""
    return read_rows(
        driver, database, "MATCH (u:User)-[e:ENGAGED]->(i:Item) RETURN u.id, i.id, e.type, e.count, e.last_ts"
    )
