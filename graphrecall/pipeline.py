"""The main job end to end: ingest -> Swing/ItemCF -> walks -> EGES -> write-back + Faiss."""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from embed.eges import EGESState
from embed.index import ItemVectorIndex
from embed.writeback import write_embeddings
from query.ranker import MAX_CASES_PER_CUT, MAX_POSITIVE_CASES_PER_CUT, NEGATIVES
from graph_schema.schema import apply_schema
from ingest.writer import IngestReport, ingest_events
from query.scores import (BasisParams, RefreshReport, ScoreReport, basis_frame, bump_data_version, compute_cooc,
                          compute_swing, read_score_settings, refresh_scores, store_score_settings)
from walkers.export import export_graph
from embed.train import train_item_vectors

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_DATASET = SHARED_DATA / "rees46" / "2019-Oct_head17k_clean.csv"


@dataclass
class PipelineConfig:
    swing_alpha: float = 1.0
    top_k: int = 50
    cooc_iuf: bool = True
    max_items_per_user: int = 1000
    max_users_per_item: int = 1000
    event_types: tuple[str, ...] = ("view", "cart", "fav", "purchase", "rated_high")
    # SWING/COOC: the graphrecall.scores procedure when the server has it ("auto"), else the Cypher
    # reference; the same lists (tests/test_scores.py). Threads: the procedure's workers; 2 measured
    # 1.26x faster than 1 at 1M events (bench/speed.py --only scores_engine)
    score_engine: str = "auto"
    score_threads: int = 2
    walk_length: int = 10
    walks_per_node: int = 10
    dim: int = 32
    epochs: int = 10  # epochs and market_negatives: the settings bench/next_item.py validated on REES46
    window: int = 5
    booked_context: bool = True
    booked_weight: float = 1.0
    train_on_sessions: bool = True
    market_field: str | None = "market"
    market_negatives: int = 0  # same-market negatives measured no gain on REES46 validation; --market-negatives 2
    random_seed: int = 0
    # the rank channel (query/ranker.py): a learned ranker over the cheap signals, trained on the graph's own
    # later sessions; RANKED edges. Off: --no-rank
    rank: bool = True
    # its training budget: negatives sampled per case and cases kept per time cut. The defaults (query.ranker's)
    # are what the next-item bench measured (the caps on cases do not bind there). On validation, 30 negatives
    # cost Taobao NDCG@20 0.067 -> 0.065 and REES46 nothing, at 1/3 the rows
    rank_negatives: int = NEGATIVES
    rank_cases_per_cut: int = MAX_CASES_PER_CUT
    # and, of those, the cases with rows (target among the candidates) per cut: about 3.0M rows at most. It binds
    # on generated logs only, where it cost cold HR@20 0.36 -> 0.30 at 300k events (warm and NDCG unchanged)
    rank_positives_per_cut: int = MAX_POSITIVE_CASES_PER_CUT
    # LightGBM threads for the rank stage, which runs while Neo4j is idle (sessions read, nothing written yet):
    # on REES46 validation rows the fit took 14.7 s with 2 against 29.3 s with 1, scores equal within 2e-9
    rank_threads: int = 2
    # EGES's threads (torch's count, which its compiled SGD step takes). 1 by default: Neo4j shares this machine's
    # 2 cores. Measured (bench/speed.py, section torch_threads): 2 threads are 1.5x faster on idle cores, 16x
    # slower while Neo4j works
    torch_threads: int = field(default_factory=lambda: int(os.environ.get("GRAPHRECALL_TORCH_THREADS", "1")))


@contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to ``n`` inside the block, restored after."""
    import torch

    if n < 1:
        raise ValueError(f"torch_threads must be >= 1, got {n}; set --torch-threads or GRAPHRECALL_TORCH_THREADS")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class PipelineResult:
    ingest: list[IngestReport] = field(default_factory=list)
    swing: ScoreReport | None = None
    cooc: ScoreReport | None = None
    rank: object | None = None  # query.ranker.FitReport (None: the rank channel was off or skipped)
    n_items: int = 0
    n_cold: int = 0
    faiss_dir: Path | None = None
    seconds: dict = field(default_factory=dict)


def reset_graph(driver, database: str = "neo4j") -> None:
    """Delete every node and relationship (keeps schema). Relationships go first, in batches of their own: a
    batch of 5,000 nodes detached with their relationships exceeded the 2 GiB heap's transaction memory on a
    1M-event graph, whose popular items hold thousands each."""
    with driver.session(database=database) as s:
        s.run("MATCH ()-[r]->() CALL (r) { DELETE r } IN TRANSACTIONS OF 20000 ROWS").consume()
        s.run("MATCH (n) CALL (n) { DELETE n } IN TRANSACTIONS OF 20000 ROWS").consume()
    logger.info("graph reset")


EGES_SETTINGS = ("walk_length", "walks_per_node", "train_on_sessions", "dim", "epochs", "window", "booked_context",
                 "booked_weight", "market_field", "market_negatives")


def eges_settings(cfg: PipelineConfig) -> dict:
    """The keyword arguments of :func:`embed.train.train_item_vectors` in ``cfg``."""
    return {k: getattr(cfg, k) for k in EGES_SETTINGS}


def score_settings(cfg: PipelineConfig) -> dict:
    """What the stored SWING/COOC lists depend on; kept in the graph so that a refresh recomputes alike."""
    return {"alpha": cfg.swing_alpha, "k": cfg.top_k, "iuf": cfg.cooc_iuf, "event_types": list(cfg.event_types),
            "max_items_per_user": cfg.max_items_per_user, "max_users_per_item": cfg.max_users_per_item}


def _basis(settings: dict) -> BasisParams:
    return BasisParams(tuple(settings["event_types"]), settings["max_items_per_user"], settings["max_users_per_item"])


def compute_scores(driver, cfg: PipelineConfig, database: str = "neo4j", progress: bool = True
                   ) -> tuple[ScoreReport, ScoreReport]:
    settings = score_settings(cfg)
    swing = compute_swing(driver, alpha=cfg.swing_alpha, k=cfg.top_k, basis=_basis(settings), database=database,
                          progress=progress, engine=cfg.score_engine, threads=cfg.score_threads)
    cooc = compute_cooc(driver, k=cfg.top_k, iuf=cfg.cooc_iuf, basis=None, database=database, progress=progress,
                        engine=cfg.score_engine, threads=cfg.score_threads)
    store_score_settings(driver, settings, database)
    bump_data_version(driver, "scores", database)
    return swing, cooc


def compute_rank(driver, cfg: PipelineConfig, database: str = "neo4j", progress: bool = True, bump: bool = True):
    """The ``rank`` channel from the graph's sessions and item side info: fit (:func:`query.ranker.fit_ranker`),
    list the top ``cfg.top_k`` of every item, replace the ``RANKED`` edges; returns the fit's report.
    ``bump=False`` leaves the data version to the caller (refresh bumps once for everything)."""
    from query.ranker import rank_lists
    from query.scores import write_rank_lists
    from query.tune import read_item_side, read_sessions

    lists, report = rank_lists(read_sessions(driver, database), read_item_side(driver, database), k=cfg.top_k,
                               random_seed=cfg.random_seed, threads=cfg.rank_threads, progress=progress,
                               negatives=cfg.rank_negatives, max_cases=cfg.rank_cases_per_cut,
                               max_positives=cfg.rank_positives_per_cut)
    report.written = write_rank_lists(driver, lists, database, progress=progress)
    if bump:
        bump_data_version(driver, "rank", database)
    return report


def eges_state_path(artifacts: Path) -> Path:
    return Path(artifacts) / "eges" / "state.pt"


def train_embeddings(driver, cfg: PipelineConfig, artifacts: Path, database: str = "neo4j", progress: bool = True,
                     warm_start: EGESState | None = None):
    """Walks + EGES on the exported graph, vectors to Neo4j and Faiss; the model's tables are kept in
    ``artifacts/eges/state.pt`` for a later warm start (``warm_start``, used by :func:`refresh`)."""
    g = export_graph(driver, database)
    with torch_threads(cfg.torch_threads):
        res = train_item_vectors(g.transitions, g.side, g.sessions, g.booked, random_seed=cfg.random_seed,
                                 progress=progress, item_ids=g.item_ids, warm_start=warm_start, **eges_settings(cfg))
    write_embeddings(driver, g.item_ids, res.embeddings, res.cold, database=database)
    index = ItemVectorIndex(g.item_ids, res.embeddings)
    faiss_dir = index.save(artifacts / "faiss")
    res.state.save(eges_state_path(artifacts))
    bump_data_version(driver, "embeddings", database)  # after both the Neo4j vectors and the Faiss index
    return g, res, faiss_dir


def run_pipeline(
    driver,
    datasets: list[tuple[Path, str]],
    artifacts: Path,
    cfg: PipelineConfig = PipelineConfig(),
    *,
    reset: bool = False,
    reject_dir: Path | None = None,
    database: str = "neo4j",
    progress: bool = True,
) -> PipelineResult:
    out = PipelineResult()
    t = time.perf_counter()
    apply_schema(driver, database)
    if reset:
        reset_graph(driver, database)
    for path, fmt in datasets:
        out.ingest.append(ingest_events(driver, path, fmt, reject_dir=reject_dir, database=database, progress=progress))
    bump_data_version(driver, "ingest", database)
    out.seconds["ingest"] = time.perf_counter() - t
    t = time.perf_counter()
    out.swing, out.cooc = compute_scores(driver, cfg, database, progress)
    out.seconds["scores"] = time.perf_counter() - t
    if cfg.rank:
        t = time.perf_counter()
        out.rank = _rank_or_warn(driver, cfg, database, progress)
        out.seconds["rank"] = time.perf_counter() - t
    t = time.perf_counter()
    g, res, out.faiss_dir = train_embeddings(driver, cfg, artifacts, database, progress)
    out.seconds["walks+eges+writeback"] = time.perf_counter() - t
    out.n_items, out.n_cold = len(g.item_ids), int(res.cold.sum())
    return out


def _rank_or_warn(driver, cfg: PipelineConfig, database: str, progress: bool, bump: bool = True):
    """:func:`compute_rank`, or a warning and no rank lists when the log is too short to train it (lists of an
    earlier fit are removed: they would describe other data)."""
    from query.scores import write_rank_lists

    try:
        return compute_rank(driver, cfg, database, progress, bump)
    except ValueError as exc:
        write_rank_lists(driver, {}, database)
        logger.warning("rank channel skipped, and RANKED lists of an earlier fit removed: %s", exc)
        return None


def pick_sample_items(driver, n: int = 3, database: str = "neo4j") -> list[str]:
    """Items with the most SWING neighbours (for the demo printout)."""
    with driver.session(database=database, default_access_mode="READ") as s:
        return [r[0] for r in s.run(
            "MATCH (i:Item)-[:SWING]->() WITH i, count(*) AS n ORDER BY n DESC, i.id LIMIT $n RETURN i.id", n=n).values()]


@dataclass
class RefreshResult:
    ingest: list[IngestReport] = field(default_factory=list)
    scores: RefreshReport | None = None  # None: no stored lists to update, so they were computed in full
    eges_warm: bool = False
    n_items: int = 0
    faiss_dir: Path | None = None
    seconds: dict = field(default_factory=dict)


REFRESH_EPOCHS = 2


def refresh(
    driver,
    datasets: list[tuple[Path, str]],
    artifacts: Path,
    cfg: PipelineConfig = PipelineConfig(),
    *,
    epochs: int = REFRESH_EPOCHS,
    reject_dir: Path | None = None,
    database: str = "neo4j",
    progress: bool = True,
    **ingest_options,
) -> RefreshResult:
    """New event files into a graph that already has lists: ingest them, recompute only the SWING/COOC rows
    that can change (:func:`query.scores.refresh_scores`, with the settings of the last full scores), and
    train EGES for ``epochs`` from the stored state (new items start random, new side values too; items
    without events keep side-info vectors). Vectors go to Neo4j and Faiss, and only then is the data version
    bumped, so a running API reloads once, onto the whole refresh. Without stored lists or state, that
    stage runs in full."""
    out = RefreshResult()
    apply_schema(driver, database)
    settings = read_score_settings(driver, database)
    t = time.perf_counter()
    old_basis = basis_frame(driver, database) if settings is not None else None
    for path, fmt in datasets:
        out.ingest.append(ingest_events(driver, path, fmt, reject_dir=reject_dir, database=database, progress=progress,
                                        **ingest_options))
    out.seconds["ingest"] = time.perf_counter() - t
    t = time.perf_counter()
    if settings is None:
        logger.warning("refresh: no stored SWING/COOC settings (the graph was never scored); computing them in full")
        compute_scores(driver, cfg, database, progress)
    else:
        out.scores = refresh_scores(driver, old_basis, alpha=settings["alpha"], k=settings["k"], iuf=settings["iuf"],
                                    basis=_basis(settings), database=database, progress=progress,
                                    engine=cfg.score_engine, threads=cfg.score_threads)
    out.seconds["scores"] = time.perf_counter() - t
    if cfg.rank:  # refit in full: it is cheap next to the scores
        t = time.perf_counter()
        _rank_or_warn(driver, cfg, database, progress, bump=False)  # one bump, after the vectors
        out.seconds["rank"] = time.perf_counter() - t
    t = time.perf_counter()
    path = eges_state_path(artifacts)
    state = EGESState.load(path) if path.exists() else None
    if state is None:
        logger.warning("refresh: no EGES state in %s; training EGES from scratch (%d epochs)", path, cfg.epochs)
    else:
        cfg = replace(cfg, dim=state.dim, epochs=epochs)
    out.eges_warm = state is not None
    g, res, out.faiss_dir = train_embeddings(driver, cfg, artifacts, database, progress, warm_start=state)
    out.n_items = len(g.item_ids)
    out.seconds["walks+eges+writeback"] = time.perf_counter() - t
    return out
