"""Swing and co-occurrence (ItemCF) computed in Neo4j with parameterised Cypher.

Both run on the same *basis*: the user-item bipartite graph of ``ENGAGED`` edges
of the chosen event types, capped

1. to each user's ``max_items_per_user`` most recent items (ties: item id), then
2. to each item's ``max_users_per_item`` most recent users (ties: user id),

materialised as temporary ``(:User)-[:BASIS {t}]->(:Item)`` relationships with
degrees ``basis_deg`` on both ends. On the basis:

* Swing (Yang et al. 2020): ``s(i,j) = sum over unordered user pairs {u,v} who both
  have i and j of  w_u * w_v / (alpha + |I_u ∩ I_v|)``, with ``w_u = 1/sqrt(|I_u|)``
  (or 1 when ``user_weight=False``). Ordered pairs (as FunRec counts) double every
  score and leave rankings unchanged.
* Co-occurrence: ItemCF cosine ``C_ij / sqrt(N_i N_j)``; with ``iuf=True`` each user adds
  ``1/log(1 + |I_u|)`` to ``C_ij`` instead of 1 (ItemCF-IUF, Breese et al.), damping heavy users.

The top ``k`` per item are written as ``(:Item)-[:SWING|COOC {score, norm, rank}]->(:Item)``,
replacing earlier ones. Every value reaches Cypher as a ``$parameter``.

Two engines compute the same lists from the same BASIS (tested against each other and the oracle):

* ``cypher``: the queries below, readable, and the ones Browser can run to explain a pair;
* ``procedure``: ``graphrecall.scores`` (Java, ``java-procedures/``, :mod:`.procedure`), which loads
  the BASIS into arrays and streams the rows to a ``CALL {...} IN TRANSACTIONS`` write; much faster
  (``bench/speed.py --only scores_engine``).

``engine="auto"`` (the default) uses the procedure when the server has the current build, else Cypher.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

from ...common.progress import progress_bar
from .settings import DEFAULT_EVENT_TYPES, ENGINES

logger = logging.getLogger(__name__)


Q_CLEAR_BASIS = """
MATCH ()-[b:BASIS]->()
CALL (b) { DELETE b } IN TRANSACTIONS OF 10000 ROWS
"""

Q_BASIS_ITEMS_PER_USER = """
MATCH (u:User)
CALL (u) {
  MATCH (u)-[e:ENGAGED]->(i:Item) WHERE e.type IN $types
  WITH u, i, max(e.last_ts) AS t
  ORDER BY t DESC, i.id ASC
  LIMIT $max_items_per_user
  CREATE (u)-[:BASIS {t: t}]->(i)
} IN TRANSACTIONS OF 500 ROWS
"""

Q_BASIS_USERS_PER_ITEM = """
MATCH (i:Item) WHERE COUNT { (i)<-[:BASIS]-() } > $max_users_per_item
CALL (i) {
  MATCH (i)<-[b:BASIS]-(u:User)
  WITH b ORDER BY b.t DESC, u.id ASC
  SKIP $max_users_per_item
  DELETE b
} IN TRANSACTIONS OF 200 ROWS
"""

Q_BASIS_DEGREES = """
MATCH (n) WHERE n:User OR n:Item
CALL (n) {
  SET n.basis_deg = COUNT { (n)-[:BASIS]-() }
} IN TRANSACTIONS OF 5000 ROWS
"""

# One query per relationship type (a constant, never user input), so the type's index finds them
Q_DROP = {
    rel: f"MATCH ()-[r:{rel}]->() CALL (r) {{ DELETE r }} IN TRANSACTIONS OF 10000 ROWS" for rel in ("SWING", "COOC")
}

# Shared tail: keep the top $k of (i, j, score) rows and write them with ranks and the row-normalised
# score norm = score / (i's best score) (Deshpande & Karypis 2004), which sums better across items.
# Scores are ranked at 12 decimals, so that sums of the same terms in another order (the procedure's)
# stay ties, broken by id alike. REL is replaced by a
# constant relationship type in this module (never by user input).
_TOPK_TAIL = """
  WHERE score > $min_score
  ORDER BY round(score, 12) DESC, j.id ASC
  LIMIT $k
  WITH i, collect([j, score]) AS top
  UNWIND range(0, size(top) - 1) AS r
  WITH i, top[r][0] AS j, top[r][1] AS score, r + 1 AS rank, top[0][1] AS best
  CREATE (i)-[:REL {score: score, norm: score / best, rank: rank}]->(j)
}
"""

# Swing in two passes, so that no user pair is intersected more than once:
# 1. for each user pair {u, v} (u.id < v.id) with >= 2 common items, a temporary
#    (u)-[:PAIR {c, items}]->(v) with c = w_u w_v / (alpha + |I_u ∩ I_v|) and the common item ids;
# 2. for each item i, the pairs whose common items hold i add c to every other common item j.
Q_SWING_PAIRS = """
UNWIND $ids AS uid
MATCH (u:User {id: uid})
CALL (u) {
  MATCH (u)-[:BASIS]->(j:Item)<-[:BASIS]-(v:User)
  WHERE u.id < v.id
  WITH u, v, collect(j.id) AS common
  WHERE size(common) >= 2
  CREATE (u)-[:PAIR {
    c: CASE WHEN $user_weight THEN 1.0 / sqrt(toFloat(u.basis_deg) * v.basis_deg) ELSE 1.0 END / ($alpha + size(common)),
    items: common}]->(v)
}
"""

Q_SWING = """
UNWIND $ids AS iid
MATCH (i:Item {id: iid})
CALL (i) {
  MATCH (i)<-[:BASIS]-(:User)-[p:PAIR]->(:User)
  WHERE i.id IN p.items
  UNWIND p.items AS jid
  WITH i, jid, sum(p.c) AS score
  WHERE jid <> i.id
  MATCH (j:Item {id: jid})
""" + _TOPK_TAIL.replace("REL", "SWING")

Q_CLEAR_PAIRS = """
MATCH ()-[p:PAIR]->()
CALL (p) { DELETE p } IN TRANSACTIONS OF 10000 ROWS
"""

Q_COOC = """
UNWIND $ids AS iid
MATCH (i:Item {id: iid})
CALL (i) {
  MATCH (i)<-[:BASIS]-(u:User)-[:BASIS]->(j:Item)
  WHERE j <> i
  WITH i, j, sum(CASE WHEN $iuf THEN 1.0 / log(1.0 + u.basis_deg) ELSE 1.0 END) AS c
  WITH i, j, c / sqrt(toFloat(i.basis_deg) * j.basis_deg) AS score
""" + _TOPK_TAIL.replace("REL", "COOC")

Q_COUNT = {rel: f"MATCH ()-[r:{rel}]->() RETURN count(r) AS n" for rel in ("SWING", "COOC")}


@dataclass(frozen=True)
class BasisParams:
    event_types: tuple[str, ...] = DEFAULT_EVENT_TYPES
    max_items_per_user: int = 1000
    max_users_per_item: int = 1000

    def validate(self) -> None:
        if not self.event_types:
            raise ValueError("event_types is empty; pass at least one event type, e.g. ('view', 'purchase')")
        for name in ("max_items_per_user", "max_users_per_item"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class ScoreReport:
    relationship: str
    written: int
    seconds: float


def build_basis(driver, params: BasisParams = BasisParams(), database: str = "neo4j") -> float:
    """(Re)build the capped BASIS graph; returns seconds taken."""
    params.validate()
    t0 = time.perf_counter()
    with driver.session(database=database) as s:
        s.run(Q_CLEAR_BASIS).consume()
        s.run(
            Q_BASIS_ITEMS_PER_USER, types=list(params.event_types), max_items_per_user=params.max_items_per_user
        ).consume()
        s.run(Q_BASIS_USERS_PER_ITEM, max_users_per_item=params.max_users_per_item).consume()
        s.run(Q_BASIS_DEGREES).consume()
        n = s.run("MATCH ()-[b:BASIS]->() RETURN count(b) AS n").single()["n"]
    dt = time.perf_counter() - t0
    logger.info("basis: %d user-item edges in %.1fs (%.0f edges/s)", n, dt, n / dt if dt else 0.0)
    if n == 0:
        logger.warning(
            "basis is empty: no ENGAGED edges of types %s; ingest events first or pass other --event-types",
            list(params.event_types),
        )
    return dt


def _ids(driver, label: str, min_deg: int, database: str) -> list[str]:
    """Ids of ``label`` nodes with ``basis_deg >= min_deg``, sorted."""
    id_query = {
        "User": "MATCH (n:User) WHERE n.basis_deg >= $d RETURN n.id ORDER BY n.id",
        "Item": "MATCH (n:Item) WHERE n.basis_deg >= $d RETURN n.id ORDER BY n.id",
    }[label]
    with driver.session(database=database) as s:
        return [r[0] for r in s.run(id_query, d=min_deg).values()]


def _run_over(
    driver, ids: list[str], unit: str, query: str, params: dict, batch: int, database: str, progress: bool, desc: str
) -> None:
    """Run ``query`` over ``ids``, ``batch`` ids per transaction, with a progress bar (ids/s)."""
    with driver.session(database=database) as s:
        bar = progress_bar(total=len(ids), unit=unit, desc=desc, enabled=progress)
        try:
            for start in range(0, len(ids), batch):
                chunk = ids[start : start + batch]
                s.execute_write(lambda tx, chunk=chunk: tx.run(query, ids=chunk, **params).consume())
                bar.update(len(chunk))
        finally:
            bar.close()


def _in_batches(
    driver, label: str, min_deg: int, query: str, params: dict, batch: int, database: str, progress: bool, desc: str
) -> None:
    """Run ``query`` over the ids of ``label`` nodes with ``basis_deg >= min_deg``."""
    _run_over(
        driver,
        _ids(driver, label, min_deg, database),
        label.lower() + "s",
        query,
        params,
        batch,
        database,
        progress,
        desc,
    )


# Worker threads of graphrecall.scores (the Cypher write runs between its chunks): 2 were 1.26x faster
# than 1 at 1M events, with the lists equal (bench/speed.py --only scores_engine)
PROCEDURE_THREADS = 2
PROCEDURE_CHUNK = 256  # items per worker thread between writes

# The procedure only reads; its rows are written in batches of $batch by inner transactions (an
# auto-commit query, so Python sends it with session.run). REL: a constant type, never user input.
_Q_PROCEDURE = """
CALL graphrecall.scores($kind, $config) YIELD item, other, score, norm, rank
CALL (item, other, score, norm, rank) {
  CREATE (item)-[:REL {score: score, norm: norm, rank: rank}]->(other)
} IN TRANSACTIONS OF $batch ROWS
"""
Q_PROCEDURE = {rel: _Q_PROCEDURE.replace("REL", rel) for rel in ("SWING", "COOC")}


def resolve_engine(driver, engine: str = "auto", database: str = "neo4j") -> str:
    """``"procedure"`` or ``"cypher"``: what ``engine`` means on this server."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "cypher":
        return "cypher"
    from .procedure import procedure_status

    ok, why = procedure_status(driver, database)
    if ok:
        return "procedure"
    if engine == "procedure":
        raise RuntimeError(f"engine 'procedure' is not available: {why}; or pass engine 'cypher'")
    logger.warning("scores run in Cypher (slower): %s", why)
    return "cypher"


def _procedure_rows(driver, rel: str, config: dict, database: str, progress: bool, batch: int = 10000) -> dict:
    """Run ``graphrecall.scores`` for ``rel`` and write its rows; a progress bar follows the call
    through ``graphrecall.progress``. Returns the call's last progress: items, user pairs, ms."""
    job = uuid.uuid4().hex
    failure: list[BaseException] = []

    def call() -> None:
        try:
            with driver.session(database=database) as s:
                s.run(
                    Q_PROCEDURE[rel],
                    kind=rel,
                    config={**config, "job": job, "chunk": PROCEDURE_CHUNK},
                    batch=int(batch),
                ).consume()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(e)

    worker = threading.Thread(target=call, name=f"graphrecall.scores {rel}", daemon=True)
    worker.start()
    bar = progress_bar(total=None, unit="items", desc=f"{rel} (procedure)", enabled=progress)
    last = None
    try:
        with driver.session(database=database, default_access_mode="READ") as s:
            while True:
                worker.join(timeout=0.5)
                got = s.run("RETURN graphrecall.progress($job)", job=job).single()[0]
                if got is not None:
                    if bar.total is None:
                        bar.total = got[1]
                    bar.update(got[0] - bar.n)
                    last = got
                if not worker.is_alive():
                    break
    finally:
        bar.close()
    if failure:
        raise failure[0]
    done, total, pairs, ms = last if last is not None else (0, 0, 0, 0)
    return dict(items=done, pairs=pairs, seconds=ms / 1000.0)


def _procedure_config(
    rel: str, *, k: int, min_score: float, threads: int, alpha: float = 1.0, user_weight: bool = True, iuf: bool = False
) -> dict:
    """``graphrecall.scores``'s config for ``rel`` from this module's keyword arguments."""
    config = dict(k=int(k), minScore=float(min_score), concurrency=int(threads))
    if rel == "SWING":
        return config | dict(alpha=float(alpha), userWeight=bool(user_weight))
    return config | dict(iuf=bool(iuf))


def _run_procedure(driver, rel: str, config: dict, database: str, progress: bool) -> ScoreReport:
    t0 = time.perf_counter()
    with driver.session(database=database) as s:
        s.run(Q_DROP[rel]).consume()
    info = _procedure_rows(driver, rel, config, database, progress)
    with driver.session(database=database) as s:
        n = s.run(Q_COUNT[rel]).single()["n"]
    dt = time.perf_counter() - t0
    what = "user pairs intersected" if rel == "SWING" else "(item, user) visits"
    logger.info(
        "%s (procedure): %d rows, %d %s (%.0f/s), wrote %d relationships in %.1fs (%.0f rels/s)",
        rel,
        info["items"],
        info["pairs"],
        what,
        info["pairs"] / info["seconds"] if info["seconds"] else 0.0,
        n,
        dt,
        n / dt if dt else 0.0,
    )
    return ScoreReport(rel, n, dt)


def _run_scores(
    driver, rel: str, query: str, params: dict, database: str, min_deg: int, batch: int, progress: bool
) -> ScoreReport:
    t0 = time.perf_counter()
    with driver.session(database=database) as s:
        s.run(Q_DROP[rel]).consume()
    _in_batches(driver, "Item", min_deg, query, params, batch, database, progress, rel)
    with driver.session(database=database) as s:
        n = s.run(Q_COUNT[rel]).single()["n"]
    dt = time.perf_counter() - t0
    logger.info("%s: wrote %d relationships in %.1fs (%.0f rels/s)", rel, n, dt, n / dt if dt else 0.0)
    return ScoreReport(rel, n, dt)


def _prepare(driver, k: int, min_score: float, basis: BasisParams | None, database: str, threads: int = 1) -> None:
    """Checks shared by both scores, then the basis (unless reused)."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads} (--score-threads)")
    if min_score < 0:
        raise ValueError(f"min_score must be >= 0, got {min_score}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if basis is not None:
        build_basis(driver, basis, database)


def compute_swing(
    driver,
    *,
    alpha: float = 1.0,
    user_weight: bool = True,
    k: int = 50,
    min_score: float = 0.0,
    basis: BasisParams | None = BasisParams(),
    database: str = "neo4j",
    batch_size: int = 100,
    progress: bool = True,
    engine: str = "auto",
    threads: int = PROCEDURE_THREADS,
) -> ScoreReport:
    """Swing top-``k`` per item as ``SWING`` relationships. ``basis=None`` reuses the current BASIS.

    ``engine``: ``"procedure"``, ``"cypher"`` or ``"auto"`` (the procedure when installed); ``threads``:
    the procedure's worker threads. Cypher: ``batch_size`` users (pass 1) or items (pass 2) per transaction."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    _prepare(driver, k, min_score, basis, database, threads)
    if resolve_engine(driver, engine, database) == "procedure":
        return _run_procedure(
            driver,
            "SWING",
            _procedure_config("SWING", k=k, min_score=min_score, threads=threads, alpha=alpha, user_weight=user_weight),
            database,
            progress,
        )
    t0 = time.perf_counter()
    with driver.session(database=database) as s:
        s.run(Q_CLEAR_PAIRS).consume()
    _in_batches(
        driver,
        "User",
        2,
        Q_SWING_PAIRS,
        dict(alpha=float(alpha), user_weight=bool(user_weight)),
        batch_size,
        database,
        progress,
        "swing pairs",
    )
    with driver.session(database=database) as s:
        n_pairs = s.run("MATCH ()-[p:PAIR]->() RETURN count(p)").single()[0]
    logger.info("swing: %d user pairs with >= 2 common items in %.1fs", n_pairs, time.perf_counter() - t0)
    try:
        return _run_scores(
            driver, "SWING", Q_SWING, dict(k=int(k), min_score=float(min_score)), database, 2, batch_size, progress
        )
    finally:
        with driver.session(database=database) as s:
            s.run(Q_CLEAR_PAIRS).consume()


def compute_cooc(
    driver,
    *,
    k: int = 50,
    iuf: bool = False,
    min_score: float = 0.0,
    basis: BasisParams | None = BasisParams(),
    database: str = "neo4j",
    batch_size: int = 200,
    progress: bool = True,
    engine: str = "auto",
    threads: int = PROCEDURE_THREADS,
) -> ScoreReport:
    """ItemCF cosine top-``k`` per item as ``COOC`` relationships (``iuf``: inverse user frequency);
    ``engine`` and ``threads`` as in :func:`compute_swing`."""
    _prepare(driver, k, min_score, basis, database, threads)
    if resolve_engine(driver, engine, database) == "procedure":
        return _run_procedure(
            driver,
            "COOC",
            _procedure_config("COOC", k=k, min_score=min_score, threads=threads, iuf=iuf),
            database,
            progress,
        )
    return _run_scores(
        driver,
        "COOC",
        Q_COOC,
        dict(k=int(k), iuf=bool(iuf), min_score=float(min_score)),
        database,
        1,
        batch_size,
        progress,
    )


# --------------------------------------------------------------------------- incremental refresh
Q_DROP_ROWS = """
UNWIND $ids AS iid
MATCH (i:Item {id: iid})-[r]->(:Item) WHERE type(r) = $rel
DELETE r
"""


@dataclass
class RefreshReport:
    """What :func:`refresh_scores` recomputed: rows (items) out of the basis's items."""

    changed_users: int  # users whose basis edges changed
    changed_items: int  # items whose basis edges changed
    basis_items: int
    swing_items: int  # SWING rows recomputed
    cooc_items: int  # COOC rows recomputed
    pair_users: int  # users whose Swing pairs were recomputed
    seconds: dict
    swing_full: bool = False  # so many rows changed that every row was recomputed instead (cheaper; same result)
    cooc_full: bool = False

    def summary(self) -> str:
        full = [rel for rel, f in (("SWING", self.swing_full), ("COOC", self.cooc_full)) if f]
        how = f"; past full_above, every {' and '.join(full)} row was recomputed" if full else ""
        return (
            f"{self.changed_users} users and {self.changed_items} items changed in the basis; "
            f"{self.swing_items} SWING rows and {self.cooc_items} COOC rows of {self.basis_items} items "
            f"needed recomputing{how}; {sum(self.seconds.values()):.1f}s"
        )


def basis_frame(driver, database: str = "neo4j"):
    """The current BASIS edges as a frame of ``u``, ``i`` ids (empty before the first scores)."""
    import pandas as pd

    with driver.session(database=database, default_access_mode="READ") as s:
        rows = s.run("MATCH (u:User)-[:BASIS]->(i:Item) RETURN u.id AS u, i.id AS i").values()
    return pd.DataFrame(rows, columns=["u", "i"], dtype=object)


def refresh_scores(
    driver,
    old_basis,
    *,
    alpha: float = 1.0,
    user_weight: bool = True,
    k: int = 50,
    iuf: bool = False,
    min_score: float = 0.0,
    basis: BasisParams = BasisParams(),
    database: str = "neo4j",
    batch_size: int = 100,
    full_above: float = 0.5,
    progress: bool = True,
    engine: str = "auto",
    threads: int = PROCEDURE_THREADS,
) -> RefreshReport:
    """Bring SWING and COOC up to date after new events, recomputing only the rows that can change.

    ``old_basis`` is :func:`basis_frame` as it was when the stored lists were computed (read it
    before ingesting); the settings must be those of that computation. The basis is rebuilt, and
    compared with the old one: users ``U`` and items ``J`` with an added or removed basis edge.

    * A Swing score ``s(i, j)`` sums over user pairs who both have ``i`` and ``j``; it changes only
      when one of them is in ``U`` (their weight or their intersection changed). So the rows to
      recompute are the items of ``U``, old or new basis.
    * A cosine ``C_ij / sqrt(N_i N_j)`` also changes when ``N_j`` changes (``j`` in ``J``), so COOC
      adds every item that shares a user with ``J``.

    Every other row is provably unchanged, so the result equals a full recompute (tested against it).
    Stored lists are top-k, not whole rows, so a changed row is recomputed whole rather than patched.
    When more than ``full_above`` of the basis's items need new rows of a score, every row of it is
    recomputed on the new basis instead: the same result, without the per-row bookkeeping
    (``bench/refresh.py``)."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    _prepare(driver, k, min_score, None, database, threads)
    engine = resolve_engine(driver, engine, database)
    secs = {}
    t = time.perf_counter()
    build_basis(driver, basis, database)
    new = basis_frame(driver, database)
    secs["basis"] = time.perf_counter() - t
    t = time.perf_counter()
    old = old_basis[["u", "i"]].astype(object)
    both = old.merge(new, how="outer", on=["u", "i"], indicator=True)
    changed = both[both["_merge"] != "both"]
    users, items = set(changed["u"]), set(changed["i"])
    swing_items = set(old.loc[old["u"].isin(users), "i"]) | set(new.loc[new["u"].isin(users), "i"])
    pair_users = sorted(set(new.loc[new["i"].isin(swing_items), "u"]))
    near = set(new.loc[new["u"].isin(set(new.loc[new["i"].isin(items), "u"])), "i"])
    cooc_items = sorted(swing_items | near)
    swing_items = sorted(swing_items)
    secs["diff"] = time.perf_counter() - t
    n_items = int(new["i"].nunique())
    logger.info(
        "refresh: %d users and %d items changed in the basis; %d SWING rows and %d COOC rows to recompute "
        "(of %d items)",
        len(users),
        len(items),
        len(swing_items),
        len(cooc_items),
        n_items,
    )
    swing_full = len(swing_items) > full_above * n_items
    cooc_full = len(cooc_items) > full_above * n_items
    t = time.perf_counter()
    if swing_full:
        compute_swing(
            driver,
            alpha=alpha,
            user_weight=user_weight,
            k=k,
            min_score=min_score,
            basis=None,
            database=database,
            batch_size=batch_size,
            progress=progress,
            engine=engine,
            threads=threads,
        )
    elif engine == "procedure":
        _run_over(driver, swing_items, "items", Q_DROP_ROWS, dict(rel="SWING"), 1000, database, False, "")
        config = _procedure_config(
            "SWING", k=k, min_score=min_score, threads=threads, alpha=alpha, user_weight=user_weight
        )
        _procedure_rows(driver, "SWING", config | dict(items=swing_items), database, progress)
    else:
        with driver.session(database=database) as s:
            s.run(Q_CLEAR_PAIRS).consume()
        try:
            _run_over(
                driver,
                pair_users,
                "users",
                Q_SWING_PAIRS,
                dict(alpha=float(alpha), user_weight=bool(user_weight)),
                batch_size,
                database,
                progress,
                "swing pairs",
            )
            _run_over(driver, swing_items, "items", Q_DROP_ROWS, dict(rel="SWING"), 1000, database, False, "")
            _run_over(
                driver,
                swing_items,
                "items",
                Q_SWING,
                dict(k=int(k), min_score=float(min_score)),
                batch_size,
                database,
                progress,
                "SWING",
            )
        finally:
            with driver.session(database=database) as s:
                s.run(Q_CLEAR_PAIRS).consume()
    secs["swing"] = time.perf_counter() - t
    t = time.perf_counter()
    if cooc_full:
        compute_cooc(
            driver,
            k=k,
            iuf=iuf,
            min_score=min_score,
            basis=None,
            database=database,
            batch_size=2 * batch_size,
            progress=progress,
            engine=engine,
            threads=threads,
        )
    else:
        _run_over(driver, cooc_items, "items", Q_DROP_ROWS, dict(rel="COOC"), 1000, database, False, "")
        if engine == "procedure":
            config = _procedure_config("COOC", k=k, min_score=min_score, threads=threads, iuf=iuf)
            _procedure_rows(driver, "COOC", config | dict(items=cooc_items), database, progress)
        else:
            _run_over(
                driver,
                cooc_items,
                "items",
                Q_COOC,
                dict(k=int(k), iuf=bool(iuf), min_score=float(min_score)),
                2 * batch_size,
                database,
                progress,
                "COOC",
            )
    secs["cooc"] = time.perf_counter() - t
    rep = RefreshReport(
        len(users), len(items), n_items, len(swing_items), len(cooc_items), len(pair_users), secs, swing_full, cooc_full
    )
    logger.info("refresh: %s", rep.summary())
    return rep


def read_basis(driver, database: str = "neo4j") -> list[tuple[str, str]]:
    with driver.session(database=database) as s:
        return [(r["u"], r["i"]) for r in s.run("MATCH (u:User)-[:BASIS]->(i:Item) RETURN u.id AS u, i.id AS i")]
