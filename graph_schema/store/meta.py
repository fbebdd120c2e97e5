"""Small singleton nodes that describe the served data: ``DataVersion``, ``BlendChoice``, ``ScoreSettings``."""

from __future__ import annotations

import json

SCORE_SETTINGS = "default"


def store_score_settings(driver, settings: dict, database: str = "neo4j") -> None:
    """Keep the settings that produced the stored SWING/COOC lists, for ``graphrecall refresh``."""
    with driver.session(database=database) as s:
        s.run(
            "MERGE (x:ScoreSettings {name: $name}) SET x.json = $json, x.at = datetime()",
            name=SCORE_SETTINGS,
            json=json.dumps(settings, sort_keys=True),
        ).consume()


def read_score_settings(driver, database: str = "neo4j") -> dict | None:
    with driver.session(database=database, default_access_mode="READ") as s:
        row = s.run("MATCH (x:ScoreSettings {name: $name}) RETURN x.json", name=SCORE_SETTINGS).single()
    return None if row is None else json.loads(row[0])


BLEND_CHOICE = "default"


DATA_VERSION = "default"


def bump_data_version(driver, what: str, database: str = "neo4j") -> int:
    """Count one more change of the served data (ingest, scores, embeddings, tune); a running API sees the
    new number on its next probe and reloads its snapshot. Returns the new version."""
    with driver.session(database=database) as s:
        return s.run(
            "MERGE (v:DataVersion {name: $name}) ON CREATE SET v.version = 0 "
            "SET v.version = v.version + 1, v.what = $what, v.at = datetime() RETURN v.version",
            name=DATA_VERSION,
            what=what,
        ).single()[0]


def read_data_version(driver, database: str = "neo4j") -> int:
    """The served data's version (0 before any change was counted)."""
    with driver.session(database=database, default_access_mode="READ") as s:
        row = s.run("MATCH (v:DataVersion {name: $name}) RETURN v.version", name=DATA_VERSION).single()
    return 0 if row is None else int(row[0])


def read_data_key(driver, database: str = "neo4j") -> str:
    """The data version with the time it was set, e.g. ``"12@2026-11-24T03:55:01.123Z"``: unlike the bare
    version, it differs after the database is wiped and rebuilt up to the same count."""
    with driver.session(database=database, default_access_mode="READ") as s:
        row = s.run("MATCH (v:DataVersion {name: $name}) RETURN v.version, toString(v.at)", name=DATA_VERSION).single()
    return "0@none" if row is None else f"{int(row[0])}@{row[1]}"


def store_blend(driver, spec: str, details: dict, database: str = "neo4j") -> None:
    """Keep the blend chosen by ``graphrecall tune`` in the graph, where ``serve`` finds it."""
    with driver.session(database=database) as s:
        s.run(
            "MERGE (b:BlendChoice {name: $name}) SET b.spec = $spec, b.details = $details, b.at = datetime()",
            name=BLEND_CHOICE,
            spec=spec,
            details=json.dumps(details),
        ).consume()
    bump_data_version(driver, "tune", database)


def read_blend(driver, database: str = "neo4j") -> tuple[str, str] | None:
    """``(spec, tuned-at)`` of the stored blend, or None when ``graphrecall tune`` has not run."""
    with driver.session(database=database, default_access_mode="READ") as s:
        row = s.run("MATCH (b:BlendChoice {name: $name}) RETURN b.spec, toString(b.at)", name=BLEND_CHOICE).single()
    return None if row is None else (row[0], row[1])
