"""Next item on e-commerce logs, leak-free: temporal split, strong baselines, served channels.

Protocol (query/evaluation.py, tested on hand-built logs in tests/test_evaluation.py):

* T = the 80% quantile of event times; training = every event before T; test = the 30-minute
  sessions that start at or after T (a session straddling T gives its late events to neither side);
  every consecutive distinct pair (a -> b) of a test session is a case (query a, target b);
* validation = the same split inside the training events; every hyperparameter (item2vec, EGES,
  blend weights) is chosen there by NDCG@20; the test period is read once, with the chosen settings;
* the catalogue is every item of the log's item catalogue (``graphrecall ingest items --format
  rees46|taobao``: side info only), so items first seen after T are "new" and reachable only through
  side info; every model answers from it; HR@20/NDCG@20 on all, warm (target trained), cold (target
  new) and cold-query (query new) cases;
* models with randomness run with seeds 0, 1, 2 (mean ± sd); deterministic ones once.

Served channels (swing, cooc, trans, side, rank, eges, blend) are read through the API's own
``SnapshotRetriever``; swing/cooc are the scipy twins of the Cypher scores (equal in the tests),
trans is the TRANSITION edges, side the SideIndex, rank the learned ranker's lists (query/ranker.py,
trained on cuts inside the training sessions), eges the Faiss index of embed.train's vectors.

    python bench/next_item.py [--datasets rees46 taobao] [--seeds 0 1 2] [--out bench/results]
    python bench/next_item.py --validation-only   # tuning and scores on validation; the test period unread
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from common import DATASETS, Data, baselines, load, parser, write_result  # noqa: E402  # noqa: E402
from graphrecall.app.pipeline import PipelineConfig  # noqa: E402
from graphrecall.query.channels.eges import eges_vectors  # noqa: E402
from graphrecall.query.evaluate.protocol import (  # noqa: E402
    K,
    best_of,
    build_retriever,
    pad,
    paired_interval,
    search_blend,
    served_lists,
    side_popularity_lists,
    temporal_split,
)
from graphrecall.query.serve.blend import DEFAULT_BLEND, BlendConfig  # noqa: E402

logger = logging.getLogger("bench.next_item")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EGES_BASE = dict(epochs=10, dim=32, window=5, walks_per_node=10, walk_length=10, market_negatives=2)
# greedy search on validation: each change is kept when it raises validation NDCG@20
EGES_STEPS = [dict(market_negatives=0), dict(booked_weight=5.0), dict(train_on_sessions=False), dict(dim=64)]
ITEM2VEC_GRID = [
    dict(epochs=e, ns_exponent=ns, sample=smp, negative=10)
    for e, ns, smp in itertools.product((10, 30), (0.75, -0.5), (0.0, 1e-4))
]
MP2V_GRID = [dict(epochs=e, alpha=a) for e, a in itertools.product((10, 30), (0.5, 1.0))]
# the channels built from the pipeline's settings for validation and test (eges and gnn are built per seed)
FIXED_CHANNELS = ("swing", "cooc", "trans", "side", "rank", "seqrules")


def item2vec_lists(d: Data, params: dict, seed: int, fill: dict) -> dict:
    """gensim skip-gram on training sessions of >= 2 items; one worker (reproducible); queries outside its
    vocabulary and short lists are padded with popularity in the query's category."""
    from gensim.models import Word2Vec

    corpus = [s["items"] for s in d.sessions if len(s["items"]) >= 2]
    w2v = Word2Vec(corpus, vector_size=32, window=5, sg=1, min_count=1, workers=1, seed=seed, **params)
    out = {}
    for q in d.queries:
        near = [w for w, _ in w2v.wv.most_similar(q, topn=K)] if q in w2v.wv else []
        out[q] = pad(near, fill.get(q, []), K, exclude=q)
    return out


