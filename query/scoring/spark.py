"""Swing and ItemCF on Apache Spark, for logs past one Neo4j box (``graphrecall spark scores``).

The same definitions, parameters and tie rules as :mod:`~graphrecall.query.scoring.cypher` (and its oracle,
:mod:`~graphrecall.query.scoring.reference`), written as Spark DataFrame plans:

1. **Basis.** Events of the chosen types; per (user, item) the latest time; each user's
   ``max_items_per_user`` most recent items (ties: item id), then each item's
   ``max_users_per_item`` most recent users (ties: user id).
2. **Swing**, by one of two plans (``swing(plan=...)``):

   * ``"items"`` (the default): the capped basis is collected once as integer CSR arrays (item ids
     indexed in id order), broadcast to the executors, and the items are dealt to tasks, heaviest
     first and round robin; each task runs :func:`~graphrecall.query.scoring.kernel.swing_topk`, the in-database
     procedure's stamp-array algorithm compiled with numba, and emits only its items' top-k rows.
     It needs the basis (8 bytes per edge) on every executor.
   * ``"pairs"``: two passes over user pairs in Spark SQL, like the Cypher path: pass 1 joins the
     basis with itself on the item and groups by the user pair ``u < v``, keeping pairs with >= 2
     common items and ``c = w_u w_v / (alpha + |I_u ∩ I_v|)``; pass 2 explodes each pair's common
     items into ``(i, j, c)`` and sums by item pair. It shuffles one row per (user pair, common
     item), which is slow (27 minutes at 10M events on 2 cores), but needs no executor to hold the basis.
3. **ItemCF cosine**: the basis joined with itself on the user, ``C_ij`` (1 per user, or
   ``1/log(1 + |I_u|)`` with ``iuf``) over ``sqrt(N_i N_j)``.
4. **Top k** per item: ``score > min_score``, ordered by the score rounded to 12 decimals, then the
   other item's id (as in Cypher); ``norm = score / best``, ``rank`` from 1.

**Skew.** No stage groups by a single hot key with an unbounded list: the caps bound every user's
and item's basis list; the caps themselves are taken in two salted stages (top-n per
``(key, hash(other) mod salts)``, then top-n per key over at most ``salts * n`` rows), so a viral
item's million users are not sorted in one task. Swing's ``items`` plan deals items to tasks by
their estimated work (``|U_i| * sum |I_u|``, bounded by the caps), heaviest first, so no task gets
two giants before every task has one; the ``pairs`` plan keys its big aggregations by user pairs and
item pairs, never by one item.

Events come from the graph (``ENGAGED`` edges, read with the Neo4j Connector for Apache Spark) or
from event files parsed with the project's own readers (:mod:`ingest.formats`) inside the Spark
tasks, with their rejects. The top-k lists are written back through the connector as
``SWING``/``COOC`` relationships ``{score, norm, rank}``, replacing the old ones, so the API and
Browser see no difference. Every Cypher text here is a constant; values reach it as data.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...graph_schema.store.meta import bump_data_version, store_score_settings
from .cypher import Q_CLEAR_BASIS, Q_COUNT, Q_DROP

logger = logging.getLogger(__name__)

POM = Path(__file__).with_name("spark-connector") / "pom.xml"
CONNECTOR_FORMAT = "org.neo4j.spark.DataSource"
DEFAULT_MASTER = "local[2]"
# Salts of the two-stage caps (see the module docstring). More salts spread a hot key over more tasks
# at the cost of a second, smaller sort; 16 keeps the second stage at <= 16 * cap rows per key.
DEFAULT_SALTS = 16

# Constant Cypher: the connector sends its rows as `event`; nothing here is built from user input.
Q_READ_ENGAGED = "MATCH (u:User)-[e:ENGAGED]->(i:Item) RETURN u.id AS u, i.id AS i, e.type AS type, e.last_ts AS t"
Q_WRITE = {
    rel: (
        "MATCH (i:Item {id: event.i}) MATCH (j:Item {id: event.j}) "
        f"CREATE (i)-[:{rel} {{score: event.score, norm: event.norm, rank: event.rank}}]->(j)"
    )
    for rel in ("SWING", "COOC")
}


class SparkSetupError(RuntimeError):
    """Spark or its connector is missing; the message says how to install it."""


# --------------------------------------------------------------------------- session
def connector_jar(home: Path | None = None) -> Path:
    """The Neo4j Connector for Apache Spark jar, fetched with Maven into the graphrecall cache once."""
    from ...graph_schema.config import graphrecall_home

    out = Path(home or graphrecall_home()) / "spark-connector"
    jars = sorted(out.glob("neo4j-connector-apache-spark_*.jar"))
    if jars and (out / ".complete").exists():
        return jars[-1]
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SparkSetupError(
            "Maven (mvn) is not on PATH; install it (`apt-get install maven`) to fetch the Neo4j "
            "Connector for Apache Spark, or pass its jar with --connector-jar"
        )
    tmp = out.with_name("spark-connector.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    logger.info("fetching the Neo4j Connector for Apache Spark with Maven into %s (one time)", out)
    proc = subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            "-DexcludeTransitive=true",
            f"-DoutputDirectory={tmp}",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SparkSetupError(
            f"mvn could not fetch the connector (exit {proc.returncode}); check network access to "
            f"Maven Central.\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
        )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    (out / ".complete").write_text("ok\n")
    return sorted(out.glob("neo4j-connector-apache-spark_*.jar"))[-1]


def spark_session(
    master: str = DEFAULT_MASTER,
    *,
    partitions: int = 8,
    driver_memory: str = "2g",
    connector: Path | str | None = None,
    progress: bool = True,
    conf: dict | None = None,
):
    """A SparkSession with the connector on its class path.

    ``partitions`` is ``spark.sql.shuffle.partitions`` (Spark's 200 is far too many for one machine);
    ``driver_memory`` only applies when this call starts the JVM (local mode). On a cluster, submit
    with ``spark-submit --jars <connector>`` and pass ``master=None`` to use what it set."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkSetupError(
            "pyspark is not installed; `pip install -e '.[spark]'` (pyspark 3.4, the line the connector supports)"
        ) from exc
    jar = str(connector or connector_jar())
    if master and master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the tasks import this project's readers
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    b = SparkSession.builder.appName("graphrecall-scores")
    if master:
        b = b.master(master)
    settings = {
        "spark.jars": jar,
        "spark.sql.shuffle.partitions": str(int(partitions)),
        "spark.driver.memory": driver_memory,
        "spark.ui.showConsoleProgress": "true" if progress else "false",
        "spark.ui.enabled": "false",
        "spark.sql.adaptive.enabled": "true",
        # AQE would merge the shuffles of a small basis into one task; its pair explosions need them all
        "spark.sql.adaptive.coalescePartitions.enabled": "false",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
    }
    settings.update(conf or {})
    for k, v in settings.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


