"""``neo4j-admin database import full`` (ingest --bulk) writes exactly the graph of the Bolt path."""

from __future__ import annotations

import pytest
from conftest import DATA

from graphrecall.ingest.writer import ingest_events

FILES = [(DATA / "taobao_300.csv", "taobao"), (DATA / "rees46_head300.csv", "rees46")]
LABELS = ("User", "Item", "Session", "IngestBatch")
TYPES = ("ENGAGED", "HAS_SESSION", "BOOKED", "TRANSITION")
KEY = {"User": "id", "Item": "id", "Session": "id", "IngestBatch": "key"}


def dump(driver) -> dict:
    """Every node and relationship of the ingest, as sorted plain data (the markers' commit time left out)."""
    out = {}
    with driver.session() as s:
        for label in LABELS:
            rows = s.run(f"MATCH (n:{label}) RETURN properties(n) AS p").value()
            out[label] = sorted((sorted((k, _plain(v)) for k, v in p.items() if k != "at") for p in rows), key=repr)
            out[label + " labels"] = s.run(f"MATCH (n:{label}) RETURN DISTINCT labels(n)").value()
        for rel in TYPES:
            rows = s.run(
                f"MATCH (a)-[r:{rel}]->(b) RETURN coalesce(a.id, a.key), coalesce(b.id, b.key), properties(r)"
            ).values()
            out[rel] = sorted((a, b, sorted(p.items())) for a, b, p in rows)
        out["other nodes"] = s.run(
            "MATCH (n) WHERE none(l IN labels(n) WHERE l IN $labels) RETURN labels(n), count(*)",
            labels=list(LABELS) + ["SchemaVersion", "DataVersion"],
        ).values()
    return out


def _plain(v):
    return tuple(v) if isinstance(v, list) else v


@pytest.fixture(scope="module")
def bulk_instance():
    from conftest import wipe

    from graphrecall.app.neo4j import local_neo4j

    inst = local_neo4j("bulktest", bolt_port=18687, http_port=18474, heap="512m", pagecache="64m").start()
    with inst.settings().driver() as driver:  # an earlier run's graph stays in the instance folder: start empty
        wipe(driver)
    yield inst
    inst.stop()


def test_bulk_import_writes_the_bolt_graph_and_the_same_rejects(driver, bulk_instance, tmp_path):
    from graphrecall.ingest.bulk import BulkImportError, bulk_import

    bolt_reports = [ingest_events(driver, p, fmt, reject_dir=tmp_path / "bolt", progress=False) for p, fmt in FILES]
    want = dump(driver)
    reports = bulk_import(bulk_instance, FILES, reject_dir=tmp_path / "bulk", progress=False)
    with bulk_instance.settings().driver() as bulk_driver:
        got = dump(bulk_driver)
        for label in LABELS:
            assert len(got[label]) == len(want[label]) > 0, label
            assert got[label] == want[label], label
        for rel in TYPES:
            assert got[rel] == want[rel], rel
        assert sum(len(got[r]) for r in TYPES) > 100
        # the markers are the Bolt path's: re-ingesting a file over Bolt now writes nothing
        again = ingest_events(bulk_driver, *FILES[0], reject_dir=tmp_path / "again", progress=False)
        assert again.batches_written == 0 and again.batches_skipped == reports[0].batches_written
        assert dump(bulk_driver)["ENGAGED"] == want["ENGAGED"]
        with pytest.raises(BulkImportError, match="already holds data"):
            bulk_import(bulk_instance, FILES[:1], reject_dir=tmp_path / "bulk2", progress=False)
    for b, r in zip(bolt_reports, reports):
        assert (r.lines_ok, r.rejected, r.rows, r.reject_reasons) == (b.lines_ok, b.rejected, b.rows, b.reject_reasons)
        assert r.batches_written == b.batches_written
        if b.rejected:
            name = f"{b.path.rsplit('/', 1)[-1]}.rejects.csv"
            assert (tmp_path / "bulk" / name).read_text() == (tmp_path / "bolt" / name).read_text()
