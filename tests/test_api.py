import time

import pytest
from fastapi.testclient import TestClient

from query.api import create_app
from query.retriever import ResilientRetriever, SnapshotRetriever
from test_retrievers import EVIL, build_tiny_graph


@pytest.fixture
def client_and_state(driver, tmp_path):
    faiss_dir = build_tiny_graph(driver, tmp_path)
    state = {"up": True}

    def probe():
        if not state["up"]:
            raise ConnectionError("down")

    r = ResilientRetriever(lambda: SnapshotRetriever.from_neo4j(driver, faiss_dir), probe, probe_every=3600)
    with TestClient(create_app(r)) as c:
        yield c, r, state


def test_lookup_each_channel(client_and_state):
    c, _, _ = client_and_state
    for ch in ("swing", "cooc", "eges", "blend"):
        res = c.get("/i2i/h", params={"k": 3, "channel": ch})
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["item_id"] == "h" and body["channel"] == ch and 0 < len(body["items"]) <= 3
        assert all(set(x) == {"item_id", "score", "channel"} for x in body["items"])
    assert c.get("/i2i/h", params={"channel": "swing"}).json()["items"][0]["item_id"] == "p"


def test_unknown_item_is_404(client_and_state):
    c, _, _ = client_and_state
    res = c.get("/i2i/nope")
    assert res.status_code == 404 and "unknown item" in res.json()["detail"]


@pytest.mark.parametrize("params", [{"k": 0}, {"k": -3}, {"k": 100000}, {"k": "ten"}, {"channel": "magic"}])
def test_bad_parameters_are_422(client_and_state, params):
    c, _, _ = client_and_state
    assert c.get("/i2i/h", params=params).status_code == 422


def test_injection_item_id_round_trips(client_and_state, driver):
    c, _, _ = client_and_state
    from urllib.parse import quote

    res = c.get("/i2i/" + quote(EVIL, safe=""), params={"channel": "cooc"})
    assert res.status_code == 200 and res.json()["item_id"] == EVIL
    with driver.session() as s:
        assert s.run("MATCH (n) RETURN count(n)").single()[0] > 5


def test_health_degraded_and_back(client_and_state):
    c, r, state = client_and_state
    assert c.get("/health").json()["status"] == "ok"
    state["up"] = False
    r.check()
    assert c.get("/health").json()["status"] == "degraded"
    assert c.get("/i2i/h", params={"channel": "swing"}).status_code == 200
    state["up"] = True
    r.check()
    assert c.get("/health").json()["status"] == "ok"


def test_openapi_lists_the_route(client_and_state):
    c, _, _ = client_and_state
    assert "/i2i/{item_id}" in c.get("/openapi.json").json()["paths"]


@pytest.mark.slow
def test_real_neo4j_stop_degrades_and_recovers(tmp_path):
    """Stop the real server under the API: answers continue from the snapshot, /health says degraded,
    and after a restart it is ok again without touching the API."""
    from graph_schema.schema import apply_schema
    from graph_schema.server import LocalNeo4j

    server = LocalNeo4j("api-outage", bolt_port=19687, http_port=19474, heap="512m", pagecache="128m")
    try:
        server.start()
        driver = server.settings().driver(connection_timeout=2.0, max_transaction_retry_time=1.0)
        apply_schema(driver)
        faiss_dir = build_tiny_graph(driver, tmp_path)

        def probe():
            with driver.session(default_access_mode="READ") as s:
                s.run("RETURN 1").consume()

        r = ResilientRetriever(lambda: SnapshotRetriever.from_neo4j(driver, faiss_dir), probe, probe_every=0.5)
        with TestClient(create_app(r)) as c:
            assert c.get("/health").json()["status"] == "ok"
            server.stop()
            deadline = time.time() + 30
            while c.get("/health").json()["status"] != "degraded" and time.time() < deadline:
                time.sleep(0.2)
            assert c.get("/health").json()["status"] == "degraded"
            for ch in ("swing", "cooc", "eges", "blend"):
                assert c.get("/i2i/h", params={"channel": ch}).status_code == 200
            assert c.get("/i2i/nope").status_code == 404
            server.start()
            deadline = time.time() + 60
            while c.get("/health").json()["status"] != "ok" and time.time() < deadline:
                time.sleep(0.2)
            assert c.get("/health").json()["status"] == "ok"
        driver.close()
    finally:
        server.stop()