def metaprod2vec_lists(d: Data, params: dict, seed: int, fill: dict) -> dict:
    """Meta-Prod2Vec (Vasile et al. 2016) as gensim skip-gram: each training session with every item followed
    by its category's token, so items and categories share one space; an item's vector is its own plus
    ``alpha`` times its category's, so a new item (no events) answers with its category's vector alone.
    Nearest catalogue items by cosine, padded with popularity in the query's category. Without categories
    it is item2vec."""
    from gensim.models import Word2Vec

    cats = d.cat.side.get("category", [None] * len(d.cat.item_ids))
    token = {str(i): (None if c is None else f"category:{c}") for i, c in zip(d.cat.item_ids, cats)}
    corpus = [
        [w for i in s["items"] for w in (i, token.get(i)) if w is not None] for s in d.sessions if len(s["items"]) >= 2
    ]
    w2v = Word2Vec(
        corpus, vector_size=32, window=5, sg=1, min_count=1, workers=1, seed=seed, negative=10, epochs=params["epochs"]
    )
    wv = w2v.wv
    vec = np.zeros((len(d.cat.item_ids), 32), np.float32)
    for n, i in enumerate(d.cat.item_ids):
        if i in wv:
            vec[n] += wv[i]
        if token[str(i)] in wv:
            vec[n] += params["alpha"] * wv[token[str(i)]]
    norm = np.linalg.norm(vec, axis=1)
    vec /= np.where(norm > 0, norm, 1.0)[:, None]
    out = {}
    for q in d.queries:
        r = d.cat.index.get(q)
        near = []
        if r is not None and norm[r] > 0:
            sim = vec @ vec[r]
            sim[r] = -np.inf
            sim[norm == 0] = -np.inf
            top = np.argpartition(-sim, K)[:K]
            top = top[np.argsort(-sim[top], kind="stable")]
            near = [str(d.cat.item_ids[t]) for t in top if np.isfinite(sim[t])]
        out[q] = pad(near, fill.get(q, []), K, exclude=q)
    return out


def eges_index(d: Data, params: dict, seed: int):
    return eges_vectors(d.sessions, d.cat, params, seed)


def ndcg_all(d: Data, lists) -> float:
    return d.evaluate(lists)[0]["all"][f"ndcg@{K}"]


def tune(val: Data, base_retriever, seed: int = 0) -> dict:
    """Every model's settings from validation NDCG@20 (all cases)."""
    t0 = time.perf_counter()
    fill = side_popularity_lists(val.cat, val.queries)
    i2v = max(ITEM2VEC_GRID, key=lambda p: ndcg_all(val, item2vec_lists(val, p, seed, fill)))
    logger.info("item2vec chosen on validation: %s (%.0fs)", i2v, time.perf_counter() - t0)
    mp2v = max(MP2V_GRID, key=lambda p: ndcg_all(val, metaprod2vec_lists(val, p, seed, fill)))
    logger.info("Meta-Prod2Vec chosen on validation: %s (%.0fs)", mp2v, time.perf_counter() - t0)
    eges, best = dict(EGES_BASE), None
    for step in [{}] + EGES_STEPS:
        trial = {**eges, **step}
        base_retriever.vectors = eges_index(val, trial, seed)
        score = ndcg_all(val, served_lists(base_retriever, val.queries, "eges"))
        logger.info("EGES %s: validation NDCG@20 %.4f", step or "base", score)
        if best is None or score > best[0]:
            best, eges = (score, base_retriever.vectors), trial
    base_retriever.vectors = best[1]
    blend, score, _ = best_of(search_blend(base_retriever, val.queries, lambda lists: (ndcg_all(val, lists), None)))
    logger.info(
        "EGES chosen: %s; blend chosen: %s (validation NDCG@20 %.4f) in %.0fs",
        eges,
        blend,
        score,
        time.perf_counter() - t0,
    )
    return {
        "item2vec": i2v,
        "metaprod2vec": mp2v,
        "eges": eges,
        "blend": str(blend),
        "validation_ndcg@20": {"blend": score},
    }


def tuned_on_validation(val: Data, params) -> tuple:
    """The validation split's retriever (the pipeline's channels, then the chosen EGES vectors) and the
    settings :func:`tune` chose on it."""
    retriever, _ = build_retriever(val.split.train, val.sessions, val.cat, params, channels=(*FIXED_CHANNELS, "gnn"))
    return retriever, tune(val, retriever)  # tune leaves the chosen EGES vectors in the retriever


def cold_share(retriever, d: Data, channel: str) -> float:
    """Share of new (side-only) items in the top-20 lists of warm queries."""
    trained = set(d.cat.item_ids[d.cat.trained])
    lists = served_lists(retriever, [q for q in d.queries if q in trained], channel)
    n = sum(len(v) for v in lists.values())
    return sum(i not in trained for v in lists.values() for i in v) / n if n else float("nan")


