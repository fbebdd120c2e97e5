"""The channel interface. Each channel (swing, cooc, trans, side, eges, rank) is one module with one
:class:`Channel` subclass, registered by name in :data:`REGISTRY`; serving, the snapshot, evaluation and
tuning iterate the registry instead of naming channels.

A channel says four things:

* :meth:`Channel.build`: its lists (or vectors, or index) from training data alone, for evaluation and
  ``graphrecall tune`` (:class:`Training`);
* :meth:`Channel.read`: the same from the graph, into a snapshot (:class:`GraphSource`);
* :meth:`Channel.answer`: its top ``k`` for one item from a snapshot;
* :meth:`Channel.answer_live`: its top ``k`` for one item read from Neo4j per call.

:meth:`build` and :meth:`read` return :class:`Parts`: the snapshot's three kinds of data (top lists per
channel, a vector index, a side index), so the saved snapshot's format does not depend on the channel set.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ...graph_schema.store.lists import read_list, read_top_lists
from ..data import Catalogue, transition_matrix
from ..scoring.reference import capped_basis

BLEND_DEPTH = 200  # candidates read per channel by the blend; fixed so that blend's top-k is a prefix of its top-(k+1)


@dataclass
class Neighbours:
    """``ids[n]`` scored ``scores[n]``, found by ``channels[n]``."""

    ids: np.ndarray
    scores: np.ndarray
    channels: list[str]

    @classmethod
    def empty(cls) -> Neighbours:
        return cls(np.array([], dtype=object), np.array([], dtype=np.float32), [])

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows) -> Neighbours:
        """The neighbours at ``rows`` (an index array or a slice), in that order."""
        rows = np.arange(len(self.ids))[rows]
        return Neighbours(
            np.asarray(self.ids, dtype=object)[rows], np.asarray(self.scores)[rows], [self.channels[r] for r in rows]
        )


@dataclass
class Parts:
    """What a channel adds to a snapshot: ``lists`` (channel -> ``{item: (ids, scores)}``), ``vectors``
    (an :class:`~graphrecall.embed.index.ItemVectorIndex`), ``side`` (a :class:`~.side.SideIndex`) or
    ``users`` (a :class:`~graphrecall.embed.index.UserTower`: user vectors for two-tower recall)."""

    lists: dict[str, Any] = field(default_factory=dict)
    vectors: Any = None
    side: Any = None
    users: Any = None

    def add(self, other: Parts) -> Parts:
        self.lists.update(other.lists)
        self.vectors = other.vectors if other.vectors is not None else self.vectors
        self.side = other.side if other.side is not None else self.side
        self.users = other.users if other.users is not None else self.users
        return self


@dataclass
class Training:
    """Training data for :meth:`Channel.build`: events (``user``, ``item``, ``ts``) and sessions (as
    :func:`graphrecall.graph_schema.store.sessions.read_sessions` gives them) before a time cut, over one
    catalogue, with the pipeline's settings (:class:`~graphrecall.query.config.PipelineConfig`).
    Work that two channels need (the capped basis, the transition matrix) is done once (:meth:`shared`)."""

    events: pd.DataFrame
    sessions: list[dict]
    catalogue: Catalogue
    settings: Any
    random_seed: int = 0
    progress: bool = False
    _shared: dict = field(default_factory=dict, repr=False)

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    @property
    def basis(self):
        """The capped user-item basis of the training events (Swing's and ItemCF's), as the graph's is capped."""
        s = self.settings.scores
        return self.shared(
            "basis",
            lambda: capped_basis(
                zip(self.events["user"], self.events["item"], self.events["ts"]),
                s.max_items_per_user,
                s.max_users_per_item,
            ),
        )

    @property
    def transitions(self):
        """Directed counts of consecutive distinct items (the ``TRANSITION`` edges), catalogue-indexed."""
        return self.shared("transitions", lambda: transition_matrix(self.sessions, self.catalogue))


@dataclass(frozen=True)
class GraphSource:
    """Where :meth:`Channel.read` reads from: the graph, and the folder of the saved Faiss index."""

    driver: Any
    database: str = "neo4j"
    faiss_dir: str | Path | None = None

    @property
    def gnn_dir(self) -> Path | None:
        """Where the gnn channel's user tower is saved: ``gnn`` beside the Faiss folder."""
        return None if self.faiss_dir is None else Path(self.faiss_dir).with_name("gnn")


class Channel(ABC):
    """One i2i channel; see the module docstring. Subclasses set :attr:`name` and register an instance."""

    name: ClassVar[str]

    @abstractmethod
    def build(self, training: Training) -> Parts: ...

    @abstractmethod
    def read(self, source: GraphSource) -> Parts: ...

    @abstractmethod
    def answer(self, snapshot, item_id: str, k: int) -> Neighbours:
        """From a snapshot (``snapshot.lists``, ``.vectors``, ``.side``); empty when the item has no list."""

    @abstractmethod
    def answer_live(self, driver, database: str, item_id: str, k: int) -> Neighbours: ...

    def answer_user(self, snapshot, user_id: str, k: int, exclude: frozenset) -> Neighbours | None:
        """A user's top ``k`` from the user's own vector (two-tower recall), ``exclude``d ids left out; None
        when this channel has no user vectors or none for this user (the caller sums the history's lists)."""
        return None

    def _neighbours(self, ids, scores) -> Neighbours:
        return Neighbours(np.asarray(ids, dtype=object), np.asarray(scores, dtype=np.float32), [self.name] * len(ids))


class ListChannel(Channel):
    """A channel whose snapshot data is one top list per item (``snapshot.lists[name]``)."""

    def answer(self, snapshot, item_id: str, k: int) -> Neighbours:
        ids, scores = snapshot.lists.get(self.name, {}).get(
            item_id, (np.array([], dtype=object), np.array([], np.float32))
        )
        return Neighbours(ids[:k], scores[:k], [self.name] * min(k, len(ids)))


def list_arrays(per: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{item: (ids, scores)}`` read from the graph as the snapshot holds them (object ids, float32 scores)."""
    return {i: (np.array(ids, dtype=object), np.array(sc, dtype=np.float32)) for i, (ids, sc) in per.items()}


class StoredListChannel(ListChannel):
    """A list channel stored as top-K relationships ``(:Item)-[:REL {score, rank}]->(:Item)``."""

    relationship: ClassVar[str]

    def read(self, source: GraphSource) -> Parts:
        return Parts(
            lists={self.name: list_arrays(read_top_lists(source.driver, self.relationship, database=source.database))}
        )

    def answer_live(self, driver, database: str, item_id: str, k: int) -> Neighbours:
        rows = read_list(driver, self.relationship, item_id, k, database)
        return self._neighbours([r[0] for r in rows], [r[1] for r in rows])


REGISTRY: dict[str, Channel] = {}


def register(channel: Channel) -> Channel:
    """Add ``channel`` to :data:`REGISTRY` under its name (the order of registration is the channel order)."""
    if channel.name in REGISTRY or channel.name == "blend":
        raise ValueError(f"channel name {channel.name!r} is taken")
    REGISTRY[channel.name] = channel
    return channel