@pytest.fixture
def catalogue_client(driver, tmp_path):
    from test_retrievers import add_catalogue

    faiss_dir = build_tiny_graph(driver, tmp_path)
    add_catalogue(driver)
    r = ResilientRetriever(lambda: SnapshotRetriever.from_neo4j(driver, faiss_dir), lambda: None, probe_every=3600)
    with TestClient(create_app(r)) as c:
        yield c


def ids_of(body):
    return [x["item_id"] for x in body["items"]]


def test_filters_and_fields_on_i2i(catalogue_client):
    c = catalogue_client
    res = c.get("/i2i/h", params={"channel": "side", "same": "category", "fields": "category,brand"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert ids_of(body) == ["r", "fresh", "p"]
    assert all(x["category"] == "c1" for x in body["items"]) and body["items"][1]["brand"] == "b1"
    assert ids_of(c.get("/i2i/h", params={"channel": "side", "cold": "only"}).json()) == ["fresh"]
    both = c.get("/i2i/h", params=[("channel", "side"), ("exclude", "r,fresh"), ("exclude", "p"), ("k", 1)]).json()
    assert ids_of(both) == ["t"]  # comma-separated and repeated excludes, then the k cut
    assert set(c.get("/i2i/h", params={"channel": "swing"}).json()["items"][0]) == {"item_id", "score", "channel"}


@pytest.mark.parametrize("params", [{"same": "colour"}, {"cold": "maybe"}, {"fields": "category,secret"}])
def test_bad_filters_are_422(catalogue_client, params):
    res = catalogue_client.get("/i2i/h", params=params)
    assert res.status_code == 422
    if "fields" in params:
        assert "choose from" in res.json()["detail"]


def test_batch_answers_each_item_and_marks_unknown_ones(catalogue_client):
    c = catalogue_client
    res = c.post("/i2i/batch", json={"items": ["h", "nope", "p"], "k": 2, "channel": "side", "cold": "exclude",
                                     "fields": ["market"]})
    assert res.status_code == 200, res.text
    out = res.json()["results"]
    assert [e["item_id"] for e in out] == ["h", "nope", "p"]
    assert ids_of(out[0]) == ["r", "p"] and out[0]["items"][0]["market"] == "m1" and "error" not in out[0]
    assert out[1] == {"item_id": "nope", "items": [], "error": "unknown item"}
    for single in ("h", "p"):  # the same lists as one GET each
        got = c.get(f"/i2i/{single}", params={"k": 2, "channel": "side", "cold": "exclude"}).json()
        assert ids_of(got) == ids_of(out[["h", "nope", "p"].index(single)])


@pytest.mark.parametrize("body", [{"items": []}, {"items": ["h"] * 101}, {"items": ["h"], "k": 0},
                                  {"items": ["h"], "channel": "magic"}, {"items": ["h"], "same": "colour"},
                                  {"items": ["h"], "fields": ["secret"]}, {"k": 3}])
def test_bad_batches_are_422(catalogue_client, body):
    assert catalogue_client.post("/i2i/batch", json=body).status_code == 422


def scrape(client) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    res = client.get("/metrics")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(res.text) for s in fam.samples}


def test_metrics_count_requests_latency_and_state(client_and_state):
    c, r, state = client_and_state
    for _ in range(3):
        c.get("/i2i/h", params={"channel": "swing"})
    c.get("/i2i/nope", params={"channel": "cooc"})
    c.post("/i2i/batch", json={"items": ["h", "p"], "channel": "trans"})
    m = scrape(c)
    i2i = "/i2i/{item_id:path}"
    assert m[("graphrecall_requests_total", (("channel", "swing"), ("endpoint", i2i), ("status", "200")))] == 3
    assert m[("graphrecall_requests_total", (("channel", "cooc"), ("endpoint", i2i), ("status", "404")))] == 1
    assert m[("graphrecall_requests_total", (("channel", "trans"), ("endpoint", "/i2i/batch"), ("status", "200")))] == 1
    assert m[("graphrecall_request_seconds_count", (("channel", "swing"), ("endpoint", i2i)))] == 3
    assert m[("graphrecall_snapshot_loaded", (("what", "items"),))] == 5
    assert m[("graphrecall_snapshot_loaded", (("what", "eges_vectors"),))] == 5
    assert m[("graphrecall_degraded", ())] == 0 and m[("graphrecall_snapshot_age_seconds", ())] >= 0
    state["up"] = False
    r.check()
    assert scrape(c)[("graphrecall_degraded", ())] == 1
