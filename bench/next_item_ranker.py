"""The ``rank`` channel (query/ranker.py) on the next-item bench's validation split; the test period is not read.

Every single-signal fix in ``bench/next_item_ideas.py`` stayed inside the noise. The ``rank`` channel
*combines* them with a learned model. This script trains it on the validation split's training sessions only
(cuts inside them: features before each cut, labels after it), lists the validation queries' top 20 with
features from all those sessions, and prints HR@20/NDCG@20 beside the baselines, for a few model settings
and for items without events down-weighted by 1, 0.5 and 0.3 (what the blend's ``new=`` weight does;
``--new-weights`` sets others).

    python bench/next_item_ranker.py [--datasets rees46 taobao]
"""

from __future__ import annotations

import json
import logging
import sys
import time

import numpy as np

from common import Data, baselines, load, parser  # noqa: E402
from graphrecall.query.channels.rank import GBDT, RankFeatures, fit_ranker  # noqa: E402
from graphrecall.query.evaluate.protocol import K, pad, temporal_split  # noqa: E402

SEEDS = [dict(random_seed=1), dict(random_seed=2)]
CONFIGS = [{}, *SEEDS, dict(n_estimators=400), dict(num_leaves=31)]


def lists(ranker, feats: RankFeatures, queries, fill: dict, new_weight: float = 1.0) -> dict:
    got = ranker.top_lists(feats, sorted(queries), k=K, new_weight=new_weight)
    return {q: pad(list(got.get(q, ((),))[0]), fill.get(q, []), K, exclude=q) for q in queries}


def run(name: str, configs=CONFIGS, new_weights=(1.0, 0.5, 0.3)) -> dict:
    t0 = time.perf_counter()
    df, item_side = load(name)
    val = Data(temporal_split(temporal_split(df).train), item_side)
    print(f"\n{name}: validation cases { ({k: int(v.sum()) for k, v in val.masks.items()}) }", flush=True)
    out = {}

    def rep(label, ls):
        s = val.evaluate(ls)[0]
        out[label] = s
        print(
            f"  {label:58s} all {s['all'][f'hr@{K}']:.4f}  warm {s['warm'][f'hr@{K}']:.4f}  "
            f"cold {s['cold'][f'hr@{K}']:.4f}  NDCG all {s['all'][f'ndcg@{K}']:.4f}  "
            f"NDCG warm {s['warm'][f'ndcg@{K}']:.4f}",
            flush=True,
        )

    base = baselines(val)
    for m, ls in base.items():
        rep(m + " (baseline)", ls)
    feats = RankFeatures(val.sessions, val.cat)
    rows, ti = val.cat.rows(val.cases.query), val.cat.rows(val.cases.target)
    cand = {}
    recall = np.array([q >= 0 and t in set(cand.setdefault(q, feats.candidates(q))) for q, t in zip(rows, ti)])
    print(f"  candidate recall: all {recall.mean():.3f}, warm {recall[val.masks['warm']].mean():.3f}", flush=True)
    for n, cfg in enumerate(configs):
        ranker = fit_ranker(val.sessions, item_side, **cfg)
        for nw in new_weights:
            rep(
                f"rank {json.dumps({**GBDT, **cfg}) if n else 'default'} new x{nw}",
                lists(ranker, feats, val.queries, base["side-field match"], nw),
            )
    print(f"  ({time.perf_counter() - t0:.0f}s)")
    return out


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--datasets", nargs="+", default=["rees46", "taobao"])
    p.add_argument("--seeds-only", action="store_true", help="the default settings with seeds 0, 1, 2 only")
    p.add_argument(
        "--new-weights",
        nargs="+",
        type=float,
        default=[1.0, 0.5, 0.3],
        help="weights on the scores of items without events (the blend's new=)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for name in args.datasets:
        run(name, [{}, *SEEDS] if args.seeds_only else CONFIGS, args.new_weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
