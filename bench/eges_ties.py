"""The eges channel's tie-break, on the validation split only: exact ties (items without events that share
side info share one vector) ordered by price proximity to the query, against Faiss's own order.

REES46 head17k, the validation split of ``bench/next_item.py`` (the test period is not read). The
retriever is built as there (the pipeline's channels and EGES settings); for each seed, the same vectors
are served both ways, the eges channel and the tuned default blend (``score:eges=0.25,rank=1``), and HR@20
and NDCG@20 are compared case by case (paired). Taobao has no prices, so nothing changes there.

    python bench/eges_ties.py [--seeds 0 1 2]
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from common import parser, write_result

ROOT = Path(__file__).resolve().parents[1]

logger = logging.getLogger("bench.eges_ties")
BLEND = "score:eges=0.25,rank=1"  # what validation chose on REES46 (README, next-item section)


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "eges_ties.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("query", "embed", "walkers", "faiss"):
        logging.getLogger(name).setLevel(logging.WARNING)

    from common import Data, load
    from graphrecall.app.pipeline import PipelineConfig
    from graphrecall.query.channels.eges import eges_vectors
    from graphrecall.query.evaluate.protocol import K, build_retriever, paired_interval, served_lists, temporal_split
    from graphrecall.query.serve.retriever import BlendConfig

    df, item_side = load("rees46")
    val = Data(temporal_split(temporal_split(df).train), item_side)  # validation: the split inside training
    cfg = PipelineConfig()
    retriever, _ = build_retriever(
        val.split.train, val.sessions, val.cat, cfg, channels=("swing", "cooc", "trans", "side", "rank")
    )
    retriever.blend_config = BlendConfig.parse(BLEND)

    served = type(retriever)._eges

    def faiss_order(self, item_id, k):
        return self.vectors.similar_items(item_id, k)

    rows = {}
    for seed in args.seeds:
        retriever.vectors = eges_vectors(val.sessions, val.cat, asdict(cfg.eges), seed)
        for way, fn in (("tie-break", served), ("Faiss order", faiss_order)):
            type(retriever)._eges = fn
            retriever.vectors = retriever.vectors  # a fresh answer cache
            for channel in ("eges", "blend"):
                summary, hit, ndcg = val.evaluate(served_lists(retriever, val.queries, channel))
                rows.setdefault((channel, way), []).append((summary, hit, ndcg))
        type(retriever)._eges = served
    out = {
        "split": "REES46 head17k validation",
        "cases": int(len(val.cases)),
        "blend": BLEND,
        "seeds": args.seeds,
        "rows": [],
    }
    for channel in ("eges", "blend"):
        for way in ("tie-break", "Faiss order"):
            runs = rows[(channel, way)]
            row = {"channel": channel, "ties": way}
            for subset in ("all", "warm", "cold"):
                for metric in (f"hr@{K}", f"ndcg@{K}"):
                    vals = [r[0][subset][metric] for r in runs]
                    row[f"{subset} {metric}"] = [float(np.mean(vals)), float(np.std(vals))]
            out["rows"].append(row)
            print(
                f"{channel:6s} {way:12s} "
                + "  ".join(f"{k} {v[0]:.4f}±{v[1]:.4f}" for k, v in row.items() if isinstance(v, list))
            )
        a = np.concatenate([r[2] for r in rows[(channel, "tie-break")]])
        b = np.concatenate([r[2] for r in rows[(channel, "Faiss order")]])
        mean, lo, hi = paired_interval(a, b)
        out[f"{channel} ndcg@{K} paired difference (cases x seeds)"] = [mean, lo, hi]
        print(f"{channel}: tie-break - Faiss order, NDCG@{K} over cases x seeds: {mean:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
