"""The Swing and ItemCF settings, shared by every scoring engine (Cypher, the procedure, Spark)."""

from __future__ import annotations

from dataclasses import dataclass

from ...common.settings import setting

DEFAULT_EVENT_TYPES = ("view", "cart", "fav", "purchase", "rated_high")
ENGINES = ("auto", "procedure", "cypher")


@dataclass
class ScoreSettings:
    swing_alpha: float = setting(1.0, flag="--swing-alpha", help="Swing alpha")
    max_items_per_user: int = setting(1000, flag="--max-items-per-user", help="cap on items per user in the basis")
    max_users_per_item: int = setting(1000, flag="--max-users-per-item", help="cap on users per item in the basis")
    cooc_iuf: bool = setting(True, flag="--no-iuf", help="plain ItemCF counts (default: IUF-weighted users)")
    event_types: tuple[str, ...] = setting(
        DEFAULT_EVENT_TYPES, flag="--event-types", help="comma list of ENGAGED types for Swing/ItemCF"
    )
    # the graphrecall.scores procedure when the server has it ("auto"), else the Cypher reference; the same lists
    # (tests/test_scores.py). Threads: the procedure's workers; 2 measured 1.26x faster than 1 at 1M events
    # (bench/speed.py --only scores_engine)
    engine: str = setting(
        "auto",
        flag="--score-engine",
        choices=ENGINES,
        help="how SWING/COOC are computed: the graphrecall.scores procedure (Java, installed by "
        "graphrecall's local server), the Cypher reference, or auto: the procedure when the "
        "server has it",
    )
    threads: int = setting(2, flag="--score-threads", help="worker threads of the graphrecall.scores procedure")

    def stored(self, top_k: int) -> dict:
        """What the stored SWING/COOC lists depend on; kept in the graph so that a refresh recomputes alike."""
        return {
            "alpha": self.swing_alpha,
            "k": top_k,
            "iuf": self.cooc_iuf,
            "event_types": list(self.event_types),
            "max_items_per_user": self.max_items_per_user,
            "max_users_per_item": self.max_users_per_item,
        }