# --------------------------------------------------------------------------- events
def _connector_options(settings) -> dict:
    return {
        "url": settings.uri,
        "authentication.type": "basic",
        "authentication.basic.username": settings.user,
        "authentication.basic.password": settings.password or "",
        "database": settings.database,
    }


def events_from_graph(spark, settings, partitions: int = 1):
    """``(u, i, type, t)`` of every ``ENGAGED`` edge, read through the connector."""
    reader = spark.read.format(CONNECTOR_FORMAT).options(**_connector_options(settings)).option("query", Q_READ_ENGAGED)
    if partitions > 1:
        reader = reader.option("partitions", str(partitions)).option(
            "query.count", "MATCH (:User)-[e:ENGAGED]->(:Item) RETURN count(e) AS count"
        )
    return reader.load().select("u", "i", "type", "t")


def _parse_partition(rows, fmt: str, min_rating: float):
    """Parse ``(text, index)`` rows with the project's own readers; yields good events and rejects,
    with :func:`ingest.formats.iter_lines`'s rules for long, undecodable, NUL and blank lines."""
    import csv

    from ...ingest.formats import (
        MAX_FIELD_CHARS,
        MAX_LINE_BYTES,
        make_movielens_parser,
        parse_rees46,
        parse_taobao,
        split_csv,
    )

    parser = {"rees46": parse_rees46, "taobao": parse_taobao}.get(fmt) or make_movielens_parser(min_rating)

    def bad(line, reason, text):
        return (False, line, None, None, None, None, reason, text.replace("\x00", "\\x00")[:MAX_FIELD_CHARS])

    for text, idx in rows:
        line = idx + 1
        if line == 1 and fmt != "taobao":
            continue  # the header, checked on the driver
        size = len(text.encode("utf-8", "replace")) + 1  # with its newline, as iter_lines counts
        if size > MAX_LINE_BYTES:
            yield bad(line, f"line too long: {size} bytes > {MAX_LINE_BYTES}", text[:200])
        elif "\ufffd" in text:  # Hadoop's reader replaced bytes that are not UTF-8
            yield bad(line, "not UTF-8: undecodable bytes", text)
        elif "\x00" in text:
            yield bad(line, "NUL byte in line", text)
        elif text.strip():
            try:
                ev = parser(split_csv(text), line)
            except (ValueError, csv.Error) as exc:
                yield bad(line, str(exc), text)
                continue
            yield (True, line, ev.user, ev.item, ev.event_type, ev.ts, None, None)


