"""The model settings of one pipeline run, composed of each stage's own dataclass: Swing/ItemCF
(:class:`~.scoring.settings.ScoreSettings`), walks and EGES (:class:`~graphrecall.embed.settings.EgesSettings`) and
the rank channel (:class:`RankSettings`, here rather than in ``channels/rank.py`` because importing any channel
module registers every channel, torch and Faiss included; the CLI builds its flags from these without them).
``graphrecall tune`` rebuilds every channel with them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..common.settings import setting
from ..embed.settings import EgesSettings, GnnSettings
from .scoring.settings import ScoreSettings

NEGATIVES = 100  # negatives sampled per training case
# training cases kept per cut (a uniform sample beyond it): bounds the fit's rows at about
# 6 cuts x 20,000 x 101 whatever the log's size; REES46 head17k and Taobao timeslice96k stay under it
MAX_CASES_PER_CUT = 20_000
# of those, the cases that give rows (their target is among the candidates) kept per cut: bounds the rows at
# about 6 x 5,000 x 101 = 3.0M. It does not bind on the bench logs (REES46 head17k and Taobao timeslice96k have
# at most 4,766 and 17,105 cases per cut, and fewer than 5,000 with their target among the candidates);
# generated logs reach it from 100k events.
MAX_POSITIVE_CASES_PER_CUT = 5_000


@dataclass
class RankSettings:
    """The rank channel's training budget: negatives sampled per case and cases kept per time cut. The defaults
    are what the next-item bench measured (the caps on cases do not bind there). On validation, 30 negatives cost
    Taobao NDCG@20 0.067 -> 0.065 and REES46 nothing, at 1/3 the rows. Of the cases, those with rows (target among
    the candidates) are capped per cut: about 3.0M rows at most; it binds on generated logs only, where it cost
    cold HR@20 0.36 -> 0.30 at 300k events (warm and NDCG unchanged)."""

    enabled: bool = setting(
        True,
        flag="--no-rank",
        help="leave out the rank channel (the learned ranker's RANKED lists; see `graphrecall rank --help`)",
    )
    negatives: int = setting(
        NEGATIVES,
        flag="--rank-negatives",
        help="rank channel: negatives sampled per training case (30 fits on a third of the rows)",
    )
    # LightGBM threads for the rank stage, which runs while Neo4j is idle (sessions read, nothing written yet):
    # on REES46 validation rows the fit took 14.7 s with 2 against 29.3 s with 1, scores equal within 2e-9
    threads: int = setting(
        2,
        flag="--rank-threads",
        help="rank channel: LightGBM threads for its fit and lists (2: Neo4j is idle in that stage)",
    )
    cases_per_cut: int = setting(
        MAX_CASES_PER_CUT,
        flag="--rank-cases-per-cut",
        help="rank channel: training cases kept per time cut, a uniform sample beyond it",
    )
    positives_per_cut: int = setting(
        MAX_POSITIVE_CASES_PER_CUT,
        flag="--rank-positives-per-cut",
        help="rank channel: of those, cases whose target is among the candidates (the "
        "ones that give rows) kept per cut, a uniform sample beyond it (5000: at "
        "most about 3M rows)",
    )


@dataclass
class PipelineConfig:
    top_k: int = setting(50, flag="--top-k", help="neighbours kept per item")
    random_seed: int = setting(0, flag="--random-seed", help="seed for walks, EGES and the rank model")
    # EGES's threads (torch's count, which its compiled SGD step takes). 1 by default: Neo4j shares this machine's
    # 2 cores. Measured (bench/speed.py, section torch_threads): 2 threads are 1.5x faster on idle cores, 16x
    # slower while Neo4j works
    torch_threads: int = setting(
        default_factory=lambda: int(os.environ.get("GRAPHRECALL_TORCH_THREADS", "1")),
        flag="--torch-threads",
        shown="1, or $GRAPHRECALL_TORCH_THREADS",
        help="threads for EGES: its compiled SGD step's (Neo4j shares the cores; "
        "bench/speed.py section torch_threads measures 1 against 2)",
    )
    scores: ScoreSettings = field(default_factory=ScoreSettings)
    eges: EgesSettings = field(default_factory=EgesSettings)
    rank: RankSettings = field(default_factory=RankSettings)
    gnn: GnnSettings = field(default_factory=GnnSettings)
