"""Every pipeline stage timed at growing log sizes, with the growth exponent per stage.

For each size a REES46-shaped log is generated (``ingest/synthetic.py``, seeded: Zipf item popularity,
30-minute sessions; about 22 events per user, one item per 20 events), loaded into the empty local
instance ``scale`` and run through the pipeline as ``graphrecall demo`` runs it, each stage timed on its own:

ingest -> scores (Swing + cooc) -> rank (fit, list every item, write RANKED) -> export -> walks + EGES
-> write-back (Neo4j vectors) -> Faiss index -> gnn (LightGCN: train, GNN lists, vectors, user tower) -> snapshot
load (what the API does at start). Rows saved before the rank or gnn stage existed have no time for it; a gnn row
also records the peak RSS before and after the stage (``gnn_rss_gib``), which shows whether LightGCN set the
process's peak. Ingest is ``graphrecall ingest events --bulk``'s path
(``neo4j-admin database import full`` into the empty database, the first-load path; rows saved before
2026-11-30 used Bolt), or Bolt with ``--ingest bolt`` (the path daily files take); each row records which.

Memory: peak RSS of this Python process (``getrusage``) and the Neo4j heap it is given (``--heap``); the two
together are the footprint that has to stay under the issue's 12 GiB (the page cache is set apart). Torch
uses ``--torch-threads`` threads (default 1: Neo4j shares the 2 cores). The table, the exponent
``log(t2/t1) / log(n2/n1)`` between consecutive sizes, and a log-log plot go to ``bench/results/``.

    python bench/scale.py [--events 100000 300000 1000000] [--heap 4g]
    python bench/scale.py --events 1000000 --merge   # add a size to the saved table, keep the other rows
    python bench/scale.py --events 10000000 --merge --log-dir /tmp/scale-logs  # the big run (14 min to generate)
"""

from __future__ import annotations

import json
import logging
import math
import resource
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from common import parser, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("generate", "ingest", "scores", "rank", "export", "walks+eges", "write-back", "faiss", "gnn", "snapshot")
logger = logging.getLogger("bench.scale")


