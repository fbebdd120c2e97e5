import os
import signal
import stat
import urllib.request

import pytest
from conftest import DATA, graph_counts

from graphrecall.app.neo4j import local_neo4j
from graphrecall.graph_schema.schema import SCHEMA_VERSION, apply_schema, schema_statements
from graphrecall.graph_schema.server import STOCK_JVM_FLAGS
from graphrecall.ingest.writer import ingest_events


def test_local_server_is_reused_and_serves_browser(neo4j_server):
    server, settings = neo4j_server
    if server is None:
        pytest.skip("running against an external server (GRAPHRECALL_TEST_NEO4J_URI)")
    again = local_neo4j(server.name, bolt_port=server.bolt_port, http_port=server.http_port).start()
    assert again.pid() == server.pid()
    assert stat.S_IMODE(os.stat(server.password_file).st_mode) == 0o600
    with urllib.request.urlopen(server.browser_url, timeout=10) as r:
        assert r.status == 200 and b"Neo4j Browser" in r.read()
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/", timeout=10) as r:
        assert b'"neo4j_version":"5.26.' in r.read()
    assert any(f.startswith("--add-opens") for f in STOCK_JVM_FLAGS)


def test_schema_is_versioned_and_idempotent(session_driver):
    apply_schema(session_driver)
    apply_schema(session_driver)
    with session_driver.session() as s:
        assert s.run("MATCH (v:SchemaVersion {name: 'graphrecall'}) RETURN v.version").single()[0] == SCHEMA_VERSION
        names = {r[0] for r in s.run("SHOW CONSTRAINTS YIELD name RETURN name").values()}
    assert {"user_id", "item_id", "session_id", "ingest_batch_key"} <= names
    assert all(stmt.split()[0] in ("CREATE", "MERGE", "DROP") for stmt in schema_statements())


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_restart_loses_no_committed_data(tmp_path, how):
    """Stop (clean) or kill -9 the server after an ingest; after a restart every count is there."""
    server = local_neo4j(f"restart-{how}", bolt_port=18687, http_port=18474, heap="512m", pagecache="128m")
    try:
        server.start()
        with server.settings().driver() as d:
            apply_schema(d)
            ingest_events(d, DATA / "taobao_300.csv", "taobao", reject_dir=tmp_path, progress=False, batch_size=50)
            before = graph_counts(d)
        if how == "sigterm":
            server.stop()
        else:
            os.kill(server.pid(), signal.SIGKILL)
            server.stop()  # reaps and clears the pid file
        server.start()
        with server.settings().driver() as d:
            assert graph_counts(d) == before
            rep = ingest_events(
                d, DATA / "taobao_300.csv", "taobao", reject_dir=tmp_path, progress=False, batch_size=50
            )
            assert rep.batches_written == 0
            assert graph_counts(d) == before
    finally:
        server.stop()


def test_browser_saved_queries_run(driver, tmp_path):
    """Every saved Browser query parses and runs on a small graph with scores and vectors."""
    import re
    from pathlib import Path

    from test_retrievers import build_tiny_graph

    from graphrecall.graph_schema.store.meta import store_blend

    build_tiny_graph(driver, tmp_path)
    store_blend(driver, "score:trans=1", {"ndcg@20": 0.5})
    text = (Path(__file__).parents[1] / "graph_schema" / "browser" / "saved_queries.cypher").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.strip().startswith("//"))
    queries = [q.strip() for q in re.split(r";\s*$", body, flags=re.M) if q.strip()]
    assert len(queries) >= 8
    with driver.session() as s:
        side_by_side = None
        for q in queries:
            rows = s.run(q, item="h").values()
            if "swing, cooc, trans, eges" in q:
                side_by_side = rows
            if "BlendChoice" in q:
                assert rows[0][0] == "score:trans=1"
    _, _, _, _, swing, cooc, trans, eges = side_by_side[0]
    assert swing[0] == "p" and eges[0] == "p" and "p" in cooc and trans == ["t", "p"]


def test_docker_compose_runs_the_launchers_neo4j_minor():
    """docker-compose.yml (not run here: no Docker engine) pins the same 5.26 line as the Maven launcher,
    on the same ports, with auth from GRAPHRECALL_NEO4J_PASSWORD and a healthcheck."""
    import re
    from pathlib import Path

    from graphrecall.graph_schema.server import neo4j_version

    text = (Path(__file__).parents[1] / "docker-compose.yml").read_text()
    image = re.search(r"^\s*image:\s*neo4j:(\S+)", text, re.M).group(1)
    major_minor = ".".join(neo4j_version().split(".")[:2])
    assert image.startswith(major_minor) and image.endswith("-community"), (image, neo4j_version())
    assert '"127.0.0.1:7687:7687"' in text and '"127.0.0.1:7474:7474"' in text
    assert 'NEO4J_AUTH: "neo4j/${GRAPHRECALL_NEO4J_PASSWORD' in text
    assert re.search(r"^\s*healthcheck:", text, re.M)


@pytest.mark.slow
@pytest.mark.parametrize("password", ["-AbcDefGhi123xyz", "_AbcDefGhi123xyz"])
def test_first_password_may_begin_with_dash_or_underscore(tmp_path, password, monkeypatch):
    """token_urlsafe draws "-" and "_": a password beginning with "-" (1 in 64) was read as an option by
    neo4j-admin, and the instance never started. The same code path, with the password forced."""
    from graphrecall.graph_schema.server import LocalNeo4j

    server = LocalNeo4j(
        f"pw{password[0] == '-'}",
        bolt_port=19787,
        http_port=19574,
        heap="512m",
        pagecache="64m",
        home=tmp_path / "home",
    )
    real = server._set_initial_password
    monkeypatch.setattr(server, "_set_initial_password", lambda: real(password))
    try:
        server.start()
        assert server.password() == password
        with server.settings().driver() as driver:
            driver.verify_connectivity()
    finally:
        server.stop()


def test_a_failed_first_password_leaves_nothing_that_blocks_the_next_start(tmp_path):
    from graphrecall.graph_schema.server import LocalNeo4j, Neo4jServerError

    server = LocalNeo4j("pwfail", bolt_port=19787, http_port=19574, home=tmp_path / "home")
    server.fetch()
    server._write_conf()
    with pytest.raises(Neo4jServerError, match="nothing was kept, so the next start tries again"):
        server._set_initial_password("")  # neo4j-admin refuses an empty password
    assert not server.password_file.exists()
    assert not (server.home / "data" / "dbms" / "auth.ini").exists()
    server._set_initial_password("-then-a-good-one")
    assert server.password() == "-then-a-good-one"
