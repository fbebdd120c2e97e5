"""The walks and EGES settings (a light module: the CLI builds its flags from it without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

from ..common.settings import setting


@dataclass
class EgesSettings:
    """The walks and EGES settings that ``graphrecall embed`` and ``tune`` pass to :func:`train_item_vectors`
    (epochs and market negatives: what bench/next_item.py validated on REES46)."""

    walk_length: int = setting(10, flag="--walk-length", help="random walk length")
    walks_per_node: int = setting(10, flag="--walks-per-node", help="walks started per item")
    train_on_sessions: bool = setting(
        True, flag="--no-session-pairs", help="train EGES on walks only, not also on the session sequences"
    )
    dim: int = setting(32, flag="--dim", help="EGES dimension")
    epochs: int = setting(10, flag="--epochs", help="EGES epochs")
    window: int = setting(5, flag="--window", help="skip-gram window")
    booked_context: bool = setting(True, flag="--no-booked-context", help="turn off the booked-item global context")
    booked_weight: float = setting(1.0, flag="--booked-weight", help="loss weight of a booked-context pair")
    market_field: str | None = setting("market", flag="--market-field", help="item field for same-market negatives")
    # same-market negatives measured no gain on REES46 validation
    market_negatives: int = setting(
        0, flag="--market-negatives", help="same-market negatives per positive (2 turns them on)"
    )
