"""FunRec's classical-CF protocol on ml-latest-small, every graphrecall channel.

Protocol (../shared/data/FUNREC_REFERENCE.md): ratings >= 4 are positives; random
80/20 row split as sklearn's ``train_test_split(test_size=0.2, random_state=42)``;
users with positives on both sides; relevant = all test positives; items seen in
training are excluded; each history item contributes its top-20 neighbours,
scores summed. HR@K = any hit, P@K = hits / min(K, #recommended), NDCG@10 binary.

Swing and ItemCF come from the project's Cypher implementation on a real Neo4j
(``--backend neo4j``, default) or its in-memory scipy twin (``--backend memory``).
EGES is trained on walks over the session transition graph of the training positives.

    python bench/funrec_cf.py [--data DIR] [--json] [--backend neo4j|memory]

The blend's weights are chosen on a validation split carved out of the training positives
(never on the test split). FunRec's UserCF is re-implemented as a reference row, and each
channel is compared with it user by user (paired bootstrap over users, 95% interval).

The last line printed is JSON: {"channels": {"swing": {"hr@5": ..}, ..}, "blend": "score:..",
"reference_usercf": {..}, "vs_reference_usercf": {..}, "published": {..}}.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from common import (
    DEFAULT_DATA,
    Split,
    evaluate,
    load_split,
    make_split,
    paired_bootstrap,
    parser,
    train_test_split_rows,
    usercf_scores,
)
from graphrecall.embed.eges import EGES, SideInfo  # noqa: E402
from graphrecall.embed.index import ItemVectorIndex  # noqa: E402
from graphrecall.ingest.sessions import session_ids  # noqa: E402
from graphrecall.query.scoring.reference import cooc_sparse, swing_sparse  # noqa: E402
from graphrecall.query.serve.retriever import DEFAULT_BLEND, BlendConfig, Neighbours  # noqa: E402
from graphrecall.query.serve.retriever import blend as retriever_blend  # noqa: E402
from graphrecall.walkers.walk import random_walks  # noqa: E402

logger = logging.getLogger("bench.funrec")

PUBLISHED = {
    "ItemCF": {"hr@5": 0.5459, "hr@10": 0.6594, "p@5": 0.1826, "p@10": 0.1444},
    "Swing": {"hr@5": 0.5042, "hr@10": 0.6194, "p@5": 0.1629, "p@10": 0.1282},
    "UserCF": {"hr@5": 0.5927, "hr@10": 0.6912, "p@5": 0.2063, "p@10": 0.1643},
}
NEIGHBOURS = 20


def topk_lists_to_matrix(item_ids, lists: dict[str, tuple[list[str], list[float]]], k: int) -> sp.csr_matrix:
    """Item x item sparse matrix holding each item's top-k neighbour scores."""
    index = {str(i): n for n, i in enumerate(item_ids)}
    rows, cols, vals = [], [], []
    for i, (ids, scores) in lists.items():
        if i not in index:
            continue
        for j, s in list(zip(ids, scores))[:k]:
            if j in index:
                rows.append(index[i])
                cols.append(index[j])
                vals.append(s)
    n = len(item_ids)
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def cypher_lists(train: pd.DataFrame, alpha: float, max_items_per_user: int, max_users_per_item: int):
    """Swing and ItemCF top-20 lists computed by the Cypher path on a local Neo4j (instance 'bench')."""
    import tempfile

    from common import server as bench_instance
    from graphrecall.app.pipeline import reset_graph
    from graphrecall.graph_schema.schema import apply_schema
    from graphrecall.graph_schema.store.lists import read_top_lists
    from graphrecall.ingest.writer import ingest_events
    from graphrecall.query.scoring.cypher import BasisParams, compute_cooc, compute_swing

    server = bench_instance().start()
    lists = {}
    with server.settings().driver() as driver:
        apply_schema(driver)
        reset_graph(driver)
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "ratings.csv"
            train[["userId", "movieId", "rating", "timestamp"]].to_csv(f, index=False)
            ingest_events(driver, f, "movielens", reject_dir=tmp, progress=False, batch_size=5000)
        basis = BasisParams(("rated_high",), max_items_per_user, max_users_per_item)
        t0 = time.perf_counter()
        compute_swing(driver, alpha=alpha, k=NEIGHBOURS, basis=basis, progress=False)
        lists["swing"] = read_top_lists(driver, "SWING")
        lists["swing_norm"] = read_top_lists(driver, "SWING", "norm")
        compute_cooc(driver, k=NEIGHBOURS, basis=None, progress=False)
        lists["cooc"] = read_top_lists(driver, "COOC")
        compute_cooc(driver, k=NEIGHBOURS, iuf=True, basis=None, progress=False)
        lists["cooc_iuf"] = read_top_lists(driver, "COOC")
        lists["cooc_iuf_norm"] = read_top_lists(driver, "COOC", "norm")
        lists["seconds"] = time.perf_counter() - t0
    return lists


