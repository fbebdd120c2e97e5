"""Daily loads over Bolt: ``ingest events`` with one write transaction at a time against ``--workers`` at a time.

Generates a REES46-shaped log (``ingest/synthetic.py``, seeded) or takes ``--log``, and loads it into the
emptied ``bench`` instance once per writer count, in interleaved rounds (this VM's timings drift, so each
round runs every count once), then prints the median events/s per count and its ratio to one writer. The
graphs are compared (node and relationship counts, and the sums of ENGAGED counts and TRANSITION weights):
every writer count must give the same one.

    python bench/bolt_ingest.py [--users 12000] [--workers 1 2] [--rounds 3]
    python bench/bolt_ingest.py --log /tmp/scale-logs/gen-1000000-seed0.csv --rounds 1
    python bench/bolt_ingest.py --log ... --max-events-in-memory 250000   # the on-disk path (user groups)
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (  # noqa: E402
    counts,
    parser,
    write_result,  # noqa: E402
)
from common import server as bench_instance  # noqa: E402
from graphrecall.app.pipeline import reset_graph  # noqa: E402
from graphrecall.graph_schema.schema import apply_schema  # noqa: E402
from graphrecall.ingest.synthetic import generate_rees46  # noqa: E402
from graphrecall.ingest.writer import ingest_events  # noqa: E402


def fingerprint(driver) -> dict:
    """``bulk_ingest.counts`` and the sums of ENGAGED counts and TRANSITION weights."""
    with driver.session() as s:
        engaged = s.run("MATCH ()-[e:ENGAGED]->() RETURN sum(e.count)").single()[0]
        weight = s.run("MATCH ()-[t:TRANSITION]->() RETURN sum(t.weight)").single()[0]
    return {**counts(driver), "engaged_count": engaged, "transition_weight": weight}


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--users", type=int, default=12000, help="users in the generated log (12,000: about 270k events)")
    p.add_argument("--log", type=Path, help="a REES46-format log to load instead of a generated one")
    p.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="writer counts to time (the first is the baseline)"
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are reported)")
    p.add_argument("--batch-size", type=int, default=5000, help="rows per transaction")
    p.add_argument(
        "--max-events-in-memory",
        type=int,
        default=2_000_000,
        help="below the log's events, the log goes to disk and is written in user groups (that path)",
    )
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if args.log is not None and not args.log.exists():
        p.error(f"--log {args.log}: no such file (bench/scale.py --log-dir DIR keeps its generated logs)")
    if args.rounds < 1 or min(args.workers) < 1:
        p.error("--rounds and every --workers value must be >= 1")
    seconds: dict[int, list[float]] = {w: [] for w in args.workers}
    graphs: dict[int, dict] = {}
    events = 0
    server = bench_instance().start()
    with tempfile.TemporaryDirectory() as tmp, server.settings().driver() as driver:
        log = args.log or generate_rees46(Path(tmp) / "gen.csv", n_users=args.users, random_seed=0)
        apply_schema(driver)
        for r in range(args.rounds):
            for w in args.workers:
                reset_graph(driver)
                t0 = time.perf_counter()
                rep = ingest_events(
                    driver,
                    log,
                    "rees46",
                    reject_dir=tmp,
                    progress=False,
                    batch_size=args.batch_size,
                    workers=w,
                    max_events_in_memory=args.max_events_in_memory,
                )
                seconds[w].append(time.perf_counter() - t0)
                events = rep.lines_ok
                graphs[w] = fingerprint(driver)
                print(
                    f"round {r + 1}, {w} writer(s): {seconds[w][-1]:.1f} s ({events / seconds[w][-1]:,.0f} events/s)",
                    flush=True,
                )
        reset_graph(driver)
    base = args.workers[0]
    same = all(g == graphs[base] for g in graphs.values())
    out = {
        "log": str(args.log) if args.log else f"generated, {args.users} users",
        "events": events,
        "batch_size": args.batch_size,
        "max_events_in_memory": args.max_events_in_memory,
        "rounds": args.rounds,
        "seconds": {str(w): s for w, s in seconds.items()},
        "median_events_per_s": {str(w): events / statistics.median(s) for w, s in seconds.items()},
        "ratio_to_first": {str(w): statistics.median(seconds[base]) / statistics.median(s) for w, s in seconds.items()},
        "same_graph": same,
        "graph": graphs[base],
    }
    for w in args.workers:
        print(
            f"{w} writer(s): median {statistics.median(seconds[w]):.1f} s, {out['median_events_per_s'][str(w)]:,.0f} "
            f"events/s, {out['ratio_to_first'][str(w)]:.2f}x {base} writer(s)"
        )
    print(f"same graph for every writer count: {same}")
    print(json.dumps(out))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_result(args.out, out)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
