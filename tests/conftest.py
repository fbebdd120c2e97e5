"""Shared fixtures: a real Neo4j 5.26 server for the test session.

By default the tests start (or reuse) the local instance ``test`` on ports
17687/17474, separate from the ``default`` instance a user's demo writes to, and
stop it at the end if they started it. Set ``GRAPHRECALL_TEST_NEO4J_URI`` (with
``_USER``/``_PASSWORD``) to run against another server, e.g. docker-compose's;
the tests wipe that database.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from graphrecall.app.neo4j import local_neo4j
from graphrecall.graph_schema.config import Neo4jSettings
from graphrecall.graph_schema.schema import apply_schema

DATA = Path(__file__).with_name("data")
TEST_BOLT_PORT = int(os.environ.get("GRAPHRECALL_TEST_BOLT_PORT", "17687"))
TEST_HTTP_PORT = int(os.environ.get("GRAPHRECALL_TEST_HTTP_PORT", "17474"))


@pytest.fixture(scope="session")
def neo4j_server():
    uri = os.environ.get("GRAPHRECALL_TEST_NEO4J_URI")
    if uri:
        yield (
            None,
            Neo4jSettings(
                uri=uri,
                user=os.environ.get("GRAPHRECALL_TEST_NEO4J_USER", "neo4j"),
                password=os.environ["GRAPHRECALL_TEST_NEO4J_PASSWORD"],
            ),
        )
        return
    server = local_neo4j("test", bolt_port=TEST_BOLT_PORT, http_port=TEST_HTTP_PORT, heap="1g", pagecache="256m")
    started_here = server.pid() is None
    server.start()
    yield server, server.settings()
    if started_here and not os.environ.get("GRAPHRECALL_TEST_KEEP_NEO4J"):
        server.stop()


@pytest.fixture(scope="session")
def session_driver(neo4j_server):
    _, settings = neo4j_server
    driver = settings.driver()
    apply_schema(driver)
    yield driver
    driver.close()


def wipe(driver) -> None:
    with driver.session() as s:
        s.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS").consume()


@pytest.fixture
def driver(session_driver):
    """A driver on an empty graph (schema kept)."""
    wipe(session_driver)
    return session_driver


def graph_counts(driver) -> dict:
    """Every count that ingest affects; used to compare graphs exactly."""
    q = {
        "users": "MATCH (n:User) RETURN count(n)",
        "items": "MATCH (n:Item) RETURN count(n)",
        "sessions": "MATCH (n:Session) RETURN count(n)",
        "engaged": "MATCH ()-[r:ENGAGED]->() RETURN count(r)",
        "engaged_sum": "MATCH ()-[r:ENGAGED]->() RETURN coalesce(sum(r.count), 0)",
        "transitions": "MATCH ()-[r:TRANSITION]->() RETURN count(r)",
        "transition_sum": "MATCH ()-[r:TRANSITION]->() RETURN coalesce(sum(r.weight), 0)",
        "booked": "MATCH ()-[r:BOOKED]->() RETURN count(r)",
        "has_session": "MATCH ()-[r:HAS_SESSION]->() RETURN count(r)",
    }
    with driver.session() as s:
        return {k: s.run(v).single()[0] for k, v in q.items()}


def graph_fingerprint(driver) -> list:
    """Exact content: every engagement and transition with its numbers."""
    with driver.session() as s:
        e = s.run(
            "MATCH (u:User)-[r:ENGAGED]->(i:Item) RETURN u.id, i.id, r.type, r.count, r.first_ts, r.last_ts "
            "ORDER BY u.id, i.id, r.type"
        ).values()
        t = s.run("MATCH (a:Item)-[r:TRANSITION]->(b:Item) RETURN a.id, b.id, r.weight ORDER BY a.id, b.id").values()
        ss = s.run("MATCH (s:Session) RETURN s.id, s.items, s.booked ORDER BY s.id").values()
    return [e, t, ss]
