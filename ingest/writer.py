"""Write derived rows to Neo4j in checkpointed, idempotent batches.

Each batch is one ``execute_write`` transaction that writes its rows (``KIND_PARAMS``) and
creates an ``(:IngestBatch {key})`` marker, the key being
``<sha256 of the file>:<kind>:<batch index>``. A batch whose marker exists is
skipped, so:

* re-ingesting the same file changes no counts;
* an ingest killed mid-file resumes where it stopped (committed batches are
  skipped; the ones in flight were rolled back) and ends with the same graph as
  one clean run.

Batches of one kind run ``workers`` at a time, so the server works on two cores instead of one, in lanes
(:func:`kind_batches`) cut so that two transactions running together seldom wait for each other in a
circle. A deadlock that still happens is retried by the driver, the whole batch with its marker.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..common.progress import progress_bar
from .columnar import BLOCK_BYTES, READ_THREADS, iter_event_frames, read_frame
from .formats import ColumnMapping, ItemInfo, RejectSink, read_items
from .sessions import DEFAULT_SESSION_GAP, DerivedRows, derive_rows, derive_steps
from .spill import UserGroups

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)
T = TypeVar("T")

Q_ITEMS = """
UNWIND $rows AS r
MERGE (i:Item {id: r.id})
SET i += r.props
"""

# Each batch first finds or creates its distinct nodes, once each (users, then items, each list sorted), and
# its rows point at them by position: a row is columns of lists, not a map per row. On the 1M-event log
# this took ENGAGED from 10.1-10.4 s to 6.7-8.2 s against a MERGE of both nodes per row.
Q_ENGAGED = """
UNWIND $users AS uid
MERGE (u:User {id: uid})
WITH collect(u) AS us
UNWIND $items AS iid
MERGE (i:Item {id: iid})
WITH us, collect(i) AS its
UNWIND range(0, size($u) - 1) AS k
WITH us[$u[k]] AS u, its[$i[k]] AS i, $type[k] AS type, $count[k] AS count, $first_ts[k] AS first_ts,
     $last_ts[k] AS last_ts
MERGE (u)-[e:ENGAGED {type: type}]->(i)
ON CREATE SET e.count = count, e.first_ts = first_ts, e.last_ts = last_ts
ON MATCH SET e.count = e.count + count,
             e.first_ts = CASE WHEN first_ts < e.first_ts THEN first_ts ELSE e.first_ts END,
             e.last_ts = CASE WHEN last_ts > e.last_ts THEN last_ts ELSE e.last_ts END
"""

Q_SESSIONS = """
UNWIND $users AS uid
MERGE (u:User {id: uid})
WITH collect(u) AS us
CALL {  // a batch may have no booked item: a subquery's collect still gives one row
  UNWIND $items AS iid
  MERGE (b:Item {id: iid})
  RETURN collect(b) AS bs
}
UNWIND range(0, size($id) - 1) AS k
MERGE (s:Session {id: $id[k]})
ON CREATE SET s.user = $users[$u[k]], s.start_ts = $start_ts[k], s.end_ts = $end_ts[k], s.items = $session_items[k],
              s.booked = $booked[k], s.n_events = $n_events[k], s.counts = $counts[k]
