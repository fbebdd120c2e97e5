"""The i2i channels, one module each behind :class:`~.base.Channel`, in :data:`REGISTRY` order:
swing, cooc, trans, side, eges, rank, seqrules, gnn. Adding a channel: a module with a subclass and a :func:`register` call,
imported here (docs/architecture.md)."""

# the import order is the registration order, which is the channel order
# isort: off
from . import swing  # noqa: F401
from . import cooc  # noqa: F401
from . import trans  # noqa: F401
from . import side  # noqa: F401
from . import eges  # noqa: F401
from . import rank  # noqa: F401
from . import seqrules  # noqa: F401
from . import gnn  # noqa: F401

# isort: on
from .base import BLEND_DEPTH, REGISTRY, Channel, GraphSource, Neighbours, Parts, Training, register

BASE_CHANNELS = tuple(REGISTRY)

__all__ = [
    "BASE_CHANNELS",
    "BLEND_DEPTH",
    "REGISTRY",
    "Channel",
    "GraphSource",
    "Neighbours",
    "Parts",
    "Training",
    "register",
]
