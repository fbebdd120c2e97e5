"""Groups of whole users from an event log bigger than memory, so that ingest memory stays bounded.

:class:`UserGroups` takes the log's events frame by frame and keeps them as integer codes (user, item and
type each numbered in order of first sight, time, line): 33 bytes an event. Up to ``group_size`` events
are held in memory; past that they go to a temporary file. Once every event is in, the users are put in
id order and cut into groups of whole users: a group closes with the first user that brings it to
``group_size`` events or more. A second pass over the file files every event under its group, and
:meth:`UserGroups.groups` yields each group as an events frame.

Sessions, engagements and transitions derived per group are exact, since no user spans two groups. The
groups are those of a sort of all events by (user, time, line) cut at that rule (``tests/test_ingest.py``
checks it), so batch keys do not depend on how the sort is done.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .sessions import columns_frame

RECORD = np.dtype([("user", "<i8"), ("item", "<i8"), ("type", "<i2"), ("ts", "<i8"), ("line", "<i8")])
CHUNK = 1 << 20  # records read back at a time


class UserGroups:
    """Collects events (:meth:`add`); :attr:`spilled` says whether they reached ``group_size``, then
    :meth:`frame` gives them all and :meth:`groups` the groups of whole users."""

    def __init__(self, group_size: int = 2_000_000, directory: str | Path | None = None):
        if group_size < 1:
            raise ValueError(f"max events in memory must be >= 1, got {group_size}")
        self.group_size = group_size
        self._dir = directory
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._codes: dict[str, dict[str, int]] = {"user": {}, "item": {}, "type": {}}
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self._per_user = np.zeros(0, np.int64)  # events per user code
        self.count = 0

    @property
    def spilled(self) -> bool:
        return self.count >= self.group_size

    def add(self, frame: pd.DataFrame) -> None:
        """Events with columns user, item, type (str) and ts, line (int)."""
        if not len(frame):
            return
        rec = np.empty(len(frame), RECORD)
        for key in ("user", "item", "type"):
            rec[key] = self._code(key, frame[key].to_numpy(object))
        rec["ts"], rec["line"] = frame["ts"].to_numpy(np.int64), frame["line"].to_numpy(np.int64)
        n_users = len(self._codes["user"])
        self._per_user = np.concatenate([self._per_user, np.zeros(n_users - len(self._per_user), np.int64)])
        self._per_user += np.bincount(rec["user"], minlength=n_users)
        self._buf.append(rec)
        self._buffered += len(rec)
        self.count += len(rec)
        if self._buffered >= self.group_size:
            self._flush()

    def _code(self, key: str, values: np.ndarray) -> np.ndarray:
        local, distinct = pd.factorize(values)
        table = self._codes[key]
        return np.fromiter((table.setdefault(v, len(table)) for v in distinct.tolist()), np.int64, count=len(distinct))[
            local
        ]

    def _file(self, name: str) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="graphrecall-groups-", dir=self._dir)
        return Path(self._tmp.name) / name

    def _flush(self) -> None:
        with open(self._file("events.bin"), "ab") as fh:
            for rec in self._buf:
                rec.tofile(fh)
        self._buf, self._buffered = [], 0

    def _names(self, key: str) -> np.ndarray:
        return np.array(list(self._codes[key]), dtype=object)  # one str object per distinct value

    def _frame(self, rec: np.ndarray, names: dict[str, np.ndarray]) -> pd.DataFrame:
        return columns_frame(
            names["user"][rec["user"]], names["item"][rec["item"]], names["type"][rec["type"]], rec["ts"], rec["line"]
        )

    def frame(self) -> pd.DataFrame:
        """Every event (in the order added) as one frame; for a log that was not spilled."""
        if self.spilled:
            raise ValueError("the events were spilled to disk; read them with groups()")
        names = {k: self._names(k) for k in self._codes}
        rec = np.concatenate(self._buf) if self._buf else np.empty(0, RECORD)
        return self._frame(rec, names)

    def group_of_users(self) -> np.ndarray:
        """Each user code's group: users in id order, a group closed by the user that brings it to
        ``group_size`` events or more."""
        names = list(self._codes["user"])
        order = np.array(sorted(range(len(names)), key=names.__getitem__), dtype=np.int64)
        total = np.cumsum(self._per_user[order])
        group_of_rank = np.empty(len(order), np.int64)
        start, g = 0, 0
        while start < len(order):
            base = total[start - 1] if start else 0
            end = int(np.searchsorted(total, base + self.group_size, side="left")) + 1  # past the closing user
            group_of_rank[start:end] = g
            start, g = end, g + 1
        out = np.empty(len(order), np.int64)
        out[order] = group_of_rank
        return out

    def groups(self) -> Iterator[pd.DataFrame]:
        """The groups of whole users, in user id order, each as an events frame."""
        self._flush()
        group_of = self.group_of_users()
        n_groups = int(group_of.max()) + 1 if len(group_of) else 0
        events = self._file("events.bin")
        with open(events, "rb") as fh:  # file every event under its group
            outs = [open(self._file(f"group{g:05d}.bin"), "wb") for g in range(n_groups)]
            try:
                while len(rec := np.fromfile(fh, RECORD, count=CHUNK)):
                    g = group_of[rec["user"]]
                    order = np.argsort(g, kind="stable")
                    cuts = np.searchsorted(g[order], np.arange(n_groups + 1))
                    for k in np.flatnonzero(np.diff(cuts)).tolist():
                        rec[order[cuts[k] : cuts[k + 1]]].tofile(outs[k])
            finally:
                for out in outs:
                    out.close()
        events.unlink()
        names = {k: self._names(k) for k in self._codes}
        for g in range(n_groups):
            path = self._file(f"group{g:05d}.bin")
            rec = np.fromfile(path, RECORD)
            path.unlink()
            yield self._frame(rec, names)

    def close(self) -> None:
        self._buf = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> UserGroups:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
