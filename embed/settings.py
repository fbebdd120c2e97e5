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


@dataclass
class GnnSettings:
    """LightGCN's settings (the ``gnn`` channel, :func:`~graphrecall.embed.gnn.train_lightgcn`): the paper's
    dimension and layers; epochs, learning rate and L2 weight chosen on FunRec's validation split (validation
    HR@10: 60 epochs 0.572-0.587, 150 epochs 0.589-0.601, 300 epochs at lr 0.01 and L2 1e-3 0.609;
    bench/funrec_gnn.py)."""

    enabled: bool = setting(
        True, flag="--no-gnn", help="leave out the gnn channel (LightGCN; `graphrecall gnn --help`)"
    )
    dim: int = setting(64, flag="--gnn-dim", help="LightGCN dimension")
    layers: int = setting(3, flag="--gnn-layers", help="LightGCN propagation layers")
    epochs: int = setting(300, flag="--gnn-epochs", help="LightGCN epochs")
    lr: float = setting(0.01, flag="--gnn-lr", help="LightGCN Adam learning rate")
    reg: float = setting(1e-3, flag="--gnn-reg", help="LightGCN L2 weight on the batch's base embeddings")
    batch_size: int = setting(2048, flag="--gnn-batch-size", help="LightGCN BPR triples per batch")
    samples_per_epoch: int = setting(
        2_000_000,
        flag="--gnn-samples-per-epoch",
        help="LightGCN: BPR triples per epoch, at most one per user-item pair",
    )
    # every batch propagates over the whole graph and updates every vector: at 300 epochs of 32 batches, 48k pairs
    # (FunRec) took 83 s on 2 idle threads, and the 70k-pair Taobao slice (130k nodes) more than 55 min on 1 busy one
    max_pairs: int = setting(
        50_000,
        flag="--gnn-max-pairs",
        help="skip LightGCN (with a warning) on a graph with more engaged user-item pairs than this: every batch "
        "propagates over the whole graph, so its time grows with the nodes times 9,600 batches",
    )
    max_batches: int = setting(
        32,
        flag="--gnn-max-batches",
        help="LightGCN: batches per epoch at most; a bigger log gets bigger batches (each batch propagates over "
        "the whole graph, so this bounds an epoch's time)",
    )

    def train_kwargs(self) -> dict:
        return {k: v for k, v in vars(self).items() if k not in ("enabled", "max_pairs")}
