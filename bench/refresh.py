"""`graphrecall refresh` against a full rebuild, on the same graph after the same new day of events.

A REES46-shaped log is generated (``ingest/synthetic.py``, the shape ``bench/scale.py`` uses). Its newest
``--day-share`` of events (default 1/7, a day of a week-long log; the generator's own days are uneven) are
"today's file"; everything before is the graph as it stood last night, built in full (ingest, scores,
EGES: the state a refresh starts from). Then, in the local instance ``bench``:

1. **refresh**: ``graphrecall.app.pipeline.refresh`` with today's file: ingest, the SWING/COOC rows whose
   users changed, EGES warm-started for ``--refresh-epochs`` (default 2) epochs, write-back and Faiss;
2. **full rebuild** on the very same graph: every SWING/COOC row, EGES from scratch with the pipeline's
   epochs (10), write-back and Faiss, with seed 0 and again with seed 1.

It prints the time of each and their ratio, checks that SWING and COOC are equal (same pairs, largest
score difference), and compares the EGES neighbour lists: the mean overlap of each item's Faiss top-20
between refresh and full rebuild, beside the overlap between two full rebuilds that differ only in the
seed (the tolerance: a refresh should differ from a rebuild no more than a rebuild differs from itself).
Torch uses one thread (Neo4j shares the 2 cores).

    python bench/refresh.py [--events 100000] [--refresh-epochs 2] [--day-share 0.143 0.01]
    python bench/refresh.py --data ../shared/data/rees46/2019-Oct_head17k_clean.csv   # a real log instead
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import parser, write_result  # noqa: E402

logger = logging.getLogger("bench.refresh")
K = 20


def split_last_day(log: Path, out_dir: Path, share: float) -> tuple[Path, Path, int, int]:
    """(before, newest ``share``) files of a time-ordered REES46 CSV, and their row counts; the cut falls
    between two distinct times."""
    import pandas as pd

    df = pd.read_csv(log, dtype=str)
    ts = pd.to_datetime(df["event_time"].str.replace(" UTC", ""), utc=True)
    last = ts >= ts.quantile(1 - share)
    before, day = out_dir / "before.csv", out_dir / "day.csv"
    df[~last].to_csv(before, index=False)
    df[last].to_csv(day, index=False)
    return before, day, int((~last).sum()), int(last.sum())


def neighbours(index, ids: np.ndarray) -> dict[str, set]:
    rows = index.rows(ids)
    _, nn = index.search(index.vectors[rows], K + 1)
    return {i: set(index.item_ids[r][(r >= 0) & (r != q)][:K]) for i, r, q in zip(ids, nn, rows)}


def overlap(a: dict, b: dict) -> float:
    return float(np.mean([len(a[i] & b[i]) / K for i in a]))


def compare_scores(x: dict, y: dict) -> dict:
    same = set(x) == set(y)
    diff = max((abs(x[k] - y[k]) for k in x if k in y), default=0.0)
    return {"pairs": len(x), "same_pairs": same, "max_abs_diff": diff}


def run(n_events: int, refresh_epochs: int, share: float, tmp: Path, data: Path | None = None) -> dict:
    import torch

    from common import server as bench_instance
    from graphrecall.app.pipeline import PipelineConfig, compute_scores, refresh, reset_graph, train_embeddings
    from graphrecall.embed.index import ItemVectorIndex
    from graphrecall.graph_schema.schema import apply_schema
    from graphrecall.graph_schema.store.lists import read_scores
    from graphrecall.ingest.synthetic import generate_rees46
    from graphrecall.ingest.writer import ingest_events

    torch.set_num_threads(1)
    cfg = PipelineConfig()
    log = data or generate_rees46(
        tmp / "gen.csv",
        n_users=max(50, round(n_events / 22.5)),
        n_markets=8,
        categories_per_market=25,
        items_per_category=max(20, round(n_events / 20 / 200)),
        random_seed=0,
    )
    before, day, n_before, n_day = split_last_day(log, tmp, share)
    logger.info("%d events before, %d in the new file", n_before, n_day)
    art = tmp / "artifacts"
    server = bench_instance().start()
    out: dict = {
        "log": str(data) if data else f"generated, {n_events} events",
        "share": share,
        "events_before": n_before,
        "events_day": n_day,
        "refresh_epochs": refresh_epochs,
    }
    with server.settings().driver() as driver:
        apply_schema(driver)
        reset_graph(driver)
        t0 = time.perf_counter()
        ingest_events(driver, before, "rees46", reject_dir=tmp, batch_size=5000)
        compute_scores(driver, cfg)
        train_embeddings(driver, cfg, art)
        out["last_night_build_seconds"] = time.perf_counter() - t0

        res = refresh(driver, [(day, "rees46")], art, cfg, epochs=refresh_epochs, reject_dir=tmp)
        out["refresh"] = {
            "seconds": res.seconds,
            "total": sum(res.seconds.values()),
            "rows": {
                "swing": res.scores.swing_items,
                "cooc": res.scores.cooc_items,
                "basis_items": res.scores.basis_items,
                "changed_users": res.scores.changed_users,
                "pair_users": res.scores.pair_users,
                "swing_full": res.scores.swing_full,
                "cooc_full": res.scores.cooc_full,
            },
        }
        got = {rel: read_scores(driver, rel) for rel in ("SWING", "COOC")}
        refreshed = ItemVectorIndex.load(art / "faiss")

        t0 = time.perf_counter()
        compute_scores(driver, cfg)
        t_scores = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_embeddings(driver, cfg, art)
        t_eges = time.perf_counter() - t0
        full0 = ItemVectorIndex.load(art / "faiss")
        out["full"] = {
            "seconds": {"ingest": res.seconds["ingest"], "scores": t_scores, "walks+eges+writeback": t_eges},
            "total": res.seconds["ingest"] + t_scores + t_eges,
        }
        out["scores_equal"] = {rel: compare_scores(got[rel], read_scores(driver, rel)) for rel in got}
        train_embeddings(driver, PipelineConfig(random_seed=1), art)
        full1 = ItemVectorIndex.load(art / "faiss")
    server.stop()
    ids = full0.item_ids
    nr, n0, n1 = neighbours(refreshed, ids), neighbours(full0, ids), neighbours(full1, ids)
    out["eges_top20_overlap"] = {
        "refresh_vs_full": overlap(nr, n0),
        "full_seed0_vs_seed1": overlap(n0, n1),
        "items": len(ids),
    }
    out["speedup"] = {
        k: out["full"]["seconds"][k] / out["refresh"]["seconds"][k] for k in ("scores", "walks+eges+writeback")
    } | {"total": out["full"]["total"] / out["refresh"]["total"]}
    return out


def report(r: dict) -> None:
    rows = r["refresh"]["rows"]
    print(
        f"\n{r['log']}: {r['events_before']} events before, {r['events_day']} in the new file; "
        f"{rows['swing']} SWING and {rows['cooc']} COOC rows of {rows['basis_items']} items needed recomputing"
        + "".join(f"; every {rel} row recomputed (past full_above)" for rel in ("swing", "cooc") if rows[f"{rel}_full"])
    )
    print(f"{'stage':24s}{'refresh s':>12s}{'full s':>12s}{'full/refresh':>14s}")
    for k in ("ingest", "scores", "walks+eges+writeback"):
        a, b = r["refresh"]["seconds"][k], r["full"]["seconds"][k]
        print(f"{k:24s}{a:12.1f}{b:12.1f}{b / a:14.2f}")
    print(f"{'total':24s}{r['refresh']['total']:12.1f}{r['full']['total']:12.1f}{r['speedup']['total']:14.2f}")
    for rel, c in r["scores_equal"].items():
        print(
            f"{rel}: {c['pairs']} pairs, same pairs as the full recompute: {c['same_pairs']}, "
            f"largest score difference {c['max_abs_diff']:.2e}"
        )
    o = r["eges_top20_overlap"]
    print(
        f"EGES top-{K} overlap: refresh vs full rebuild {o['refresh_vs_full']:.3f}; "
        f"full rebuild seed 0 vs seed 1 {o['full_seed0_vs_seed1']:.3f} ({o['items']} items)"
    )


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--events", type=int, default=100_000, help="generated events in all (default 100,000)")
    p.add_argument("--refresh-epochs", type=int, default=2)
    p.add_argument(
        "--day-share",
        type=float,
        nargs="+",
        default=[1 / 7, 0.01],
        help="share of events in the new file; one run each (default 1/7, a day of a week, and 0.01)",
    )
    p.add_argument("--data", type=Path, help="a REES46-format log to split instead of a generated one")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("neo4j", "embed", "walkers", "ingest", "query", "graphrecall"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    results = []
    for share in args.day_share:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run(args.events, args.refresh_epochs, share, Path(tmp), args.data))
        report(results[-1])
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"refresh-{args.data.stem}.json" if args.data else "refresh.json"
    write_result(args.out / name, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