@dataclass
class FileEvents:
    """Events parsed from one file, and how many rows were rejected (written to ``reject_path``)."""

    events: object  # DataFrame (u, i, type, t)
    rejected: int
    reject_path: Path | None
    first_errors: list = field(default_factory=list)


def events_from_file(
    spark, path: str | Path, fmt: str, *, reject_path: str | Path | None = None, min_rating: float = 4.0
) -> FileEvents:
    """Events of a ``rees46``/``taobao``/``movielens`` file, parsed by :mod:`ingest.formats` in the tasks.

    Bad rows get the same reasons as ``graphrecall ingest``: the first ones are logged as
    ``file:line: reason``, all of them go to ``reject_path`` (CSV ``line, reason, raw``), and no good
    row is lost."""
    from pyspark.sql import types as T

    from ...ingest.formats import MOVIELENS_HEADER, REES46_HEADER, IngestError, split_csv

    if fmt not in ("rees46", "taobao", "movielens"):
        raise ValueError(
            f"format {fmt!r} is not read by the Spark job; choose rees46, taobao or movielens "
            "(or ingest it with `graphrecall ingest` and read it from the graph)"
        )
    path = str(path)
    if "://" not in path and not Path(path).exists():  # local paths; hdfs://, s3a:// ... are Spark's to find
        raise FileNotFoundError(f"{path}: no such events file")
    lines = spark.sparkContext.textFile(path).zipWithIndex()
    if fmt != "taobao":
        first = lines.first()[0] if not lines.isEmpty() else ""
        header = [h.strip().lstrip("\ufeff") for h in split_csv(first)]
        want = REES46_HEADER if fmt == "rees46" else MOVIELENS_HEADER
        if header != want:
            raise IngestError(path, 1, f"not a {fmt} header: {header[:9]} (expected {','.join(want)})")
    schema = T.StructType(
        [
            T.StructField("ok", T.BooleanType()),
            T.StructField("line", T.LongType()),
            T.StructField("u", T.StringType()),
            T.StructField("i", T.StringType()),
            T.StructField("type", T.StringType()),
            T.StructField("t", T.LongType()),
            T.StructField("reason", T.StringType()),
            T.StructField("raw", T.StringType()),
        ]
    )
    f, r = fmt, float(min_rating)
    parsed = spark.createDataFrame(lines.mapPartitions(lambda rows: _parse_partition(rows, f, r)), schema).cache()
    bad = parsed.where("NOT ok").select("line", "reason", "raw").orderBy("line")
    rejected = bad.count()
    first = [IngestError(path, row["line"], row["reason"]) for row in bad.limit(20).collect()]
    for err in first:
        logger.warning("rejected %s", err)
    if rejected and reject_path is not None:
        import csv

        reject_path = Path(reject_path)
        reject_path.parent.mkdir(parents=True, exist_ok=True)
        with open(reject_path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["line", "reason", "raw"])
            for row in bad.toLocalIterator():
                w.writerow([row["line"], row["reason"], row["raw"]])
        logger.warning("%d rejected rows of %s written to %s", rejected, path, reject_path)
    return FileEvents(
        parsed.where("ok").select("u", "i", "type", "t"),
        rejected,
        Path(reject_path) if rejected and reject_path else None,
        first,
    )