WITH bs, s, k, us[$u[k]] AS u
MERGE (u)-[:HAS_SESSION]->(s)
WITH bs, s, $b[k] AS at WHERE at >= 0
WITH s, bs[at] AS b ORDER BY at  // the booked items in id order, as every batch locks them
MERGE (s)-[:BOOKED]->(b)
"""

Q_TRANSITIONS = """
UNWIND $items AS iid
MERGE (i:Item {id: iid})
WITH collect(i) AS its
UNWIND range(0, size($a) - 1) AS k
WITH its[$a[k]] AS a, its[$b[k]] AS b, $weight[k] AS weight
MERGE (a)-[t:TRANSITION]->(b)
ON CREATE SET t.weight = weight
ON MATCH SET t.weight = t.weight + weight
"""


def _positions(values: list) -> tuple[list, list[int]]:
    """``(the distinct values sorted, each value's position in that list)``; None is -1 and not listed."""
    distinct = sorted({v for v in values if v is not None})
    at = {v: k for k, v in enumerate(distinct)}
    return distinct, [-1 if v is None else at[v] for v in values]


def items_params(rows: list[dict]) -> dict:
    return {"rows": rows}


def engaged_params(rows: list[dict]) -> dict:
    users, u = _positions([r["user"] for r in rows])
    items, i = _positions([r["item"] for r in rows])
    return {
        "users": users,
        "u": u,
        "items": items,
        "i": i,
        "type": [r["type"] for r in rows],
        "count": [r["count"] for r in rows],
        "first_ts": [r["first_ts"] for r in rows],
        "last_ts": [r["last_ts"] for r in rows],
    }


def sessions_params(rows: list[dict]) -> dict:
    users, u = _positions([r["user"] for r in rows])
    booked = [r["booked"] for r in rows]
    items, b = _positions(booked)
    return {
        "users": users,
        "u": u,
        "items": items,
        "b": b,
        "booked": booked,
        "id": [r["id"] for r in rows],
        "start_ts": [r["start_ts"] for r in rows],
        "end_ts": [r["end_ts"] for r in rows],
        "session_items": [r["items"] for r in rows],
        "n_events": [r["n_events"] for r in rows],
        "counts": [r["counts"] for r in rows],
    }


def transitions_params(rows: list[dict]) -> dict:
    items, ab = _positions([r["src"] for r in rows] + [r["dst"] for r in rows])
    return {"items": items, "a": ab[: len(rows)], "b": ab[len(rows) :], "weight": [r["weight"] for r in rows]}


Q_MARK = """
CREATE (:IngestBatch {key: $key, file_sha: $sha, kind: $kind, index: $index, batch_size: $batch_size,
                      grouping: $grouping, layout: $layout, rows: $n, source: $source, at: datetime()})
"""

DEFAULT_MAX_EVENTS = 2_000_000
DEFAULT_WORKERS = 2  # write transactions at a time: the server's work spreads over this machine's two cores
BATCH_LAYOUT = 2  # how rows are cut into batches; markers written before it existed count as layout 1
ITEM_PARTS = 4  # a power of two: transitions pair parts by xor
LINE_BYTES = 128  # about a REES46 line: past the memory cap, the blocks read at once hold about cap x this

KIND_QUERIES = (("items", Q_ITEMS), ("engaged", Q_ENGAGED), ("sessions", Q_SESSIONS), ("transitions", Q_TRANSITIONS))
KIND_PARAMS = {
    "items": items_params,
    "engaged": engaged_params,
    "sessions": sessions_params,
    "transitions": transitions_params,
}  # a batch's rows -> its query's parameters


@dataclass
class IngestReport:
    path: str
    sha256: str
    lines_ok: int = 0
    rejected: int = 0
    reject_path: str | None = None
    reject_reasons: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)
    batches_written: int = 0
    batches_skipped: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.lines_ok / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        s = (
            f"{self.path}: {self.lines_ok} rows ok, {self.rejected} rejected, "
            f"{self.batches_written} batches written, {self.batches_skipped} already present, "
            f"{self.seconds:.1f}s ({self.rate:,.0f} rows/s)"
        )
        if self.rejected:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.reject_reasons.items(), key=lambda kv: -kv[1]))
            s += f"\n  rejects in {self.reject_path} ({reasons})"
        return s


@dataclass(frozen=True)
class Batch:
    index: int  # its number in the kind (its key)
    stage: int  # stages run one after the other
    lane: int  # in a stage, lanes run side by side; the batches of a lane one after the other
    rows: list


def item_part(item: str) -> int:
    """Which of the ``ITEM_PARTS`` parts an item id falls in (its CRC-32, so the same on every run)."""
    return zlib.crc32(item.encode("utf-8")) % ITEM_PARTS


