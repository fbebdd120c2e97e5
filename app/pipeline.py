"""The main job end to end: ingest -> Swing/ItemCF -> walks -> EGES -> write-back + Faiss."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..common.threads import torch_threads
from ..embed.eges import EGESState
from ..embed.gnn import fit_gnn
from ..embed.index import ItemVectorIndex
from ..embed.train import train_item_vectors
from ..embed.writeback import write_embeddings
from ..graph_schema.schema import GNN_VECTOR_INDEX, apply_schema
from ..graph_schema.store.items import most_listed_items, read_engaged_edges, read_item_side
from ..graph_schema.store.lists import write_item_lists, write_rank_lists
from ..graph_schema.store.meta import bump_data_version, read_score_settings, store_score_settings
from ..graph_schema.store.sessions import read_sessions
from ..ingest.writer import IngestReport, ingest_events
from ..query.channels.rank import rank_lists
from ..query.config import PipelineConfig
from ..query.scoring.cypher import (
    BasisParams,
    RefreshReport,
    ScoreReport,
    basis_frame,
    compute_cooc,
    compute_swing,
    refresh_scores,
)
from ..walkers.export import export_graph

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_DATASET = SHARED_DATA / "rees46" / "2019-Oct_head17k_clean.csv"

__all__ = [
    "DEFAULT_DATASET",
    "PipelineConfig",
    "PipelineResult",
    "RefreshResult",
    "compute_gnn",
    "compute_rank",
    "compute_scores",
    "pick_sample_items",
    "refresh",
    "reset_graph",
    "run_pipeline",
    "train_embeddings",
]


@dataclass
class PipelineResult:
    ingest: list[IngestReport] = field(default_factory=list)
    swing: ScoreReport | None = None
    cooc: ScoreReport | None = None
    rank: object | None = None  # graphrecall.query.channels.rank.FitReport (None: the rank channel was off or skipped)
    gnn: GnnReport | None = None  # None: the gnn channel was off
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


def _basis(settings: dict) -> BasisParams:
    return BasisParams(tuple(settings["event_types"]), settings["max_items_per_user"], settings["max_users_per_item"])


def compute_scores(
    driver, cfg: PipelineConfig, database: str = "neo4j", progress: bool = True
) -> tuple[ScoreReport, ScoreReport]:
    """SWING and COOC in the graph with ``cfg.scores``; the settings are stored for ``graphrecall refresh``."""
    sc = cfg.scores
    settings = sc.stored(cfg.top_k)
    swing = compute_swing(
        driver,
        alpha=sc.swing_alpha,
        k=cfg.top_k,
        basis=_basis(settings),
        database=database,
        progress=progress,
        engine=sc.engine,
        threads=sc.threads,
    )
    cooc = compute_cooc(
        driver,
        k=cfg.top_k,
        iuf=sc.cooc_iuf,
        basis=None,
        database=database,
        progress=progress,
        engine=sc.engine,
        threads=sc.threads,
    )
    store_score_settings(driver, settings, database)
    bump_data_version(driver, "scores", database)
    return swing, cooc


def compute_rank(driver, cfg: PipelineConfig, database: str = "neo4j", progress: bool = True, bump: bool = True):
    """The ``rank`` channel from the graph's sessions and item side info: fit (:func:`~graphrecall.query.channels.rank.fit_ranker`),
    list the top ``cfg.top_k`` of every item, replace the ``RANKED`` edges; returns the fit's report.
    ``bump=False`` leaves the data version to the caller (refresh bumps once for everything)."""
    lists, report = rank_lists(
        read_sessions(driver, database),
        read_item_side(driver, database),
        k=cfg.top_k,
        random_seed=cfg.random_seed,
        threads=cfg.rank.threads,
        progress=progress,
        negatives=cfg.rank.negatives,
        max_cases=cfg.rank.cases_per_cut,
        max_positives=cfg.rank.positives_per_cut,
    )
    report.written = write_rank_lists(driver, lists, database, progress=progress)
    if bump:
        bump_data_version(driver, "rank", database)
    return report


@dataclass
class GnnReport:
    users: int
    items: int
    pairs: int
    written: int
    seconds: float
    loss: float


def compute_gnn(
    driver, cfg: PipelineConfig, artifacts: Path, database: str = "neo4j", progress: bool = True, bump: bool = True
) -> GnnReport:
    """The ``gnn`` channel: LightGCN (:func:`~graphrecall.embed.gnn.fit_gnn`) on the graph's ``ENGAGED`` pairs;
    each item's top ``cfg.top_k`` by cosine replaces the ``GNN`` edges, the item vectors go to
    ``Item.gnn_embedding`` (vector index ``item_gnn_embedding``), and the user tower to ``artifacts/gnn`` (which
    the API reads beside ``artifacts/faiss``)."""
    t0 = time.perf_counter()
    rows = read_engaged_edges(driver, database)
    if not rows:
        raise ValueError("the graph has no ENGAGED edges; run `graphrecall ingest` first")
    if len(rows) > cfg.gnn.max_pairs:
        raise ValueError(
            f"the graph has {len(rows):,} engaged user-item pairs, more than --gnn-max-pairs "
            f"{cfg.gnn.max_pairs:,}: LightGCN propagates over the whole graph in every batch, which at this size "
            "takes hours on 2 cores; raise --gnn-max-pairs to train it anyway, or lower --gnn-epochs"
        )
    users = np.array([r[0] for r in rows], dtype=object)
    items = np.array([r[1] for r in rows], dtype=object)
    with torch_threads(cfg.torch_threads):
        model = fit_gnn(users, items, cfg.gnn, cfg.top_k, random_seed=cfg.random_seed, progress=progress)
    written = write_item_lists(driver, "GNN", model.lists, database, progress=progress)
    write_embeddings(driver, model.item_ids, model.item_vectors, database=database, index=GNN_VECTOR_INDEX)
    model.tower.save(gnn_dir(artifacts))
    if bump:
        bump_data_version(driver, "gnn", database)
    res = model.result
    return GnnReport(
        len(model.tower), len(model.item_ids), len(rows), written, time.perf_counter() - t0, res.losses[-1]
    )


def gnn_dir(artifacts: Path) -> Path:
    """The gnn channel's user tower: ``gnn`` beside ``faiss`` (:attr:`GraphSource.gnn_dir`)."""
    return Path(artifacts) / "gnn"


