"""Apply ``schema.cypher`` and the vector index; both idempotent."""

from __future__ import annotations

import logging
import re
from pathlib import Path

logger = logging.getLogger(__name__)

SCHEMA_FILE = Path(__file__).with_name("schema.cypher")
BROWSER_DIR = Path(__file__).with_name("browser")  # Neo4j Browser guide, style and saved queries
SCHEMA_VERSION = 4
VECTOR_INDEX = "item_embedding"
GNN_VECTOR_INDEX = "item_gnn_embedding"
# vector index -> the Item property it covers (fixed names: index and property names cannot be parameters)
VECTOR_PROPERTIES = {VECTOR_INDEX: "embedding", GNN_VECTOR_INDEX: "gnn_embedding"}
# the item properties: SIDE_INFO_FIELDS are the side fields EGES embeds; INFO_FIELDS are what a client may ask for
SIDE_INFO_FIELDS = ("category", "brand", "shop", "price_bucket", "market")
INFO_FIELDS = ("category", "brand", "market", "shop", "price", "price_bucket")


def schema_statements(text: str | None = None) -> list[str]:
    text = SCHEMA_FILE.read_text() if text is None else text
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("//")]
    parts = re.split(r";\s*$", "\n".join(lines), flags=re.M)
    return [p.strip() for p in parts if p.strip()]


def apply_schema(driver, database: str = "neo4j") -> int:
    """Create constraints and indexes; returns the schema version."""
    with driver.session(database=database) as session:
        for stmt in schema_statements():
            session.run(stmt).consume()
        session.run("CALL db.awaitIndexes(300)").consume()
    logger.info("schema version %d applied", SCHEMA_VERSION)
    return SCHEMA_VERSION


def create_vector_index(
    driver, dimensions: int, database: str = "neo4j", similarity: str = "cosine", name: str = VECTOR_INDEX
) -> None:
    """Native vector index ``name`` (``item_embedding`` on ``Item.embedding``, EGES's, or ``item_gnn_embedding``
    on ``Item.gnn_embedding``); recreated when the dimension changes."""
    if similarity not in ("cosine", "euclidean"):
        raise ValueError(f"similarity must be 'cosine' or 'euclidean', got {similarity!r}")
    if name not in VECTOR_PROPERTIES:
        raise ValueError(f"name must be one of {', '.join(VECTOR_PROPERTIES)}, got {name!r}")
    prop = VECTOR_PROPERTIES[name]
    with driver.session(database=database) as session:
        rec = session.run("SHOW INDEXES YIELD name, options WHERE name = $name RETURN options", name=name).single()
        if rec is not None:
            cfg = (rec["options"] or {}).get("indexConfig", {})
            if (
                cfg.get("vector.dimensions") == dimensions
                and cfg.get("vector.similarity_function", "").lower() == similarity
            ):
                return
            session.run(f"DROP INDEX {name} IF EXISTS").consume()
        session.run(
            f"CREATE VECTOR INDEX {name} IF NOT EXISTS FOR (i:Item) ON (i.{prop}) "
            "OPTIONS {indexConfig: {`vector.dimensions`: $dim, `vector.similarity_function`: $sim}}",
            dim=int(dimensions),
            sim=similarity,
        ).consume()
        session.run("CALL db.awaitIndex($name, 300)", name=name).consume()
    logger.info("vector index %s: %d dims, %s", name, dimensions, similarity)
