import csv
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, graph_counts, graph_fingerprint

from graphrecall.ingest.formats import ColumnMapping, IngestError, RejectSink, read_events, read_items
from graphrecall.ingest.sessions import derive_rows, session_ids
from graphrecall.ingest.writer import ingest_events, ingest_items

HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
GOOD = [
    "2019-10-01 00:00:00 UTC,view,1,10,electronics.phone,acme,100.0,7,s",
    "2019-10-01 00:01:00 UTC,view,2,10,electronics.phone,acme,120.0,7,s",
    "2019-10-01 00:02:00 UTC,purchase,2,10,electronics.phone,acme,120.0,7,s",
    "2019-10-01 00:03:00 UTC,view,3,20,,,,8,s2",
]
BAD = {
    "missing column": "2019-10-01 00:00:00 UTC,view,1,10,electronics.phone,acme,100.0,7",
    "bad time": "yesterday,view,1,10,electronics.phone,acme,100.0,7,s",
    "bad id": "2019-10-01 00:00:00 UTC,view,abc,10,electronics.phone,acme,100.0,7,s",
    "unknown event": "2019-10-01 00:00:00 UTC,teleport,1,10,electronics.phone,acme,100.0,7,s",
    "nul byte": "2019-10-01 00:00:00 UTC,view,1,10,elec\x00tronics,acme,100.0,7,s",
    "huge field": "2019-10-01 00:00:00 UTC,view,1,10," + "x" * 100_000 + ",acme,100.0,7,s",
    "bad price": "2019-10-01 00:00:00 UTC,view,1,10,electronics.phone,acme,cheap,7,s",
}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return path


@pytest.fixture
def mixed_file(tmp_path):
    lines = [HEADER]
    expected_bad = {}
    for n, good in enumerate(GOOD):
        lines.append(good)
        if n < len(BAD):
            reason, bad = list(BAD.items())[n]
            lines.append(bad)
            expected_bad[len(lines)] = reason
    for reason, bad in list(BAD.items())[len(GOOD) :]:
        lines.append(bad)
        expected_bad[len(lines)] = reason
    return write_lines(tmp_path / "mixed.csv", lines), expected_bad


