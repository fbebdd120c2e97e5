"""graphrecall: graph-database-backed item-to-item recall on Neo4j 5.26.

Layers, each importing only those below it (checked by import-linter in ``make test``):
``app`` (workflows, CLI, serving wiring) > ``query`` (scoring engines, channels, serving, evaluation) >
``embed`` > ``ingest`` | ``walkers`` > ``graph_schema`` (server, schema, graph store) > ``common``.
See docs/architecture.md.
"""

__version__ = "0.1.0"
