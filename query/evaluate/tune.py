"""``graphrecall tune``: choose the blend for this graph on a temporal hold-out, and store it.

The last 20% of the graph's time is held out (:func:`~graphrecall.query.data.split_stored_sessions`:
sessions that end before T train, sessions that start at or after T validate, the few that
straddle T are left out, since the graph keeps no per-event times). Every channel is rebuilt from
the training sessions alone with the pipeline's settings, every consecutive pair of a validation
session is a case, and each channel and every blend of :func:`.protocol.search_blend` is scored
by NDCG@20. The best blend is stored as ``(:BlendChoice {name: 'default'})``; ``graphrecall serve``
uses it unless ``--blend`` says otherwise, and ``/health`` names it.

Swing and co-occurrence are rebuilt with the scipy twins of the Cypher queries (equal in the
tests), on the items of the training sessions (all event types); the side channel's popularity is
the number of training sessions an item appears in (the graph keeps no per-event times).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import pandas as pd

from ...common.progress import progress_bar
from ...common.threads import torch_threads
from ...graph_schema.store.items import read_item_side
from ...graph_schema.store.meta import store_blend
from ...graph_schema.store.sessions import read_sessions
from ..channels import BASE_CHANNELS
from ..config import PipelineConfig
from ..data import Catalogue, next_item_cases, split_stored_sessions
from .protocol import build_retriever, case_masks, score_lists, search_blend, served_lists, summarize

logger = logging.getLogger(__name__)


@dataclass
class TuneReport:
    cutoff: int
    train_sessions: int
    validation_sessions: int
    cases: dict
    channels: dict  # channel -> summary (all/warm/cold/cold_query)
    chosen: str
    chosen_ndcg: float
    ranking: list = field(default_factory=list)  # (spec, NDCG@20) best first, top 10
    seconds: float = 0.0

    def table(self) -> str:
        lines = [
            f"validation: sessions from {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(self.cutoff))} UTC on "
            f"({self.validation_sessions} sessions, {self.cases['all']} cases: {self.cases['warm']} warm, "
            f"{self.cases['cold']} cold, {self.cases['cold_query']} cold-query); trained on "
            f"{self.train_sessions} earlier sessions",
            f"{'channel':44s}{'HR@20':>8s}{'NDCG@20':>9s}{'warm HR':>9s}{'cold HR':>9s}",
        ]
        for ch, s in self.channels.items():
            lines.append(
                f"{ch:44s}{s['all']['hr@20']:8.4f}{s['all']['ndcg@20']:9.4f}"
                f"{s['warm']['hr@20']:9.4f}{s['cold']['hr@20']:9.4f}"
            )
        lines.append(f"chosen blend: {self.chosen} (NDCG@20 {self.chosen_ndcg:.4f})")
        return "\n".join(lines)


def tune_blend(
    driver,
    cfg=None,
    *,
    quantile: float = 0.8,
    store: bool = True,
    random_seed: int = 0,
    database: str = "neo4j",
    progress: bool = True,
) -> TuneReport:
    t0 = time.perf_counter()
    cfg = (
        cfg or PipelineConfig()
    )  # the pipeline's settings: channels rebuilt as `graphrecall scores`/`embed` build them
    cutoff, train, held = split_stored_sessions(read_sessions(driver, database), quantile)
    cases = next_item_cases(held)
    if len(cases) == 0:
        raise ValueError(
            f"no validation cases: no session with two or more items starts after the {quantile:.0%} "
            "time quantile. Ingest a longer log (tune needs sessions on both sides of the cut), or lower "
            "--quantile."
        )
    if not train:
        raise ValueError("no training sessions before the cut; ingest a longer log or raise --quantile")
    events = pd.DataFrame(
        [(s["user"], i, s["start_ts"]) for s in train for i in s["items"]], columns=["user", "item", "ts"]
    )
    cat = Catalogue.build(read_item_side(driver, database), events["item"])
    masks = case_masks(cases, cat)
    queries = set(cases.query)
    bar = progress_bar(total=2 + len(BASE_CHANNELS), unit="steps", desc="tune", enabled=progress)
    with torch_threads(cfg.torch_threads):
        retriever, _ = build_retriever(events, train, cat, cfg, random_seed=random_seed)
    bar.update(1)
    channels = {}
    for ch in BASE_CHANNELS:
        channels[ch] = summarize(*score_lists(served_lists(retriever, queries, ch), cases), masks)
        bar.update(1)

    def score(lists):
        hit, ndcg = score_lists(lists, cases)
        return float(ndcg.mean()), summarize(hit, ndcg, masks)

    scored = [(value, str(config), detail) for config, value, detail in search_blend(retriever, queries, score)]
    bar.update(1)
    bar.close()
    order = sorted(range(len(scored)), key=lambda n: (-scored[n][0], n))  # ties: the earlier (simpler) config
    best = scored[order[0]]
    channels[f"blend {best[1]} (chosen)"] = best[2]
    report = TuneReport(
        cutoff,
        len(train),
        len(held),
        {k: int(v.sum()) for k, v in masks.items()},
        channels,
        best[1],
        best[0],
        [(scored[n][1], scored[n][0]) for n in order[:10]],
        time.perf_counter() - t0,
    )
    if store:
        store_blend(
            driver,
            best[1],
            {
                "ndcg@20": best[0],
                "cutoff": cutoff,
                "cases": report.cases,
                "channels": {ch: s["all"] for ch, s in channels.items()},
            },
            database,
        )
    logger.info(
        "tune: %d cases, %d blends in %.1fs (%.0f cases/s); chosen %s",
        len(cases),
        len(scored),
        report.seconds,
        len(cases) * len(scored) / max(report.seconds, 1e-9),
        best[1],
    )
    return report
