"""Turn events into the rows the graph stores: engagements, sessions, transitions, items.

Everything here is deterministic for a given input (sorted, keyed), so that an
ingest killed mid-file resumes with exactly the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .formats import PURCHASE, Event

DEFAULT_SESSION_GAP = 30 * 60


@dataclass
class DerivedRows:
    items: list[dict]
    engaged: list[dict]
    sessions: list[dict]
    transitions: list[dict]


def events_frame(events: list[Event]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": [e.user for e in events],
            "item": [e.item for e in events],
            "type": [e.event_type for e in events],
            "ts": np.fromiter((e.ts for e in events), dtype=np.int64, count=len(events)),
            "line": np.fromiter((e.line for e in events), dtype=np.int64, count=len(events)),
        }
    )


def columns_frame(users, items, types, ts, lines) -> pd.DataFrame:
    """The events frame the readers give and :func:`derive_rows` takes: ids and types as ``object`` columns
    (one ``str`` each), times and line numbers as int64."""
    return pd.DataFrame(
        {
            "user": pd.Series(users, dtype=object),
            "item": pd.Series(items, dtype=object),
            "type": pd.Series(types, dtype=object),
            "ts": np.asarray(ts, dtype=np.int64),
            "line": np.asarray(lines, dtype=np.int64),
        }
    )


def session_ids(users: np.ndarray, ts: np.ndarray, gap_seconds: int) -> np.ndarray:
    """Session number per event; ``users``/``ts`` must be sorted by (user, ts).

    A new session starts where the user changes or the gap to the previous event
    is larger than ``gap_seconds``.
    """
    n = len(ts)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.ones(n, dtype=bool)
    new[1:] = (users[1:] != users[:-1]) | ((ts[1:] - ts[:-1]) > gap_seconds)
    return np.cumsum(new) - 1


def item_rows(events) -> list[dict]:
    """One row per item: the last non-null value of each side field, in file (line) order."""
    side_rows: dict[str, dict] = {}
    for e in sorted(events, key=lambda e: e.line):
        merge_side(side_rows, e)
    return [{"id": i, "props": side_rows[i]} for i in sorted(side_rows)]


def merge_side(side_rows: dict[str, dict], e: Event) -> None:
    props = side_rows.setdefault(e.item, {})
    for k, v in e.side.items():
        if v is not None:
            props[k] = v


def session_rows(
    df: pd.DataFrame, gap_seconds: int = DEFAULT_SESSION_GAP, purchase_type: str = PURCHASE, *, presorted: bool = False
) -> list[dict]:
    """One row per session of ``df`` (columns user, item, type, ts, and line when there is one):
    ``items`` in order with consecutive repeats removed, ``counts`` the events of each (its run length),
    ``booked`` = the last purchased item or None.
    The frame is put in (user, ts, line) order first; a frame in file (time) order would otherwise cut
    every session after one event. ``presorted=True`` says it is in that order already."""
    return _session_table(df, gap_seconds, purchase_type, presorted=presorted)[0]


def _session_table(
    df: pd.DataFrame, gap_seconds: int, purchase_type: str, *, presorted: bool, transitions: bool = False
) -> tuple[list[dict], list[dict]]:
    """:func:`session_rows`, and with ``transitions=True`` the transition rows: each (a, b) of consecutive
    items in a session's ``items``, counted over all sessions, in (src, dst) order."""
    if df.empty:
        return [], []
    if not presorted:
        df = df.sort_values(["user", "ts"] + (["line"] if "line" in df.columns else []), kind="stable")
    users = df["user"].to_numpy()
    items_arr = df["item"].to_numpy()
    ts = df["ts"].to_numpy()
    n = len(df)
    sid = session_ids(users, ts, gap_seconds)
    first = np.ones(n, dtype=bool)
    first[1:] = sid[1:] != sid[:-1]
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], n)
    keep = first.copy()  # a session's first event, and every event whose item differs from the one before
    keep[1:] |= items_arr[1:] != items_arr[:-1]
    kept = np.flatnonzero(keep)
    runs = np.diff(np.append(kept, n)).tolist()  # a run ends at the next kept event: sessions start with one
    k0 = np.searchsorted(kept, starts).tolist()
    k1 = k0[1:] + [len(kept)]
    kept_items = [str(x) for x in items_arr[kept]]
    bought = np.flatnonzero(df["type"].to_numpy() == purchase_type)
    last = np.searchsorted(bought, ends) - 1  # each session's last purchase, if it lies inside the session
    booked = [None] * len(starts)
    if len(bought):
        inside = (last >= 0) & (bought[np.maximum(last, 0)] >= starts)
        for j in np.flatnonzero(inside).tolist():
            booked[j] = str(items_arr[bought[last[j]]])
    ts_list = ts.tolist()
    sessions: list[dict] = []
    for j, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        sessions.append(
            {
                "id": f"{users[s]}:{ts_list[s]}",
                "user": str(users[s]),
                "start_ts": ts_list[s],
                "end_ts": ts_list[e - 1],
                "items": kept_items[k0[j] : k1[j]],
                "booked": booked[j],
                "n_events": e - s,
                "counts": runs[k0[j] : k1[j]],
            }
        )
    if not transitions:
        return sessions, []
    # consecutive kept events of one session (the second is not a session's first), coded in str order
    step = np.flatnonzero(~first[kept[1:]])
    codes, names = pd.factorize(np.asarray(kept_items, dtype=object), sort=True)
    pair, weight = np.unique(codes[step].astype(np.int64) * len(names) + codes[step + 1], return_counts=True)
    src, dst = names[pair // len(names)].tolist(), names[pair % len(names)].tolist()
    return sessions, [{"src": a, "dst": b, "weight": w} for a, b, w in zip(src, dst, weight.tolist())]


def derive_rows(
    events: list[Event] | pd.DataFrame,
    gap_seconds: int = DEFAULT_SESSION_GAP,
    purchase_type: str = PURCHASE,
    items: list[dict] | None = None,
) -> DerivedRows:
    """Rows for every kind; ``items`` given (e.g. gathered while streaming) skips deriving them here.
    ``events`` may also be their :func:`events_frame` (then ``items`` must be given)."""
    out = DerivedRows([], [], [], [])
    for part in derive_steps(events, gap_seconds, purchase_type, items):
        for kind in ("items", "engaged", "sessions", "transitions"):
            getattr(out, kind).extend(getattr(part, kind))
    return out


def derive_steps(
    events: list[Event] | pd.DataFrame,
    gap_seconds: int = DEFAULT_SESSION_GAP,
    purchase_type: str = PURCHASE,
    items: list[dict] | None = None,
) -> Iterator[DerivedRows]:
    """:func:`derive_rows` in the order they are written, each step computed when asked for: the items,
    then the engagements, then the sessions with their transitions. So a writer can write one step while
    the next is derived."""
    if gap_seconds <= 0:
        raise ValueError(f"session gap must be positive seconds, got {gap_seconds}")
    if not len(events):
        yield DerivedRows(items or [], [], [], [])
        return
    if isinstance(events, pd.DataFrame) and items is None:
        raise ValueError("derive_rows from a frame needs items= (side info is not in the frame)")
    yield DerivedRows(items if items is not None else item_rows(events), [], [], [])
    df = events if isinstance(events, pd.DataFrame) else events_frame(events)
    df = df.sort_values(["user", "ts", "line"], kind="stable").reset_index(drop=True)

    g = df.groupby(["user", "item", "type"], sort=True).agg(
        count=("ts", "size"), first_ts=("ts", "min"), last_ts=("ts", "max")
    )
    engaged = [
        {"user": u, "item": i, "type": t, "count": c, "first_ts": f, "last_ts": last}
        for u, i, t, c, f, last in zip(
            *(g.index.get_level_values(k).tolist() for k in range(3)),
            *(g[k].to_numpy(np.int64).tolist() for k in ("count", "first_ts", "last_ts")),
        )
    ]
    del g
    yield DerivedRows([], engaged, [], [])
    del engaged
    sessions, transitions = _session_table(df, gap_seconds, purchase_type, presorted=True, transitions=True)
    del df, events  # the last step: the caller's events need not outlive it
    sessions.sort(key=lambda r: r["id"])
    yield DerivedRows([], [], sessions, transitions)