def memory_lists(train: pd.DataFrame, alpha: float):
    basis = {(str(u), str(i)) for u, i in zip(train["userId"], train["movieId"])}
    t0 = time.perf_counter()
    sw, co = swing_sparse(basis, alpha=alpha, k=NEIGHBOURS), cooc_sparse(basis, k=NEIGHBOURS)
    ci = cooc_sparse(basis, k=NEIGHBOURS, iuf=True)
    lists = {"seconds": time.perf_counter() - t0}
    for name, tk in (("swing", sw), ("cooc", co), ("cooc_iuf", ci)):
        per, per_norm = {}, {}
        for r, iid in enumerate(tk.item_ids):
            keep = tk.ids[r] >= 0
            ids, sc = [str(tk.item_ids[j]) for j in tk.ids[r][keep]], tk.scores[r][keep]
            per[str(iid)] = (ids, sc.tolist())
            per_norm[str(iid)] = (ids, (sc / sc[0]).tolist() if len(sc) else [])
        lists[name], lists[name + "_norm"] = per, per_norm
    return lists


def eges_vectors(
    train: pd.DataFrame,
    movies: pd.DataFrame,
    item_ids,
    random_seed: int = 0,
    epochs: int = 3,
    session_gap: int | None = None,
    walk_length: int = 10,
    walks_per_node: int = 5,
    window: int = 3,
):
    """EGES on walks over the rating-sequence transition graph; side info = genres.

    ``session_gap=None`` keeps each user's whole history as one sequence (MovieLens ratings come in
    bursts whose order carries little); :func:`choose_blend` picks between that and 30-minute
    sessions on the validation split (:data:`EGES_GAPS`)."""
    index = {str(i): n for n, i in enumerate(item_ids)}
    df = train.sort_values(["userId", "timestamp", "movieId"])
    gap = session_gap if session_gap is not None else np.iinfo(np.int64).max // 2
    sid = session_ids(df["userId"].to_numpy(), df["timestamp"].to_numpy(), gap)
    it = np.array([index[str(i)] for i in df["movieId"]])
    same = np.r_[False, sid[1:] == sid[:-1]]
    src, dst = it[:-1][same[1:]], it[1:][same[1:]]
    n = len(item_ids)
    g = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    g = g + g.T  # rating order inside a burst carries little direction
    walks = random_walks(g, walk_length=walk_length, walks_per_node=walks_per_node, random_seed=random_seed)
    gen = dict(zip(movies["movieId"].astype(str), movies["genres"]))
    genres = [gen.get(str(i), "").split("|") for i in item_ids]
    side = SideInfo.from_columns(
        {
            "genre1": [g[0] if g and g[0] else None for g in genres],
            "genres": ["|".join(sorted(g)) if g and g[0] else None for g in genres],
        }
    )
    res = EGES(
        dim=64,
        window=window,
        epochs=epochs,
        batch_size=2048,
        lr=0.02,
        optimizer="adam",
        market_field="genre1",
        market_negatives=0,
        booked_context=False,
        shrink_window=False,
        random_seed=random_seed,
        progress=False,
    ).fit(walks, side)
    return res.embeddings


RECALL_DEPTHS = (20, 50, 100)  # neighbours per history item; the pipeline stores top-50 (RECALL_DEPTH)
RECALL_CHANNELS = ("swing", "cooc", "eges", "blend")
EGES_GAPS = (None, 30 * 60)  # whole histories or 30-minute sessions, chosen on validation


