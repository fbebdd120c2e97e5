"""The model settings of one pipeline run, composed of each stage's own dataclass: Swing/ItemCF
(:class:`~.scoring.settings.ScoreSettings`), walks and EGES (:class:`~graphrecall.embed.train.EgesSettings`) and
the rank channel (:class:`~.channels.rank.RankSettings`). ``graphrecall tune`` rebuilds every channel with them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..common.settings import setting
from ..embed.train import EgesSettings
from .channels.rank import RankSettings
from .scoring.settings import ScoreSettings


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
