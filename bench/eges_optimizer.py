"""EGES's optimizer and batch size, scored on validation only (the test period is not read).

The hand-written EGES step (``embed.eges.pair_gradients``) runs with one of two optimizers:

* ``adam``: Adam, LazyAdam on the per-item tables from 20k items;
* ``sgd``: word2vec's SGD on the per-item tables (the rows each pair uses moved by lr times its gradient,
  lr decayed linearly), with Adam on the shared side tables.

This script trains each variant on the validation split that ``bench/next_item.py`` tunes on (the same
temporal split inside the training period), with the pipeline's other EGES settings. It prints the served
eges channel's NDCG@20 (all cases) and HR@20 (warm, cold) as mean ± sd over seeds, with the training time
(which other work on the machine inflates).

    python bench/eges_optimizer.py [--datasets rees46 taobao] [--seeds 0 1 2]
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from common import Data, load, parser, write_result  # noqa: E402
from graphrecall.common.threads import torch_threads  # noqa: E402
from graphrecall.query.channels.eges import eges_vectors
from graphrecall.query.config import PipelineConfig  # noqa: E402
from graphrecall.query.evaluate.protocol import K, build_retriever, served_lists, temporal_split  # noqa: E402

logger = logging.getLogger("bench.eges_optimizer")
VARIANTS = {
    "adam, batch 1024, lr 0.01": dict(optimizer="adam", batch_size=1024),
    "adam, batch 4096, lr 0.01": dict(optimizer="adam", batch_size=4096),
    "sgd, batch 1024, lr 0.025": dict(optimizer="sgd", batch_size=1024),
    "sgd, batch 4096, lr 0.025": dict(optimizer="sgd", batch_size=4096),
}


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--datasets", nargs="+", default=["rees46", "taobao"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"any of {list(VARIANTS)}")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "eges_optimizer.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        ap.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    cfg = PipelineConfig()
    out = {}
    for name in args.datasets:
        df, item_side = load(name)
        split = temporal_split(df)
        val = Data(temporal_split(split.train), item_side)  # validation only: split.test_sessions is never used
        retriever, _ = build_retriever(val.split.train, val.sessions, val.cat, cfg, channels=("side",))
        res = {}
        for label in args.variants:
            runs = []
            for seed in args.seeds:
                t0 = time.perf_counter()
                with torch_threads(cfg.torch_threads):
                    retriever.vectors = eges_vectors(
                        val.sessions, val.cat, {**asdict(cfg.eges), **VARIANTS[label]}, seed
                    )
                secs = time.perf_counter() - t0
                s, _, _ = val.evaluate(served_lists(retriever, val.queries, "eges"))
                runs.append(
                    {
                        "ndcg_all": s["all"][f"ndcg@{K}"],
                        "hr_warm": s["warm"][f"hr@{K}"],
                        "hr_cold": s["cold"][f"hr@{K}"],
                        "seconds": secs,
                    }
                )
                logger.info("%s %s seed %d: %s", name, label, seed, runs[-1])
            res[label] = {
                k: (float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs]))) for k in runs[0]
            }
        out[name] = {
            "validation_cases": int(len(val.cases)),
            "warm": int(val.masks["warm"].sum()),
            "cold": int(val.masks["cold"].sum()),
            "variants": res,
        }
        print(
            f"\n{name} validation ({out[name]['validation_cases']} cases, {out[name]['warm']} warm, "
            f"{out[name]['cold']} cold), seeds {args.seeds}"
        )
        print(f"| variant | NDCG@{K} all | HR@{K} warm | HR@{K} cold | train s |\n|---|---|---|---|---|")
        for label, r in res.items():
            print(
                f"| {label} | "
                + " | ".join(f"{r[k][0]:.4f} ± {r[k][1]:.4f}" for k in ("ndcg_all", "hr_warm", "hr_cold"))
                + f" | {r['seconds'][0]:.0f} |"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
