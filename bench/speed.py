"""Speed benchmarks, each printed as a ratio against a baseline measured in the same run.

1. Swing: Cypher on Neo4j (basis included) vs the graphrecall.scores procedure vs in-memory scipy vs a
   per-pair Python loop (FunRec style).
2. Walks: vectorised alias walker vs the same alias sampling per step in Python (steps/s).
3. Embeddings: EGES epoch time (each optimizer) vs gensim skip-gram (negative sampling) on the same
   walks, gensim with and without frequent-item down-sampling; and EGES's Adam dense vs sparse
   (LazyAdam) on 6.5k, 20k and 200k items.
4. Ingest: events/s over Bolt (vs reading + validating alone).
5. API: p50/p99 latency and QPS of ``GET /i2i`` under a bounded fixed-rate loopback load.
6. torch threads: EGES with 1 and 2 threads, Neo4j idle and busy (``PipelineConfig.torch_threads``).
7. Faiss: exact against HNSW at 200k items (recall@20, query time).
8. Blend: the served (numpy) blend against the same blend item by item.
9. Scores engine: SWING + COOC by the ``graphrecall.scores`` procedure (1 and 2 threads) against the
   Cypher reference, on the same BASIS, with the lists checked equal.

    python bench/speed.py [--data FILE --format rees46] [--api-seconds 20] [--api-rate 200]
    python bench/speed.py --only torch_threads faiss     # just those sections (the graph is loaded untimed)
    python bench/speed.py --only scores_engine --events 300000   # on a generated log of that size

Runs against a local Neo4j instance ``bench`` (ports 27687/27474), which it resets.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from common import parser  # noqa: E402
from common import server as bench_instance
from graphrecall.app.pipeline import DEFAULT_DATASET, reset_graph  # noqa: E402
from graphrecall.graph_schema.schema import apply_schema  # noqa: E402

logger = logging.getLogger("bench.speed")


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def machine() -> str:
    import torch

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {platform.system()} {platform.release()}"
    )


def bench_ingest(driver, path: Path, fmt: str) -> dict:
    from graphrecall.ingest.formats import RejectSink, read_events
    from graphrecall.ingest.writer import ingest_events

    with tempfile.TemporaryDirectory() as tmp:
        sink = RejectSink(path, None)
        events, t_read = timed(lambda: list(read_events(path, fmt, sink)))
        reset_graph(driver)
        rep, t_all = timed(ingest_events, driver, path, fmt, reject_dir=tmp, progress=False)
        _, t_again = timed(ingest_events, driver, path, fmt, reject_dir=tmp, progress=False)
    return {
        "events": len(events),
        "read_validate_events_per_s": len(events) / t_read,
        "ingest_events_per_s": len(events) / t_all,
        "reingest_noop_events_per_s": len(events) / t_again,
        "ratio_ingest_vs_parse_only": t_all / t_read,
    }


def bench_swing(driver, event_types=("view", "cart", "fav", "purchase", "rated_high")) -> dict:
    from graphrecall.query.scoring.cypher import BasisParams, compute_swing, read_basis
    from graphrecall.query.scoring.reference import swing_bruteforce, swing_sparse

    rep, t_cypher = timed(
        compute_swing, driver, k=50, basis=BasisParams(event_types=tuple(event_types)), progress=False, engine="cypher"
    )
    _, t_procedure = timed(compute_swing, driver, k=50, basis=None, progress=False, engine="procedure")
    basis = set(read_basis(driver))
    _, t_sparse = timed(swing_sparse, basis, k=50)
    _, t_python = timed(swing_bruteforce, basis)
    return {
        "basis_edges": len(basis),
        "cypher_s": t_cypher,
        "procedure_s": t_procedure,
        "scipy_s": t_sparse,
        "python_pairs_s": t_python,
        "ratio_cypher_over_procedure": t_cypher / t_procedure,
        "ratio_python_over_cypher": t_python / t_cypher,
        "ratio_python_over_scipy": t_python / t_sparse,
        "ratio_cypher_over_scipy": t_cypher / t_sparse,
    }


def bench_walks(driver) -> dict:
    from graphrecall.walkers.export import export_graph
    from graphrecall.walkers.walk import AliasGraph, python_alias_walks, random_walks

    g = export_graph(driver)
    m = g.transitions
    ag, t_build = timed(AliasGraph.from_csr, m)
    random_walks(ag, walk_length=10, walks_per_node=1)  # warm numba caches
    walks, t_vec = timed(random_walks, ag, walk_length=10, walks_per_node=20, random_seed=0)
    py, t_py = timed(python_alias_walks, ag, 10, 2, 0)
    # steps, not walks: on a sparse session graph many walks end early at items without a successor
    vec_steps, py_steps = int((walks >= 0).sum() - len(walks)), sum(len(w) - 1 for w in py)
    vec_rate, py_rate = vec_steps / t_vec, py_steps / t_py
    return {
        "nodes": m.shape[0],
        "edges": m.nnz,
        "alias_build_s": t_build,
        "mean_walk_len": float((walks >= 0).sum(1).mean()),
        "vectorised_steps_per_s": vec_rate,
        "python_steps_per_s": py_rate,
        "ratio_vectorised_over_python": vec_rate / py_rate,
        "_graph": g,
        "_walks": walks,
    }


def bench_embeddings(g, walks, rounds: int = 3) -> dict:
    """One epoch on the same walks: EGES against gensim skip-gram without frequent-item down-sampling
    (``sample=0``: every pair EGES trains on, the like-for-like comparison), each at 1 and 2 threads (EGES:
    torch's count, which its compiled SGD step takes; gensim: ``workers``). Also gensim with its default
    down-sampling, and EGES with Adam (the torch step). Each time is the median of ``rounds``, interleaved, so
    that a slow spell of the shared machine hits every variant alike."""
    from gensim.models import Word2Vec

    from graphrecall.common.threads import torch_threads
    from graphrecall.embed.eges import EGES, SideInfo
    from graphrecall.walkers.walk import walks_to_corpus

    side = SideInfo.from_columns(g.side)
    EGES(dim=32, epochs=1, progress=False).fit(walks[:200], side)  # torch's and numba's one-off start-up kept out
    corpus = [[str(x) for x in w] for w in walks_to_corpus(walks)]

    def eges(optimizer, threads):
        with torch_threads(threads):
            EGES(
                dim=32, window=5, epochs=1, batch_size=4096, market_negatives=2, optimizer=optimizer, progress=False
            ).fit(walks, side, sessions=g.sessions, booked=g.booked)

    def gensim(sample, workers):
        Word2Vec(
            corpus,
            vector_size=32,
            window=5,
            sg=1,
            negative=5,
            min_count=1,
            epochs=1,
            sample=sample,
            workers=workers,
            seed=0,
        )

    variants = {
        "eges_sgd_1_threads": (eges, "sgd", 1),
        "eges_sgd_2_threads": (eges, "sgd", 2),
        "gensim_sample0_1_workers": (gensim, 0.0, 1),
        "gensim_sample0_2_workers": (gensim, 0.0, 2),
        "gensim_default_2_workers": (gensim, 1e-3, 2),
        "eges_adam_1_threads": (eges, "adam", 1),
    }
    times = {k: [] for k in variants}
    for _ in range(rounds):
        for k, (fn, *a) in variants.items():
            times[k].append(timed(fn, *a)[1])
    out = {"walks": len(walks), "rounds": rounds, "all_epoch_s": times}
    out |= {f"{k}_epoch_s": float(np.median(v)) for k, v in times.items()}
    for threads in (1, 2):
        out[f"ratio_eges_sgd_over_gensim_sample0_{threads}_threads"] = (
            out[f"eges_sgd_{threads}_threads_epoch_s"] / out[f"gensim_sample0_{threads}_workers_epoch_s"]
        )
    out["ratio_eges_sgd_1_thread_over_gensim_sample0_2_workers"] = (
        out["eges_sgd_1_threads_epoch_s"] / out["gensim_sample0_2_workers_epoch_s"]
    )
    out["ratio_eges_adam_over_sgd_1_thread"] = out["eges_adam_1_threads_epoch_s"] / out["eges_sgd_1_threads_epoch_s"]
    return out


def bench_eges_scaling(sizes=(6_500, 20_000, 200_000), n_walks: int = 10_000) -> dict:
    """One EGES epoch on the same random walks, dense Adam vs sparse gradients + LazyAdam, as the
    catalogue grows (what ``EGES(sparse=None)`` switches on at ``SPARSE_FROM_ITEMS``)."""
    from graphrecall.embed.eges import EGES, SideInfo

    out = {}
    rng = np.random.default_rng(0)
    warm = SideInfo.from_columns({"category": ["a", "b"] * 50})
    for sparse in (False, True):  # first calls pay torch's one-off start-up; keep it out of the timings
        EGES(dim=32, epochs=1, market_negatives=0, optimizer="adam", sparse=sparse, progress=False).fit(
            rng.integers(0, 100, (200, 10)), warm
        )
    for n in sizes:
        walks = rng.integers(0, n, size=(n_walks, 10))
        side = SideInfo.from_columns(
            {"category": [str(i % 50) for i in range(n)], "brand": [str(i % 300) for i in range(n)]}
        )
        t = {}
        for sparse in (False, True):
            _, t[sparse] = timed(
                EGES(
                    dim=32,
                    epochs=1,
                    batch_size=512,
                    market_negatives=0,
                    optimizer="adam",
                    sparse=sparse,
                    progress=False,
                ).fit,
                walks,
                side,
            )
        out[f"dense_s_{n}_items"], out[f"sparse_s_{n}_items"] = t[False], t[True]
        out[f"ratio_dense_over_sparse_{n}_items"] = t[False] / t[True]
    return out


def bench_torch_threads(driver, walks, side_columns, epochs_pairs: int = 1_000_000) -> dict:
    """EGES pairs/s with 1 and 2 torch threads, with Neo4j idle and while Neo4j runs a Cypher load (a
    thread that repeats a two-hop count), as during `graphrecall refresh` or with the API's probe on the
    same 2 cores: what ``PipelineConfig.torch_threads`` defaults to."""
    import threading

    from graphrecall.common.threads import torch_threads
    from graphrecall.embed.eges import EGES, SideInfo

    side = SideInfo.from_columns(side_columns)
    rows = walks[: max(1, epochs_pairs // 40)]  # about 40 window pairs per walk row of 10
    stop = threading.Event()

    def load():
        with driver.session(default_access_mode="READ") as s:
            while not stop.is_set():
                s.run("MATCH (i:Item)<-[:ENGAGED]-(:User)-[:ENGAGED]->(j:Item) RETURN count(*)").consume()

    EGES(dim=32, epochs=1, market_negatives=0, progress=False).fit(rows[:50], side)  # torch's one-off start-up
    out = {}
    for busy in (False, True):
        tag = "busy" if busy else "idle"
        th = threading.Thread(target=load, daemon=True) if busy else None
        if th:
            th.start()
            time.sleep(2)
        for n in (1, 2):
            with torch_threads(n):
                eges = EGES(dim=32, epochs=1, batch_size=1024, market_negatives=0, progress=False)
                _, out[f"{tag}_{n}_threads_s"] = timed(eges.fit, rows, side)
        out[f"ratio_{tag}_1_over_2_threads_s"] = out[f"{tag}_1_threads_s"] / out[f"{tag}_2_threads_s"]
        if th:
            stop.set()
            th.join()
    out["walk_rows"] = len(rows)
    return out


def bench_faiss(n_items: int = 200_000, dim: int = 32, n_queries: int = 1000) -> dict:
    """Exact (flat) against HNSW at ``n_items`` clustered vectors: build time, one-query latency (as the API
    asks) and HNSW's recall@20 against exact, with the parameters ``ItemVectorIndex`` uses from
    ``HNSW_FROM_ITEMS`` items. Faiss runs on one thread (the API's worker shares the cores)."""
    import faiss

    from graphrecall.embed.index import ItemVectorIndex

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(n_items // 100, dim))
    vec = (centres[rng.integers(0, len(centres), n_items)] + 0.7 * rng.normal(size=(n_items, dim))).astype(np.float32)
    ids = [str(n) for n in range(n_items)]
    out = {"items": n_items, "dim": dim}
    idx = {}
    for kind in ("flat", "hnsw"):
        idx[kind], out[f"{kind}_build_s"] = timed(ItemVectorIndex, ids, vec, kind=kind)
    queries = [ids[q] for q in rng.choice(n_items, n_queries, replace=False)]
    got = {}
    for kind in ("flat", "hnsw"):
        t0 = time.perf_counter()
        got[kind] = [set(idx[kind].similar_items(q, 20)[0]) for q in queries]
        out[f"{kind}_query_ms"] = (time.perf_counter() - t0) / n_queries * 1e3
    out["hnsw_recall@20"] = float(np.mean([len(a & b) / 20 for a, b in zip(got["flat"], got["hnsw"])]))
    out["ratio_flat_over_hnsw_query"] = out["flat_query_ms"] / out["hnsw_query_ms"]
    return out


def bench_blend(n_calls: int = 20_000, depths=(50, 200)) -> dict:
    """The served blend (numpy: one ``bincount`` over all channels' contributions) against the same blend
    item by item with dicts (``tests/oracles.py``), on five overlapping channels of ``depth``
    neighbours: 50 is what the API fuses (``BLEND_DEPTH``) for one uncached ``/i2i`` answer."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from oracles import blend_reference

    from graphrecall.query.serve.retriever import BlendConfig, Neighbours, blend

    rng = np.random.default_rng(0)
    cfg = BlendConfig.parse("score:swing=1,cooc=0.5,trans=1,side=0.25,eges=0.5")
    out = {}
    for depth in depths:
        pool = np.array([f"item-{n}" for n in range(3 * depth)], dtype=object)
        lists = {
            ch: Neighbours(rng.choice(pool, depth, replace=False), np.sort(rng.random(depth))[::-1], [ch] * depth)
            for ch in ("swing", "cooc", "trans", "side", "eges")
        }
        calls = max(1, n_calls * 50 // depth)
        for name, fn in (("numpy", blend), ("dicts", blend_reference)):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn(lists, 10, cfg)
            out[f"{name}_us_depth{depth}"] = (time.perf_counter() - t0) / calls * 1e6
        out[f"ratio_dicts_over_numpy_depth{depth}"] = out[f"dicts_us_depth{depth}"] / out[f"numpy_us_depth{depth}"]
    return out


def bench_scores_engine(driver) -> dict:
    """Both engines on one BASIS (built once): seconds to compute and write SWING + COOC (iuf off, k 50),
    and whether the ranked lists equal the Cypher reference's."""
    from graphrecall.graph_schema.store.lists import read_top_lists
    from graphrecall.query.scoring.cypher import Q_DROP, BasisParams, build_basis, compute_cooc, compute_swing

    t_basis = build_basis(driver, BasisParams())
    with driver.session() as s:
        edges = s.run("MATCH ()-[b:BASIS]->() RETURN count(b)").single()[0]
    out = {"basis_edges": edges, "basis_s": t_basis}
    lists = {}
    for name, engine, threads in (
        ("procedure_1thread", "procedure", 1),
        ("procedure_2threads", "procedure", 2),
        ("cypher", "cypher", 1),
    ):
        with driver.session() as s:  # every engine starts from no lists: deleting the last run's is not timed
            for rel in ("SWING", "COOC"):
                s.run(Q_DROP[rel]).consume()
        t0 = time.perf_counter()
        sw = compute_swing(driver, k=50, basis=None, engine=engine, threads=threads, progress=False)
        t_sw = time.perf_counter() - t0
        co = compute_cooc(driver, k=50, basis=None, engine=engine, threads=threads, progress=False)
        t_co = time.perf_counter() - t0 - t_sw
        out[f"{name}_swing_s"], out[f"{name}_cooc_s"] = t_sw, t_co
        out[f"{name}_rels_per_s"] = (sw.written + co.written) / (t_sw + t_co)
        lists[name] = {rel: read_top_lists(driver, rel) for rel in ("SWING", "COOC")}
    for name in ("procedure_1thread", "procedure_2threads"):
        same = all(
            lists[name][rel].keys() == lists["cypher"][rel].keys()
            and all(lists[name][rel][i][0] == lists["cypher"][rel][i][0] for i in lists["cypher"][rel])
            for rel in ("SWING", "COOC")
        )
        out[f"{name}_lists_equal_cypher"] = same
        total = out[f"{name}_swing_s"] + out[f"{name}_cooc_s"]
        out[f"ratio_cypher_over_{name}"] = (out["cypher_swing_s"] + out["cypher_cooc_s"]) / total
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_api(server, faiss_dir: Path, item_ids: list[str], seconds: float, rate: float) -> dict:
    """uvicorn in a subprocess; a fixed-rate open-loop load from 8 client threads, bounded in time."""
    import httpx

    port = _free_port()
    env = dict(
        os.environ,
        GRAPHRECALL_NEO4J_URI=server.uri,
        GRAPHRECALL_NEO4J_PASSWORD=server.password(),
        GRAPHRECALL_FAISS_DIR=str(faiss_dir),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "graphrecall.app.serve:app_from_env",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError("API did not start")
        lat, errors = [], [0]
        lock = threading.Lock()
        n_threads = 8
        interval = n_threads / rate
        rng = np.random.default_rng(0)
        picks = rng.choice(item_ids, size=int(seconds * rate) + n_threads)
        channels = ["blend", "swing", "cooc", "eges"]

        def worker(tid: int):
            with httpx.Client(base_url=base, timeout=5) as c:
                t_next = time.perf_counter()
                end = t_next + seconds
                n = tid
                while time.perf_counter() < end:
                    t0 = time.perf_counter()
                    try:
                        r = c.get(f"/i2i/{picks[n % len(picks)]}", params={"k": 10, "channel": channels[n % 4]})
                        ok = r.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    dt = time.perf_counter() - t0
                    with lock:
                        lat.append(dt)
                        errors[0] += 0 if ok else 1
                    n += n_threads
                    t_next += interval
                    time.sleep(max(0.0, t_next - time.perf_counter()))

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        a = np.array(lat) * 1000
        return {
            "requests": len(a),
            "errors": errors[0],
            "target_rate": rate,
            "qps": len(a) / wall,
            "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)),
            "seconds": wall,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATASET, help="event file (default: REES46 head17k)")
    p.add_argument("--format", default="rees46")
    p.add_argument("--api-seconds", type=float, default=60.0, help="load duration (bounded)")
    p.add_argument("--api-rate", type=float, default=200.0, help="target requests/s")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--only",
        nargs="+",
        choices=["torch_threads", "faiss", "blend", "scores_engine", "embeddings", "eges_scaling"],
        help="run only these sections (after an untimed ingest when the graph is empty)",
    )
    p.add_argument(
        "--events",
        type=int,
        default=0,
        help="with --only: ingest a generated REES46-shaped log of about this many events instead of --data",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if not args.data.exists():
        from graphrecall.ingest.synthetic import generate_rees46

        args.data = generate_rees46(Path(tempfile.mkdtemp()) / "gen.csv", n_users=2000)
        args.format = "rees46"
    server = bench_instance().start()
    out = {"machine": machine(), "data": str(args.data)}
    if args.only:
        if args.events:
            from graphrecall.ingest.synthetic import generate_rees46_sized

            args.data = generate_rees46_sized(Path(tempfile.mkdtemp()) / "gen.csv", args.events)
            args.format = "rees46"
            out["data"] = f"generated, about {args.events} events"
        with server.settings().driver() as driver:
            out |= only_sections(driver, args)
        out["data"] = getattr(args, "data_used", out["data"])
        return report(out, args)
    with server.settings().driver() as driver:
        apply_schema(driver)
        out["ingest"] = bench_ingest(driver, args.data, args.format)
        out["swing"] = bench_swing(driver)
        from graphrecall.query.scoring.cypher import compute_cooc

        compute_cooc(driver, k=50, basis=None, progress=False)
        w = bench_walks(driver)
        g, walks = w.pop("_graph"), w.pop("_walks")
        out["walks"] = w
        out["embeddings"] = bench_embeddings(g, walks)
        out["eges_scaling"] = bench_eges_scaling()
        out["torch_threads"] = bench_torch_threads(driver, walks, g.side)
        out["faiss"] = bench_faiss()
        out["blend"] = bench_blend()
        from graphrecall.embed.eges import EGES, SideInfo
        from graphrecall.embed.index import ItemVectorIndex

        res = EGES(dim=32, epochs=1, batch_size=2048, progress=False).fit(walks, SideInfo.from_columns(g.side))
        faiss_dir = ItemVectorIndex(g.item_ids, res.embeddings).save(Path(tempfile.mkdtemp()) / "faiss")
        out["api"] = bench_api(server, faiss_dir, [str(i) for i in g.item_ids], args.api_seconds, args.api_rate)
        ml = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small" / "ratings.csv"
        if ml.exists():  # a denser graph: MovieLens ratings >= 4
            from graphrecall.ingest.writer import ingest_events

            reset_graph(driver)
            with tempfile.TemporaryDirectory() as tmp:
                ingest_events(driver, ml, "movielens", reject_dir=tmp, progress=False, batch_size=5000)
            out["swing_movielens"] = bench_swing(driver, event_types=("rated_high",))
    return report(out, args)


def only_sections(driver, args) -> dict:
    from graphrecall.walkers.export import export_graph
    from graphrecall.walkers.walk import random_walks

    apply_schema(driver)
    with driver.session() as s:
        empty = s.run("MATCH (i:Item) RETURN count(i) = 0").single()[0]
    if args.events:
        reset_graph(driver)
    if not (empty or args.events):
        with driver.session() as s:
            n_items = s.run("MATCH (i:Item) RETURN count(i)").single()[0]
        logger.warning("using the graph already in the bench instance (%d items), not --data", n_items)
        args.data_used = f"the graph already in the bench instance ({n_items} items)"
    if empty or args.events:
        from graphrecall.ingest.writer import ingest_events

        with tempfile.TemporaryDirectory() as tmp:
            ingest_events(driver, args.data, args.format, reject_dir=tmp, progress=False, batch_size=5000)
    out = {}
    if "embeddings" in args.only:
        g = export_graph(driver)
        walks = random_walks(g.transitions, walk_length=10, walks_per_node=20, random_seed=0)
        out["embeddings"] = bench_embeddings(g, walks)
    if "eges_scaling" in args.only:
        out["eges_scaling"] = bench_eges_scaling()
    if "torch_threads" in args.only:
        g = export_graph(driver)
        walks = random_walks(g.transitions, walk_length=10, walks_per_node=20, random_seed=0)
        out["torch_threads"] = bench_torch_threads(driver, walks, g.side)
    if "faiss" in args.only:
        out["faiss"] = bench_faiss()
    if "blend" in args.only:
        out["blend"] = bench_blend()
    if "scores_engine" in args.only:
        out["scores_engine"] = bench_scores_engine(driver)
    return out


def report(out: dict, args) -> int:
    if not args.json:
        print(f"machine: {out['machine']}")
        for section, vals in out.items():
            if isinstance(vals, dict):
                print(
                    f"[{section}] "
                    + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in vals.items())
                )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