def test_bad_rows_are_rejected_with_file_and_line(mixed_file, tmp_path, caplog):
    path, expected_bad = mixed_file
    sink = RejectSink(path, tmp_path / "rej.csv")
    with caplog.at_level(logging.WARNING):
        events = list(read_events(path, "rees46", sink))
    sink.close()
    assert len(events) == len(GOOD)
    assert sink.count == len(BAD)
    with open(tmp_path / "rej.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(int(r["line"]) for r in rows) == sorted(expected_bad)
    for line in expected_bad:
        assert any(f"{path}:{line}:" in m for m in caplog.messages), f"no log naming {path}:{line}"
    reasons = {int(r["line"]): r["reason"] for r in rows}
    by_kind = {v: reasons[k] for k, v in expected_bad.items()}
    assert "expected 9 columns" in by_kind["missing column"]
    assert "unparsable time" in by_kind["bad time"]
    assert "product_id" in by_kind["bad id"]
    assert "unknown event type 'teleport'" in by_kind["unknown event"]
    assert "NUL" in by_kind["nul byte"]
    assert "too long" in by_kind["huge field"]
    assert "price" in by_kind["bad price"]


def test_ingest_keeps_every_valid_row_and_is_idempotent(driver, mixed_file, tmp_path):
    path, _ = mixed_file
    rep = ingest_events(driver, path, "rees46", reject_dir=tmp_path, progress=False)
    assert (rep.lines_ok, rep.rejected) == (len(GOOD), len(BAD))
    assert Path(rep.reject_path).exists()
    first = graph_counts(driver)
    assert first["engaged_sum"] == len(GOOD)
    assert first["users"] == 2 and first["items"] == 3
    assert first["sessions"] == 2 and first["transitions"] == 1 and first["booked"] == 1
    rep2 = ingest_events(driver, path, "rees46", reject_dir=tmp_path, progress=False)
    assert rep2.batches_written == 0 and rep2.batches_skipped == rep.batches_written
    assert graph_counts(driver) == first


def test_side_info_and_market_from_rees46(driver, tmp_path):
    ingest_events(driver, DATA / "rees46_head300.csv", "rees46", reject_dir=tmp_path, progress=False)
    with driver.session() as s:
        rec = s.run(
            "MATCH (i:Item {id: '3900821'}) RETURN i.brand AS b, i.market AS m, i.price_bucket AS p, i.category AS c"
        ).single()
    assert rec["b"] == "aqua" and rec["m"] == "appliances" and rec["p"] == "32-64" and rec["c"] == "2053013552326770905"


@pytest.mark.parametrize(
    "fmt,path,rows",
    [
        ("rees46", "rees46_head300.csv", 300),
        ("taobao", "taobao_300.csv", 300),
        ("movielens", "ml_ratings_300.csv", 300),
    ],
)
def test_real_formats_parse_every_row(fmt, path, rows, tmp_path):
    sink = RejectSink(DATA / path, tmp_path / "r.csv")
    events = list(read_events(DATA / path, fmt, sink))
    assert len(events) == rows and sink.count == 0
    assert all(isinstance(e.ts, int) and e.ts > 0 for e in events)


def test_movielens_rating_threshold(tmp_path):
    p = write_lines(tmp_path / "r.csv", ["userId,movieId,rating,timestamp", "1,10,4.0,964982703", "1,11,3.5,964982704"])
    ev = list(read_events(p, "movielens", RejectSink(p, None)))
    assert [e.event_type for e in ev] == ["rated_high", "rated_low"]


def test_wrong_header_names_the_file(tmp_path):
    p = write_lines(tmp_path / "x.csv", ["a,b,c", "1,2,3"])
    with pytest.raises(IngestError, match=r"x\.csv:1: not a REES46 header"):
        list(read_events(p, "rees46", RejectSink(p, None)))


def test_generic_mapping_and_item_catalog(driver, tmp_path):
    ev = write_lines(
        tmp_path / "ev.csv",
        [
            "cust,sku,act,when",
            "a,x1,buy,2020-01-01T00:00:00",
            "a,x2,click,2020-01-01T00:05:00",
            "b,x1,zap,2020-01-01T00:05:00",
        ],
    )
    mapping = ColumnMapping.parse("user=cust,item=sku,event=act,ts=when", "buy=purchase,click=view")
    rep = ingest_events(driver, ev, "generic", mapping=mapping, reject_dir=tmp_path, progress=False)
    assert (rep.lines_ok, rep.rejected) == (2, 1)
    cat = write_lines(tmp_path / "items.csv", ["sku,cat,shop,price", "x1,c1,s1,9.5", "x2,c2,s2,bad"])
    rep = ingest_items(
        driver,
        cat,
        "generic",
        mapping=ColumnMapping.parse("item=sku,category=cat,shop=shop,price=price"),
        reject_dir=tmp_path,
        progress=False,
    )
    assert (rep.lines_ok, rep.rejected) == (1, 1)
    with driver.session() as s:
        assert s.run("MATCH (i:Item {id: 'x1'}) RETURN i.shop, i.price_bucket").values() == [["s1", "8-16"]]


def test_generic_click_log_with_session_ids_and_no_users(driver, tmp_path):
    """A RecSys-2015-style click log: session id, time, item; no user, no event type, no side info."""
    ev = write_lines(
        tmp_path / "clicks.csv",
        [
            "session_id,timestamp,item_id",
            "s1,2014-04-07T10:51:09,214536502",
            "s1,2014-04-07T10:54:09,214536500",
            "s1,2014-04-07T10:54:46,214536506",
            "s2,2014-04-07T10:57:00,214536500",
            "s2,2014-04-07T10:58:00,214536506",
            "s2,not-a-time,214536506",
            ",2014-04-07T10:58:00,214536506",
        ],
    )
    mapping = ColumnMapping.parse("session=session_id,item=item_id,ts=timestamp")
    rep = ingest_events(driver, ev, "generic", mapping=mapping, reject_dir=tmp_path, progress=False)
    assert (rep.lines_ok, rep.rejected) == (5, 2)
    rejects = (tmp_path / "clicks.csv.rejects.csv").read_text()
    assert "time" in rejects and "session" in rejects
    with driver.session() as s:
        sessions = s.run("MATCH (u:User)-[:HAS_SESSION]->(x:Session) RETURN u.id, x.items ORDER BY u.id").values()
        trans = s.run("MATCH (a)-[t:TRANSITION]->(b) RETURN a.id, b.id, t.weight ORDER BY a.id, b.id").values()
    assert sessions == [["s1", ["214536502", "214536500", "214536506"]], ["s2", ["214536500", "214536506"]]]
    assert trans == [["214536500", "214536506", 2], ["214536502", "214536500", 1]]
    # again: nothing doubles
    rep = ingest_events(driver, ev, "generic", mapping=mapping, reject_dir=tmp_path, progress=False)
    with driver.session() as s:
        assert s.run("MATCH ()-[t:TRANSITION]->() RETURN sum(t.weight)").single()[0] == 3


@pytest.mark.parametrize(
    "spec", ["item=item_id,ts=timestamp", "user=session_id,session=session_id,item=item_id,ts=timestamp"]
)
def test_generic_needs_one_of_user_or_session(tmp_path, spec):
    ev = write_lines(tmp_path / "clicks.csv", ["session_id,timestamp,item_id", "s1,2014-04-07T10:51:09,1"])
    with pytest.raises(IngestError, match="exactly one of 'user=<column>' or 'session=<column>'"):
        list(read_events(ev, "generic", RejectSink(ev, None), mapping=ColumnMapping.parse(spec)))


@pytest.mark.parametrize("fmt,path", [("rees46", "rees46_head300.csv"), ("taobao", "taobao_300.csv")])
def test_event_log_as_item_catalog_adds_items_without_events(driver, tmp_path, fmt, path):
    infos = list(read_items(DATA / path, fmt, RejectSink(DATA / path, None)))
    assert len(infos) == 300  # one per row: the side info of that row's item
    rep = ingest_items(driver, DATA / path, fmt, reject_dir=tmp_path, progress=False)
    assert rep.rejected == 0
    with driver.session() as s:
        n_items = s.run("MATCH (i:Item) RETURN count(i)").single()[0]
        assert n_items == len({i.item for i in infos})
        assert s.run("MATCH ()-[r:ENGAGED|TRANSITION]->() RETURN count(r)").single()[0] == 0
        assert s.run("MATCH (n:User|Session) RETURN count(n)").single()[0] == 0
        if fmt == "rees46":  # same side info as the event ingest: market from category_code
            rec = s.run("MATCH (i:Item {id: '3900821'}) RETURN i.brand, i.market, i.price_bucket").single()
            assert list(rec) == ["aqua", "appliances", "32-64"]
        else:
            assert s.run("MATCH (i:Item) WHERE i.category IS NULL RETURN count(i)").single()[0] == 0


def test_movielens_movies_catalog(driver, tmp_path):
    rep = ingest_items(driver, DATA / "ml_movies_200.csv", "movielens-movies", reject_dir=tmp_path, progress=False)
    assert rep.lines_ok == 199 and rep.rejected == 0
    with driver.session() as s:
        assert s.run("MATCH (i:Item {id: '1'}) RETURN i.category").single()[0] == "Adventure"


def test_session_cut_at_30_minutes():
    users = np.array(["u", "u", "u", "u", "v"])
    ts = np.array([0, 1800, 3601, 3602, 3603])  # gap of exactly 30 min stays; 1801 s cuts
    assert session_ids(users, ts, 1800).tolist() == [0, 0, 1, 1, 2]


def test_derived_rows_transitions_and_booked():
    from graphrecall.ingest.formats import Event

    ev = [
        Event("u", "a", "view", 0, 1),
        Event("u", "a", "view", 10, 2),
        Event("u", "b", "view", 20, 3),
        Event("u", "b", "purchase", 30, 4),
        Event("u", "a", "view", 40, 5),
        Event("u", "c", "view", 4000, 6),
    ]
    rows = derive_rows(ev)
    assert [s["items"] for s in rows.sessions] == [["a", "b", "a"], ["c"]]
    assert rows.sessions[0]["booked"] == "b" and rows.sessions[1]["booked"] is None
    assert {(t["src"], t["dst"]): t["weight"] for t in rows.transitions} == {("a", "b"): 1, ("b", "a"): 1}


@contextmanager
def killed_at_batch(monkeypatch, n: int):
    """The ingest 'dies' (KeyboardInterrupt) on its ``n``-th batch write; the writer is restored after."""
    import graphrecall.ingest.writer as w

    real, calls = w._write_batch, {"n": 0}

    def flaky(tx, *a, **kw):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt("simulated kill")
        return real(tx, *a, **kw)

    monkeypatch.setattr(w, "_write_batch", flaky)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(w, "_write_batch", real)


def test_resume_after_failure_mid_file_equals_clean_run(driver, tmp_path, monkeypatch):
    path = DATA / "taobao_300.csv"
    ingest_events(driver, path, "taobao", reject_dir=tmp_path, batch_size=50, progress=False)
    clean = graph_fingerprint(driver)
    from conftest import wipe

    wipe(driver)
    with killed_at_batch(monkeypatch, 4):  # one writer: exactly three batches committed
        ingest_events(driver, path, "taobao", reject_dir=tmp_path, batch_size=50, progress=False, workers=1)
    partial = graph_fingerprint(driver)
    assert partial != clean
    rep = ingest_events(driver, path, "taobao", reject_dir=tmp_path, batch_size=50, progress=False)
    assert rep.batches_skipped == 3
    assert graph_fingerprint(driver) == clean


def test_concurrent_writers_give_the_one_writer_graph_and_batches_and_resume(driver, tmp_path, monkeypatch):
    """Two or three write transactions at a time: the graph and the committed batches (keys, rows) of one
    writer, and an ingest killed with batches in flight resumes to it."""
    from conftest import wipe

    path = DATA / "rees46_head300.csv"
    markers = "MATCH (b:IngestBatch) RETURN b.key, b.rows, b.layout ORDER BY b.key"
    one = ingest_events(driver, path, "rees46", reject_dir=tmp_path, batch_size=7, progress=False, workers=1)
    with driver.session() as s:
        clean, batches = graph_fingerprint(driver), s.run(markers).values()
    assert one.batches_written == len(batches) > 20 and {b[2] for b in batches} == {2}
    for workers in (2, 3):
        wipe(driver)
        rep = ingest_events(driver, path, "rees46", reject_dir=tmp_path, batch_size=7, progress=False, workers=workers)
        with driver.session() as s:
            assert rep.batches_written == one.batches_written and s.run(markers).values() == batches
        assert graph_fingerprint(driver) == clean
    wipe(driver)
    mid_engaged = sum(":items:" in b[0] for b in batches) + 6
    with killed_at_batch(monkeypatch, mid_engaged):
        ingest_events(driver, path, "rees46", reject_dir=tmp_path, batch_size=7, progress=False, workers=2)
    assert graph_fingerprint(driver) != clean
    rep = ingest_events(driver, path, "rees46", reject_dir=tmp_path, batch_size=7, progress=False, workers=2)
    assert 0 < rep.batches_skipped < one.batches_written
    assert graph_fingerprint(driver) == clean


def test_file_begun_before_batch_lanes_resumes_with_its_own_cut(driver, tmp_path, monkeypatch):
    """Markers without a layout were cut in row order (layout 1); a resume by this version keeps that cut,
    so the committed batches are recognised and nothing is counted twice."""
    from conftest import wipe

    import graphrecall.ingest.writer as w

    path = DATA / "rees46_head300.csv"
    ingest_events(driver, path, "rees46", reject_dir=tmp_path, batch_size=7, progress=False)
    clean = graph_fingerprint(driver)
    with driver.session() as s:
        kill_at = s.run("MATCH (b:IngestBatch {kind: 'items'}) RETURN count(b)").single()[0] + 6  # mid-engaged
    wipe(driver)
    with monkeypatch.context() as m:
        m.setattr(w, "BATCH_LAYOUT", 1)
        with killed_at_batch(monkeypatch, kill_at):
            ingest_events(driver, path, "rees46", reject_dir=tmp_path, batch_size=7, progress=False, workers=1)
    with driver.session() as s:  # as an older version wrote them
        s.run("MATCH (b:IngestBatch) REMOVE b.layout").consume()
    rep = ingest_events(driver, path, "rees46", reject_dir=tmp_path, batch_size=7, progress=False)
    assert rep.batches_skipped == kill_at - 1
    assert graph_fingerprint(driver) == clean


def test_lanes_that_run_together_share_no_item_and_engaged_keeps_user_order():
    from graphrecall.ingest.writer import ITEM_PARTS, kind_batches

    rows = [{"user": f"u{u:02d}", "item": f"i{i}", "type": "view"} for u in range(30) for i in range(u % 7, 40, 3)]
    trans = [{"src": f"i{a}", "dst": f"i{b}", "weight": 1} for a in range(40) for b in range(40) if (a * b) % 3 == 1]
    for kind, data, ends in (("engaged", rows, ("item",)), ("transitions", trans, ("src", "dst"))):
        batches = kind_batches(kind, data, 16)
        assert [b.index for b in batches] == list(range(len(batches)))
        assert sorted(map(str, (r for b in batches for r in b.rows))) == sorted(map(str, data))
        items: dict[tuple, set] = {}
        for b in batches:
            items.setdefault((b.stage, b.lane), set()).update(r[e] for r in b.rows for e in ends)
            assert len(b.rows) <= 16
            if kind == "engaged":
                assert [r["user"] for r in b.rows] == sorted(r["user"] for r in b.rows)
        assert len({stage for stage, _ in items}) == (1 if kind == "engaged" else ITEM_PARTS)
        for (stage, lane), seen in items.items():  # lanes of one stage never share an item
            others = set().union(*(v for (s, ln), v in items.items() if s == stage and ln != lane))
            assert not seen & others
        pairs = ITEM_PARTS * (ITEM_PARTS - 1) // 2  # transitions: a lane per part, and one per pair of parts
        assert len(items) == ITEM_PARTS + (0 if kind == "engaged" else pairs)
    old = kind_batches("engaged", rows, 16, layout=1)  # rows cut in order, one lane
    assert [r for b in old for r in b.rows] == rows and {(b.stage, b.lane) for b in old} == {(0, 0)}
    assert [b.lane for b in kind_batches("sessions", rows, 16)] == list(range(-(-len(rows) // 16)))


def test_resume_with_other_batch_size_is_refused(driver, tmp_path):
    path = DATA / "taobao_300.csv"
    ingest_events(driver, path, "taobao", reject_dir=tmp_path, batch_size=50, progress=False)
    with pytest.raises(ValueError, match="--batch-size 50"):
        ingest_events(driver, path, "taobao", reject_dir=tmp_path, batch_size=40, progress=False)


@pytest.mark.slow
def test_sigkill_mid_ingest_then_resume_equals_clean_run(driver, neo4j_server, tmp_path):
    """A real ``kill -9`` of the ingest CLI after some committed batches."""
    path = tmp_path / "big.csv"
    src = Path(__file__).parents[1].parent / "shared/data/taobao/UserBehavior_tail10k_HotItems.csv"
    if not src.exists():
        src = DATA / "taobao_300.csv"
    path.write_bytes(src.read_bytes())
    server, settings = neo4j_server
    env = dict(
        os.environ,
        GRAPHRECALL_NEO4J_URI=settings.uri,
        GRAPHRECALL_NEO4J_USER=settings.user,
        GRAPHRECALL_NEO4J_PASSWORD=settings.password,
    )
    cmd = [
        sys.executable,
        "-m",
        "graphrecall",
        "-q",
        "ingest",
        "events",
        str(path),
        "--format",
        "taobao",
        "--batch-size",
        "20",
        "--reject-dir",
        str(tmp_path),
    ]
    subprocess.run(cmd, env=env, check=True)
    clean = graph_fingerprint(driver)
    from conftest import wipe

    wipe(driver)
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.time() + 120
    n = 0
    while time.time() < deadline:
        with driver.session() as s:
            n = s.run("MATCH (b:IngestBatch) RETURN count(b)").single()[0]
        if n >= 5 or proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "ingest finished before it could be killed; use a larger file"
    subprocess.run(cmd, env=env, check=True)
    assert graph_fingerprint(driver) == clean


def item_props(driver) -> list:
    with driver.session() as s:
        return s.run("MATCH (i:Item) RETURN i.id, properties(i) ORDER BY i.id").values()


@pytest.mark.parametrize(
    "path,fmt",
    [
        (DATA / "taobao_300.csv", "taobao"),
        (DATA / "rees46_head300.csv", "rees46"),
        (DATA / "ml_ratings_300.csv", "movielens"),
    ],
)
def test_ingest_sorted_on_disk_equals_one_piece(driver, tmp_path, path, fmt):
    """A file larger than --max-events-in-memory, kept on disk and written in user groups,
    gives exactly the graph of the in-memory ingest (sessions, counts, transitions, side info)."""
    one = ingest_events(driver, path, fmt, reject_dir=tmp_path, batch_size=50, progress=False)
    clean, props = graph_fingerprint(driver), item_props(driver)
    from conftest import wipe

    wipe(driver)
    spilled_dir = tmp_path / "spill"
    spilled_dir.mkdir()
    rep = ingest_events(
        driver,
        path,
        fmt,
        reject_dir=tmp_path,
        batch_size=50,
        progress=False,
        max_events_in_memory=37,
        spill_dir=spilled_dir,
    )
    assert rep.lines_ok == one.lines_ok > 37 and rep.rows["sessions"] == one.rows["sessions"]
    assert graph_fingerprint(driver) == clean and item_props(driver) == props
    assert list(spilled_dir.iterdir()) == []  # the on-disk runs are removed
    again = ingest_events(
        driver,
        path,
        fmt,
        reject_dir=tmp_path,
        batch_size=50,
        progress=False,
        max_events_in_memory=37,
        spill_dir=spilled_dir,
    )
    assert again.batches_written == 0 and graph_fingerprint(driver) == clean


def test_file_longer_than_the_memory_cap_with_events_that_fit_is_one_piece(driver, tmp_path):
    """A file with more lines than --max-events-in-memory but fewer good events is streamed by rows and not
    spilled: the whole-file (columnar) reader's graph and rejects, and batches a default re-ingest skips."""
    from conftest import wipe

    src = (DATA / "rees46_head300.csv").read_text(encoding="utf-8").splitlines()
    path = write_lines(tmp_path / "padded.csv", src + [BAD["bad time"], BAD["unknown event"]] * 20)
    cap = len(src) + 39  # one line short of the file
    whole = ingest_events(driver, path, "rees46", reject_dir=tmp_path, batch_size=50, progress=False)
    clean, rejects = graph_fingerprint(driver), Path(whole.reject_path).read_bytes()
    wipe(driver)
    streamed = ingest_events(
        driver, path, "rees46", reject_dir=tmp_path, batch_size=50, progress=False, max_events_in_memory=cap
    )
    assert streamed.lines_ok == whole.lines_ok < cap and streamed.rejected == whole.rejected >= 40
    assert graph_fingerprint(driver) == clean and Path(streamed.reject_path).read_bytes() == rejects
    again = ingest_events(driver, path, "rees46", reject_dir=tmp_path, batch_size=50, progress=False)
    assert again.batches_written == 0 and graph_fingerprint(driver) == clean


def test_resume_sorted_on_disk_after_failure_and_other_grouping_refused(driver, tmp_path, monkeypatch):
    path = DATA / "taobao_300.csv"
    ingest_events(driver, path, "taobao", reject_dir=tmp_path, batch_size=20, progress=False, max_events_in_memory=60)
    clean = graph_fingerprint(driver)
    from conftest import wipe

    wipe(driver)
    with killed_at_batch(monkeypatch, 9):
        ingest_events(
            driver, path, "taobao", reject_dir=tmp_path, batch_size=20, progress=False, max_events_in_memory=60
        )
    with pytest.raises(ValueError, match="--max-events-in-memory 60"):
        ingest_events(
            driver, path, "taobao", reject_dir=tmp_path, batch_size=20, progress=False, max_events_in_memory=70
        )
    with pytest.raises(ValueError, match="in one piece"):
        wipe(driver)
        ingest_events(driver, path, "taobao", reject_dir=tmp_path, batch_size=20, progress=False)
        ingest_events(
            driver, path, "taobao", reject_dir=tmp_path, batch_size=20, progress=False, max_events_in_memory=60
        )
    wipe(driver)
    with killed_at_batch(monkeypatch, 9):
        ingest_events(
            driver,
            path,
            "taobao",
            reject_dir=tmp_path,
            batch_size=20,
            progress=False,
            max_events_in_memory=60,
            workers=1,
        )
    rep = ingest_events(
        driver, path, "taobao", reject_dir=tmp_path, batch_size=20, progress=False, max_events_in_memory=60
    )
    assert rep.batches_skipped == 8
    assert graph_fingerprint(driver) == clean


def _groups_by_sorting(events: list[tuple], size: int) -> list[list[tuple]]:
    """The oracle: every event sorted by (user, ts, line), cut into groups of whole users, a group closed by the
    user that brings it to ``size`` events or more (what the on-disk merge sort of earlier versions gave)."""
    groups, group = [], []
    for t in sorted(events):
        if len(group) >= size and t[0] != group[-1][0]:
            groups.append(group)
            group = []
        group.append(t)
    return groups + ([group] if group else [])


def test_user_groups_equal_sorting_every_event_and_cutting_at_whole_users(tmp_path):
    from graphrecall.ingest.sessions import columns_frame
    from graphrecall.ingest.spill import UserGroups

    rng = np.random.default_rng(0)
    users = ["u10", "u9", "u1", "é", "z", "Z", "u100"] + [f"u{k}" for k in range(20, 40)]  # str order, not numbers
    events = [
        (
            users[rng.integers(len(users))],
            int(rng.integers(100)),
            line,
            f"i{line % 5}",
            ("view", "cart", "purchase")[line % 3],
        )
        for line in range(2, 902)
    ]

    def frame(chunk):
        u, ts, line, item, typ = zip(*chunk)
        return columns_frame(u, item, typ, ts, line)

    def as_tuples(f):
        return sorted(zip(f["user"], f["ts"].tolist(), f["line"].tolist(), f["item"], f["type"]))

    for size in (1, 64, 100, 899, 900):
        spill = tmp_path / f"spill{size}"
        spill.mkdir()
        with UserGroups(size, spill) as groups:
            for start in range(0, len(events), 37):
                groups.add(frame(events[start : start + 37]))
            assert groups.count == 900 and groups.spilled == (size <= 900)
            got = [as_tuples(g) for g in groups.groups()]
        assert got == _groups_by_sorting(events, size)
        assert list(spill.iterdir()) == []  # the files are removed
    with UserGroups(901) as groups:
        groups.add(frame(events))
        assert not groups.spilled and as_tuples(groups.frame()) == sorted(events)
    with pytest.raises(ValueError, match=">= 1"):
        UserGroups(0)


def _session_rows_one_by_one(df, gap_seconds=1800, purchase_type="purchase"):
    """session_rows as it was written first: a loop over sessions (the oracle for the vectorised one)."""
    from graphrecall.ingest.sessions import session_ids

    df = df.sort_values(["user", "ts", "line"], kind="stable")
    users, items, types, ts = (df[c].to_numpy() for c in ("user", "item", "type", "ts"))
    sid = session_ids(users, ts, gap_seconds)
    bounds = np.flatnonzero(np.diff(sid)) + 1
    out = []
    for s, e in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(df)]])):
        seq = items[s:e]
        keep = np.ones(len(seq), dtype=bool)
        keep[1:] = seq[1:] != seq[:-1]
        bought = seq[types[s:e] == purchase_type]
        out.append(
            {
                "id": f"{users[s]}:{int(ts[s])}",
                "user": str(users[s]),
                "start_ts": int(ts[s]),
                "end_ts": int(ts[e - 1]),
                "items": [str(x) for x in seq[keep]],
                "booked": str(bought[-1]) if len(bought) else None,
                "n_events": int(e - s),
                "counts": [int(x) for x in np.diff(np.r_[np.flatnonzero(keep), len(seq)])],
            }
        )
    return out


