import time

import pytest
from fastapi.testclient import TestClient
from test_retrievers import EVIL, build_tiny_graph

from graphrecall.query.serve.api import create_app
from graphrecall.query.serve.resilient import ResilientRetriever
from graphrecall.query.serve.snapshot import SnapshotRetriever


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
    from graphrecall.app.neo4j import local_neo4j
    from graphrecall.graph_schema.schema import apply_schema

    server = local_neo4j("api-outage", bolt_port=19687, http_port=19474, heap="512m", pagecache="128m")
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
    res = c.post(
        "/i2i/batch",
        json={"items": ["h", "nope", "p"], "k": 2, "channel": "side", "cold": "exclude", "fields": ["market"]},
    )
    assert res.status_code == 200, res.text
    out = res.json()["results"]
    assert [e["item_id"] for e in out] == ["h", "nope", "p"]
    assert ids_of(out[0]) == ["r", "p"] and out[0]["items"][0]["market"] == "m1" and "error" not in out[0]
    assert out[1] == {"item_id": "nope", "items": [], "error": "unknown item"}
    for single in ("h", "p"):  # the same lists as one GET each
        got = c.get(f"/i2i/{single}", params={"k": 2, "channel": "side", "cold": "exclude"}).json()
        assert ids_of(got) == ids_of(out[["h", "nope", "p"].index(single)])


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"items": ["h"] * 101},
        {"items": ["h"], "k": 0},
        {"items": ["h"], "channel": "magic"},
        {"items": ["h"], "same": "colour"},
        {"items": ["h"], "fields": ["secret"]},
        {"k": 3},
    ],
)
def test_bad_batches_are_422(catalogue_client, body):
    assert catalogue_client.post("/i2i/batch", json=body).status_code == 422


def scrape(client) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    res = client.get("/metrics")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(res.text)
        for s in fam.samples
    }


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


@pytest.fixture
def recall_client(driver, tmp_path):
    from test_retrievers import add_catalogue

    from graphrecall.query.serve.neo4j import Neo4jHistory

    faiss_dir = build_tiny_graph(driver, tmp_path)
    add_catalogue(driver)
    with driver.session() as s:
        s.run("CREATE (:User {id: 'lonely'})").consume()
    r = ResilientRetriever(lambda: SnapshotRetriever.from_neo4j(driver, faiss_dir), lambda: None, probe_every=3600)
    with TestClient(create_app(r, Neo4jHistory(driver))) as c:
        yield c


def test_recall_for_a_user_uses_recent_items_and_excludes_them(recall_client):
    c = recall_client
    # D engaged h (t=6) and EVIL (t=5); trans lists: h -> t 2, p 1; EVIL -> h (history, dropped)
    res = c.get("/recall/D", params={"channel": "trans", "fields": "category"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["user_id"] == "D" and body["history"] == ["h", EVIL] and "reason" not in body
    assert ids_of(body) == ["t", "p"] and [x["score"] for x in body["items"]] == [1.0, 0.5]
    assert body["items"][0]["sources"] == ["h"] and body["items"][0]["category"] == "c2"
    assert c.get("/recall/D", params={"channel": "trans", "n": 1}).json()["history"] == ["h"]
    decayed = c.get("/recall/D", params={"channel": "trans", "half_life_hours": 0.001}).json()
    assert ids_of(decayed) == ["t", "p"]
    assert ids_of(c.get("/recall/D", params={"channel": "side", "same": "category"}).json())[:1] == ["r"]


def test_recall_unknown_user_404_and_user_without_events_has_a_reason(recall_client):
    c = recall_client
    res = c.get("/recall/nobody")
    assert res.status_code == 404 and "unknown user" in res.json()["detail"]
    body = c.get("/recall/lonely").json()
    assert body["items"] == [] and body["reason"] == "the user has no events"
    body = c.get("/recall/A", params={"channel": "trans", "n": 2}).json()  # p and r: their lists hold only history
    assert body["items"] == [] and "no candidates" in body["reason"]


@pytest.mark.parametrize(
    "params",
    [
        {"k": 0},
        {"n": 0},
        {"n": 1000},
        {"half_life_hours": 0},
        {"depth": 0},
        {"channel": "magic"},
        {"same": "colour"},
        {"fields": "secret"},
    ],
)
def test_recall_bad_parameters_are_422(recall_client, params):
    assert recall_client.get("/recall/D", params=params).status_code == 422


def test_post_recall_for_a_cart(recall_client):
    c = recall_client
    res = c.post("/recall", json={"items": ["h", "r", "ghost"], "channel": "trans", "fields": ["brand"]})
    assert res.status_code == 200, res.text
    body = res.json()
    assert ids_of(body) == ["p", "t"] and body["items"][0]["sources"] == ["r", "h"]
    assert body["unknown"] == ["ghost"] and body["items"][0]["brand"] == "b2" and "user_id" not in body
    weighted = c.post("/recall", json={"items": ["h", "r"], "weights": [1, 0], "channel": "trans"}).json()
    assert ids_of(weighted) == ["t", "p"]
    none = c.post("/recall", json={"items": ["ghost"]}).json()
    assert none["items"] == [] and "none of the history items" in none["reason"]


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"items": ["h"] * 201},
        {"items": ["h"], "k": 0},
        {"items": ["h", "r"], "weights": [1]},
        {"items": ["h"], "weights": [-1]},
        {"items": ["h"], "channel": "magic"},
        {"items": ["h"], "depth": 500},
    ],
)
def test_post_recall_bad_bodies_are_422(recall_client, body):
    assert recall_client.post("/recall", json=body).status_code == 422