def channel_sims(
    split: Split, lists: dict, movies: pd.DataFrame, eges_epochs: int, random_seed: int, eges_gap: int | None = None
) -> tuple[dict, np.ndarray]:
    """Item x item matrices of every channel: the five score lists plus EGES (Faiss top-20); and the
    EGES vectors."""
    item_ids = split.item_ids
    sims = {
        ch: topk_lists_to_matrix(item_ids, lists[ch], NEIGHBOURS)
        for ch in ("swing", "swing_norm", "cooc", "cooc_iuf", "cooc_iuf_norm")
    }
    t0 = time.perf_counter()
    vec = eges_vectors(
        split.train,
        movies,
        item_ids,
        random_seed,
        eges_epochs,
        session_gap=eges_gap,
        walks_per_node=5,
        walk_length=10,
        window=3,
    )
    idx = ItemVectorIndex(item_ids, vec)
    s, nb = idx.search(idx.vectors, NEIGHBOURS + 1)
    rows = np.repeat(np.arange(len(item_ids)), NEIGHBOURS + 1)
    m = sp.csr_matrix((np.maximum(s.ravel(), 0), (rows, nb.ravel())), shape=(len(item_ids),) * 2)
    m.setdiag(0)
    m.eliminate_zeros()
    m = m.tocsr()
    sims["eges"] = m
    # eges row-normalised like the others: cosine / the item's best cosine
    best = np.asarray(m.max(axis=1).todense()).ravel()
    sims["eges_norm"] = (sp.diags(np.divide(1.0, best, out=np.zeros_like(best), where=best > 0)) @ m).tocsr()
    logger.info("eges in %.1fs", time.perf_counter() - t0)
    return sims, vec


BLEND_GRID = [
    BlendConfig.of("score", cooc=1.0, swing=ws, eges=we) for ws in (0.0, 0.25, 0.5, 1.0) for we in (0.0, 0.25, 0.5)
]
BLEND_GRID.append(BlendConfig.of("rrf", cooc=1.0, swing=1.0, eges=1.0))


def blend(sims: dict, config: BlendConfig, k: int = NEIGHBOURS) -> sp.csr_matrix:
    """Each item's top-``k`` blended list, made by the API's own blend function from the item's
    cooc (IUF), swing and eges lists, as an item x item matrix."""
    src = {"cooc": sims["cooc_iuf"].tocsr(), "swing": sims["swing"].tocsr(), "eges": sims["eges"].tocsr()}
    n = src["cooc"].shape[0]
    rows, cols, vals = [], [], []
    for i in range(n):
        per = {}
        for ch, m in src.items():
            a, b = m.indptr[i], m.indptr[i + 1]
            order = np.argsort(-m.data[a:b], kind="stable")
            per[ch] = Neighbours(m.indices[a:b][order], m.data[a:b][order], [ch] * (b - a))
        nb = retriever_blend(per, k, config)
        rows.extend([i] * len(nb))
        cols.extend(int(j) for j in nb.ids)
        vals.extend(nb.scores.tolist())
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def choose_blend(
    train: pd.DataFrame,
    movies: pd.DataFrame,
    alpha: float,
    eges_epochs: int,
    random_seed: int,
    validation_seed: int = 1,
) -> tuple[BlendConfig, int | None, dict]:
    """EGES's sequences and the blend weights, picked on a validation split carved from the training
    positives only.

    The training positives are split 80/20 again (``validation_seed``), every channel is rebuilt on
    the inner 80% (scipy twins of the Cypher scores, equal in the tests), EGES's session gap
    (:data:`EGES_GAPS`) with the best validation NDCG@10 is kept, and then the blend grid point with
    the best validation NDCG@10 wins. The test split is never looked at."""
    a, b = train_test_split_rows(len(train), random_state=validation_seed)
    inner = make_split(train.iloc[a], train.iloc[b])
    lists = memory_lists(inner.train, alpha)
    by_gap = {}
    for gap in EGES_GAPS:
        sims, _ = channel_sims(inner, lists, movies, eges_epochs, random_seed, eges_gap=gap)
        by_gap[gap] = (
            evaluate(np.asarray((inner.hist @ sims["eges"]).todense()), inner.hist, inner.truth)["ndcg@10"],
            sims,
        )
        logger.info("EGES with session gap %s: validation NDCG@10 %.4f", gap, by_gap[gap][0])
    gap = max(EGES_GAPS, key=lambda g: by_gap[g][0])
    sims = by_gap[gap][1]
    table = {}
    for config in BLEND_GRID:
        m = blend(sims, config)
        table[str(config)] = evaluate(np.asarray((inner.hist @ m).todense()), inner.hist, inner.truth)
    best = max(BLEND_GRID, key=lambda c: table[str(c)]["ndcg@10"])
    logger.info("blend chosen on validation (%d users): %s", len(inner.truth), best)
    return best, gap, table