# --------------------------------------------------------------------------- scores
def _top_n(df, key: str, other: str, n: int, salts: int):
    """Per ``key``, the ``n`` rows of latest ``t`` (ties: ``other`` ascending), in two salted stages."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = [F.col("t").desc(), F.col(other).asc()]
    if salts > 1:
        salted = Window.partitionBy(key, "_salt").orderBy(*order)
        df = (
            df.withColumn("_salt", F.abs(F.hash(other)) % salts)
            .withColumn("_r", F.row_number().over(salted))
            .where(F.col("_r") <= n)
            .drop("_r", "_salt")
        )
    w = Window.partitionBy(key).orderBy(*order)
    return df.withColumn("_r", F.row_number().over(w)).where(F.col("_r") <= n).drop("_r")


def capped_basis(
    events,
    *,
    event_types=("view", "cart", "fav", "purchase", "rated_high"),
    max_items_per_user: int = 1000,
    max_users_per_item: int = 1000,
    salts: int = DEFAULT_SALTS,
):
    """The capped ``(u, i)`` basis of :func:`~graphrecall.query.scoring.reference.capped_basis` from ``(u, i, type, t)`` events."""
    from pyspark.sql import functions as F

    if not event_types:
        raise ValueError("event_types is empty; pass at least one event type, e.g. ('view', 'purchase')")
    for name, v in (("max_items_per_user", max_items_per_user), ("max_users_per_item", max_users_per_item)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    latest = (
        events.where(F.col("type").isin(list(event_types)))
        .select(F.col("u").cast("string"), F.col("i").cast("string"), F.col("t").cast("long"))
        .groupBy("u", "i")
        .agg(F.max("t").alias("t"))
    )
    per_user = _top_n(latest, "u", "i", max_items_per_user, salts)
    return _top_n(per_user, "i", "u", max_users_per_item, salts).select("u", "i")


def _top_k(scores, k: int, min_score: float):
    """``(i, j, score)`` -> the top ``k`` per ``i`` with ``norm`` and ``rank``, Cypher's order and ties."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy("i").orderBy(F.round("score", 12).desc(), F.col("j").asc())
    top = (
        scores.where(F.col("score") > float(min_score))
        .withColumn("rank", F.row_number().over(w))
        .where(F.col("rank") <= int(k))
    )
    best = Window.partitionBy("i").orderBy("rank")
    return top.withColumn("norm", F.col("score") / F.first("score").over(best)).select(
        "i", "j", "score", "norm", F.col("rank").cast("long").alias("rank")
    )


SWING_PLANS = ("items", "pairs")


