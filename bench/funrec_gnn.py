"""The gnn channel (LightGCN, torch-geometric) on FunRec's protocol: two-tower recall from the user's own vector.

Protocol (../shared/data/FUNREC_REFERENCE.md, as bench/funrec_cf.py): ml-latest-small, ratings >= 4 are
positives, sklearn's random 80/20 row split (seed 42), 599 users with positives on both sides, items seen in
training excluded, HR@K = any hit, P@K = hits / min(K, #recommended), NDCG@10 binary.

* LightGCN's epochs, learning rate and L2 weight are chosen on a validation split carved from the training
  positives (80/20 again, seed 1, as funrec_cf.py chooses its blend); the test split is read once per seed.
* What is measured is what ``GET /recall/{user}?channel=gnn`` serves: :meth:`SnapshotRetriever.recall_user`
  over the channel's user tower (Faiss inner product), each user's training positives as the history.
* Beside it, a strong full user model: EASE (Steck 2019), its L2 weight chosen on the same validation split;
  and FunRec's UserCF re-implemented. Seeds 0, 1, 2: mean ± sd, and a paired bootstrap interval over users
  against EASE for the mean of the seeds.

    python bench/funrec_gnn.py [--seeds 0 1 2] [--out bench/results]
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from common import (
    DEFAULT_DATA,
    evaluate,
    load_split,
    make_split,
    paired_bootstrap,
    parser,
    train_test_split_rows,
    usercf_scores,
    write_result,
)
from graphrecall.embed.gnn import fit_gnn
from graphrecall.embed.settings import GnnSettings
from graphrecall.query.serve.snapshot import SnapshotRetriever

logger = logging.getLogger("bench.funrec_gnn")
GRID = [dict(epochs=e, reg=r) for e, r in itertools.product((150, 300), (1e-3, 1e-2))]  # lr 0.01
EASE_L2 = (100.0, 300.0, 1000.0, 3000.0)


def ease_scores(hist_all, rows, l2: float) -> np.ndarray:
    """EASE: B = I - P / diag(P), P = (X^T X + l2 I)^-1, zero diagonal; scores = X B for ``rows``."""
    x = hist_all.astype(np.float64)
    g = (x.T @ x).toarray()
    g[np.diag_indices_from(g)] += l2
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return np.asarray(x[rows] @ b)


def served_gnn(split, settings: GnnSettings, seed: int) -> tuple[dict, float]:
    """Per-user metrics of ``recall_user(channel="gnn")`` for every evaluated user, and seconds to train."""
    users = np.array([u for u, _ in zip(split.train["userId"], split.train["movieId"])], dtype=object).astype(str)
    items = split.train["movieId"].astype(str).to_numpy(dtype=object)
    t0 = time.perf_counter()
    model = fit_gnn(users, items, settings, 50, random_seed=seed, progress=False)
    secs = time.perf_counter() - t0
    snap = SnapshotRetriever(set(split.item_ids), {"gnn": model.lists}, users=model.tower)
    every = sorted(set(split.train["userId"]))
    index = {str(i): n for n, i in enumerate(split.item_ids)}
    scores = np.zeros(split.hist.shape)
    t0 = time.perf_counter()
    for r, row in enumerate(split.rows):
        uid = str(every[row])
        history = [str(split.item_ids[j]) for j in split.hist[r].indices]
        rec = snap.recall_user(uid, history, k=10, channel="gnn")
        if rec.via != "user vector":
            raise RuntimeError(f"user {uid} was not answered from a user vector")
        for n, i in enumerate(rec.ids):  # rank order as scores (all positive, ties impossible)
            scores[r, index[str(i)]] = 10 - n
    ms = 1000 * (time.perf_counter() - t0) / len(split.rows)
    return evaluate(scores, split.hist, split.truth, per_user=True), secs, ms


def run(seeds: list[int]) -> dict:
    train, test = load_split(DEFAULT_DATA)
    a, b = train_test_split_rows(len(train), random_state=1)
    val = make_split(train.iloc[a], train.iloc[b])
    base = GnnSettings(lr=0.01)
    validation = {}
    for g in GRID:
        m, secs, _ = served_gnn(val, replace(base, **g), 0)
        validation[json.dumps(g)] = {k: float(v.mean()) for k, v in m.items()} | {"seconds": secs}
        logger.info("validation %s: HR@10 %.4f NDCG@10 %.4f (%.0fs)", g, m["hr@10"].mean(), m["ndcg@10"].mean(), secs)
    chosen = json.loads(max(validation, key=lambda k: validation[k]["ndcg@10"]))
    ease_val = {
        l2: float(evaluate(ease_scores(val.all_users, val.rows, l2), val.hist, val.truth)["ndcg@10"]) for l2 in EASE_L2
    }
    l2 = max(ease_val, key=ease_val.get)
    logger.info("chosen on validation: LightGCN %s; EASE l2 %g (NDCG@10 %s)", chosen, l2, ease_val)

    split = make_split(train, test)
    per_seed = [served_gnn(split, replace(base, **chosen), s) for s in seeds]
    ease = evaluate(ease_scores(split.all_users, split.rows, l2), split.hist, split.truth, per_user=True)
    usercf = evaluate(usercf_scores(split.all_users, split.rows), split.hist, split.truth, per_user=True)
    metrics = per_seed[0][0].keys()
    gnn = {
        k: (float(np.mean([m[k].mean() for m, _, _ in per_seed])), float(np.std([m[k].mean() for m, _, _ in per_seed])))
        for k in metrics
    }
    mean_hits = np.mean([m["hr@10"] for m, _, _ in per_seed], axis=0)
    return {
        "users": len(split.truth),
        "validation": validation,
        "chosen": chosen | {"lr": 0.01},
        "ease_l2": l2,
        "ease_validation_ndcg@10": ease_val,
        "gnn_user_vector": gnn,
        "train_seconds": [s for _, s, _ in per_seed],
        "ms_per_recall": [ms for _, _, ms in per_seed],
        "ease": {k: float(v.mean()) for k, v in ease.items()},
        "usercf": {k: float(v.mean()) for k, v in usercf.items()},
        "gnn_vs_ease_hr@10": dict(zip(("diff", "lo", "hi"), paired_bootstrap(mean_hits, ease["hr@10"]))),
        "gnn_vs_usercf_hr@10": dict(zip(("diff", "lo", "hi"), paired_bootstrap(mean_hits, usercf["hr@10"]))),
        "seeds": seeds,
    }


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("graphrecall").setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(int(os.environ.get("GRAPHRECALL_TORCH_THREADS", "2")))
    out = run(args.seeds)
    cols = ("hr@5", "hr@10", "p@5", "p@10", "ndcg@10")
    print(f"ml-latest-small, FunRec protocol, {out['users']} users; LightGCN chosen on validation: {out['chosen']}")
    print(f"{'model':40s}" + "".join(f"{c:>16s}" for c in cols))
    print(
        f"{'gnn, /recall from the user vector':40s}"
        + "".join(f"{m:9.4f} ± {s:.4f}" for m, s in (out["gnn_user_vector"][c] for c in cols))
    )
    for name in ("ease", "usercf"):
        print(f"{name:40s}" + "".join(f"{out[name][c]:16.4f}" for c in cols))
    for name in ("ease", "usercf"):
        d = out[f"gnn_vs_{name}_hr@10"]
        print(f"gnn - {name} HR@10: {d['diff']:+.4f} (95% paired interval {d['lo']:+.4f}..{d['hi']:+.4f})")
    print(f"train {np.mean(out['train_seconds']):.0f} s, {np.mean(out['ms_per_recall']):.2f} ms per recall")
    write_result(args.out / "funrec_gnn.json", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
