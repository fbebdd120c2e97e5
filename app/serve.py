"""Wiring for ``graphrecall serve``: the API over a resilient snapshot of the configured Neo4j, or over a saved
snapshot alone (read-only replicas, the API bench)."""

from __future__ import annotations

import gc
import logging
import os

from ..graph_schema.config import Neo4jSettings, graphrecall_home
from ..graph_schema.store.meta import read_data_key, read_data_version
from ..query.serve.api import create_app
from ..query.serve.blend import BlendConfig
from ..query.serve.explain import explain_pair, summary
from ..query.serve.neo4j import Neo4jHistory
from ..query.serve.resilient import ResilientRetriever
from ..query.serve.snapshot import SnapshotRetriever, shared_snapshot

logger = logging.getLogger(__name__)


def app_from_env():  # pragma: no cover - wiring for `graphrecall serve`
    """Snapshot from the configured Neo4j plus the saved Faiss index; probes Neo4j read-only."""
    settings = Neo4jSettings.from_env()
    driver = settings.driver(connection_timeout=3.0, max_transaction_retry_time=2.0)
    faiss_dir = os.environ.get("GRAPHRECALL_FAISS_DIR", str(graphrecall_home() / "artifacts" / "faiss"))
    snapshot_dir = os.environ.get("GRAPHRECALL_SNAPSHOT_DIR", str(graphrecall_home() / "artifacts" / "snapshot"))

    def probe() -> int:  # reachable, and the data version: a new one makes the service reload its snapshot
        return read_data_version(driver, settings.database)

    def load():  # one worker reads Neo4j and saves; every worker maps the saved arrays (one copy in memory)
        return shared_snapshot(
            snapshot_dir,
            read_data_key(driver, settings.database),
            lambda: SnapshotRetriever.from_neo4j(driver, faiss_dir, settings.database),
            faiss_dir,
        )

    retriever = ResilientRetriever(
        load,
        probe,
        probe_every=float(os.environ.get("GRAPHRECALL_PROBE_SECONDS", "5")),
        fallback=lambda: SnapshotRetriever.load(snapshot_dir, faiss_dir),
    )
    if os.environ.get("GRAPHRECALL_BLEND"):
        retriever.blend_config = BlendConfig.parse(os.environ["GRAPHRECALL_BLEND"])  # overrides a tuned one
    logger.info("blend channel: %s (%s)", retriever.blend_config, retriever.blend_source)
    gc.freeze()  # the snapshot's objects leave the cyclic collector's scans (ResilientRetriever does it per reload)
    return create_app(
        retriever,
        Neo4jHistory(driver, settings.database),
        access_log=_access_log_from_env(),
        explain=lambda a, b: summary(explain_pair(driver, retriever, a, b, settings.database)),
    )


def app_from_saved_snapshot():  # pragma: no cover - wiring for bench/api_load.py and read-only replicas
    """Serve a saved snapshot (``GRAPHRECALL_SNAPSHOT_DIR``, vectors from ``GRAPHRECALL_FAISS_DIR``) without
    Neo4j: the same :class:`~graphrecall.query.serve.snapshot.SnapshotRetriever` the live service answers from.
    ``GET /recall/{user_id}`` is 503 here (no user histories); ``POST /recall`` works."""
    snap = SnapshotRetriever.load(os.environ["GRAPHRECALL_SNAPSHOT_DIR"], os.environ.get("GRAPHRECALL_FAISS_DIR"))
    gc.freeze()  # the snapshot's millions of objects leave the cyclic collector's scans (no long pauses)
    return create_app(snap, access_log=_access_log_from_env())


def _access_log_from_env() -> bool:
    """``GRAPHRECALL_ACCESS_LOG`` (set by ``serve --no-access-log``); on unless 0/false/no/off."""
    return os.environ.get("GRAPHRECALL_ACCESS_LOG", "1").lower() not in ("0", "false", "no", "off")
