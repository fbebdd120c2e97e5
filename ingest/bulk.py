"""Initial bulk load with ``neo4j-admin database import full`` (offline), for an empty database.

The same readers, rejects, sessions and rows as the Bolt path (:mod:`ingest.writer`), written as CSV files
for the importer, which builds the store files directly instead of running MERGE per row. Across files the
rows combine as the Bolt path's MERGEs combine them: ``ENGAGED`` counts add up (first/last times widen),
``TRANSITION`` weights add up, a session is created once, item side info is the last file's. The
``(:IngestBatch)`` markers are the ones the Bolt path would commit (same keys), so re-ingesting a file later
over Bolt writes nothing twice.

The importer needs the database stopped: :func:`bulk_import` checks that the database is empty, stops the
local server, imports, starts it again and applies the schema (constraints and indexes are built after the
data). Memory: every file is derived in memory, as columns of interned strings (use the Bolt path's
``--max-events-in-memory`` for files that do not fit).
"""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from .formats import ColumnMapping
from .sessions import DEFAULT_SESSION_GAP
from .writer import (
    BATCH_LAYOUT,
    DEFAULT_MAX_EVENTS,
    KIND_QUERIES,
    IngestReport,
    _start_report,
    batch_key,
    derive_file,
    kind_batches,
)

logger = logging.getLogger(__name__)

ARRAY_DELIMITER = "\x1f"  # Session.items; ids never hold it (the importer takes it as U+001F)


class BulkImportError(RuntimeError):
    pass


def _derive(
    path: Path,
    fmt: str,
    reject_dir,
    mapping,
    session_gap: int,
    min_rating: float,
    batch_size: int,
    progress: bool,
    timings: dict | None = None,
):
    """One file's rows and report, exactly as :func:`ingest.writer.ingest_events` derives them; adds the
    seconds spent reading and deriving rows to ``timings``."""
    t0 = time.perf_counter()
    report, reject_path, _ = _start_report(path, reject_dir, f"a {fmt} event log")
    t_digest = time.perf_counter() - t0
    own: dict = {}
    rows = derive_file(
        path,
        fmt,
        report,
        reject_path,
        mapping=mapping,
        min_rating=min_rating,
        session_gap=session_gap,
        progress=progress,
        timings=own,
    )
    if report.lines_ok > DEFAULT_MAX_EVENTS:
        logger.warning("%s: %d events are derived in memory by the bulk path", path, report.lines_ok)
    markers = []
    for kind, _ in KIND_QUERIES:
        data = getattr(rows, kind)
        report.rows[kind] = len(data)
        for b in kind_batches(kind, data, batch_size):
            markers.append(
                {
                    "key": batch_key(report.sha256, kind, b.index),
                    "file_sha": report.sha256,
                    "kind": kind,
                    "index": b.index,
                    "batch_size": batch_size,
                    "grouping": 0,
                    "layout": BATCH_LAYOUT,
                    "rows": len(b.rows),
                    "source": report.path,
                }
            )
    report.batches_written = len(markers)
    report.seconds = time.perf_counter() - t0
    if timings is not None:  # the file's digest counts as reading
        t_read = t_digest + own["read"]
        timings["read"] = timings.get("read", 0.0) + t_read
        timings["rows"] = timings.get("rows", 0.0) + report.seconds - t_read
    return rows, markers, report


def _write_csv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")  # None is written as an empty field
        w.writerow(header)
        w.writerows(rows)