@pytest.mark.parametrize("seed", range(4))
def test_session_rows_equal_a_loop_over_sessions(seed):
    import pandas as pd

    from graphrecall.ingest.sessions import session_rows

    rng = np.random.default_rng(seed)
    n = 3000
    df = pd.DataFrame(
        {
            "user": [f"u{u}" for u in rng.integers(0, 60, n)],
            "item": [f"i{i}" for i in rng.integers(0, 6, n)],
            "type": rng.choice(["view", "view", "cart", "purchase"], n),
            "ts": np.cumsum(rng.choice([0, 1, 60, 1799, 1800, 1801, 7200], n)),
            "line": np.arange(n) + 2,
        }
    )
    df = df.sample(frac=1.0, random_state=seed)  # file order is not (user, ts) order
    got = session_rows(df)
    want = _session_rows_one_by_one(df)
    assert got == want
    assert (
        any(r["booked"] for r in got)
        and any(r["booked"] is None for r in got)
        and any(max(r["counts"]) > 1 for r in got)
    )
    assert session_rows(df.iloc[:0]) == []
    # transitions: the consecutive items of each session, counted, in (src, dst) order
    pairs: dict = {}
    for r in want:
        for a, b in zip(r["items"][:-1], r["items"][1:]):
            pairs[a, b] = pairs.get((a, b), 0) + 1
    rows = derive_rows(df, items=[])
    assert rows.transitions == [{"src": a, "dst": b, "weight": w} for (a, b), w in sorted(pairs.items())]
    assert rows.sessions == sorted(want, key=lambda r: r["id"])


