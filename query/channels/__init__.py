"""The i2i channels, one module each behind :class:`~.base.Channel`, in :data:`REGISTRY` order:
swing, cooc, trans, side, eges, rank. Adding a channel: a module with a subclass and a :func:`register` call,
imported here (docs/architecture.md)."""

# isort: off - the import order is the registration order, which is the channel order
from . import swing, cooc, trans, side, eges, rank  # noqa: F401
# isort: on
from .base import BLEND_DEPTH, REGISTRY, Channel, GraphSource, Neighbours, Parts, Training, register

BASE_CHANNELS = tuple(REGISTRY)

__all__ = ["BASE_CHANNELS", "BLEND_DEPTH", "REGISTRY", "Channel", "GraphSource", "Neighbours", "Parts", "Training",
           "register"]