def write_import_csv(out: Path, derived: list) -> dict[str, tuple[str, str]]:
    """Combine every file's rows as the Bolt MERGEs would and write the importer's CSV files; returns
    ``{file: ("nodes"|"relationships", label or type)}``."""
    items: dict[str, dict] = {}
    users: set[str] = set()
    engaged: dict[tuple[str, str, str], list[int]] = {}
    sessions: dict[str, dict] = {}
    trans: dict[tuple[str, str], int] = {}
    markers: list[dict] = []
    for rows, file_markers, _ in derived:
        for r in rows.items:
            items.setdefault(r["id"], {}).update(r["props"])
        for r in rows.engaged:
            users.add(r["user"])
            items.setdefault(r["item"], {})
            key = (r["user"], r["item"], r["type"])
            if key in engaged:
                c = engaged[key]
                c[0] += r["count"]
                c[1], c[2] = min(c[1], r["first_ts"]), max(c[2], r["last_ts"])
            else:
                engaged[key] = [r["count"], r["first_ts"], r["last_ts"]]
        for r in rows.sessions:
            users.add(r["user"])
            sessions.setdefault(r["id"], r)
            if r["booked"] is not None:
                items.setdefault(r["booked"], {})
        for r in rows.transitions:
            items.setdefault(r["src"], {})
            items.setdefault(r["dst"], {})
            trans[(r["src"], r["dst"])] = trans.get((r["src"], r["dst"]), 0) + r["weight"]
        markers.extend(file_markers)
    bad = [i for s in sessions.values() for i in s["items"] if ARRAY_DELIMITER in i]
    if bad:
        raise BulkImportError(
            f"item id {bad[0]!r} holds the control character U+001F; load this log over Bolt (without --bulk)"
        )
    now = datetime.now(timezone.utc).isoformat()
    files = {}
    fields = sorted({f for p in items.values() for f, v in p.items() if v is not None})
    kinds = {f: {type(p[f]) for p in items.values() if p.get(f) is not None} for f in fields}
    suffix = {
        f: ":double"
        if kinds[f] <= {float, int} and float in kinds[f]
        else ":long"
        if kinds[f] == {int}
        else ":boolean"
        if kinds[f] == {bool}
        else ""
        for f in fields
    }
    _write_csv(
        out / "items.csv",
        ["id:ID(Item)"] + [f + suffix[f] for f in fields],
        ([i] + [p.get(f) for f in fields] for i, p in sorted(items.items())),
    )
    files["items.csv"] = ("nodes", "Item")
    _write_csv(out / "users.csv", ["id:ID(User)"], ([u] for u in sorted(users)))
    files["users.csv"] = ("nodes", "User")
    _write_csv(
        out / "sessions.csv",
        [
            "id:ID(Session)",
            "user",
            "start_ts:long",
            "end_ts:long",
            "items:string[]",
            "booked",
            "n_events:long",
            "counts:long[]",
        ],
        (
            [
                s["id"],
                s["user"],
                s["start_ts"],
                s["end_ts"],
                ARRAY_DELIMITER.join(s["items"]),
                s["booked"],
                s["n_events"],
                ARRAY_DELIMITER.join(map(str, s["counts"])),
            ]
            for s in sessions.values()
        ),
    )
    files["sessions.csv"] = ("nodes", "Session")
    _write_csv(
        out / "batches.csv",
        [
            "key:ID(IngestBatch)",
            "file_sha",
            "kind",
            "index:long",
            "batch_size:long",
            "grouping:long",
            "layout:long",
            "rows:long",
            "source",
            "at:datetime",
        ],
        (
            [
                m["key"],
                m["file_sha"],
                m["kind"],
                m["index"],
                m["batch_size"],
                m["grouping"],
                m["layout"],
                m["rows"],
                m["source"],
                now,
            ]
            for m in markers
        ),
    )
    files["batches.csv"] = ("nodes", "IngestBatch")
    _write_csv(
        out / "engaged.csv",
        [":START_ID(User)", ":END_ID(Item)", "type", "count:long", "first_ts:long", "last_ts:long"],
        ([u, i, t, c[0], c[1], c[2]] for (u, i, t), c in engaged.items()),
    )
    files["engaged.csv"] = ("relationships", "ENGAGED")
    _write_csv(
        out / "has_session.csv",
        [":START_ID(User)", ":END_ID(Session)"],
        ([s["user"], s["id"]] for s in sessions.values()),
    )
    files["has_session.csv"] = ("relationships", "HAS_SESSION")
    _write_csv(
        out / "booked.csv",
        [":START_ID(Session)", ":END_ID(Item)"],
        ([s["id"], s["booked"]] for s in sessions.values() if s["booked"] is not None),
    )
    files["booked.csv"] = ("relationships", "BOOKED")
    _write_csv(
        out / "transitions.csv",
        [":START_ID(Item)", ":END_ID(Item)", "weight:long"],
        ([a, b, w] for (a, b), w in trans.items()),
    )
    files["transitions.csv"] = ("relationships", "TRANSITION")
    return files