def served_recall(
    split: Split, vectors: np.ndarray, alpha: float, chosen: BlendConfig, depths=RECALL_DEPTHS, channels=RECALL_CHANNELS
) -> dict:
    """What ``POST /recall`` returns for each user's training positives, read through the API's own
    :meth:`SnapshotRetriever.recall` (lists row-normalised by their best score and summed, history
    excluded), at several list depths. Swing and cooc (IUF, as the pipeline stores it) come from the
    scipy twins of the Cypher scores at the deepest depth and are cut per depth; eges is the same Faiss
    index as the table's. Returns per depth: metrics per channel, per-user arrays for the paired interval,
    list entries held and milliseconds per recall."""
    from graphrecall.query.data import topk_lists
    from graphrecall.query.serve.snapshot import SnapshotRetriever

    basis = {(str(u), str(i)) for u, i in zip(split.train["userId"], split.train["movieId"])}
    t0 = time.perf_counter()
    deep = {
        "swing": topk_lists(swing_sparse(basis, alpha=alpha, k=max(depths))),
        "cooc": topk_lists(cooc_sparse(basis, k=max(depths), iuf=True)),
    }
    build = time.perf_counter() - t0
    vectors = ItemVectorIndex(split.item_ids, vectors)
    index = {str(i): n for n, i in enumerate(split.item_ids)}
    hist = [[str(split.item_ids[j]) for j in split.hist[u].indices] for u in range(split.hist.shape[0])]
    out = {"lists_seconds_at_max_depth": build}
    for d in depths:
        cut = {ch: {i: (ids[:d], sc[:d]) for i, (ids, sc) in per.items()} for ch, per in deep.items()}
        snap = SnapshotRetriever(set(split.item_ids), cut, vectors, blend_config=chosen)
        row = {"list_entries": int(sum(len(v[0]) for per in cut.values() for v in per.values()))}
        for ch in channels:
            t0 = time.perf_counter()
            scores = np.zeros(split.hist.shape)
            for u, items in enumerate(hist):
                rec = snap.recall(items, k=10, channel=ch, depth=d)
                scores[u, [index[i] for i in rec.ids]] = np.arange(len(rec), 0, -1)  # the served order
            per_user = evaluate(scores, split.hist, split.truth, per_user=True)
            row[ch] = {
                "metrics": {m: float(v.mean()) for m, v in per_user.items()},
                "per_user": per_user,
                "ms_per_recall": 1000 * (time.perf_counter() - t0) / len(hist),
            }
            logger.info(
                "recall depth %d %s: HR@10 %.4f (%.1f ms per user)",
                d,
                ch,
                row[ch]["metrics"]["hr@10"],
                row[ch]["ms_per_recall"],
            )
        out[d] = row
    return out


