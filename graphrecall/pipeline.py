"""The main job end to end: ingest -> Swing/ItemCF -> walks -> EGES -> write-back + Faiss."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from embed.index import ItemVectorIndex
from embed.writeback import write_embeddings
from graph_schema.schema import apply_schema
from ingest.writer import IngestReport, ingest_events
from query.scores import BasisParams, ScoreReport, bump_data_version, compute_cooc, compute_swing
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


@dataclass
class PipelineResult:
    ingest: list[IngestReport] = field(default_factory=list)
    swing: ScoreReport | None = None
    cooc: ScoreReport | None = None
    n_items: int = 0
    n_cold: int = 0
    faiss_dir: Path | None = None
    seconds: dict = field(default_factory=dict)


def reset_graph(driver, database: str = "neo4j") -> None:
    """Delete every node and relationship (keeps schema)."""
    with driver.session(database=database) as s:
        s.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS").consume()
    logger.info("graph reset")


EGES_SETTINGS = ("walk_length", "walks_per_node", "train_on_sessions", "dim", "epochs", "window", "booked_context",
                 "booked_weight", "market_field", "market_negatives")


def eges_settings(cfg: PipelineConfig) -> dict:
    """The keyword arguments of :func:`embed.train.train_item_vectors` in ``cfg``."""
    return {k: getattr(cfg, k) for k in EGES_SETTINGS}


def compute_scores(driver, cfg: PipelineConfig, database: str = "neo4j", progress: bool = True
                   ) -> tuple[ScoreReport, ScoreReport]:
    basis = BasisParams(tuple(cfg.event_types), cfg.max_items_per_user, cfg.max_users_per_item)
    swing = compute_swing(driver, alpha=cfg.swing_alpha, k=cfg.top_k, basis=basis, database=database, progress=progress)
    cooc = compute_cooc(driver, k=cfg.top_k, iuf=cfg.cooc_iuf, basis=None, database=database, progress=progress)
    bump_data_version(driver, "scores", database)
    return swing, cooc


def train_embeddings(driver, cfg: PipelineConfig, artifacts: Path, database: str = "neo4j", progress: bool = True):
    g = export_graph(driver, database)
    res = train_item_vectors(g.transitions, g.side, g.sessions, g.booked, random_seed=cfg.random_seed,
                             progress=progress, **eges_settings(cfg))
    write_embeddings(driver, g.item_ids, res.embeddings, res.cold, database=database)
    index = ItemVectorIndex(g.item_ids, res.embeddings)
    faiss_dir = index.save(artifacts / "faiss")
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
    t = time.perf_counter()
    g, res, out.faiss_dir = train_embeddings(driver, cfg, artifacts, database, progress)
    out.seconds["walks+eges+writeback"] = time.perf_counter() - t
    out.n_items, out.n_cold = len(g.item_ids), int(res.cold.sum())
    return out


def pick_sample_items(driver, n: int = 3, database: str = "neo4j") -> list[str]:
    """Items with the most SWING neighbours (for the demo printout)."""
    with driver.session(database=database, default_access_mode="READ") as s:
        return [r[0] for r in s.run(
            "MATCH (i:Item)-[:SWING]->() WITH i, count(*) AS n ORDER BY n DESC, i.id LIMIT $n RETURN i.id", n=n).values()]

