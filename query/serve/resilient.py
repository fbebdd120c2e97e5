"""Serving through outages: a snapshot answers while Neo4j is probed, and is reloaded when the data changes."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from ..channels import Neighbours
from .blend import BlendConfig
from .retriever import ItemRetriever
from .snapshot import SnapshotRetriever

logger = logging.getLogger(__name__)


class ResilientRetriever(ItemRetriever):
    """Serves from a snapshot; probes Neo4j every ``probe_every`` seconds in a thread.

    While the probe fails, ``health()`` says ``degraded`` and answers keep coming
    from the last snapshot. When the probe succeeds again the snapshot is reloaded.

    A probe may return the graph's data version (:func:`~graphrecall.graph_schema.store.meta.read_data_version`); when it differs
    from the snapshot's, a new snapshot is loaded in the probe thread while the old one keeps answering,
    then swapped in with one assignment. A request reads :meth:`view` once, so it never mixes the two.
    """

    def __init__(
        self,
        load_snapshot: Callable[[], SnapshotRetriever],
        probe: Callable[[], int | None],
        probe_every: float = 5.0,
        fallback: Callable[[], SnapshotRetriever] | None = None,
    ):
        """``fallback`` (e.g. :meth:`SnapshotRetriever.load` of a saved snapshot) is used when Neo4j
        is down at start-up; the service then starts ``degraded`` and recovers like after any outage."""
        self._load, self._probe, self.probe_every = load_snapshot, probe, probe_every
        self.neo4j_ok = True
        self.last_error: str | None = None
        try:
            self.snapshot = load_snapshot()
        except Exception as exc:  # noqa: BLE001
            if fallback is None:
                raise
            logger.warning("Neo4j unreachable at start-up (%s); serving the saved snapshot", exc)
            self.snapshot = fallback()
            self.neo4j_ok, self.last_error = False, f"{type(exc).__name__}: {exc}"[:300]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.blend_override: BlendConfig | None = None
        self.reloads = 0

    @property
    def blend_config(self) -> BlendConfig:
        """``--blend``/``GRAPHRECALL_BLEND`` when given, else the snapshot's (stored by ``graphrecall tune``)."""
        return self.blend_override or self.snapshot.blend_config

    @blend_config.setter
    def blend_config(self, config: BlendConfig) -> None:
        self.blend_override = config

    @property
    def blend_source(self) -> str:
        return "--blend / GRAPHRECALL_BLEND" if self.blend_override else self.snapshot.blend_source

    def start(self) -> ResilientRetriever:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="neo4j-probe", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def check(self) -> bool:
        """One probe; on recovery, reload the snapshot."""
        try:
            version = self._probe()
        except Exception as exc:  # noqa: BLE001 - any failure is "down"
            if self.neo4j_ok:
                logger.warning(
                    "Neo4j unreachable, serving the snapshot of %s: %s",
                    time.strftime("%H:%M:%S", time.localtime(self.snapshot.loaded_at)),
                    exc,
                )
            self.neo4j_ok, self.last_error = False, f"{type(exc).__name__}: {exc}"[:300]
            return False
        changed = version is not None and version != self.snapshot.version
        if not self.neo4j_ok or changed:
            why = "Neo4j is back" if not self.neo4j_ok else f"data version {self.snapshot.version} -> {version}"
            try:
                t0 = time.perf_counter()
                fresh = self._load()
                self.snapshot = fresh  # the swap: one reference assignment
                self.reloads += 1
                gc.freeze()  # keep the new snapshot's objects out of the cyclic collector's scans
                logger.info("%s; snapshot reloaded in %.1fs (version %d)", why, time.perf_counter() - t0, fresh.version)
            except Exception as exc:  # noqa: BLE001
                self.last_error = f"reload failed: {exc}"[:300]
                return False
        self.neo4j_ok, self.last_error = True, None
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.probe_every):
            self.check()

    def has_item(self, item_id: str) -> bool:
        return self.snapshot.has_item(item_id)

    def _channel(self, item_id: str, k: int, channel: str) -> Neighbours:
        return self.snapshot._channel(item_id, k, channel)

    def is_new(self, ids: np.ndarray) -> np.ndarray:
        return self.snapshot.is_new(ids)

    def item_values(self, ids, field: str) -> list:
        return self.snapshot.item_values(ids, field)

    def view(self) -> ItemRetriever:
        return self.snapshot  # read once per call (or per batch), so a reload mid-request cannot mix snapshots

    def health(self) -> dict:
        snap = self.snapshot
        return {
            "status": "ok" if self.neo4j_ok else "degraded",
            "neo4j": self.neo4j_ok,
            "version": snap.version,
            "reloads": self.reloads,
            "error": self.last_error,
            "snapshot": snap.stats(),
            "blend": str(self.blend_config),
            "blend_source": self.blend_source,
        }
