"""Sessions (``(:Session)`` nodes with their item lists) and users' recent items."""

from __future__ import annotations


def read_sessions(driver, database: str = "neo4j") -> list[dict]:
    """Every session by id: user, start and end time, items, booked item, event count and type counts."""
    with driver.session(database=database, default_access_mode="READ") as s:
        return [
            {
                "user": r[0],
                "start_ts": r[1],
                "end_ts": r[2],
                "items": list(r[3] or []),
                "booked": r[4],
                "n_events": r[5],
                "counts": r[6],
            }
            for r in s.run(
                "MATCH (s:Session) RETURN s.user, s.start_ts, s.end_ts, s.items, s.booked, s.n_events, s.counts "
                "ORDER BY s.id"
            ).values()
        ]


def read_session_items(driver, database: str = "neo4j") -> list:
    """``[items, booked]`` of every session, by id."""
    with driver.session(database=database, default_access_mode="READ") as s:
        return s.run("MATCH (s:Session) RETURN s.items, s.booked ORDER BY s.id").values()


RECENT_ITEMS = (
    "MATCH (u:User {id: $id}) "
    "CALL { WITH u MATCH (u)-[e:ENGAGED]->(i:Item) WITH i, max(e.last_ts) AS ts "
    "       ORDER BY ts DESC, i.id LIMIT $n RETURN collect([i.id, ts]) AS recent } "
    "RETURN recent"
)


def recent_items(driver, user_id: str, n: int, database: str = "neo4j") -> list[tuple[str, int]] | None:
    """The user's ``n`` most recent distinct items with their last event time, most recent first (ties by id);
    None for a user the graph does not have."""
    with driver.session(database=database, default_access_mode="READ") as s:
        rows = s.run(RECENT_ITEMS, id=str(user_id), n=int(n)).values()
    return None if not rows else [(str(i), int(ts)) for i, ts in rows[0][0]]
