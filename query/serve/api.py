"""HTTP i2i lookup for product pages.

``GET /i2i/{item_id}?k=10&channel=swing|cooc|trans|side|eges|blend`` -> item ids, scores and the
channel that produced each; 404 for unknown items, 422 for a bad ``k``, channel or filter.
Filters, applied before the top-k cut: ``exclude=id1,id2`` (or repeated), ``same=category|market|brand``,
``cold=include|exclude|only`` (items without events); ``fields=category,brand,price`` adds those keys
to each result item.
``POST /i2i/batch`` ``{"items": [...], "k": 10, "channel": "blend", ...filters}``: up to 100 items,
one list each, all read from one snapshot; an unknown item gets ``"error"`` instead of failing the batch.
``GET /recall/{user_id}?k=10&channel=blend&n=20&half_life_hours=&depth=50``: recall for a user: the
user's ``n`` most recent items (Neo4j ``ENGAGED`` edges) each contribute their top-``depth`` list,
row-normalised and summed (optionally decayed by age), items the user engaged with excluded; each result
names the history items that brought it. 404 for an unknown user; a user without events gets no items
and a ``reason``. ``POST /recall`` ``{"items": [...], "weights": [...], "k": 10, ...}`` does the same
for an explicit list (an anonymous session, a cart). Same filters and ``fields`` as ``/i2i``.
``GET /metrics``: Prometheus text format (requests and latency per endpoint, channel and status; snapshot
age, items and vectors loaded; degraded state).
``GET /health`` -> ``ok`` or ``degraded`` (Neo4j down, answers from the last snapshot), the snapshot's
data ``version`` (a new one is loaded and swapped in without a failed request when ``graphrecall ingest``,
``scores``, ``embed`` or ``tune`` change the graph; ``GRAPHRECALL_PROBE_SECONDS``, default 5), and the
blend in use with where it came from (``graphrecall tune``, ``--blend`` or the built-in default).
OpenAPI docs at ``/docs``.

Run with ``graphrecall serve`` (uvicorn); :func:`create_app` takes any
:class:`~.retriever.ItemRetriever` (``graphrecall.app.serve`` wires the backends).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Literal

import orjson
from fastapi import FastAPI, HTTPException, Path, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field

from ...graph_schema.schema import BROWSER_DIR
from .retriever import (
    CHANNELS,
    COLD_MODES,
    INFO_FIELDS,
    NO_FILTERS,
    RECALL_DEPTH,
    SAME_FIELDS,
    Filters,
    ItemRetriever,
    Recalled,
    UnknownItem,
    UserHistory,
    decay_weights,
)

logger = logging.getLogger(__name__)
access = logging.getLogger("graphrecall.access")

MAX_K = 200
MAX_BATCH = 100
MAX_HISTORY = 200
MAX_DEPTH = 200
Channel = Literal[CHANNELS]  # the OpenAPI enums are the retriever's
Same = Literal[SAME_FIELDS]
Cold = Literal[COLD_MODES]


class Neighbour(BaseModel):
    """One neighbour; with ``fields=`` it also carries those item fields (null where unknown)."""

    model_config = ConfigDict(extra="allow")
    item_id: str
    score: float
    channel: str


class I2IResponse(BaseModel):
    item_id: str
    channel: str
    k: int
    items: list[Neighbour]


class BatchRequest(BaseModel):
    items: list[str] = Field(..., min_length=1, max_length=MAX_BATCH, description=f"1..{MAX_BATCH} item ids")
    k: int = Field(10, ge=1, le=MAX_K)
    channel: Channel = "blend"
    exclude: list[str] = Field(default_factory=list)
    same: Same | None = None
    cold: Cold = "include"
    fields: list[str] = Field(default_factory=list)


class BatchEntry(BaseModel):
    item_id: str
    items: list[Neighbour] = Field(default_factory=list)
    error: str | None = None


class BatchResponse(BaseModel):
    channel: str
    k: int
    results: list[BatchEntry]


class RecallItem(BaseModel):
    """One candidate, with the history items that brought it (largest contribution first)."""

    model_config = ConfigDict(extra="allow")
    item_id: str
    score: float
    sources: list[str]


class RecallResponse(BaseModel):
    user_id: str | None = None
    channel: str
    k: int
    history: list[str] = Field(description="history items used, most recent (or first given) first")
    unknown: list[str] = Field(default_factory=list, description="history items the service does not know")
    items: list[RecallItem]
    via: str = Field(
        "history lists",
        description="'history lists' (each history item's list, summed) or 'user vector' (the channel's own "
        "vector for the user: gnn's two-tower recall)",
    )
    reason: str | None = Field(None, description="why ``items`` is empty")


class RecallRequest(BaseModel):
    items: list[str] = Field(..., min_length=1, max_length=MAX_HISTORY, description=f"1..{MAX_HISTORY} item ids")
    weights: list[float] | None = Field(None, description="one weight >= 0 per item (default 1 each)")
    k: int = Field(10, ge=1, le=MAX_K)
    channel: Channel = "blend"
    depth: int = Field(RECALL_DEPTH, ge=1, le=MAX_DEPTH, description="neighbours each item contributes")
    exclude: list[str] = Field(default_factory=list)
    same: Same | None = None
    cold: Cold = "include"
    fields: list[str] = Field(default_factory=list)


def _recall_response(
    rec: Recalled, channel: str, k: int, fields: list[str], view, user_id: str | None = None
) -> RecallResponse:
    info = view.item_info(list(rec.ids), fields) if fields else [{}] * len(rec)
    items = [
        RecallItem(item_id=str(i), score=float(s), sources=src, **extra)
        for i, s, src, extra in zip(rec.ids, rec.scores, rec.sources, info)
    ]
    reason = None
    if not items:
        reason = (
            "none of the history items is known to the service"
            if not rec.history
            else "the history items' lists have no candidates left (after exclusions and filters)"
        )
    return RecallResponse(
        user_id=user_id,
        channel=channel,
        k=k,
        history=rec.history,
        unknown=rec.unknown,
        items=items,
        via=rec.via,
        reason=reason,
    )


def _query_channel(query: str) -> str:
    from urllib.parse import parse_qs

    return parse_qs(query).get("channel", ["-"])[0] if "channel=" in query else "-"


def _split(values: list[str]) -> list[str]:
    """``a,b`` and repeated parameters alike."""
    return [x for v in values for x in v.split(",") if x]


def _fields(names: list[str]) -> list[str]:
    bad = [f for f in names if f not in INFO_FIELDS]
    if bad:
        raise HTTPException(status_code=422, detail=f"unknown fields {bad}; choose from {', '.join(INFO_FIELDS)}")
    return names


def _items(nb, fields: list[str], view) -> list[Neighbour]:
    info = view.item_info(list(nb.ids), fields) if fields else [{}] * len(nb)
    return [
        Neighbour(item_id=str(i), score=float(s), channel=c, **extra)
        for i, s, c, extra in zip(nb.ids, nb.scores, nb.channels, info)
    ]


class RetrieverCollector:
    """Gauges read from the retriever at scrape time."""

    def __init__(self, retriever: ItemRetriever):
        self.retriever = retriever

    def collect(self):
        health = self.retriever.health()
        stats = health.get("snapshot") or (self.retriever.stats() if hasattr(self.retriever, "stats") else {})
        yield GaugeMetricFamily(
            "graphrecall_degraded",
            "1 while Neo4j is unreachable and answers come from the last snapshot",
            value=float(health.get("status") == "degraded"),
        )
        if stats.get("loaded_at"):
            yield GaugeMetricFamily(
                "graphrecall_snapshot_age_seconds",
                "seconds since the snapshot was loaded",
                value=time.time() - stats["loaded_at"],
            )
        loaded = GaugeMetricFamily("graphrecall_snapshot_loaded", "what the snapshot holds", labels=["what"])
        for key, value in stats.items():
            if key != "loaded_at" and isinstance(value, (int, float)):
                loaded.add_metric([key], float(value))
        yield loaded


def create_app(
    retriever: ItemRetriever,
    history: UserHistory | None = None,
    access_log: bool = False,
    explain: Callable[[str, str], dict] | None = None,
) -> FastAPI:
    """The HTTP API over ``retriever``; ``history`` (e.g. :class:`~.neo4j.Neo4jHistory`) answers
    ``GET /recall/{user_id}`` (503 without one); ``explain(a, b)`` (the numbers of
    :func:`~.explain.explain_pair`, which reads the graph) answers ``GET /explain/{a}/{b}`` (503 without one).
    ``access_log``: one JSON line per request on the ``graphrecall.access`` logger (method, path, query, status,
    ms, channel, client)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        start = getattr(retriever, "start", None)
        if callable(start):
            start()
        yield
        stop = getattr(retriever, "stop", None)
        if callable(stop):
            stop()

    app = FastAPI(
        title="graphrecall i2i",
        version="0.1.0",
        lifespan=lifespan,
        description="Item-to-item recall from Swing, co-occurrence and EGES, stored in Neo4j.",
    )
    app.state.retriever = retriever
    registry = CollectorRegistry()  # per app, so that several apps in one process keep apart
    requests = Counter("graphrecall_requests", "HTTP requests", ["endpoint", "channel", "status"], registry=registry)
    latency = Histogram(
        "graphrecall_request_seconds",
        "request latency",
        ["endpoint", "channel"],
        registry=registry,
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    )
    registry.register(RetrieverCollector(retriever))

    class Observe:
        """Pure ASGI middleware (BaseHTTPMiddleware costs a task per request): counts, latency and the
        access log line per request."""

        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.app(scope, receive, send)
            t0 = time.perf_counter()
            status = [500]

            async def send_status(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_status)
            finally:
                seconds = time.perf_counter() - t0
                endpoint = getattr(scope.get("route"), "path", "unmatched")
                query = scope.get("query_string", b"").decode("latin-1")
                channel = (scope.get("state") or {}).get("channel") or _query_channel(query)
                requests.labels(endpoint, channel, str(status[0])).inc()
                latency.labels(endpoint, channel).observe(seconds)
                if access_log:
                    client = scope.get("client")
                    access.info(
                        json.dumps(
                            {
                                "ts": round(time.time(), 3),
                                "method": scope["method"],
                                "path": scope["path"],
                                "query": query,
                                "status": status[0],
                                "ms": round(1000 * seconds, 3),
                                "endpoint": endpoint,
                                "channel": channel,
                                "client": client[0] if client else None,
                            }
                        )
                    )

    app.add_middleware(Observe)

    guide_dir = BROWSER_DIR

    @app.get("/guide/{name}", include_in_schema=False)
    def guide(name: Literal["guide.html", "graphrecall.grass", "saved_queries.cypher"], request: Request) -> Response:
        """The Neo4j Browser guide (``:play http://localhost:8000/guide/guide.html``) and graph style
        (``:style http://localhost:8000/guide/graphrecall.grass``), with this server's address in them;
        CORS-open, since Browser fetches them from its own page."""
        text = (guide_dir / name).read_text().replace("http://localhost:8000", str(request.base_url).rstrip("/"))
        media = "text/html" if name.endswith(".html") else "text/plain"
        return Response(text, media_type=media, headers={"Access-Control-Allow-Origin": "*"})

    @app.options("/guide/{name}", include_in_schema=False)
    def guide_preflight(name: str) -> Response:  # Browser's fetch sends custom headers, hence a preflight
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Methods": "GET, OPTIONS",
                "Access-Control-Allow-Headers": "*",
                "Access-Control-Max-Age": "600",
            },
        )

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/i2i/batch", response_model=BatchResponse, response_model_exclude_none=True)
    def i2i_batch(body: BatchRequest, request: Request) -> BatchResponse:
        request.state.channel = body.channel
        fields = _fields(body.fields)
        filters = Filters(frozenset(_split(body.exclude)), body.same, body.cold)
        view = retriever.view()  # one snapshot for the whole batch
        results = []
        for item_id in body.items:
            try:
                nb = retriever.similar_items(item_id, k=body.k, channel=body.channel, filters=filters, view=view)
                results.append(BatchEntry(item_id=item_id, items=_items(nb, fields, view)))
            except UnknownItem:
                results.append(BatchEntry(item_id=item_id, error="unknown item"))
        return BatchResponse(channel=body.channel, k=body.k, results=results)

    @app.get("/i2i/{item_id:path}", response_model=None, responses={200: {"model": I2IResponse}})
    async def i2i(
        item_id: str = Path(..., min_length=1, max_length=512),
        k: int = Query(10, ge=1, le=MAX_K, description=f"number of neighbours, 1..{MAX_K}"),
        channel: Channel = Query("blend"),
        exclude: list[str] = Query([], description="ids never returned (comma-separated or repeated)"),
        same: Same | None = Query(None, description="keep only candidates sharing this field with the item"),
        cold: Cold = Query("include", description="items without events: include, exclude, or only them"),
        fields: str = Query("", description=f"item fields added to each result: {', '.join(INFO_FIELDS)}"),
    ) -> Response:
        names = _fields(_split([fields])) if fields else []
        view = retriever.view()
        try:
            nb = retriever.similar_items(
                item_id,
                k=k,
                channel=channel,
                filters=Filters(frozenset(_split(exclude)), same, cold)
                if exclude or same or cold != "include"
                else NO_FILTERS,
                view=view,
            )
        except UnknownItem:
            raise HTTPException(status_code=404, detail=f"unknown item {item_id!r}") from None
        # the hot path, on the event loop (no thread hop: a snapshot answers in memory, from its cache or in about
        # a millisecond); plain dicts serialised by orjson (the I2IResponse shape, no pydantic object per item)
        info = view.item_info(list(nb.ids), names) if names else None
        items = [
            {"item_id": str(i), "score": float(sc), "channel": c} for i, sc, c in zip(nb.ids, nb.scores, nb.channels)
        ]
        if info:
            for item, extra in zip(items, info):
                item.update(extra)
        return Response(
            orjson.dumps({"item_id": item_id, "channel": channel, "k": k, "items": items}),
            media_type="application/json",
        )

    @app.post("/recall", response_model=RecallResponse, response_model_exclude_none=True)
    def recall_items(body: RecallRequest, request: Request) -> RecallResponse:
        request.state.channel = body.channel
        fields = _fields(body.fields)
        if body.weights is not None and (len(body.weights) != len(body.items) or min(body.weights) < 0):
            raise HTTPException(
                status_code=422,
                detail=f"weights needs one number >= 0 per item "
                f"({len(body.items)}), got {len(body.weights)}; or leave it out for weight 1 each",
            )
        view = retriever.view()
        rec = retriever.recall(
            body.items,
            k=body.k,
            channel=body.channel,
            weights=body.weights,
            depth=body.depth,
            filters=Filters(frozenset(_split(body.exclude)), body.same, body.cold),
            view=view,
        )
        return _recall_response(rec, body.channel, body.k, fields, view)

    @app.get("/recall/{user_id:path}", response_model=RecallResponse, response_model_exclude_none=True)
    def recall_user(
        user_id: str = Path(..., min_length=1, max_length=512),
        k: int = Query(10, ge=1, le=MAX_K, description=f"number of candidates, 1..{MAX_K}"),
        channel: Channel = Query("blend"),
        n: int = Query(20, ge=1, le=MAX_HISTORY, description="how many of the user's most recent items to use"),
        half_life_hours: float | None = Query(
            None,
            gt=0,
            description="weight each history item by 0.5 ** (age / half-life), age from the user's latest event",
        ),
        depth: int = Query(RECALL_DEPTH, ge=1, le=MAX_DEPTH, description="neighbours each history item contributes"),
        exclude: list[str] = Query([], description="ids never returned (comma-separated or repeated)"),
        same: Same | None = Query(
            None, description="keep only candidates sharing this field with the history item that brings them"
        ),
        cold: Cold = Query("include", description="items without events: include, exclude, or only them"),
        fields: str = Query("", description=f"item fields added to each result: {', '.join(INFO_FIELDS)}"),
    ) -> RecallResponse:
        names = _fields(_split([fields]))
        if history is None:
            raise HTTPException(
                status_code=503,
                detail="this service has no user-history source (Neo4j); POST /recall with the user's items instead",
            )
        try:
            recent = history.recent_items(user_id, n)
        except Exception as exc:  # noqa: BLE001 - Neo4j down or failing: the snapshot cannot answer this one
            logger.warning("user history unavailable: %s", exc)
            raise HTTPException(
                status_code=503,
                detail="user histories are read from Neo4j, which is unreachable; "
                "POST /recall with the user's items still works",
            ) from None
        if recent is None:
            raise HTTPException(status_code=404, detail=f"unknown user {user_id!r}")
        if not recent:
            return RecallResponse(
                user_id=user_id, channel=channel, k=k, history=[], items=[], reason="the user has no events"
            )
        weights = decay_weights([t for _, t in recent], None if half_life_hours is None else half_life_hours * 3600)
        view = retriever.view()
        rec = retriever.recall_user(
            user_id,
            [i for i, _ in recent],
            k=k,
            channel=channel,
            weights=weights,
            depth=depth,
            filters=Filters(frozenset(_split(exclude)), same, cold),
            view=view,
        )
        return _recall_response(rec, channel, k, names, view, user_id=user_id)

    @app.get("/explain/{a}/{b}")
    def explain_pair(
        a: str = Path(..., description="the query item"), b: str = Path(..., description="an item in its lists")
    ) -> dict:
        """Why ``b`` is in ``a``'s lists: each channel's rank, score and contribution to the blend, the Swing user
        pairs and ItemCF users behind the stored scores, the transitions, shared side fields and EGES cosine."""
        if explain is None:
            raise HTTPException(status_code=503, detail="explanations read the graph; this service has no Neo4j")
        try:
            return explain(a, b)
        except UnknownItem as exc:
            raise HTTPException(status_code=404, detail=f"unknown item {exc.args[0]!r}") from None
        except Exception as exc:  # noqa: BLE001 - Neo4j down or failing: the snapshot cannot answer this one
            logger.warning("explain unavailable: %s", exc)
            raise HTTPException(status_code=503, detail="explanations read Neo4j, which is unreachable") from None

    @app.get("/health")
    def health() -> dict:
        return retriever.health()

    return app
