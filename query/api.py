"""HTTP i2i lookup for product pages.

``GET /i2i/{item_id}?k=10&channel=swing|cooc|trans|side|eges|blend`` -> item ids, scores and the
channel that produced each; 404 for unknown items, 422 for a bad ``k`` or channel.
``GET /health`` -> ``ok`` or ``degraded`` (Neo4j down, answers from the last snapshot), and the
blend in use with where it came from (``graphrecall tune``, ``--blend`` or the built-in default).
OpenAPI docs at ``/docs``.

Run with ``graphrecall serve`` (uvicorn); :func:`create_app` takes any
:class:`~query.retriever.ItemRetriever`.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI, HTTPException, Path, Query
from pydantic import BaseModel

from query.retriever import ItemRetriever, UnknownItem

logger = logging.getLogger(__name__)

MAX_K = 200


class Neighbour(BaseModel):
    item_id: str
    score: float
    channel: str


class I2IResponse(BaseModel):
    item_id: str
    channel: str
    k: int
    items: list[Neighbour]


def create_app(retriever: ItemRetriever) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        start = getattr(retriever, "start", None)
        if callable(start):
            start()
        yield
        stop = getattr(retriever, "stop", None)
        if callable(stop):
            stop()

    app = FastAPI(title="graphrecall i2i", version="0.1.0", lifespan=lifespan,
                  description="Item-to-item recall from Swing, co-occurrence and EGES, stored in Neo4j.")
    app.state.retriever = retriever

    @app.get("/i2i/{item_id:path}", response_model=I2IResponse)
    def i2i(
        item_id: str = Path(..., min_length=1, max_length=512),
        k: int = Query(10, ge=1, le=MAX_K, description=f"number of neighbours, 1..{MAX_K}"),
        channel: Literal["swing", "cooc", "trans", "side", "eges", "blend"] = Query("blend"),
    ) -> I2IResponse:
        try:
            nb = retriever.similar_items(item_id, k=k, channel=channel)
        except UnknownItem:
            raise HTTPException(status_code=404, detail=f"unknown item {item_id!r}") from None
        items = [Neighbour(item_id=str(i), score=float(s), channel=c) for i, s, c in zip(nb.ids, nb.scores, nb.channels)]
        return I2IResponse(item_id=item_id, channel=channel, k=k, items=items)

    @app.get("/health")
    def health() -> dict:
        return retriever.health()

    return app


def app_from_env():  # pragma: no cover - wiring for `graphrecall serve`
    """Snapshot from the configured Neo4j plus the saved Faiss index; probes Neo4j read-only."""
    import os

    from graph_schema.config import Neo4jSettings, graphrecall_home
    from query.retriever import BlendConfig, ResilientRetriever, SnapshotRetriever

    settings = Neo4jSettings.from_env()
    driver = settings.driver(connection_timeout=3.0, max_transaction_retry_time=2.0)
    faiss_dir = os.environ.get("GRAPHRECALL_FAISS_DIR", str(graphrecall_home() / "artifacts" / "faiss"))
    snapshot_dir = os.environ.get("GRAPHRECALL_SNAPSHOT_DIR", str(graphrecall_home() / "artifacts" / "snapshot"))

    def probe():
        with driver.session(database=settings.database, default_access_mode="READ") as s:
            s.run("RETURN 1").consume()

    def load():
        snap = SnapshotRetriever.from_neo4j(driver, faiss_dir, settings.database)
        snap.save(snapshot_dir)
        return snap

    retriever = ResilientRetriever(load, probe, probe_every=float(os.environ.get("GRAPHRECALL_PROBE_SECONDS", "5")),
                                   fallback=lambda: SnapshotRetriever.load(snapshot_dir, faiss_dir))
    if os.environ.get("GRAPHRECALL_BLEND"):
        retriever.blend_config = BlendConfig.parse(os.environ["GRAPHRECALL_BLEND"])  # overrides a tuned one
    logger.info("blend channel: %s (%s)", retriever.blend_config, retriever.blend_source)
    return create_app(retriever)