def eges_state_path(artifacts: Path) -> Path:
    return Path(artifacts) / "eges" / "state.pt"


def train_embeddings(
    driver,
    cfg: PipelineConfig,
    artifacts: Path,
    database: str = "neo4j",
    progress: bool = True,
    warm_start: EGESState | None = None,
):
    """Walks + EGES on the exported graph, vectors to Neo4j and Faiss; the model's tables are kept in
    ``artifacts/eges/state.pt`` for a later warm start (``warm_start``, used by :func:`refresh`)."""
    g = export_graph(driver, database)
    with torch_threads(cfg.torch_threads):
        res = train_item_vectors(
            g.transitions,
            g.side,
            g.sessions,
            g.booked,
            random_seed=cfg.random_seed,
            progress=progress,
            item_ids=g.item_ids,
            warm_start=warm_start,
            **asdict(cfg.eges),
        )
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
    if cfg.rank.enabled:
        t = time.perf_counter()
        out.rank = _rank_or_warn(driver, cfg, database, progress)
        out.seconds["rank"] = time.perf_counter() - t
    t = time.perf_counter()
    g, res, out.faiss_dir = train_embeddings(driver, cfg, artifacts, database, progress)
    out.seconds["walks+eges+writeback"] = time.perf_counter() - t
    out.n_items, out.n_cold = len(g.item_ids), int(res.cold.sum())
    if cfg.gnn.enabled:
        t = time.perf_counter()
        out.gnn = _gnn_or_warn(driver, cfg, artifacts, database, progress)
        out.seconds["gnn"] = time.perf_counter() - t
    return out


def _gnn_or_warn(driver, cfg: PipelineConfig, artifacts: Path, database: str, progress: bool, bump: bool = True):
    """:func:`compute_gnn`, or a warning and no GNN lists when the graph is past ``--gnn-max-pairs`` (lists and
    user vectors of an earlier fit are removed: they would describe other data)."""
    try:
        return compute_gnn(driver, cfg, artifacts, database, progress, bump)
    except ValueError as exc:
        write_item_lists(driver, "GNN", {}, database)
        shutil.rmtree(gnn_dir(artifacts), ignore_errors=True)
        logger.warning("gnn channel skipped, and GNN lists of an earlier fit removed: %s", exc)
        return None


def _rank_or_warn(driver, cfg: PipelineConfig, database: str, progress: bool, bump: bool = True):
    """:func:`compute_rank`, or a warning and no rank lists when the log is too short to train it (lists of an
    earlier fit are removed: they would describe other data)."""
    try:
        return compute_rank(driver, cfg, database, progress, bump)
    except ValueError as exc:
        write_rank_lists(driver, {}, database)
        logger.warning("rank channel skipped, and RANKED lists of an earlier fit removed: %s", exc)
        return None


def pick_sample_items(driver, n: int = 3, database: str = "neo4j") -> list[str]:
    """Items with the most SWING neighbours (for the demo printout)."""
    return most_listed_items(driver, n, database)


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
    that can change (:func:`~graphrecall.query.scoring.cypher.refresh_scores`, with the settings of the last full scores), and
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
        out.ingest.append(
            ingest_events(
                driver, path, fmt, reject_dir=reject_dir, database=database, progress=progress, **ingest_options
            )
        )
    out.seconds["ingest"] = time.perf_counter() - t
    t = time.perf_counter()
    if settings is None:
        logger.warning("refresh: no stored SWING/COOC settings (the graph was never scored); computing them in full")
        compute_scores(driver, cfg, database, progress)
    else:
        out.scores = refresh_scores(
            driver,
            old_basis,
            alpha=settings["alpha"],
            k=settings["k"],
            iuf=settings["iuf"],
            basis=_basis(settings),
            database=database,
            progress=progress,
            engine=cfg.scores.engine,
            threads=cfg.scores.threads,
        )
    out.seconds["scores"] = time.perf_counter() - t
    if cfg.rank.enabled:  # refit in full: it is cheap next to the scores
        t = time.perf_counter()
        _rank_or_warn(driver, cfg, database, progress, bump=False)  # one bump, after the vectors
        out.seconds["rank"] = time.perf_counter() - t
    if cfg.gnn.enabled:  # LightGCN is retrained in full (new users and items need vectors); one bump, after EGES
        t = time.perf_counter()
        _gnn_or_warn(driver, cfg, artifacts, database, progress, bump=False)
        out.seconds["gnn"] = time.perf_counter() - t
    t = time.perf_counter()
    path = eges_state_path(artifacts)
    state = EGESState.load(path) if path.exists() else None
    if state is None:
        logger.warning("refresh: no EGES state in %s; training EGES from scratch (%d epochs)", path, cfg.eges.epochs)
    else:
        cfg = replace(cfg, eges=replace(cfg.eges, dim=state.dim, epochs=epochs))
    out.eges_warm = state is not None
    g, res, out.faiss_dir = train_embeddings(driver, cfg, artifacts, database, progress, warm_start=state)
    out.n_items = len(g.item_ids)
    out.seconds["walks+eges+writeback"] = time.perf_counter() - t
    return out