def test_recall_without_a_history_source_is_503(client_and_state):
    c, _, _ = client_and_state
    res = c.get("/recall/D")
    assert res.status_code == 503 and "POST /recall" in res.json()["detail"]


def test_recall_when_neo4j_is_down_is_503_and_post_still_works(driver, tmp_path):
    from graphrecall.query.serve.retriever import UserHistory

    class Down(UserHistory):
        def recent_items(self, user_id, n):
            raise ConnectionError("neo4j down")

    faiss_dir = build_tiny_graph(driver, tmp_path)
    r = ResilientRetriever(lambda: SnapshotRetriever.from_neo4j(driver, faiss_dir), lambda: None, probe_every=3600)
    with TestClient(create_app(r, Down())) as c:
        res = c.get("/recall/D")
        assert res.status_code == 503 and "unreachable" in res.json()["detail"]
        assert ids_of(c.post("/recall", json={"items": ["h"], "channel": "trans"}).json()) == ["t", "p"]


def test_access_log_is_one_json_line_per_request_and_can_be_off(driver, tmp_path, caplog):
    import json
    import logging

    faiss_dir = build_tiny_graph(driver, tmp_path)
    for on in (True, False):
        r = ResilientRetriever(lambda: SnapshotRetriever.from_neo4j(driver, faiss_dir), lambda: None, probe_every=3600)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="graphrecall.access"), TestClient(create_app(r, access_log=on)) as c:
            c.get("/i2i/h", params={"k": 2, "channel": "swing"})
            c.get("/i2i/nope")
        lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "graphrecall.access"]
        if not on:
            assert lines == []
            continue
        assert [(x["path"], x["status"], x["channel"]) for x in lines] == [
            ("/i2i/h", 200, "swing"),
            ("/i2i/nope", 404, "-"),
        ]
        assert lines[0]["query"] == "k=2&channel=swing" and lines[0]["endpoint"] == "/i2i/{item_id:path}"
        assert lines[0]["ms"] > 0 and set(lines[0]) >= {"ts", "method", "client"}


def test_new_data_version_is_hot_reloaded_under_load_with_no_failed_request(driver, tmp_path):
    """Four client threads keep asking while the graph changes three times; every answer is a 200 from
    one whole snapshot (old or new), /health's version follows the graph, and the new lists are served."""
    import threading

    from graphrecall.graph_schema.store.meta import bump_data_version, read_data_version

    faiss_dir = build_tiny_graph(driver, tmp_path)
    r = ResilientRetriever(
        lambda: SnapshotRetriever.from_neo4j(driver, faiss_dir), lambda: read_data_version(driver), probe_every=3600
    )
    statuses, lists, stop = [], [], threading.Event()
    with TestClient(create_app(r)) as c:
        v0 = c.get("/health").json()["version"]

        def hammer():
            while not stop.is_set():
                for ch in ("swing", "trans", "blend", "side"):
                    res = c.get("/i2i/h", params={"k": 5, "channel": ch})
                    statuses.append(res.status_code)
                    if ch == "trans" and res.status_code == 200:
                        lists.append([x["item_id"] for x in res.json()["items"]])

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            assert r.check() and r.reloads == 0  # same version: no reload
            for n in range(3):
                with driver.session() as s:  # a new transition h -> x{n}, heavier than any before
                    s.run(
                        "MERGE (x:Item {id: $x}) WITH x MATCH (h:Item {id: 'h'}) "
                        "MERGE (h)-[t:TRANSITION]->(x) SET t.weight = 100 + $n",
                        x=f"x{n}",
                        n=n,
                    ).consume()
                bump_data_version(driver, "test")
                assert r.check()
                time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join()
        health = c.get("/health").json()
        assert health["version"] == v0 + 3 and health["reloads"] == 3
        assert c.get("/i2i/h", params={"channel": "trans"}).json()["items"][0]["item_id"] == "x2"
    assert len(statuses) > 100 and set(statuses) == {200}, (len(statuses), set(statuses))
    firsts = {lst[0] for lst in lists}
    assert {"t", "x2"} <= firsts and firsts <= {"t", "x0", "x1", "x2"}  # every list from one whole snapshot
