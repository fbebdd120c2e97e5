"""Swing + ItemCF on Spark (``graphrecall spark scores``) against the in-database path, on one graph.

On a graph that is already ingested (a local instance), both paths compute the SWING and COOC lists
with the pipeline's settings, one after the other, each timed on its own:

* **in-database**: ``graphrecall scores`` (the ``graphrecall.scores`` procedure, or Cypher when it is
  not installed): basis, Swing, ItemCF, written in the database;
* **spark**: ``graphrecall spark scores`` in ``local[N]``: ENGAGED edges read through the Neo4j Connector
  for Apache Spark, capped basis, Swing (``--swing-plan items``, the default: a broadcast CSR basis and
  the items dealt to tasks; or ``pairs``: the two-pass user-pair plan in Spark SQL) and ItemCF as
  DataFrame plans, the top-k lists written back through the connector.

The lists written by the two are then compared row by row (same neighbours in the same order, scores to
1e-9 relative). Stage times, the ratio, and a projection of the Spark compute to 100M events on N executors go to
``bench/results/spark_scores.json`` (one entry per graph size and Swing plan, merged).

The projection is labelled as one: it scales the measured Spark compute time (read + basis + scores,
without the write) of the ``items`` plan by its growth exponent between the two largest sizes, and
divides by the number of cores, assuming the stages scale out (the basis and ItemCF stages are keyed
by users, items and item pairs; Swing by slices of items). The write-back goes to one Neo4j server and
is projected from its measured relationships/s, not divided. The crossover is the number of executor
cores at which the Spark total (compute / cores * 2 + write) would match the in-database time at the
largest measured size.

    python bench/spark_scores.py --instance default                       # the demo graph (REES46 head17k)
    python bench/spark_scores.py --instance bench --bolt-port 27687 --http-port 27474   # 1M events (bench/speed.py's)
    python bench/spark_scores.py --instance scale --bolt-port 29687 --http-port 29474   # 10M (bench/scale.py's)
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from common import parser, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("bench.spark_scores")


def compare(a: dict, b: dict) -> dict:
    """How many item rows of two ``read_top_lists`` results are equal: the same ids in the same order, and
    scores within 1e-9 relative (a hot item's Swing score sums ~1e5 terms to ~1e4, so the two engines'
    summation orders differ by up to ~1e-9 in absolute terms)."""
    rows = set(a) | set(b)
    same = sum(
        1
        for i in rows
        if i in a
        and i in b
        and a[i][0] == b[i][0]
        and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a[i][1], b[i][1]))
    )
    return dict(rows=len(rows), equal_rows=same, only_one_side=len(set(a) ^ set(b)))


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--instance", default="default")
    p.add_argument("--bolt-port", type=int, default=7687)
    p.add_argument("--http-port", type=int, default=7474)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--heap", default="2g", help="Neo4j heap when this starts the server (default 2g)")
    p.add_argument("--partitions", type=int, default=8, help="spark.sql.shuffle.partitions (default 8)")
    p.add_argument("--driver-memory", default="3g")
    p.add_argument("--read-partitions", type=int, default=1, help="parallel connector reads of ENGAGED (default 1)")
    p.add_argument("--executors", type=int, nargs="+", default=[8, 32], help="executor cores for the projection")
    p.add_argument("--swing-plan", choices=["items", "pairs"], default="items", help="Spark's Swing plan")
    p.add_argument("--skip-indb", action="store_true", help="time only Spark (compare with the lists in the graph)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "spark_scores.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from common import server as bench_instance
    from graphrecall.app.pipeline import PipelineConfig, compute_scores
    from graphrecall.graph_schema.store.lists import read_top_lists
    from graphrecall.query.scoring import spark as S

    server = bench_instance(
        name=args.instance, bolt_port=args.bolt_port, http_port=args.http_port, heap=args.heap, pagecache="1g"
    ).start()
    settings = server.settings()
    driver = settings.driver()
    cfg = PipelineConfig()
    with driver.session() as s:
        n_events = s.run("MATCH ()-[e:ENGAGED]->() RETURN coalesce(sum(e.count), 0)").single()[0]
    res: dict = dict(events=int(n_events), master=args.master, partitions=args.partitions, swing_plan=args.swing_plan)
    if not args.skip_indb:
        t = time.perf_counter()
        swing, cooc = compute_scores(driver, cfg, progress=True)
        res["indb_seconds"] = time.perf_counter() - t
        res["indb_engine"] = "procedure" if cfg.scores.engine == "auto" else cfg.scores.engine
        logger.info("in-database scores: %.1fs", res["indb_seconds"])
    want = {rel: read_top_lists(driver, rel) for rel in ("SWING", "COOC")}

    spark = S.spark_session(args.master, partitions=args.partitions, driver_memory=args.driver_memory, progress=True)
    try:
        t = time.perf_counter()
        ev = S.events_from_graph(spark, settings, partitions=args.read_partitions)
        rep = S.run_spark_scores(
            spark,
            settings,
            events=ev,
            alpha=cfg.scores.swing_alpha,
            k=cfg.top_k,
            iuf=cfg.scores.cooc_iuf,
            event_types=cfg.scores.event_types,
            max_items_per_user=cfg.scores.max_items_per_user,
            max_users_per_item=cfg.scores.max_users_per_item,
            swing_plan=args.swing_plan,
        )
        res["spark_seconds"] = time.perf_counter() - t
    finally:
        spark.stop()
    res["spark_stages"] = rep.seconds
    res["engaged_edges"] = rep.events
    res["basis_edges"] = rep.basis_edges
    res["relationships"] = dict(SWING=rep.swing_rows, COOC=rep.cooc_rows)
    got = {rel: read_top_lists(driver, rel) for rel in ("SWING", "COOC")}
    res["equal"] = {rel: compare(want[rel], got[rel]) for rel in ("SWING", "COOC")}
    if "indb_seconds" in res:
        res["spark_over_indb"] = res["spark_seconds"] / res["indb_seconds"]
    driver.close()

    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    out[f"{res['events']}/{args.swing_plan}"] = res
    sizes = sorted(
        (r for r in out.values() if r.get("swing_plan") == "items" and "spark_stages" in r), key=lambda r: r["events"]
    )
    if len(sizes) >= 2:  # projection from the two largest sizes measured with the default plan
        a, b = sizes[-2], sizes[-1]
        compute = lambda r: sum(v for k, v in r["spark_stages"].items() if not k.endswith("_write"))
        write = lambda r: sum(v for k, v in r["spark_stages"].items() if k.endswith("_write"))
        rels = lambda r: sum(r["relationships"].values())
        grow = math.log(b["events"] / a["events"])
        e_compute, e_rels = math.log(compute(b) / compute(a)) / grow, math.log(rels(b) / rels(a)) / grow
        scale = 1e8 / b["events"]
        compute_100m = compute(b) * scale**e_compute
        write_100m = write(b) * scale**e_rels  # the same relationships/s as measured
        out["projection_100M"] = dict(
            note="PROJECTION, not a measurement: Spark compute (read + basis + Swing + ItemCF) at 100M events from "
            "its growth exponent between the two largest measured sizes, divided by executor cores over the 2 "
            "measured here; the write-back to one Neo4j server is projected at the measured relationships/s "
            "and not divided",
            from_events=[a["events"], b["events"]],
            exponent_compute=e_compute,
            exponent_relationships=e_rels,
            compute_seconds_local2=compute_100m,
            write_seconds=write_100m,
            total_seconds_by_executor_cores={str(n): compute_100m * 2 / n + write_100m for n in args.executors},
        )
        if "indb_seconds" in b and b["indb_seconds"] > write(b):  # cores where Spark's total meets in-database
            out["projection_100M"]["crossover_cores_at_largest_measured"] = (
                2 * compute(b) / (b["indb_seconds"] - write(b))
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, out)
    print(json.dumps(res, indent=1))
    for rel, c in res["equal"].items():
        print(f"{rel}: {c['equal_rows']}/{c['rows']} item rows equal to the in-database lists")
    if "spark_over_indb" in res:
        print(
            f"spark {res['spark_seconds']:.1f}s vs in-database {res['indb_seconds']:.1f}s: "
            f"{res['spark_over_indb']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