def kind_batches(kind: str, rows: list, batch_size: int, layout: int = BATCH_LAYOUT) -> list[Batch]:
    """One kind's batches, in key order, with their stages and lanes. A relationship's transaction locks both
    its nodes until it commits, so lanes that run side by side take the node locks they share in one order,
    or share none (the server's own relationship-chain locks can still meet, rarely: one retry in 2,000
    batches at 10M events):

    * ``engaged`` (layout 2): one stage, a lane per item part (:func:`item_part`), cut per lane. Two lanes
      share no item; the users they share are locked in row (user) order by both.
    * ``transitions`` (layout 2): a row from part a to part b goes to stage ``a xor b``, lane ``min(a, b)``.
      The lanes of a stage are the pairs {i, i xor stage}, which share no part (stage 0: each part alone).
    * ``sessions``: every batch its own lane. ``Q_SESSIONS`` locks all its users (id order) before the
      booked items (id order).
    * ``items``: every batch its own lane (an item is in one row).
    * ``engaged`` and ``transitions`` in layout 1 (the rows cut in order, as files partly ingested before
      layout 2 were): one lane."""
    if layout >= 2 and kind in ("engaged", "transitions"):
        ends = ("item",) if kind == "engaged" else ("src", "dst")
        part = {i: item_part(i) for i in {r[e] for r in rows for e in ends}}
        groups: dict[tuple[int, int], list] = {}
        for r in rows:
            if kind == "engaged":
                key = (0, part[r["item"]])
            else:
                a, b = part[r["src"]], part[r["dst"]]
                key = (a ^ b, min(a, b))
            groups.setdefault(key, []).append(r)
        out: list[Batch] = []
        for stage, lane in sorted(groups):
            g = groups[stage, lane]
            out.extend(Batch(len(out), stage, lane, g[s : s + batch_size]) for s in range(0, len(g), batch_size))
        return out
    one_lane = kind in ("engaged", "transitions")
    return [
        Batch(i, 0, 0 if one_lane else i, rows[s : s + batch_size])
        for i, s in enumerate(range(0, len(rows), batch_size))
    ]


def batch_key(prefix: str, kind: str, index: int) -> str:
    """The ``(:IngestBatch {key})`` of one batch: ``prefix`` is the file's sha256 (and ``:g<N>`` for a user group)."""
    return f"{prefix}:{kind}:{index}"


def file_digest(path: str | Path) -> tuple[str, int]:
    """``(sha256, lines)`` of a file, a last line without a newline counted too."""
    h, lines, last = hashlib.sha256(), 0, b"\n"
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return h.hexdigest(), lines + (last != b"\n")


def _write_batch(
    tx,
    query: str,
    params: dict,
    n: int,
    key: str,
    sha: str,
    kind: str,
    index: int,
    batch_size: int,
    grouping: int,
    layout: int,
    source: str,
) -> bool:
    """One batch of ``n`` rows (``params``, from ``KIND_PARAMS``) and its marker, unless the marker exists."""
    if tx.run("MATCH (b:IngestBatch {key: $key}) RETURN count(b) AS n", key=key).single()["n"]:
        return False
    tx.run(query, params).consume()
    tx.run(
        Q_MARK,
        key=key,
        sha=sha,
        kind=kind,
        index=index,
        batch_size=batch_size,
        grouping=grouping,
        layout=layout,
        n=n,
        source=source,
    ).consume()
    return True


