"""The local Neo4j server as graphrecall runs it: :class:`~graphrecall.graph_schema.server.LocalNeo4j` with
graphrecall's procedures (``graphrecall.scores``, SWING/COOC in the database) installed in its plugins folder."""

from __future__ import annotations

from ..graph_schema import server
from ..query.scoring.procedure import install

PLUGINS = (install,)


def local_neo4j(name: str = "default", **options) -> server.LocalNeo4j:
    """A local instance (``options``: ports, heap, page cache, home) with graphrecall's procedures."""
    return server.LocalNeo4j(name, plugins=PLUGINS, **options)


def instance_from_env(name: str = "default") -> server.LocalNeo4j:
    """The local instance with ports from GRAPHRECALL_NEO4J_BOLT_PORT / _HTTP_PORT, with graphrecall's procedures."""
    return server.instance_from_env(name, plugins=PLUGINS)
