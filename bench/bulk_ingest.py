"""Initial load: ``ingest events --bulk`` (neo4j-admin database import full) against the Bolt path, same file.

Generates a REES46-shaped log (``ingest/synthetic.py``, seeded), loads it into two empty local instances,
once over Bolt (checkpointed MERGE batches) and once with the bulk importer (parse, sessions, CSV, the
offline import, and the server's restart and schema all counted), and prints events/s for each and the
ratio. Both graphs' node and relationship counts are printed and must match. First, on the same file, the
bulk path's columnar reader (``ingest.columnar``) against the row reader it replaced (events/s, and the two
outputs compared).

    python bench/bulk_ingest.py [--users 12000]
    python bench/bulk_ingest.py --log /tmp/scale-logs/gen-10000000-seed0.csv --bulk-only   # a big log, bulk only

``--bulk-only`` skips the Bolt load (and the comparison of the two graphs); every run prints the bulk
path's phases: read, rows (sessions and the rest), CSV, neo4j-admin, server restart and schema.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from common import counts, parser, write_result  # noqa: E402
from common import server as bench_instance  # noqa: E402
from graphrecall.app.pipeline import reset_graph  # noqa: E402
from graphrecall.graph_schema.schema import apply_schema  # noqa: E402
from graphrecall.ingest.bulk import bulk_import  # noqa: E402
from graphrecall.ingest.synthetic import generate_rees46  # noqa: E402
from graphrecall.ingest.writer import ingest_events  # noqa: E402


def compare_readers(log: Path) -> dict:
    """The row reader (``read_events`` into interned columns, as bulk ingest read before) against the
    columnar one, on one file; both outputs compared."""
    from graphrecall.ingest.columnar import read_event_columns, read_event_rows
    from graphrecall.ingest.formats import RejectSink

    t0 = time.perf_counter()
    rows, rows_side = read_event_rows(log, "rees46", RejectSink(log, None))
    t_rows = time.perf_counter() - t0
    t0 = time.perf_counter()
    cols, cols_side = read_event_columns(log, "rees46", RejectSink(log, None))
    t_cols = time.perf_counter() - t0
    same = rows_side == cols_side and all(list(rows[c]) == list(cols[c]) for c in rows.columns)
    return {
        "events": len(cols),
        "row_seconds": t_rows,
        "columnar_seconds": t_cols,
        "row_events_per_s": len(rows) / t_rows,
        "columnar_events_per_s": len(cols) / t_cols,
        "speedup": t_rows / t_cols,
        "same": same,
    }


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--users", type=int, default=12000, help="users in the generated log (12,000: about 270k events)")
    p.add_argument("--log", type=Path, help="a REES46-format log to load instead of a generated one")
    p.add_argument("--bulk-only", action="store_true", help="skip the Bolt load")
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if args.log is not None and not args.log.exists():
        p.error(f"--log {args.log}: no such file (bench/scale.py --log-dir DIR keeps its generated logs)")
    with tempfile.TemporaryDirectory() as tmp:
        log = args.log or generate_rees46(Path(tmp) / "gen.csv", n_users=args.users, random_seed=0)
        reader = compare_readers(log)
        print(
            f"reader: rows {reader['row_events_per_s']:,.0f} events/s, columnar {reader['columnar_events_per_s']:,.0f} "
            f"events/s: {reader['speedup']:.1f}x; same events, side info and rejects: {reader['same']}"
        )
        bolt_s, bolt_counts = None, None
        if not args.bulk_only:
            bolt = bench_instance().start()
            with bolt.settings().driver() as driver:
                apply_schema(driver)
                reset_graph(driver)
                t0 = time.perf_counter()
                ingest_events(driver, log, "rees46", reject_dir=tmp, progress=False, batch_size=5000)
                bolt_s = time.perf_counter() - t0
                bolt_counts = counts(driver)
            bolt.stop()
        bulk = bench_instance(name="bulkbench", bolt_port=28687, http_port=28474)
        bulk.start()
        with bulk.settings().driver() as driver:  # an empty database for the importer
            reset_graph(driver)
        phases: dict = {}
        t0 = time.perf_counter()
        rep = bulk_import(bulk, [(log, "rees46")], reject_dir=tmp, progress=False, batch_size=5000, timings=phases)[0]
        bulk_s = time.perf_counter() - t0
        with bulk.settings().driver() as driver:
            bulk_counts = counts(driver)
        bulk.stop()
    n = rep.lines_ok
    out = {
        "log": str(args.log) if args.log else f"generated, {args.users} users",
        "reader": reader,
        "events": n,
        "bulk_seconds": bulk_s,
        "bulk_events_per_s": n / bulk_s,
        "bulk_phases_seconds": phases,
        "counts": bulk_counts,
    }
    print(
        f"{n} events, bulk {bulk_s:.1f} s ({n / bulk_s:,.0f} events/s end to end): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
    )
    if bolt_s is not None:
        out.update(
            bolt_seconds=bolt_s,
            bolt_events_per_s=n / bolt_s,
            bulk_speedup=bolt_s / bulk_s,
            same_counts=bolt_counts == bulk_counts,
        )
        print(
            f"Bolt {bolt_s:.1f} s ({n / bolt_s:,.0f} events/s): bulk {out['bulk_speedup']:.1f}x; same counts: "
            f"{out['same_counts']}"
        )
    print(json.dumps(out))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_result(args.out, out)
    return 0 if out.get("same_counts", True) and reader["same"] else 1


if __name__ == "__main__":
    sys.exit(main())