def run(
    data: Path,
    backend: str,
    alpha: float,
    max_items_per_user: int,
    max_users_per_item: int,
    eges_epochs: int,
    random_seed: int,
) -> dict:
    train, test = load_split(data)
    split = make_split(train, test)
    logger.info("train %d, test %d positives; %d users with both", len(train), len(test), len(split.truth))
    movies = pd.read_csv(data / "movies.csv")
    chosen, eges_gap, validation = choose_blend(train, movies, alpha, eges_epochs, random_seed)

    if backend == "neo4j":
        lists = cypher_lists(train, alpha, max_items_per_user, max_users_per_item)
    else:
        lists = memory_lists(train, alpha)
    logger.info("swing + cooc (%s) in %.1fs", backend, lists["seconds"])
    sims, vectors = channel_sims(split, lists, movies, eges_epochs, random_seed, eges_gap=eges_gap)
    sims["blend"] = blend(sims, chosen)
    if chosen != DEFAULT_BLEND:
        sims["blend_api_default"] = blend(sims, DEFAULT_BLEND)
    per_user = {
        ch: evaluate(np.asarray((split.hist @ m).todense()), split.hist, split.truth, per_user=True)
        for ch, m in sims.items()
    }
    # FunRec's UserCF, re-implemented as a reference, so that each channel can be compared with it user by user
    ref = evaluate(usercf_scores(split.all_users, split.rows), split.hist, split.truth, per_user=True)
    paired = {
        ch: {
            metric: dict(zip(("diff", "lo", "hi"), paired_bootstrap(r[metric], ref[metric], random_seed=random_seed)))
            for metric in ("p@5", "hr@10")
        }
        for ch, r in per_user.items()
    }
    mean = {ch: {k: float(v.mean()) for k, v in r.items()} for ch, r in per_user.items()}
    recall = served_recall(split, vectors, alpha, chosen)
    endpoint = {"lists_seconds_at_max_depth": recall.pop("lists_seconds_at_max_depth"), "depths": {}}
    for d, row in recall.items():
        entry = {"list_entries": row.pop("list_entries")}
        for ch, r in row.items():
            pu = r["per_user"]
            entry[ch] = {
                **r["metrics"],
                "ms_per_recall": r["ms_per_recall"],
                "vs_reference_usercf_hr@10": dict(
                    zip(("diff", "lo", "hi"), paired_bootstrap(pu["hr@10"], ref["hr@10"], random_seed=random_seed))
                ),
            }
        endpoint["depths"][str(d)] = entry
    return {
        "users": len(split.truth),
        "train": len(train),
        "test": len(test),
        "backend": backend,
        "channels": mean,
        "blend": str(chosen),
        "blend_api_default": str(DEFAULT_BLEND),
        "eges_session_gap": eges_gap,
        "validation": validation,
        "reference_usercf": {k: float(v.mean()) for k, v in ref.items()},
        "vs_reference_usercf": paired,
        "recall_endpoint": endpoint,
    }


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ml-latest-small folder (ratings.csv, movies.csv)")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    p.add_argument("--backend", choices=["neo4j", "memory"], default="neo4j", help="where Swing/ItemCF run")
    p.add_argument("--alpha", type=float, default=1.0, help="Swing alpha (FunRec: 1)")
    p.add_argument("--max-items-per-user", type=int, default=1000)
    p.add_argument("--max-users-per-item", type=int, default=1000)
    p.add_argument("--eges-epochs", type=int, default=3)
    p.add_argument("--random-seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.json else logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    logging.getLogger("neo4j").setLevel(logging.WARNING)
    logging.getLogger("faiss").setLevel(logging.WARNING)
    if not (args.data / "ratings.csv").exists():
        p.error(f"{args.data}/ratings.csv not found; pass --data pointing at ml-latest-small")
    out = run(
        args.data,
        args.backend,
        args.alpha,
        args.max_items_per_user,
        args.max_users_per_item,
        args.eges_epochs,
        args.random_seed,
    )
    out["published"] = PUBLISHED
    if not args.json:
        cols = ["hr@5", "hr@10", "p@5", "p@10", "ndcg@10"]
        print(
            f"ml-latest-small, FunRec protocol: {out['users']} users, {out['train']} train / {out['test']} test positives"
        )
        print(f"{'model':36s}" + "".join(f"{c:>9s}" for c in cols))
        for name, r in PUBLISHED.items():
            print(f"{'FunRec ' + name:36s}" + "".join(f"{r.get(c, float('nan')):9.4f}" for c in cols))
        r = out["reference_usercf"]
        print(f"{'UserCF (re-implemented)':36s}" + "".join(f"{r[c]:9.4f}" for c in cols))
        for ch, r in out["channels"].items():
            print(f"{'graphrecall ' + ch:36s}" + "".join(f"{r[c]:9.4f}" for c in cols))
        print(
            f"\nblend = {out['blend']} (graphrecall.query.serve.blend, top-{NEIGHBOURS} per item), chosen by NDCG@10 "
            f"on a validation split of the training positives; the API's default is {out['blend_api_default']}:"
        )
        for name, r in out["validation"].items():
            print(f"  {name:34s}" + "".join(f"{r[c]:9.4f}" for c in cols))
        print(
            "\nPOST /recall through SnapshotRetriever.recall (row-normalised lists summed, history excluded), "
            "by list depth:"
        )
        for d, entry in out["recall_endpoint"]["depths"].items():
            for ch in RECALL_CHANNELS:
                r = entry[ch]
                v = r["vs_reference_usercf_hr@10"]
                print(
                    f"  {'top-' + d + ' ' + ch:34s}"
                    + "".join(f"{r[c]:9.4f}" for c in cols)
                    + f"   HR@10 vs UserCF {v['diff']:+.4f} [{v['lo']:+.4f}, {v['hi']:+.4f}], {r['ms_per_recall']:.1f} ms/user"
                )
            print(f"  {'':34s}{entry['list_entries']} swing+cooc list entries held")
        print("\nchannel - re-implemented UserCF, paired over users (mean, 95% bootstrap interval):")
        for ch, r in out["vs_reference_usercf"].items():
            print(
                f"  {ch:34s}"
                + "".join(f"  {m} {d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]" for m, d in r.items())
            )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
