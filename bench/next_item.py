"""Next-item evaluation on e-commerce logs (REES46, Taobao), with EGES ablations and cold start.

Protocol, per dataset:

* events are read and sessionised (30 min) by the project's own ingest code;
* for each user, the last session with >= 2 distinct items is the test case: the query is the
  item before the last, the target is the last; that last event is removed from training;
* cold start: a random 10% of items (seed 0) are withheld from training entirely; test cases
  whose target is withheld measure "cold" HR@20 (found only through side-info vectors);
* every model answers the query item with 20 neighbours (i2i); HR@20 and NDCG@20 are reported.

Models: swing and cooc (the project's scipy twins of the Cypher scores, equal in tests), EGES
(+ booked context, + same-market negatives) and its ablations, and gensim item2vec (skip-gram)
trained on the same walks.

    python bench/next_item.py [--datasets rees46 taobao] [--out bench/out] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embed.eges import EGES, SideInfo  # noqa: E402
from embed.index import ItemVectorIndex  # noqa: E402
from ingest.formats import RejectSink, read_events  # noqa: E402
from ingest.sessions import derive_rows  # noqa: E402
from query.oracle import capped_basis, cooc_sparse, swing_sparse  # noqa: E402
from walkers.walk import random_walks, walks_to_corpus  # noqa: E402

logger = logging.getLogger("bench.next_item")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = {
    "rees46": (SHARED / "rees46" / "2019-Oct_head17k_clean.csv", "rees46"),
    "taobao": (SHARED / "taobao" / "UserBehavior_tail10k_HotItems.csv", "taobao"),
}
K = 20
SIDE_FIELDS = ("category", "brand", "price_bucket", "market")


def prepare(path: Path, fmt: str, cold_frac: float, seed: int):
    events = list(read_events(path, fmt, RejectSink(path, None)))
    rows = derive_rows(events)
    rng = np.random.default_rng(seed)
    items = sorted({e.item for e in events})
    cold = set(rng.choice(items, size=int(cold_frac * len(items)), replace=False).tolist())
    # test case per user: the last session with >= 2 items
    last: dict[str, dict] = {}
    for s in rows.sessions:
        if len(s["items"]) >= 2 and (s["user"] not in last or s["start_ts"] > last[s["user"]]["start_ts"]):
            last[s["user"]] = s
    cases = [(s["items"][-2], s["items"][-1], s["id"]) for s in last.values()]
    held_sessions = {sid for _, _, sid in cases}
    # training sessions: drop the target of each test session and every cold item
    train_sessions, booked = [], []
    for s in rows.sessions:
        seq = s["items"][:-1] if s["id"] in held_sessions else s["items"]
        seq = [i for i in seq if i not in cold]
        train_sessions.append(seq)
        booked.append(s["booked"] if s["booked"] in seq else None)
    side = {i: {} for i in items}
    for r in rows.items:
        side[r["id"]] = r["props"]
    held_pairs = {(s["user"], s["items"][-1]) for s in last.values()}
    basis_triples = [(e.user, e.item, e.ts) for e in events if e.item not in cold and (e.user, e.item) not in held_pairs]
    return items, cold, cases, train_sessions, booked, side, basis_triples


def hr_ndcg(ranked: dict[str, list[str]], cases, subset=None) -> dict:
    hits, ndcg, n = 0.0, 0.0, 0
    for q, t, _ in cases:
        if subset is not None and t not in subset:
            continue
        n += 1
        lst = ranked.get(q, [])[:K]
        if t in lst:
            hits += 1
            ndcg += 1.0 / np.log2(lst.index(t) + 2)
    return {"hr@20": hits / n if n else float("nan"), "ndcg@20": ndcg / n if n else float("nan"), "cases": n}


def train_graph(items, sessions):
    index = {i: n for n, i in enumerate(items)}
    src, dst = [], []
    for seq in sessions:
        for a, b in zip(seq[:-1], seq[1:]):
            src.append(index[a])
            dst.append(index[b])
    n = len(items)
    return sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n)), index


def neighbours_from_vectors(items, vectors, queries) -> dict[str, list[str]]:
    idx = ItemVectorIndex(items, vectors)
    out = {}
    for q in queries:
        if q in idx:
            ids, _ = idx.similar_items(q, K)
            out[q] = list(ids)
    return out


def run_dataset(name: str, path: Path, fmt: str, seed: int, epochs: int) -> dict:
    items, cold, cases, sessions, booked, side_props, triples = prepare(path, fmt, 0.1, seed)
    queries = {q for q, _, _ in cases}
    logger.info("%s: %d items (%d cold), %d test cases", name, len(items), len(cold), len(cases))
    results = {}

    basis = capped_basis(triples)
    for ch, fn in (("swing", swing_sparse), ("cooc", cooc_sparse)):
        tk = fn(basis, k=K)
        ranked = {str(tk.item_ids[r]): [str(tk.item_ids[j]) for j in tk.ids[r] if j >= 0] for r in range(len(tk.item_ids))}
        results[ch] = {"all": hr_ndcg(ranked, cases), "cold": hr_ndcg(ranked, cases, cold)}

    g, index = train_graph(items, sessions)
    walks = random_walks(g + g.T * 0.5, walk_length=10, walks_per_node=10, random_seed=seed)
    sess_idx = [np.array([index[i] for i in s], dtype=np.int64) for s in sessions]
    booked_idx = np.array([index[b] if b is not None else -1 for b in booked])
    fields = [f for f in SIDE_FIELDS if any(side_props[i].get(f) is not None for i in items)]
    side = SideInfo.from_columns({f: [None if side_props[i].get(f) is None else str(side_props[i][f]) for i in items]
                                  for f in fields})
    market = "market" if "market" in fields else "category"
    variants = {
        "eges": dict(booked_context=True, market_negatives=2, market_field=market, side=side),
        "eges-no-booked": dict(booked_context=False, market_negatives=2, market_field=market, side=side),
        "eges-no-market-neg": dict(booked_context=True, market_negatives=0, market_field=market, side=side),
        "eges-no-side-info": dict(booked_context=True, market_negatives=0, market_field=None,
                                  side=SideInfo(tuple(), np.zeros((len(items), 0), np.int64), [])),
    }
    holdout = np.array([index[c] for c in cold], dtype=np.int64)
    for vname, v in variants.items():
        t0 = time.perf_counter()
        model = EGES(dim=32, window=5, epochs=epochs, batch_size=1024, lr=0.01, booked_context=v["booked_context"],
                     market_negatives=v["market_negatives"], market_field=v["market_field"], random_seed=seed, progress=False)
        res = model.fit(walks, v["side"], sessions=sess_idx, booked=booked_idx, holdout=holdout)
        ranked = neighbours_from_vectors(items, res.embeddings, queries)
        results[vname] = {"all": hr_ndcg(ranked, cases), "cold": hr_ndcg(ranked, cases, cold),
                          "seconds": time.perf_counter() - t0}

    from gensim.models import Word2Vec

    corpus = [[items[x] for x in w] for w in walks_to_corpus(walks)]
    t0 = time.perf_counter()
    w2v = Word2Vec(corpus, vector_size=32, window=5, sg=1, negative=5, min_count=1, epochs=epochs, workers=2, seed=seed)
    ranked = {q: [w for w, _ in w2v.wv.most_similar(q, topn=K)] for q in queries if q in w2v.wv}
    results["item2vec (gensim)"] = {"all": hr_ndcg(ranked, cases), "cold": hr_ndcg(ranked, cases, cold),
                                    "seconds": time.perf_counter() - t0}
    return {"items": len(items), "cold_items": len(cold), "cases": len(cases), "models": results}


def plot(name: str, res: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(res["models"])
    metrics = [("all", "hr@20"), ("all", "ndcg@20"), ("cold", "hr@20")]
    fig, ax = plt.subplots(figsize=(10, 4))
    w = 0.8 / len(metrics)
    x = np.arange(len(models))
    for n, (part, m) in enumerate(metrics):
        ax.bar(x + n * w, [res["models"][mm][part][m] for mm in models], w, label=f"{m} ({part})")
    ax.set_xticks(x + w, models, rotation=20, ha="right")
    ax.set_title(f"next item, {name}: {res['cases']} cases, {res['cold_items']} cold items")
    ax.legend()
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"next_item_{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("out"))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--random-seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.json else logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("embed").setLevel(logging.WARNING)
    logging.getLogger("gensim").setLevel(logging.WARNING)
    out = {}
    for name in args.datasets:
        path, fmt = DATASETS[name]
        if not path.exists():
            p.error(f"{path} not found; this benchmark reads ../shared/data")
        out[name] = run_dataset(name, path, fmt, args.random_seed, args.epochs)
        out[name]["plot"] = str(plot(name, out[name], args.out))
        if not args.json:
            r = out[name]
            print(f"\n{name}: {r['cases']} test cases, {r['items']} items, {r['cold_items']} withheld (cold)")
            print(f"{'model':22s}{'HR@20':>8s}{'NDCG@20':>9s}{'cold HR@20':>12s}")
            for m, v in r["models"].items():
                print(f"{m:22s}{v['all']['hr@20']:8.4f}{v['all']['ndcg@20']:9.4f}{v['cold']['hr@20']:12.4f}")
            print(f"plot: {r['plot']}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