def swing(
    basis,
    *,
    alpha: float = 1.0,
    user_weight: bool = True,
    k: int = 50,
    min_score: float = 0.0,
    plan: str = "items",
    slices: int | None = None,
):
    """Swing top-``k`` per item as ``(i, j, score, norm, rank)``.

    ``plan="items"`` (default): the capped basis is collected once as integer CSR arrays (8 bytes per
    edge), broadcast, and the items are dealt to ``slices`` tasks (default: the shuffle partitions),
    heaviest first and round robin, each running :func:`~graphrecall.query.scoring.kernel.swing_topk`. Nothing of
    size "user pairs" is shuffled, so it scales with executors as long as one executor holds the basis.
    ``plan="pairs"``: the two-pass user-pair plan, all in Spark SQL, for a basis past one executor's
    memory; it shuffles every (user pair, common item) row, about 30x slower at 10M events."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if plan not in SWING_PLANS:
        raise ValueError(f"plan must be one of {SWING_PLANS}, got {plan!r}")
    if plan == "items":
        return _swing_by_items(basis, alpha=alpha, user_weight=user_weight, k=k, min_score=min_score, slices=slices)
    return _swing_by_user_pairs(basis, alpha=alpha, user_weight=user_weight, k=k, min_score=min_score)


def _edge_block(rows):
    import numpy as np

    return [np.array([(r[0], r[1]) for r in rows], dtype=np.int64).reshape(-1, 2)]


def _swing_slice(csr, alpha, user_weight, k, min_score):
    def run(items):
        import numpy as np

        from .kernel import swing_topk

        i, j, s, r = swing_topk(
            np.asarray(items, dtype=np.int64), *csr.value, float(alpha), bool(user_weight), int(k), float(min_score)
        )
        first = np.maximum.accumulate(np.where(r == 1, np.arange(len(r)), 0))
        norm = s / s[first] if len(s) else s
        return zip(i.tolist(), j.tolist(), s.tolist(), norm.tolist(), r.tolist())

    return run


def _swing_by_items(basis, *, alpha, user_weight, k, min_score, slices):
    import numpy as np
    from pyspark.sql import functions as F

    from .kernel import csr_from_edges, work_estimate

    spark = basis.sparkSession
    sc = spark.sparkContext
    t = time.perf_counter()
    # items indexed in id order, so the kernel's index tie-break is the id order of Cypher's ORDER BY
    items = spark.createDataFrame(
        basis.select("i").distinct().orderBy("i").rdd.map(lambda r: r[0]).zipWithIndex(), "i string, ix long"
    ).cache()
    users = spark.createDataFrame(
        basis.select("u").distinct().rdd.map(lambda r: r[0]).zipWithIndex(), "u string, ux long"
    )
    blocks = basis.join(F.broadcast(items), "i").join(users, "u").select("ux", "ix").rdd.mapPartitions(_edge_block)
    edges = np.concatenate(blocks.collect() or [np.zeros((0, 2), np.int64)])
    n_users = int(edges[:, 0].max()) + 1 if len(edges) else 0
    n_items = int(edges[:, 1].max()) + 1 if len(edges) else 0
    csr = csr_from_edges(edges[:, 0], edges[:, 1], n_users, n_items)
    work = work_estimate(*csr[:3])
    heavy_first = np.argsort(-work, kind="stable")
    heavy_first = heavy_first[np.diff(csr[0])[heavy_first] >= 2]  # one user: no pair
    n_slices = max(1, min(int(slices or spark.conf.get("spark.sql.shuffle.partitions")), len(heavy_first) or 1))
    deal = [heavy_first[s::n_slices].tolist() for s in range(n_slices)]
    nbytes = sum(a.nbytes for a in csr)
    logger.info(
        "spark: Swing by items: basis of %d edges as CSR (%.1f MiB broadcast) in %.1fs; %d items in %d slices",
        len(edges),
        nbytes / 2**20,
        time.perf_counter() - t,
        len(heavy_first),
        n_slices,
    )
    bc = sc.broadcast(csr)
    rows = sc.parallelize(deal, n_slices).flatMap(_swing_slice(bc, alpha, user_weight, k, min_score))
    out = spark.createDataFrame(rows, "ix long, jx long, score double, norm double, rank long")
    jd = items.select(F.col("i").alias("j"), F.col("ix").alias("jx"))
    return out.join(F.broadcast(items), "ix").join(F.broadcast(jd), "jx").select("i", "j", "score", "norm", "rank")


def _swing_by_user_pairs(basis, *, alpha, user_weight, k, min_score):
    """The two-pass user-pair plan (see the module docstring)."""
    from pyspark.sql import functions as F

    deg = basis.groupBy("u").agg(F.count("*").alias("du"))
    b = basis.join(deg, "u")
    x, y = b.alias("x"), b.alias("y")
    pairs = (
        x.join(y, (F.col("x.i") == F.col("y.i")) & (F.col("x.u") < F.col("y.u")))
        .select(
            F.col("x.u").alias("u"),
            F.col("y.u").alias("v"),
            F.col("x.i").alias("i"),
            F.col("x.du").alias("du"),
            F.col("y.du").alias("dv"),
        )
        .groupBy("u", "v")
        .agg(F.collect_list("i").alias("common"), F.first("du").alias("du"), F.first("dv").alias("dv"))
        .where(F.size("common") >= 2)
    )
    w = (1.0 / F.sqrt(F.col("du").cast("double") * F.col("dv"))) if user_weight else F.lit(1.0)
    pairs = pairs.select((w / (F.lit(float(alpha)) + F.size("common"))).alias("c"), "common")
    terms = (
        pairs.select("c", "common", F.explode("common").alias("i"))
        .select("c", "i", F.explode("common").alias("j"))
        .where(F.col("i") != F.col("j"))
    )
    return _top_k(terms.groupBy("i", "j").agg(F.sum("c").alias("score")), k, min_score)


def cooc(basis, *, k: int = 50, iuf: bool = False, min_score: float = 0.0):
    """ItemCF cosine top-``k`` per item as ``(i, j, score, norm, rank)``."""
    from pyspark.sql import functions as F

    du = basis.groupBy("u").agg(F.count("*").alias("du"))
    ni = basis.groupBy("i").agg(F.count("*").alias("n"))
    b = basis.join(du, "u")
    x, y = b.alias("x"), b.alias("y")
    wt = (1.0 / F.log(1.0 + F.col("x.du"))) if iuf else F.lit(1.0)
    c = (
        x.join(y, (F.col("x.u") == F.col("y.u")) & (F.col("x.i") != F.col("y.i")))
        .select(F.col("x.i").alias("i"), F.col("y.i").alias("j"), wt.alias("w"))
        .groupBy("i", "j")
        .agg(F.sum("w").alias("c"))
    )
    c = c.join(ni.select(F.col("i"), F.col("n").alias("ni")), "i").join(
        ni.select(F.col("i").alias("j"), F.col("n").alias("nj")), "j"
    )
    scores = c.select("i", "j", (F.col("c") / F.sqrt(F.col("ni").cast("double") * F.col("nj"))).alias("score"))
    return _top_k(scores, k, min_score)


# --------------------------------------------------------------------------- write-back
def write_scores(df, rel: str, settings, *, batch_size: int = 20000, partitions: int = 1) -> int:
    """Replace every ``rel`` relationship with the rows of ``df`` (``i, j, score, norm, rank``), written
    through the connector; returns the relationships now stored. ``partitions`` > 1 writes in parallel
    transactions (they lock the same item nodes; the connector retries a deadlock)."""
    if rel not in Q_WRITE:
        raise ValueError(f"rel must be 'SWING' or 'COOC', got {rel!r}")
    driver = settings.driver()
    try:
        with driver.session(database=settings.database) as s:
            s.run(Q_DROP[rel]).consume()
        (df.repartition(int(partitions), "i") if partitions > 1 else df.coalesce(1)).write.format(
            CONNECTOR_FORMAT
        ).mode("Append").options(**_connector_options(settings)).option("query", Q_WRITE[rel]).option(
            "batch.size", str(int(batch_size))
        ).option("transaction.retries", "5").save()
        with driver.session(database=settings.database) as s:
            return int(s.run(Q_COUNT[rel]).single()["n"])
    finally:
        driver.close()


@dataclass
class SparkScoresReport:
    events: int
    basis_edges: int
    swing_rows: int
    cooc_rows: int
    seconds: dict

    def summary(self) -> str:
        secs = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        return (
            f"{self.events} events, {self.basis_edges} basis edges; wrote {self.swing_rows} SWING and "
            f"{self.cooc_rows} COOC relationships ({secs})"
        )


def run_spark_scores(
    spark,
    settings,
    *,
    events=None,
    alpha: float = 1.0,
    user_weight: bool = True,
    k: int = 50,
    iuf: bool = True,
    min_score: float = 0.0,
    event_types=("view", "cart", "fav", "purchase", "rated_high"),
    max_items_per_user: int = 1000,
    max_users_per_item: int = 1000,
    salts: int = DEFAULT_SALTS,
    write_partitions: int = 1,
    batch_size: int = 20000,
    swing_plan: str = "items",
) -> SparkScoresReport:
    """Basis, Swing and ItemCF on Spark; both lists written back to the graph through the connector.

    ``events``: a ``(u, i, type, t)`` DataFrame (:func:`events_from_file`); None reads the graph's
    ``ENGAGED`` edges. ``swing_plan``: ``"items"`` or ``"pairs"`` (:func:`swing`). The graph's own
    ``BASIS`` edges are cleared (they would no longer match the lists), so a later
    ``graphrecall refresh`` recomputes every row; the settings are stored as ``graphrecall scores``
    stores them."""
    secs: dict[str, float] = {}
    t = time.perf_counter()
    parts = int(spark.conf.get("spark.sql.shuffle.partitions"))
    ev = events_from_graph(spark, settings) if events is None else events
    ev = ev.repartition(parts).cache()  # one connector read is one partition; spread it over the cores
    n_events = ev.count()
    secs["read"] = time.perf_counter() - t
    logger.info(
        "spark: %d events read in %.1fs (%.0f events/s)",
        n_events,
        secs["read"],
        n_events / secs["read"] if secs["read"] else 0.0,
    )
    t = time.perf_counter()
    basis = (
        capped_basis(
            ev,
            event_types=event_types,
            max_items_per_user=max_items_per_user,
            max_users_per_item=max_users_per_item,
            salts=salts,
        )
        .repartition(parts, "u")
        .cache()
    )
    n_basis = basis.count()
    secs["basis"] = time.perf_counter() - t
    logger.info("spark: basis of %d user-item edges in %.1fs", n_basis, secs["basis"])
    rows = {}
    plans = (
        (
            "SWING",
            lambda: swing(basis, alpha=alpha, user_weight=user_weight, k=k, min_score=min_score, plan=swing_plan),
        ),
        ("COOC", lambda: cooc(basis, k=k, iuf=iuf, min_score=min_score)),
    )
    for rel, plan in plans:
        t = time.perf_counter()  # the items plan collects and broadcasts the basis when it is built
        df = plan().cache()  # computed once, then written: the two times apart
        n = df.count()
        secs[rel.lower()] = time.perf_counter() - t
        logger.info("spark: %s top-%d lists computed, %d rows in %.1fs", rel, k, n, secs[rel.lower()])
        t = time.perf_counter()
        rows[rel] = write_scores(df, rel, settings, batch_size=batch_size, partitions=write_partitions)
        secs[rel.lower() + "_write"] = w = time.perf_counter() - t
        df.unpersist()
        logger.info(
            "spark: %s written, %d relationships in %.1fs (%.0f rels/s)", rel, rows[rel], w, rows[rel] / w if w else 0.0
        )
    basis.unpersist()
    ev.unpersist()
    driver = settings.driver()
    try:
        with driver.session(database=settings.database) as s:
            s.run(Q_CLEAR_BASIS).consume()
        store_score_settings(
            driver,
            dict(
                engine="spark",
                swing_alpha=alpha,
                user_weight=user_weight,
                top_k=k,
                cooc_iuf=iuf,
                min_score=min_score,
                event_types=list(event_types),
                max_items_per_user=max_items_per_user,
                max_users_per_item=max_users_per_item,
            ),
            settings.database,
        )
        bump_data_version(driver, "scores", settings.database)
    finally:
        driver.close()
    return SparkScoresReport(n_events, n_basis, rows["SWING"], rows["COOC"], secs)


def local_frame_to_events(spark, triples):
    """A ``(u, i, type, t)`` DataFrame from ``(user, item, t)`` triples, all of type ``view`` (tests)."""
    return spark.createDataFrame(
        [(str(u), str(i), "view", int(t)) for u, i, t in triples], "u string, i string, type string, t long"
    )


def collect_topk(df) -> dict[tuple[str, str], float]:
    """``{(i, j): score}`` of a top-k DataFrame, on the driver (tests and small graphs)."""
    return {(r["i"], r["j"]): r["score"] for r in df.collect()}