def run_size(
    n_events: int, heap: str, torch_threads: int, tmp: Path, ingest: str = "bulk", log_dir: Path | None = None
) -> dict:
    import torch

    from common import server as bench_instance
    from graphrecall.app.pipeline import PipelineConfig, compute_gnn, compute_rank, compute_scores, reset_graph
    from graphrecall.embed.index import ItemVectorIndex
    from graphrecall.embed.train import train_item_vectors
    from graphrecall.embed.writeback import write_embeddings
    from graphrecall.graph_schema.schema import apply_schema
    from graphrecall.ingest.bulk import bulk_import
    from graphrecall.ingest.synthetic import generate_rees46_sized
    from graphrecall.ingest.writer import ingest_events
    from graphrecall.query.serve.snapshot import SnapshotRetriever
    from graphrecall.walkers.export import export_graph

    torch.set_num_threads(torch_threads)
    cfg = PipelineConfig()
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    users = max(50, round(n_events / 22.5))
    log = (log_dir or tmp) / f"gen-{n_events}-seed0.csv"
    if log_dir is None or not log.exists():  # the generator is seeded: a kept log is the same log
        generate_rees46_sized(log, n_events, random_seed=0)
        t["generate"] = time.perf_counter() - t0  # absent when a kept log was reused
    server = bench_instance(name="scale", bolt_port=29687, http_port=29474, heap=heap, pagecache="1g").start()
    with server.settings().driver() as driver:
        apply_schema(driver)
        reset_graph(driver)
    t0 = time.perf_counter()
    if ingest == "bulk":  # an empty database: the first-load path (neo4j-admin import, then the schema)
        rep = bulk_import(server, [(log, "rees46")], reject_dir=tmp, batch_size=5000)[0]
    else:
        with server.settings().driver() as driver:
            rep = ingest_events(driver, log, "rees46", reject_dir=tmp, progress=True, batch_size=5000)
    t["ingest"] = time.perf_counter() - t0
    with server.settings().driver() as driver:
        t0 = time.perf_counter()
        swing, cooc = compute_scores(driver, cfg, progress=True)
        t["scores"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        rank = compute_rank(driver, cfg, progress=True)
        t["rank"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        g = export_graph(driver)
        t["export"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = train_item_vectors(
            g.transitions, g.side, g.sessions, g.booked, random_seed=0, progress=True, **asdict(cfg.eges)
        )
        t["walks+eges"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_embeddings(driver, g.item_ids, res.embeddings, res.cold)
        t["write-back"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        faiss_dir = ItemVectorIndex(g.item_ids, res.embeddings).save(tmp / f"faiss-{n_events}")
        t["faiss"] = time.perf_counter() - t0
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        t0 = time.perf_counter()
        gnn = compute_gnn(driver, cfg, tmp, progress=True)  # its user tower goes beside faiss-N, in tmp/gnn
        t["gnn"] = time.perf_counter() - t0
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        t0 = time.perf_counter()
        snap = SnapshotRetriever.from_neo4j(driver, faiss_dir)
        t["snapshot"] = time.perf_counter() - t0
    server.stop()
    return {
        "events": rep.lines_ok,
        "items": len(g.item_ids),
        "users": users,
        "seconds": t,
        "total_seconds": sum(v for k, v in t.items() if k != "generate"),
        "swing_rels": swing.written,
        "cooc_rels": cooc.written,
        "rank_rels": rank.written,
        "rank_fit_seconds": rank.seconds,
        "gnn_rels": gnn.written,
        "gnn_rss_gib": {"peak_before": rss_before, "peak_after": rss_after},
        "snapshot": {k: v for k, v in snap.stats().items() if k != "loaded_at"},
        "python_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "neo4j_heap": heap,
        "ingest_path": ingest,
    }


def exponents(rows: list[dict]) -> list[dict]:
    out = []
    for a, b in zip(rows, rows[1:]):
        ratio = math.log(b["events"] / a["events"])
        out.append(
            {
                "from": a["events"],
                "to": b["events"],
                **{
                    s: math.log(max(b["seconds"][s], 1e-3) / max(a["seconds"][s], 1e-3)) / ratio
                    for s in STAGES
                    if s in a["seconds"] and s in b["seconds"]
                },
            }
        )
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = [r["events"] for r in rows]
    for s in STAGES[1:]:
        have = [r for r in rows if s in r["seconds"]]
        ax.plot([r["events"] for r in have], [max(r["seconds"][s], 1e-2) for r in have], marker="o", label=s)
    ax.plot(x, [r["total_seconds"] for r in rows], marker="s", color="black", label="total")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("events")
    ax.set_ylabel("seconds")
    ax.set_title("graphrecall stages by log size (2 cores shared with Neo4j)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--events", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of other sizes already in the saved scale.json (one table from several runs)",
    )
    p.add_argument("--heap", default="2g", help="Neo4j heap (default 2g)")
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument(
        "--ingest",
        choices=("bulk", "bolt"),
        default="bulk",
        help="bulk: neo4j-admin import into the empty database, the first-load path (default); "
        "bolt: the incremental path daily files take",
    )
    p.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="keep the generated logs here and reuse them on the next run (default: a temporary folder)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("neo4j").setLevel(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(args.events):
            rows.append(run_size(n, args.heap, args.torch_threads, Path(tmp), args.ingest, args.log_dir))
            logger.info("%d events: %s", n, {k: round(v, 1) for k, v in rows[-1]["seconds"].items()})
    if args.merge and (args.out / "scale.json").exists():
        done = {r["events"] for r in rows}
        old = json.loads((args.out / "scale.json").read_text())["rows"]
        rows = sorted([r for r in old if r["events"] not in done] + rows, key=lambda r: r["events"])
    print(
        f"{'events':>10s} {'items':>8s} "
        + " ".join(f"{s:>11s}" for s in STAGES)
        + f" {'total':>8s} {'py RSS GiB':>10s}"
    )
    for r in rows:
        print(
            f"{r['events']:10d} {r['items']:8d} "
            + " ".join(f"{r['seconds'][s]:11.1f}" if s in r["seconds"] else f"{'-':>11s}" for s in STAGES)
            + f" {r['total_seconds']:8.1f} {r['python_peak_rss_gib']:10.2f}"
        )
    growth = exponents(rows)
    for g in growth:
        print(f"growth exponent {g['from']} -> {g['to']}: " + ", ".join(f"{s} {g[s]:.2f}" for s in STAGES if s in g))
    args.out.mkdir(parents=True, exist_ok=True)
    if len(rows) > 1:
        plot(rows, args.out / "scale.png")
    write_result(args.out / "scale.json", {"rows": rows, "growth": growth})
    return 0


if __name__ == "__main__":
    sys.exit(main())