def _graph_is_empty(driver, database: str) -> bool:
    with driver.session(database=database, default_access_mode="READ") as s:
        return s.run("MATCH (n) RETURN count(n) = 0").single()[0]


def bulk_import(
    instance,
    files: Sequence[tuple[str | Path, str]],
    *,
    reject_dir: str | Path | None = None,
    mapping: ColumnMapping | None = None,
    session_gap: int = DEFAULT_SESSION_GAP,
    min_rating: float = 4.0,
    batch_size: int = 2000,
    database: str = "neo4j",
    progress: bool = True,
    timings: dict | None = None,
) -> list[IngestReport]:
    """Load event logs into the empty ``database`` of a :class:`graph_schema.server.LocalNeo4j` with
    ``neo4j-admin database import full``; returns one report per file (rows, rejects, batches, time).
    ``timings`` (a dict), when given, receives the seconds of each phase: ``read``, ``rows``, ``csv``,
    ``import`` (neo4j-admin alone), ``restart_schema`` and ``total``.

    Raises :class:`BulkImportError` when the database holds data (the importer replaces a whole
    database; use the Bolt path for daily files) or when the importer fails (its output is in the message)."""
    from ..graph_schema.schema import apply_schema
    from ..graph_schema.store.meta import bump_data_version

    t_all = time.perf_counter()
    instance.start()
    with instance.settings().driver() as driver:
        if not _graph_is_empty(driver, database):
            raise BulkImportError(
                f"database {database!r} of instance {instance.name!r} already holds data; --bulk only "
                "loads an empty database. Drop --bulk to add this log over Bolt, or empty it first "
                "(`graphrecall neo4j stop` and delete the instance folder, or MATCH (n) DETACH DELETE n)"
            )
    timings = {} if timings is None else timings
    derived = [
        _derive(Path(p), fmt, reject_dir, mapping, session_gap, min_rating, batch_size, progress, timings)
        for p, fmt in files
    ]
    with tempfile.TemporaryDirectory(prefix="graphrecall-import-") as tmp:
        t0 = time.perf_counter()
        csvs = write_import_csv(Path(tmp), derived)
        timings["csv"] = time.perf_counter() - t0
        logger.info("import CSV written in %.1fs", timings["csv"])
        instance.stop()
        # option values are attached with "="; the database name goes last, after "--", so no value is read as
        # an option whatever it holds (a path with spaces, a name beginning with "-")
        cmd = [
            "java",
            "-Xmx1g",
            "-cp",
            f"{instance.lib_dir}/*",
            "org.neo4j.cli.AdminTool",
            "database",
            "import",
            "full",
            "--overwrite-destination=true",
            "--multiline-fields=true",
            "--array-delimiter=U+001F",
            f"--report-file={Path(tmp) / 'import.report'}",
            *[f"--{kind}={label}={Path(tmp) / name}" for name, (kind, label) in csvs.items()],
            "--",
            database,
        ]
        env = dict(os.environ, NEO4J_HOME=str(instance.home), NEO4J_CONF=str(instance.conf_dir))
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in proc.stdout:  # the importer's own progress, passed on
            lines.append(line.rstrip())
            if progress and line.strip():
                logger.info("neo4j-admin: %s", line.rstrip())
        code = proc.wait()
        report_text = (
            (Path(tmp) / "import.report").read_text(errors="replace") if (Path(tmp) / "import.report").exists() else ""
        )
        instance.start()
        if code != 0:
            raise BulkImportError(
                f"neo4j-admin database import failed (exit {code}):\n"
                + "\n".join(lines[-40:])
                + ("\n" + report_text[-2000:] if report_text else "")
            )
        timings["import"] = time.perf_counter() - t0
        logger.info("neo4j-admin import in %.1fs", timings["import"])
    with instance.settings().driver() as driver:
        apply_schema(driver, database)
        bump_data_version(driver, "bulk ingest", database)
    seconds = time.perf_counter() - t_all
    timings["total"] = seconds
    timings["restart_schema"] = seconds - sum(timings.get(k, 0.0) for k in ("read", "rows", "csv", "import"))
    events = sum(r.lines_ok for _, _, r in derived)
    logger.info(
        "bulk ingest: %d events in %.1fs (%.0f events/s end to end)",
        events,
        seconds,
        events / seconds if seconds else 0.0,
    )
    return [r for _, _, r in derived]