class GraphWriter:
    """Writes :class:`DerivedRows` for one source file with checkpointed batches, ``workers`` transactions
    at a time (see :func:`kind_batches`; 1 writes them in key order).

    ``grouping`` is 0 when the file's rows were derived in one piece, else the number of events
    per user group (``max_events_in_memory``); batch keys depend on it and on ``batch_size``,
    so a resume must use the same two values, and :meth:`check_resume` says so. It also takes the
    file's batch layout from its committed markers."""

    def __init__(
        self,
        driver,
        database: str = "neo4j",
        batch_size: int = 2000,
        progress: bool = True,
        grouping: int = 0,
        workers: int = DEFAULT_WORKERS,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1 (concurrent write transactions), got {workers}")
        self.driver, self.database, self.batch_size, self.progress = driver, database, batch_size, progress
        self.grouping, self.workers, self.layout = grouping, workers, BATCH_LAYOUT

    def check_resume(self, sha: str, path: str) -> None:
        """Refuse settings that would cut the committed batches of file ``sha`` differently; take their layout."""
        with self.driver.session(database=self.database) as s:
            seen = [
                (r["bs"], r["g"], r["layout"])
                for r in s.run(
                    "MATCH (b:IngestBatch {file_sha: $sha}) "
                    "RETURN DISTINCT b.batch_size AS bs, coalesce(b.grouping, 0) AS g, coalesce(b.layout, 1) AS layout",
                    sha=sha,
                )
            ]
        if seen and {(bs, g) for bs, g, _ in seen} != {(self.batch_size, self.grouping)}:
            bs, g, _ = seen[0]
            how = f"--batch-size {bs}"
            if g != self.grouping:
                how += (
                    f" and --max-events-in-memory {g}"
                    if g
                    else " and a --max-events-in-memory at least the file's event count (it was ingested in one piece)"
                )
            raise ValueError(
                f"{path} was partly ingested with other settings; resume with {how} "
                "so that the committed batches are recognised (otherwise rows would be counted twice)."
            )
        if seen:  # a file begun by an older version keeps its cut, so its committed batches are recognised
            self.layout = min(layout for _, _, layout in seen)

    def write(
        self, rows: DerivedRows, sha: str, source: str, report: IngestReport, part: str | None = None, bar=None
    ) -> IngestReport:
        """Write every kind of ``rows``, one kind after the other; ``part`` (a user group) goes into the batch keys.
        ``bar`` (a progress bar over several calls) gains these rows in its total; without one, the call has
        its own."""
        total = sum(len(getattr(rows, k)) for k, _ in KIND_QUERIES)
        own_bar = bar is None
        if own_bar:
            bar = progress_bar(total=total, unit="rows", desc=f"write {Path(source).name}", enabled=self.progress)
        else:
            bar.total = (bar.total or 0) + total
            bar.refresh()
        prefix = sha if part is None else f"{sha}:{part}"
        lock = threading.Lock()

        def run(session, kind: str, query: str, batch: Batch) -> None:
            wrote = session.execute_write(
                _write_batch,
                query,
                KIND_PARAMS[kind](batch.rows),
                len(batch.rows),
                batch_key(prefix, kind, batch.index),
                sha,
                kind,
                batch.index,
                self.batch_size,
                self.grouping,
                self.layout,
                source,
            )
            with lock:
                if wrote:
                    report.batches_written += 1
                else:
                    report.batches_skipped += 1
                bar.update(len(batch.rows))

        try:
            for kind, query in KIND_QUERIES:
                data = getattr(rows, kind)
                report.rows[kind] = report.rows.get(kind, 0) + len(data)
                stages: dict[int, dict[int, list[Batch]]] = {}
                for b in kind_batches(kind, data, self.batch_size, self.layout):
                    stages.setdefault(b.stage, {}).setdefault(b.lane, []).append(b)
                for stage in sorted(stages):
                    lanes = list(stages[stage].values())
                    if self.workers > 1:  # every other lane runs backwards: two lanes that lock the same users
                        # in the same order meet once in the middle instead of waiting batch after batch
                        lanes = [lane if k % 2 == 0 else lane[::-1] for k, lane in enumerate(lanes)]
                    self._run_lanes(lanes, lambda session, b: run(session, kind, query, b))
        finally:
            if own_bar:
                bar.close()
        return report

    def write_steps(self, steps: Iterable[DerivedRows], sha: str, source: str, report: IngestReport) -> IngestReport:
        """:meth:`write` each of ``steps`` (:func:`ingest.sessions.derive_steps`) under one progress bar, the
        next step derived while this one is written (:func:`run_ahead`): the sessions while the engagements
        are written."""
        bar = progress_bar(unit="rows", desc=f"write {Path(source).name}", enabled=self.progress)
        try:
            for rows in run_ahead(steps):
                self.write(rows, sha, source, report, bar=bar)
                del rows
        finally:
            bar.close()
        return report

    def _run_lanes(self, lanes: list[list[Batch]], work) -> None:
        """Each lane's batches in order, ``workers`` lanes at a time, each in its own session; the first
        error stops the lanes after their current batch and is raised once they have."""
        stop = threading.Event()

        def run_lane(batches: list[Batch]) -> None:
            with self.driver.session(database=self.database) as session:
                for b in batches:
                    if stop.is_set():
                        return
                    work(session, b)

        if self.workers == 1 or len(lanes) <= 1:
            for lane in lanes:
                run_lane(lane)
            return
        with ThreadPoolExecutor(min(self.workers, len(lanes)), thread_name_prefix="graphrecall-write") as pool:
            futures = [pool.submit(run_lane, lane) for lane in lanes]
            try:
                for f in as_completed(futures):
                    f.result()
            except BaseException:
                stop.set()
                raise


def ingest_events(
    driver,
    path: str | Path,
    fmt: str,
    *,
    reject_dir: str | Path | None = None,
    mapping: ColumnMapping | None = None,
    session_gap: int = DEFAULT_SESSION_GAP,
    min_rating: float = 4.0,
    batch_size: int = 2000,
    max_events_in_memory: int = DEFAULT_MAX_EVENTS,
    spill_dir: str | Path | None = None,
    database: str = "neo4j",
    progress: bool = True,
    workers: int = DEFAULT_WORKERS,
) -> IngestReport:
    """Read, validate, sessionise and write one event file. Returns an :class:`IngestReport`.

    Memory is bounded by ``max_events_in_memory``: a larger file is kept on disk as integer codes (in
    ``spill_dir``, default the system temp dir) and written in groups of whole users
    (:class:`ingest.spill.UserGroups`), which gives the same graph as one piece. Keep the value when resuming a killed ingest.
    ``workers`` write transactions run at a time (any value gives the same graph and batches).

    A file of at most ``max_events_in_memory`` lines is read whole (:func:`ingest.columnar.read_frame`); a
    longer one is streamed into :class:`~ingest.spill.UserGroups` frame by frame (:func:`ingest.columnar.iter_event_frames`). Both
    give the same rows."""
    path, t0 = Path(path), time.perf_counter()
    report, reject_path, lines = _start_report(path, reject_dir, f"a {fmt} event log")
    if lines <= max_events_in_memory:  # every event is a line: the whole file fits
        writer = GraphWriter(driver, database, batch_size, progress, workers=workers)
        writer.check_resume(report.sha256, report.path)
        frame, items = read_file(
            path, fmt, report, reject_path, mapping=mapping, min_rating=min_rating, progress=progress
        )
        writer.write_steps(derive_steps(frame, session_gap, items=items), report.sha256, report.path, report)
        return _done(report, t0)
    side: dict[str, dict] = {}
    with UserGroups(max_events_in_memory, spill_dir) as events:
        with RejectSink(path, reject_path) as sink:
            bar = progress_bar(unit="rows", desc=f"read {path.name}", enabled=progress)
            # READ_THREADS + 1 blocks of together about the cap's events or fewer: the reader's arrays take some
            # ten times a block's bytes
            block = min(BLOCK_BYTES, max(1 << 16, LINE_BYTES * max_events_in_memory // (READ_THREADS + 1)))
            for f in iter_event_frames(
                path,
                fmt,
                sink,
                side,
                mapping=mapping,
                min_rating=min_rating,
                block_bytes=block,
                rows_per_frame=min(100_000, max_events_in_memory),
            ):
                events.add(f)
                bar.update(len(f))
            bar.close()
        _report_rejects(report, sink, events.count, reject_path)
        items = [{"id": i, "props": side.pop(i)} for i in sorted(side)]
        # spilled: one bar over all events below instead of a bar per user group
        writer = GraphWriter(
            driver,
            database,
            batch_size,
            progress and not events.spilled,
            grouping=max_events_in_memory if events.spilled else 0,
            workers=workers,
        )
        writer.check_resume(report.sha256, report.path)
        if not events.spilled:
            writer.write_steps(
                derive_steps(events.frame(), session_gap, items=items), report.sha256, report.path, report
            )
        else:
            logger.info("%s: %d events on disk; writing in groups of whole users", path, events.count)
            writer.write(DerivedRows(items, [], [], []), report.sha256, report.path, report)
            del items
            bar = progress_bar(total=events.count, unit="events", desc=f"write {path.name}", enabled=progress)

            def group_steps() -> Iterator[tuple[str, DerivedRows, int]]:
                """(part, rows, events finished): each group's engagements, then its sessions."""
                for g, group in enumerate(events.groups()):
                    n, steps = len(group), derive_steps(group, session_gap, items=[])
                    del group  # the steps hold it until the sessions are derived
                    next(steps)  # no items: written above
                    yield f"g{g}", next(steps), 0
                    yield f"g{g}", next(steps), n

            try:  # a group's sessions, and the next group's engagements, are derived while the step before is written
                for part, rows, done in run_ahead(group_steps()):
                    writer.write(rows, report.sha256, report.path, report, part=part)
                    del rows
                    bar.update(done)
            finally:
                bar.close()
    return _done(report, t0)


def run_ahead(steps: Iterable[T]) -> Iterator[T]:
    """Yields what ``steps`` yields, computing the next step in a thread while the caller works on the
    current one: at most two steps are held at once. An error in a step is raised to the caller; when the
    caller stops, the thread stops after the step it is computing."""
    slots = threading.Semaphore(2)  # the caller's step and the one computed ahead
    out: queue.Queue = queue.Queue()
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            it = iter(steps)
            while True:
                slots.acquire()
                if stop.is_set():
                    return
                step = next(it, end)
                out.put((step, None))
                if step is end:
                    return
                del step
        except BaseException as exc:  # raised again in the caller's thread
            out.put((end, exc))

    thread = threading.Thread(target=produce, name="graphrecall-derive", daemon=True)
    thread.start()
    try:
        while True:
            step, exc = out.get()
            if exc is not None:
                raise exc
            if step is end:
                return
            yield step
            del step
            slots.release()  # the caller is done with its step: one more may be computed
    finally:
        stop.set()
        slots.release()
        thread.join()


def read_file(
    path: Path,
    fmt: str,
    report: IngestReport,
    reject_path: Path,
    *,
    mapping: ColumnMapping | None = None,
    min_rating: float = 4.0,
    progress: bool = True,
) -> tuple[pd.DataFrame, list[dict]]:
    """``(events frame, item rows)`` of a whole file read at once (:func:`ingest.columnar.read_frame`), its
    good and rejected lines counted in ``report``."""
    with RejectSink(path, reject_path) as sink:
        frame, side = read_frame(path, fmt, sink, mapping=mapping, min_rating=min_rating, progress=progress)
    _report_rejects(report, sink, len(frame), reject_path)
    return frame, [{"id": i, "props": side[i]} for i in sorted(side)]


def derive_file(
    path: Path,
    fmt: str,
    report: IngestReport,
    reject_path: Path,
    *,
    mapping: ColumnMapping | None = None,
    min_rating: float = 4.0,
    session_gap: int = DEFAULT_SESSION_GAP,
    progress: bool = True,
    timings: dict | None = None,
) -> DerivedRows:
    """The rows of a whole file read at once (:func:`read_file`). ``timings`` (a dict), when given, gains
    the seconds spent reading (``read``) and deriving (``rows``)."""
    t0 = time.perf_counter()
    frame, items = read_file(path, fmt, report, reject_path, mapping=mapping, min_rating=min_rating, progress=progress)
    t_read = time.perf_counter() - t0
    rows = derive_rows(frame, session_gap, items=items)
    if timings is not None:
        timings["read"] = timings.get("read", 0.0) + t_read
        timings["rows"] = timings.get("rows", 0.0) + time.perf_counter() - t0 - t_read
    return rows


def ingest_items(
    driver,
    path: str | Path,
    fmt: str,
    *,
    reject_dir: str | Path | None = None,
    mapping: ColumnMapping | None = None,
    batch_size: int = 2000,
    database: str = "neo4j",
    progress: bool = True,
    workers: int = DEFAULT_WORKERS,
) -> IngestReport:
    """Item catalog (side info) ingest; setting properties is idempotent by nature."""
    path, t0 = Path(path), time.perf_counter()
    report, reject_path, _ = _start_report(path, reject_dir, "an item catalog")
    with RejectSink(path, reject_path) as sink:
        infos: list[ItemInfo] = list(read_items(path, fmt, sink, mapping))
    latest: dict[str, dict] = {}
    for info in infos:  # the last non-null value of each field, in file order
        latest.setdefault(info.item, {}).update({k: v for k, v in info.side.items() if v is not None})
    rows = DerivedRows([{"id": k, "props": latest[k]} for k in sorted(latest)], [], [], [])
    _report_rejects(report, sink, len(infos), reject_path)
    writer = GraphWriter(driver, database, batch_size, progress, workers=workers)
    writer.check_resume(report.sha256, report.path)
    writer.write(rows, report.sha256, report.path, report)
    return _done(report, t0)


def _start_report(path: Path, reject_dir, what: str) -> tuple[IngestReport, Path, int]:
    """The report (with the file's sha256), the reject file's path (removed) and the file's line count."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; pass the path of {what}")
    reject_path = Path(reject_dir or "graphrecall-rejects") / f"{path.name}.rejects.csv"
    reject_path.unlink(missing_ok=True)
    sha, lines = file_digest(path)
    return IngestReport(path=str(path), sha256=sha), reject_path, lines


def _report_rejects(report: IngestReport, sink: RejectSink, n_ok: int, reject_path: Path) -> None:
    report.lines_ok, report.rejected = n_ok, sink.count
    report.reject_reasons = dict(sink.reasons)
    report.reject_path = str(reject_path) if sink.count else None


def _done(report: IngestReport, t0: float) -> IngestReport:
    report.seconds = time.perf_counter() - t0
    logger.info("%s", report.summary())
    return report