def test_run_ahead_keeps_order_computes_one_step_ahead_and_raises_a_steps_error():
    import time

    from graphrecall.ingest.writer import run_ahead

    started: list[int] = []

    def steps(n):
        for k in range(n):
            started.append(k)
            yield k

    got = []
    for k in run_ahead(steps(6)):
        time.sleep(0.05)  # time enough for the thread to run ahead as far as it may
        assert started == list(range(min(k + 2, 6)))  # the caller's step and the next one, no more
        got.append(k)
    assert got == list(range(6))

    started.clear()
    ahead = run_ahead(steps(100))
    assert next(ahead) == 0
    ahead.close()  # the caller stops: so does the thread
    assert started == [0, 1]

    def failing():
        yield "a"
        raise RuntimeError("step 2 failed")

    seen = []
    with pytest.raises(RuntimeError, match="step 2 failed"):
        for x in run_ahead(failing()):
            seen.append(x)
    assert seen == ["a"]


@pytest.mark.parametrize("path,fmt", [(DATA / "taobao_300.csv", "taobao"), (DATA / "rees46_head300.csv", "rees46")])
def test_the_graph_holds_every_derived_row_in_small_batches(driver, tmp_path, path, fmt):
    """Batches of 4 rows, most without a booked item: every session, engagement and transition is written,
    with its booking (a batch whose list of booked items was empty once wrote nothing)."""
    from conftest import wipe

    wipe(driver)
    with RejectSink(path, tmp_path / "r.csv") as sink:
        rows = derive_rows(list(read_events(path, fmt, sink)))
    ingest_events(driver, path, fmt, reject_dir=tmp_path, batch_size=4, progress=False)
    booked = [r for r in rows.sessions if r["booked"] is not None]
    assert 0 < len(booked) < len(rows.sessions) / 3
    with driver.session() as s:
        got = s.run(
            "MATCH (s:Session)<-[:HAS_SESSION]-(u:User {id: s.user}) "
            "OPTIONAL MATCH (s)-[:BOOKED]->(b:Item) RETURN s.id, b.id ORDER BY s.id"
        ).values()
        engaged = s.run("MATCH ()-[e:ENGAGED]->() RETURN count(e), sum(e.count)").single().values()
        trans = s.run("MATCH ()-[t:TRANSITION]->() RETURN count(t), sum(t.weight)").single().values()
    assert got == [[r["id"], r["booked"]] for r in rows.sessions]
    assert engaged == [len(rows.engaged), sum(r["count"] for r in rows.engaged)]
    assert trans == [len(rows.transitions), sum(r["weight"] for r in rows.transitions)]
