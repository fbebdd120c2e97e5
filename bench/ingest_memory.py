"""Ingest memory: one piece vs on disk in user groups (``--max-events-in-memory``), in one run.

A generated REES46-format log (``--users`` users, about 22 events each) is ingested twice into
the local ``bench`` Neo4j (reset in between): once in memory, once with a small
``max_events_in_memory``. For each it prints the peak of Python allocations (tracemalloc) and the
wall time, the ratios between the two, and checks that both runs give the same graph counts.

    python bench/ingest_memory.py [--users 6000] [--max-events-in-memory 20000]
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from common import parser  # noqa: E402
from common import server as bench_instance
from graphrecall.app.pipeline import reset_graph  # noqa: E402
from graphrecall.graph_schema.schema import apply_schema  # noqa: E402
from graphrecall.ingest.synthetic import generate_rees46  # noqa: E402
from graphrecall.ingest.writer import ingest_events  # noqa: E402

COUNTS = {
    "sessions": "MATCH (n:Session) RETURN count(n)",
    "engaged_sum": "MATCH ()-[r:ENGAGED]->() RETURN coalesce(sum(r.count), 0)",
    "transition_sum": "MATCH ()-[r:TRANSITION]->() RETURN coalesce(sum(r.weight), 0)",
    "items": "MATCH (n:Item) RETURN count(n)",
}


def measure(driver, path: Path, max_events: int | None) -> dict:
    reset_graph(driver)
    kw = {} if max_events is None else {"max_events_in_memory": max_events}
    with tempfile.TemporaryDirectory() as tmp:
        tracemalloc.start()
        t0 = time.perf_counter()
        rep = ingest_events(driver, path, "rees46", reject_dir=tmp, progress=False, batch_size=5000, **kw)
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    with driver.session() as s:
        counts = {k: s.run(q).single()[0] for k, q in COUNTS.items()}
    return {
        "events": rep.lines_ok,
        "peak_mib": peak / 2**20,
        "seconds": seconds,
        "events_per_s": rep.lines_ok / seconds,
        "counts": counts,
    }


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--users", type=int, default=6000, help="users in the generated log (about 22 events each)")
    p.add_argument("--max-events-in-memory", type=int, default=20_000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    path = generate_rees46(Path(tempfile.mkdtemp()) / "gen.csv", n_users=args.users, random_seed=0)
    server = bench_instance().start()
    with server.settings().driver() as driver:
        apply_schema(driver)
        one = measure(driver, path, None)
        disk = measure(driver, path, args.max_events_in_memory)
    if one["counts"] != disk["counts"]:
        raise SystemExit(f"graphs differ: in memory {one['counts']} vs on disk {disk['counts']}")
    out = {
        "in_memory": one,
        "on_disk": disk,
        "max_events_in_memory": args.max_events_in_memory,
        "ratio_peak_memory": one["peak_mib"] / disk["peak_mib"],
        "ratio_time": disk["seconds"] / one["seconds"],
    }
    if not args.json:
        for name in ("in_memory", "on_disk"):
            r = out[name]
            print(
                f"{name:15s} {r['events']:,} events  peak {r['peak_mib']:.1f} MiB  {r['seconds']:.1f} s "
                f"({r['events_per_s']:,.0f} events/s)"
            )
        print(
            f"on disk in user groups (max {args.max_events_in_memory:,} events in memory): peak memory "
            f"{out['ratio_peak_memory']:.1f}x lower, time {out['ratio_time']:.2f}x; same graph counts {one['counts']}"
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