def run_dataset(name: str, seeds: list[int]) -> dict:
    t0 = time.perf_counter()
    df, item_side = load(name)
    split = temporal_split(df)
    test, val = Data(split, item_side), Data(temporal_split(split.train), item_side)
    logger.info(
        "%s: T=%d, %d training events, %d test cases (%d warm, %d cold, %d cold-query), %d catalogue items; "
        "validation %d cases",
        name,
        split.cutoff,
        len(split.train),
        len(test.cases),
        test.masks["warm"].sum(),
        test.masks["cold"].sum(),
        test.masks["cold_query"].sum(),
        len(test.cat),
        len(val.cases),
    )
    params = PipelineConfig()  # swing/cooc/trans/side as the pipeline builds them (EGES: the search below)
    _, chosen = tuned_on_validation(val, params)
    blend = BlendConfig.parse(chosen["blend"])

    # the test period, read once with the chosen settings
    runs: dict[str, list] = {}  # model -> per seed (summary, hits)
    for m, lists in baselines(test).items():
        s, hit, _ = test.evaluate(lists)
        runs[m] = [(s, hit)]
    retriever, secs = build_retriever(split.train, test.sessions, test.cat, params, channels=FIXED_CHANNELS)
    for ch in ("swing", "cooc", "trans", "side", "seqrules"):
        s, hit, _ = test.evaluate(served_lists(retriever, test.queries, ch))
        runs[f"served: {ch}"] = [(s, hit)]
    fill = side_popularity_lists(test.cat, test.queries)
    shares = []
    for seed in seeds:
        # the rank channel's seed (negative sampling, trees) varies like EGES's and LightGCN's
        again = ("gnn",) if seed == 0 else ("rank", "gnn")
        seeded, _ = build_retriever(split.train, test.sessions, test.cat, params, random_seed=seed, channels=again)
        retriever.lists = {**retriever.lists, **seeded.lists}
        retriever.users = seeded.users
        s, hit, _ = test.evaluate(served_lists(retriever, test.queries, "gnn"))
        runs.setdefault("served: gnn", []).append((s, hit))
        s, hit, _ = test.evaluate(served_lists(retriever, test.queries, "rank"))
        runs.setdefault("served: rank", []).append((s, hit))
        s, hit, _ = test.evaluate(item2vec_lists(test, chosen["item2vec"], seed, fill))
        runs.setdefault("item2vec (gensim, tuned)", []).append((s, hit))
        s, hit, _ = test.evaluate(metaprod2vec_lists(test, chosen["metaprod2vec"], seed, fill))
        runs.setdefault("Meta-Prod2Vec (gensim, tuned)", []).append((s, hit))
        retriever.vectors = eges_index(test, chosen["eges"], seed)
        s, hit, _ = test.evaluate(served_lists(retriever, test.queries, "eges"))
        runs.setdefault("served: eges", []).append((s, hit))
        for label, cfg in (
            (f"served: blend {blend} (tuned, the default)", blend),
            (f"served: blend {DEFAULT_BLEND} (built-in)", DEFAULT_BLEND),
        ):
            retriever.blend_config = cfg
            s, hit, _ = test.evaluate(served_lists(retriever, test.queries, "blend"))
            runs.setdefault(label, []).append((s, hit))
        retriever.blend_config = blend
        shares.append({ch: cold_share(retriever, test, ch) for ch in ("eges", "rank", "blend")})
    models = {}
    for m, per_seed in runs.items():
        models[m] = {
            sub: {
                metric: (
                    float(np.mean([s[sub][metric] for s, _ in per_seed])),
                    float(np.std([s[sub][metric] for s, _ in per_seed])),
                )
                for metric in (f"hr@{K}", f"ndcg@{K}")
            }
            | {"cases": per_seed[0][0][sub]["cases"]}
            for sub in ("all", "warm", "cold", "cold_query")
        }
        models[m]["seeds"] = len(per_seed)
    served = f"served: blend {blend} (tuned, the default)"
    baseline_names = [m for m in runs if not m.startswith("served")]
    best = max(baseline_names, key=lambda m: models[m]["warm"][f"hr@{K}"][0])
    warm = test.masks["warm"]
    mean_hits = {m: np.mean([h for _, h in runs[m]], axis=0) for m in (served, best)}
    diff = paired_interval(mean_hits[served][warm], mean_hits[best][warm])
    best_cold = max(baseline_names, key=lambda m: models[m]["cold"][f"hr@{K}"][0])
    return {
        "cutoff": split.cutoff,
        "train_events": len(split.train),
        "dropped_events": split.dropped_events,
        "catalogue": len(test.cat),
        "trained_items": int(test.cat.trained.sum()),
        "cases": {k: int(v.sum()) for k, v in test.masks.items()},
        "validation_cases": len(val.cases),
        "chosen": chosen,
        "models": models,
        "served_default": served,
        "best_warm_baseline": best,
        "best_cold_baseline": best_cold,
        "served_vs_best_warm_hr": {
            "diff": diff[0],
            "ci95": [diff[1], diff[2]],
            "relative": diff[0] / models[best]["warm"][f"hr@{K}"][0],
        },
        "new_item_share_in_warm_lists": {k: float(np.mean([s[k] for s in shares])) for k in ("eges", "rank", "blend")},
        "seconds": time.perf_counter() - t0,
    }


