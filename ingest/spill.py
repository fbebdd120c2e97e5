"""External sort of events by (user, ts, line), so that ingest memory stays bounded.

Events are kept as small tuples ``(user, ts, line, item, event_type)``. Up to ``run_size``
of them are held in memory; each full run is sorted and written to a temporary file in
pickled blocks, and iteration merges the runs with :func:`heapq.merge`. A log that fits in
one run is never written to disk.

:func:`user_groups` then cuts the sorted stream into groups of whole users of about
``run_size`` events: sessions, engagements and transitions derived per group are exact,
since no user spans two groups.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

EventTuple = tuple[str, int, int, str, str]  # user, ts, line, item, event_type
BLOCK = 4096  # tuples per pickled block; merging holds one block per run


class SortedRuns:
    """Collects event tuples; iterating yields them sorted by (user, ts, line)."""

    def __init__(self, run_size: int = 2_000_000, directory: str | Path | None = None):
        if run_size < 1:
            raise ValueError(f"max events in memory must be >= 1, got {run_size}")
        self.run_size = run_size
        self._dir = directory
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._buf: list[EventTuple] = []
        self._runs: list[Path] = []
        self.count = 0

    @property
    def spilled(self) -> bool:
        return bool(self._runs)

    @property
    def runs(self) -> int:
        return len(self._runs) + (1 if self._buf else 0)

    def add(self, t: EventTuple) -> None:
        self._buf.append(t)
        self.count += 1
        if len(self._buf) >= self.run_size:
            self._spill()

    def extend(self, tuples: Iterable[EventTuple]) -> None:
        for t in tuples:
            self.add(t)

    def _spill(self) -> None:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="graphrecall-sort-", dir=self._dir)
        self._buf.sort()
        path = Path(self._tmp.name) / f"run{len(self._runs):05d}.pkl"
        with open(path, "wb") as fh:
            for start in range(0, len(self._buf), BLOCK):
                pickle.dump(self._buf[start:start + BLOCK], fh, protocol=pickle.HIGHEST_PROTOCOL)
        self._runs.append(path)
        self._buf = []

    @staticmethod
    def _read(path: Path) -> Iterator[EventTuple]:
        with open(path, "rb") as fh:
            while True:
                try:
                    block = pickle.load(fh)
                except EOFError:
                    return
                yield from block

    def __iter__(self) -> Iterator[EventTuple]:
        self._buf.sort()
        if not self._runs:
            return iter(self._buf)
        return heapq.merge(*(self._read(p) for p in self._runs), iter(self._buf))

    def close(self) -> None:
        self._buf = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "SortedRuns":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def user_groups(sorted_events: Iterable[EventTuple], group_size: int) -> Iterator[list[EventTuple]]:
    """Consecutive groups of whole users, each closed once it holds ``group_size`` events or more."""
    group: list[EventTuple] = []
    for t in sorted_events:
        if len(group) >= group_size and t[0] != group[-1][0]:
            yield group
            group = []
        group.append(t)
    if group:
        yield group