def run_validation(name: str) -> dict:
    """The tuning half alone: every model tuned and scored on the validation split; the test period's cases
    are never built. Scores of tuned models are optimistic here (chosen on these same cases)."""
    t0 = time.perf_counter()
    df, item_side = load(name)
    val = Data(temporal_split(temporal_split(df).train), item_side)
    retriever, chosen = tuned_on_validation(val, PipelineConfig())
    models = {m: val.evaluate(lists)[0] for m, lists in baselines(val).items()}
    for ch in ("side", "rank", "eges", "seqrules", "gnn"):
        models[f"served: {ch}"] = val.evaluate(served_lists(retriever, val.queries, ch))[0]
    retriever.blend_config = BlendConfig.parse(chosen["blend"])
    models[f"served: blend {chosen['blend']} (tuned on these cases)"] = val.evaluate(
        served_lists(retriever, val.queries, "blend")
    )[0]
    return {
        "validation_cases": {k: int(v.sum()) for k, v in val.masks.items()},
        "chosen": chosen,
        "models": models,
        "seconds": time.perf_counter() - t0,
    }


def validation_table(name: str, r: dict) -> str:
    c = r["validation_cases"]
    lines = [
        f"\n{name} validation only: {c['all']} cases ({c['warm']} warm, {c['cold']} cold); chosen {r['chosen']}",
        f"{'model':64s}{'NDCG@20 all':>13s}{'HR@20 all':>11s}{'HR@20 warm':>12s}{'HR@20 cold':>12s}",
    ]
    for m, v in r["models"].items():
        lines.append(
            f"{m:64s}{v['all']['ndcg@20']:13.4f}{v['all']['hr@20']:11.4f}{v['warm']['hr@20']:12.4f}"
            f"{v['cold']['hr@20']:12.4f}"
        )
    return "\n".join(lines)


def fmt(v) -> str:
    mean, sd = v
    return f"{mean:.4f}" if sd == 0 else f"{mean:.4f} ± {sd:.4f}"


def table(name: str, r: dict) -> str:
    lines = [
        f"\n{name}: {r['cases']['all']} test cases ({r['cases']['warm']} warm, {r['cases']['cold']} cold, "
        f"{r['cases']['cold_query']} cold-query), {r['catalogue']} catalogue items ({r['trained_items']} trained)",
        f"{'model':58s}{'HR@20 all':>18s}{'HR@20 warm':>18s}{'NDCG@20 warm':>18s}{'HR@20 cold':>18s}"
        f"{'HR@20 cold-q':>18s}",
    ]
    for m, v in r["models"].items():
        lines.append(
            f"{m:58s}{fmt(v['all']['hr@20']):>18s}{fmt(v['warm']['hr@20']):>18s}"
            f"{fmt(v['warm']['ndcg@20']):>18s}{fmt(v['cold']['hr@20']):>18s}{fmt(v['cold_query']['hr@20']):>18s}"
        )
    d = r["served_vs_best_warm_hr"]
    lines.append(
        f"served default vs best warm baseline ({r['best_warm_baseline']}): HR@20 warm {d['diff']:+.4f} "
        f"({d['relative']:+.1%}), 95% paired interval {d['ci95'][0]:+.4f}..{d['ci95'][1]:+.4f}"
    )
    lines.append(
        "new items in warm queries' top-20: "
        + ", ".join(f"{ch} {v:.1%}" for ch, v in r["new_item_share_in_warm_lists"].items())
        + f"; chosen on validation: {r['chosen']}"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument(
        "--datasets",
        nargs="+",
        default=["rees46", "taobao", "rees46-noside", "taobao-noside"],
        choices=list(DATASETS),
        help="logs to run (a -noside name: the same log without side fields, as a click-only log)",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    p.add_argument("--json", action="store_true", help="only the JSON line")
    p.add_argument(
        "--validation-only",
        action="store_true",
        help="tune and score on the validation split only (the test period is not read); writes "
        "next_item_validation.json",
    )
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.json else logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    for noisy in ("graphrecall.embed", "graphrecall.walkers", "gensim", "graphrecall.query.scoring.reference"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(int(os.environ.get("GRAPHRECALL_TORCH_THREADS", "1")))
    out = {}
    if args.validation_only:
        for name in args.datasets:
            out[name] = run_validation(name)
            print(validation_table(name, out[name]), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        write_result(args.out / "next_item_validation.json", out)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        out[name] = run_dataset(name, args.seeds)
        write_result(args.out / "next_item.json", out)  # after each log: a long run keeps what it has measured
        if not args.json:
            print(table(name, out[name]), flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
