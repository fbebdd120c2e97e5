"""``graphrecall`` command line. Run ``graphrecall COMMAND --help`` for each command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger("graphrecall")

FORMAT_HELP = "rees46 | taobao | movielens | generic (generic needs --map)"


class CliError(Exception):
    """An error with a message that says how to fix it."""


# --------------------------------------------------------------------------- connection
def _local_instance(args):
    from .neo4j import instance_from_env

    inst = instance_from_env(getattr(args, "instance", "default") or "default")
    if getattr(args, "bolt_port", None):
        inst.bolt_port = args.bolt_port
    if getattr(args, "http_port", None):
        inst.http_port = args.http_port
    return inst


def connect(args):
    """A driver for GRAPHRECALL_NEO4J_URI, or for the local server (started or reused)."""
    from ..graph_schema.config import Neo4jSettings

    if os.environ.get("GRAPHRECALL_NEO4J_URI"):
        settings = Neo4jSettings.from_env()
    else:
        inst = _local_instance(args).start()
        settings = inst.settings()
    driver = settings.driver()
    import neo4j.exceptions

    try:
        driver.verify_connectivity()
    except neo4j.exceptions.AuthError as exc:
        driver.close()
        raise CliError(
            f"Neo4j at {settings.uri} refused user {settings.user!r}: wrong password. Set "
            "GRAPHRECALL_NEO4J_PASSWORD to the right one (the local server's: `graphrecall neo4j password`), "
            "or unset GRAPHRECALL_NEO4J_URI to use the local server."
        ) from exc
    except Exception as exc:  # noqa: BLE001
        driver.close()
        raise CliError(
            f"cannot reach Neo4j at {settings.uri}: {exc}. Start it with `graphrecall neo4j start`, "
            "or set GRAPHRECALL_NEO4J_URI/USER/PASSWORD for your own server."
        ) from exc
    return driver, settings


def artifacts_dir() -> Path:
    from ..graph_schema.config import graphrecall_home

    return Path(os.environ.get("GRAPHRECALL_ARTIFACTS", graphrecall_home() / "artifacts"))


# --------------------------------------------------------------------------- commands
def cmd_neo4j(args) -> int:
    inst = _local_instance(args)
    if args.action == "start":
        inst.start()
        print(f"Neo4j {inst.version} running: Bolt {inst.uri}, Browser {inst.browser_url}")
        print(f"user neo4j, password in {inst.password_file}")
    elif args.action == "stop":
        print("stopped" if inst.stop() else "not running")
    elif args.action == "status":
        pid = inst.pid()
        print(f"running (pid {pid}) at {inst.uri}, Browser {inst.browser_url}" if inst.is_running() else "not running")
    elif args.action == "fetch":
        print(f"jars in {inst.fetch()}")
    elif args.action == "password":
        print(inst.password() or "")
    elif args.action == "plugin":
        from ..query.scoring.procedure import PluginBuildError, install

        dest = Path(args.dest) if args.dest else inst.home / "plugins"
        try:
            jar = install(dest, strict=True)
        except PluginBuildError as e:
            raise CliError(str(e)) from e
        print(f"graphrecall procedures in {jar}; a server started on that plugins folder has graphrecall.scores")
    return 0


def cmd_ingest(args) -> int:
    from ..graph_schema.schema import apply_schema
    from ..ingest.formats import ColumnMapping
    from ..ingest.writer import ingest_events, ingest_items

    mapping = ColumnMapping.parse(args.map, args.events) if args.map else None
    if args.format == "generic" and mapping is None:
        raise CliError("--format generic needs --map, e.g. --map user=customer,item=sku,event=action,ts=time")
    if args.bulk:
        return _ingest_bulk(args, mapping)
    driver, settings = connect(args)
    with driver:
        apply_schema(driver, settings.database)
        total_rejects = 0
        for f in args.files:
            if args.kind == "events":
                rep = ingest_events(
                    driver,
                    f,
                    args.format,
                    reject_dir=args.reject_dir,
                    mapping=mapping,
                    session_gap=int(args.session_gap_minutes * 60),
                    min_rating=args.min_rating,
                    batch_size=args.batch_size,
                    max_events_in_memory=args.max_events_in_memory,
                    spill_dir=args.spill_dir,
                    database=settings.database,
                    progress=not args.quiet,
                    workers=args.workers,
                )
            else:
                rep = ingest_items(
                    driver,
                    f,
                    args.format,
                    reject_dir=args.reject_dir,
                    mapping=mapping,
                    batch_size=args.batch_size,
                    database=settings.database,
                    progress=not args.quiet,
                    workers=args.workers,
                )
            print(rep.summary())
            total_rejects += rep.rejected
        from ..graph_schema.store.meta import bump_data_version

        bump_data_version(driver, f"ingest {args.kind}", settings.database)  # a running API reloads its snapshot
    return 1 if (total_rejects and args.strict) else 0


def _ingest_bulk(args, mapping) -> int:
    from ..ingest.bulk import BulkImportError, bulk_import

    if args.kind != "events":
        raise CliError("--bulk loads event logs; load item catalogs without --bulk")
    if os.environ.get("GRAPHRECALL_NEO4J_URI"):
        raise CliError(
            "--bulk runs neo4j-admin on the local server's files; unset GRAPHRECALL_NEO4J_URI "
            "(or load over Bolt without --bulk)"
        )
    try:
        reports = bulk_import(
            _local_instance(args),
            [(f, args.format) for f in args.files],
            reject_dir=args.reject_dir,
            mapping=mapping,
            session_gap=int(args.session_gap_minutes * 60),
            min_rating=args.min_rating,
            batch_size=args.batch_size,
            progress=not args.quiet,
        )
    except BulkImportError as exc:
        raise CliError(str(exc)) from None
    for rep in reports:
        print(rep.summary())
    return 1 if (args.strict and any(r.rejected for r in reports)) else 0


def _cfg_from_args(args):
    """The pipeline's settings: each stage's dataclass with the options given on the command line."""
    from ..common.settings import from_args
    from ..embed.settings import EgesSettings, GnnSettings
    from ..query.config import PipelineConfig, RankSettings
    from ..query.scoring.settings import ScoreSettings

    return from_args(
        PipelineConfig,
        args,
        scores=from_args(ScoreSettings, args),
        eges=from_args(EgesSettings, args),
        rank=from_args(RankSettings, args),
        gnn=from_args(GnnSettings, args),
    )


def cmd_scores(args) -> int:
    from .pipeline import compute_scores

    driver, settings = connect(args)
    with driver:
        swing, cooc = compute_scores(driver, _cfg_from_args(args), settings.database, progress=not args.quiet)
    print(f"SWING: {swing.written} relationships in {swing.seconds:.1f}s; COOC: {cooc.written} in {cooc.seconds:.1f}s")
    return 0


def cmd_rank(args) -> int:
    from .pipeline import compute_rank

    driver, settings = connect(args)
    with driver:
        try:
            rep = compute_rank(driver, _cfg_from_args(args), settings.database, progress=not args.quiet)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    print(
        f"rank model: {rep.cases} cases at {rep.cutoffs} time cuts, {rep.rows} rows ({rep.positives} positives, "
        f"candidate recall {rep.candidate_recall:.3f}) in {rep.seconds:.1f}s; RANKED: {rep.written} relationships"
    )
    return 0


def cmd_spark(args) -> int:
    from ..ingest.formats import IngestError
    from ..query.scoring.spark import DEFAULT_MASTER, SparkSetupError, events_from_file, run_spark_scores, spark_session

    if args.spark_command != "scores":
        raise CliError("the one Spark job is `graphrecall spark scores`; see `graphrecall spark scores --help`")
    if args.events and not args.format:
        raise CliError("--events needs --format rees46|taobao|movielens (the project's readers parse it in the tasks)")
    cfg = _cfg_from_args(args)
    driver, settings = connect(args)  # the local server is started (or reused) before Spark starts
    driver.close()
    master = None if args.master == "submit" else args.master
    try:
        spark = spark_session(
            master,
            partitions=args.partitions,
            driver_memory=args.driver_memory,
            connector=args.connector_jar,
            progress=not args.quiet,
            conf=dict(kv.split("=", 1) for kv in args.conf),
        )
    except SparkSetupError as exc:
        raise CliError(str(exc)) from None
    try:
        events = None
        if args.events:
            reject = (args.reject_dir / f"{Path(args.events).name}.rejects.csv") if args.reject_dir else None
            try:
                got = events_from_file(spark, args.events, args.format, reject_path=reject, min_rating=args.min_rating)
            except FileNotFoundError as exc:
                raise CliError(
                    f"{exc}; give the path of an events file (or leave --events out to read the graph)"
                ) from None
            except IngestError as exc:
                raise CliError(f"{exc}; is --format right for this file?") from None
            if got.rejected:
                print(
                    f"{got.rejected} rows of {args.events} rejected"
                    + (f"; see {got.reject_path}" if got.reject_path else " (pass --reject-dir to keep them)")
                )
            events = got.events
        sc = cfg.scores
        rep = run_spark_scores(
            spark,
            settings,
            events=events,
            alpha=sc.swing_alpha,
            k=cfg.top_k,
            iuf=sc.cooc_iuf,
            event_types=sc.event_types,
            max_items_per_user=sc.max_items_per_user,
            max_users_per_item=sc.max_users_per_item,
            salts=args.salts,
            write_partitions=args.write_partitions,
            swing_plan=args.swing_plan,
        )
    finally:
        spark.stop()
    print(f"spark ({args.master or DEFAULT_MASTER}): {rep.summary()}")
    return 0


def cmd_embed(args) -> int:
    from .pipeline import train_embeddings

    driver, settings = connect(args)
    with driver:
        g, res, faiss_dir = train_embeddings(
            driver, _cfg_from_args(args), artifacts_dir(), settings.database, progress=not args.quiet
        )
    print(
        f"EGES on {len(g.item_ids)} items ({int(res.cold.sum())} cold); "
        f"final loss {res.losses[-1]:.4f}; Faiss index in {faiss_dir}; vectors in Neo4j index item_embedding"
    )
    return 0


def cmd_gnn(args) -> int:
    from .pipeline import compute_gnn

    driver, settings = connect(args)
    with driver:
        try:
            rep = compute_gnn(driver, _cfg_from_args(args), artifacts_dir(), settings.database, progress=not args.quiet)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    print(
        f"LightGCN on {rep.users} users, {rep.items} items ({rep.pairs} engaged pairs) in {rep.seconds:.1f}s, "
        f"final loss {rep.loss:.4f}; GNN: {rep.written} relationships; vectors in Neo4j index item_gnn_embedding; "
        f"user vectors in {artifacts_dir() / 'gnn'}"
    )
    return 0


def cmd_tune(args) -> int:
    from ..query.evaluate.tune import tune_blend

    cfg = _cfg_from_args(args)
    driver, settings = connect(args)
    with driver:
        report = tune_blend(
            driver,
            cfg,
            quantile=args.quantile,
            store=not args.dry_run,
            random_seed=cfg.random_seed,
            database=settings.database,
            progress=not args.quiet,
        )
    print(report.table())
    print(
        "not stored (--dry-run)"
        if args.dry_run
        else "stored in Neo4j as (:BlendChoice {name: 'default'}); `graphrecall serve` uses it unless given --blend"
    )
    return 0


def cmd_refresh(args) -> int:
    from .pipeline import refresh

    if args.epochs_refresh < 1:
        raise CliError("--refresh-epochs must be >= 1")
    driver, settings = connect(args)
    with driver:
        res = refresh(
            driver,
            [(f, args.format) for f in args.files],
            artifacts_dir(),
            _cfg_from_args(args),
            epochs=args.epochs_refresh,
            reject_dir=args.reject_dir,
            database=settings.database,
            progress=not args.quiet,
            session_gap=int(args.session_gap_minutes * 60),
            min_rating=args.min_rating,
        )
    for rep in res.ingest:
        print(rep.summary())
    print(res.scores.summary() if res.scores else "SWING/COOC computed in full (the graph had no stored lists)")
    print(
        f"EGES {'warm-started' if res.eges_warm else 'trained from scratch'} on {res.n_items} items; "
        f"Faiss index in {res.faiss_dir}; " + ", ".join(f"{k} {v:.1f}s" for k, v in res.seconds.items())
    )
    return 1 if (args.strict and any(r.rejected for r in res.ingest)) else 0


def _datasets(args) -> list[tuple[Path, str]]:
    from ..ingest.synthetic import generate_rees46
    from .pipeline import DEFAULT_DATASET

    if args.data:
        return [(Path(p), args.format) for p in args.data]
    if DEFAULT_DATASET.exists() and not args.generated:
        return [(DEFAULT_DATASET, "rees46")]
    path = artifacts_dir() / "generated" / "rees46_synthetic.csv"
    logger.info("no dataset given and %s not found: generating %s", DEFAULT_DATASET, path)
    return [(generate_rees46(path, random_seed=_cfg_from_args(args).random_seed), "rees46")]


def cmd_demo(args) -> int:
    from ..query.evaluate.tune import tune_blend
    from ..query.serve.retriever import CHANNELS
    from ..query.serve.snapshot import SnapshotRetriever
    from .pipeline import pick_sample_items, run_pipeline

    datasets = _datasets(args)
    driver, settings = connect(args)
    cfg = _cfg_from_args(args)
    with driver:
        res = run_pipeline(
            driver,
            datasets,
            artifacts_dir(),
            cfg,
            reset=not args.keep,
            reject_dir=args.reject_dir,
            database=settings.database,
            progress=not args.quiet,
        )
        for rep in res.ingest:
            print(rep.summary())
        print(
            f"SWING {res.swing.written} rels, COOC {res.cooc.written} rels; "
            f"EGES {res.n_items} items ({res.n_cold} cold); Faiss in {res.faiss_dir}"
            + (
                f"; LightGCN {res.gnn.users} users, {res.gnn.items} items, GNN {res.gnn.written} rels"
                if res.gnn is not None
                else ""
            )
        )
        print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in res.seconds.items()))
        if not args.no_tune:
            print("\ngraphrecall tune: choosing the blend on the last 20% of the log's time")
            print(
                tune_blend(
                    driver, cfg, random_seed=cfg.random_seed, database=settings.database, progress=not args.quiet
                ).table()
            )
        snap = SnapshotRetriever.from_neo4j(driver, res.faiss_dir, settings.database)
        for item in pick_sample_items(driver, 3, settings.database):
            print(f"\nitem {item}:")
            for ch in CHANNELS:
                nb = snap.similar_items(item, k=5, channel=ch)
                print(f"  {ch:6s} " + ", ".join(f"{i} ({s:.3f})" for i, s in zip(nb.ids, nb.scores)))
    if not os.environ.get("GRAPHRECALL_NEO4J_URI"):
        print(
            f"\nNeo4j Browser: {_local_instance(args).browser_url} (user {settings.user}; "
            "password: `graphrecall neo4j password`; saved queries in graph_schema/browser/saved_queries.cypher)"
        )
    print(
        "API: `graphrecall serve` then http://127.0.0.1:8000/i2i/<item_id>?k=10&channel=blend (docs at /docs); "
        "the blend is the one tune stored, shown at /health; recall for a user: /recall/<user_id>"
    )
    print(
        "Browser guide (with `graphrecall serve` running), in the Browser editor: "
        "`:play http://localhost:8000/guide/guide.html`; readable captions: "
        "`:style http://localhost:8000/guide/graphrecall.grass`"
    )
    return 0


def _serve_log_config() -> dict:
    """uvicorn's logging plus ``graphrecall.*`` loggers on stderr; access lines are JSON as they come."""
    from uvicorn.config import LOGGING_CONFIG

    cfg = {
        **LOGGING_CONFIG,
        "formatters": dict(LOGGING_CONFIG["formatters"]),
        "handlers": dict(LOGGING_CONFIG["handlers"]),
        "loggers": dict(LOGGING_CONFIG["loggers"]),
    }
    cfg["formatters"]["plain"] = {"format": "%(message)s"}
    cfg["formatters"]["app"] = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    cfg["handlers"]["plain"] = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"}
    cfg["handlers"]["app"] = {"class": "logging.StreamHandler", "formatter": "app", "stream": "ext://sys.stderr"}
    cfg["loggers"]["graphrecall.access"] = {"handlers": ["plain"], "level": "INFO", "propagate": False}
    cfg["loggers"]["graphrecall"] = {"handlers": ["app"], "level": "INFO", "propagate": False}
    return cfg


def cmd_serve(args) -> int:
    import uvicorn

    if args.blend:
        from ..query.serve.blend import BlendConfig

        try:
            BlendConfig.parse(args.blend)
        except ValueError as exc:
            raise CliError(f"--blend: {exc}") from None
        os.environ["GRAPHRECALL_BLEND"] = args.blend
    if not os.environ.get("GRAPHRECALL_NEO4J_URI"):
        inst = _local_instance(args).start()
        os.environ["GRAPHRECALL_NEO4J_URI"] = inst.uri
        os.environ.setdefault("GRAPHRECALL_NEO4J_PASSWORD", inst.password() or "")
    os.environ.setdefault("GRAPHRECALL_FAISS_DIR", str(artifacts_dir() / "faiss"))
    if args.workers < 1:
        raise CliError(f"--workers must be >= 1, got {args.workers}")
    os.environ["GRAPHRECALL_ACCESS_LOG"] = "1" if args.access_log else "0"
    # each worker process loads its own snapshot from Neo4j; /metrics then counts per worker
    uvicorn.run(
        "graphrecall.app.serve:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        log_level="info",
        workers=args.workers,
        access_log=False,
        log_config=_serve_log_config(),
    )
    return 0


def cmd_explain(args) -> int:
    import json

    from ..query.serve.explain import draw_graph, explain_pair, summary, table, write_graph
    from ..query.serve.neo4j import Neo4jRetriever
    from ..query.serve.retriever import UnknownItem

    if args.out and Path(args.out).suffix not in (".graphml", ".gexf"):
        raise CliError(f"--out {args.out}: name a .graphml or .gexf file (Gephi and Cytoscape read both)")
    driver, settings = connect(args)
    with driver:
        try:
            g = explain_pair(driver, Neo4jRetriever(driver, settings.database), args.a, args.b, settings.database)
        except UnknownItem as exc:
            raise CliError(f"unknown item {exc.args[0]!r}: give ids of items in the graph") from None
    print(json.dumps(summary(g), indent=1) if args.json else table(g))
    if args.out:
        print(f"graph in {write_graph(g, args.out)}")
    if args.png:
        try:
            print(f"picture in {draw_graph(g, args.png)}")
        except RuntimeError as exc:
            raise CliError(str(exc)) from None
    return 0


def cmd_export(args) -> int:
    if args.export_command == "pyg":
        from ..embed.pyg import export_pyg

        driver, settings = connect(args)
        with driver:
            path = export_pyg(driver, args.out, settings.database)
        print(
            f"the graph as torch_geometric HeteroData in {path}; load it with torch.load({str(path)!r}, "
            "weights_only=False)"
        )
        return 0
    from ..embed.export import export_vectors
    from ..embed.index import ItemVectorIndex

    faiss_dir = Path(args.faiss_dir) if args.faiss_dir else artifacts_dir() / "faiss"
    index = ItemVectorIndex.load_saved(faiss_dir, mmap=False)
    if index is None:
        raise CliError(
            f"no saved item vectors in {faiss_dir}; run `graphrecall embed` (or `graphrecall demo`) first, "
            "or point --faiss-dir at the folder `graphrecall embed` wrote"
        )
    path = export_vectors(index, args.out, args.format)
    load = "KeyedVectors.load" if args.format == "keyedvectors" else "KeyedVectors.load_word2vec_format"
    print(f"{len(index.item_ids)} item vectors ({index.dim} dims) in {path}; gensim: {load}({str(path)!r})")
    return 0


def cmd_generate(args) -> int:
    from ..ingest.synthetic import generate_rees46

    path = generate_rees46(args.out, n_users=args.users, random_seed=args.random_seed)
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- parser
def _add_conn(p):
    p.add_argument("--instance", default="default", help="local server instance name (default: default)")
    p.add_argument(
        "--bolt-port", type=int, help="local server Bolt port (default 7687 or $GRAPHRECALL_NEO4J_BOLT_PORT)"
    )
    p.add_argument(
        "--http-port", type=int, help="local server HTTP port (default 7474 or $GRAPHRECALL_NEO4J_HTTP_PORT)"
    )


def _add_score_settings(g):
    """The Swing/ItemCF settings, shared by `graphrecall scores` and `graphrecall spark scores`."""
    from ..common.settings import add_options
    from ..query.config import PipelineConfig
    from ..query.scoring.settings import ScoreSettings

    add_options(g, PipelineConfig, only=("top_k",))
    add_options(
        g, ScoreSettings, only=("swing_alpha", "max_items_per_user", "max_users_per_item", "cooc_iuf", "event_types")
    )


def _add_model(p):
    """Every stage's settings (:mod:`graphrecall.query.config`), flags and defaults from their dataclasses."""
    from ..common.settings import add_options
    from ..embed.settings import EgesSettings, GnnSettings
    from ..query.config import PipelineConfig, RankSettings
    from ..query.scoring.settings import ScoreSettings

    g = p.add_argument_group("scores and embeddings")
    add_options(g, PipelineConfig)
    add_options(g, ScoreSettings)
    add_options(g, EgesSettings)
    add_options(g, RankSettings)
    add_options(g, GnnSettings)


def _ingest_options() -> argparse.ArgumentParser:
    """The options every command that reads event files shares (a parent parser)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("reading event files")
    g.add_argument("--session-gap-minutes", type=float, default=30.0, help="session cut (default 30)")
    g.add_argument("--min-rating", type=float, default=4.0, help="MovieLens: rating >= this is rated_high (default 4)")
    g.add_argument(
        "--reject-dir",
        type=Path,
        default=Path("graphrecall-rejects"),
        help="where reject CSVs go (default graphrecall-rejects)",
    )
    g.add_argument("--strict", action="store_true", help="exit 1 when any row was rejected")
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="graphrecall",
        description=__doc__.split("\n")[0] + "\n\n"
        "Neo4j: the local 5.26 server is fetched with Maven and started on 127.0.0.1 unless "
        "GRAPHRECALL_NEO4J_URI (with _USER, _PASSWORD) points elsewhere.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ingest_options = _ingest_options()

    s = sub.add_parser(
        "neo4j",
        help="fetch/start/stop the local Neo4j server",
        description="`plugin` builds graphrecall's procedures (SWING/COOC in the database) with Maven "
        "into --dest (default: the local instance's plugins/, which `start` fills anyway); "
        "for docker-compose: `graphrecall neo4j plugin --dest plugins`.",
    )
    s.add_argument("action", choices=["start", "stop", "status", "fetch", "password", "plugin"])
    s.add_argument("--dest", help="with plugin: the folder to put the jar in")
    _add_conn(s)
    s.set_defaults(func=cmd_neo4j)

    s = sub.add_parser(
        "ingest",
        help="ingest event logs or item catalogs",
        parents=[ingest_options],
        description="Bad rows are logged as FILE:LINE: reason and written to a reject CSV; "
        "re-ingesting the same file changes nothing; a killed ingest resumes.",
    )
    s.add_argument("kind", choices=["events", "items"])
    s.add_argument("files", nargs="+", type=Path)
    s.add_argument(
        "--format",
        required=True,
        help=FORMAT_HELP + "; items: movielens-movies | generic | rees46 | taobao "
        "(the side info of every item in an event log, without its events)",
    )
    s.add_argument(
        "--map",
        help="generic column mapping, e.g. user=uid,item=sku,event=type,ts=time,category=cat; only user (or "
        "session, for a log of anonymous sessions), item and ts are needed",
    )
    s.add_argument("--events", help="generic event value mapping, e.g. buy=purchase,click=view (others rejected)")
    s.add_argument("--batch-size", type=int, default=2000, help="rows per transaction (keep it when resuming)")
    s.add_argument(
        "--workers",
        type=int,
        default=2,
        help="write transactions at a time over Bolt (default 2; any value writes the same graph)",
    )
    s.add_argument(
        "--max-events-in-memory",
        type=int,
        default=2_000_000,
        help="events held in memory per file; a larger file is kept on disk and written in groups of "
        "whole users, with the same result (keep it when resuming; default 2,000,000)",
    )
    s.add_argument(
        "--spill-dir", type=Path, default=None, help="where that file's events go on disk (default: system temp dir)"
    )
    s.add_argument(
        "--bulk",
        action="store_true",
        help="first load into an EMPTY database with neo4j-admin database import full (offline: the local "
        "server is stopped and restarted); same graph, rejects and markers as the Bolt path",
    )
    _add_conn(s)
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("scores", help="compute Swing and ItemCF in the database, write top-K SWING/COOC")
    _add_model(s)
    _add_conn(s)
    s.set_defaults(func=cmd_scores)

    s = sub.add_parser(
        "rank",
        help="fit the learned ranker on the graph's sessions, write top-K RANKED",
        description="The rank channel: candidates from co-visitation, user co-occurrence, side-field "
        "match and category transitions, scored by LightGBM LambdaMART trained on the "
        "graph's own later sessions (features before each time cut, the next items after "
        "it). Writes (:Item)-[:RANKED {score, rank}]->(:Item). Needs sessions of two or more "
        "items on both sides of the cuts.",
    )
    _add_model(s)
    _add_conn(s)
    s.set_defaults(func=cmd_rank)

    s = sub.add_parser(
        "spark",
        help="Swing and ItemCF on Apache Spark, written back to Neo4j (past one machine)",
        description="Jobs on Apache Spark (pyspark 3.4: pip install -e '.[spark]'). The Neo4j Connector "
        "for Apache Spark is fetched with Maven on first use.",
    )
    sp = s.add_subparsers(dest="spark_command", required=True, metavar="JOB")
    s = sp.add_parser(
        "scores",
        help="the same SWING/COOC lists as `graphrecall scores`, computed on Spark",
        description="Reads events from the graph's ENGAGED edges through the connector (default) or "
        "from an event file (--events, parsed with graphrecall's own readers in the Spark "
        "tasks), computes the capped basis, Swing and ItemCF with the settings of "
        "`graphrecall scores`, and replaces the SWING/COOC relationships through the "
        "connector. On a cluster: spark-submit --jars <connector jar> with --master submit.",
    )
    s.add_argument("--events", help="an event file to read instead of the graph (a local path, or hdfs://, s3a://...)")
    s.add_argument("--format", choices=["rees46", "taobao", "movielens"], help="the --events file's format")
    s.add_argument("--reject-dir", type=Path, help="where the --events file's rejected rows go (CSV)")
    s.add_argument("--min-rating", type=float, default=4.0, help="movielens: ratings >= this are rated_high (4.0)")
    s.add_argument(
        "--master",
        default="local[2]",
        help="Spark master (default local[2]: this machine's 2 cores); 'submit' uses spark-submit's",
    )
    s.add_argument("--partitions", type=int, default=8, help="spark.sql.shuffle.partitions (default 8)")
    s.add_argument("--driver-memory", default="2g", help="spark.driver.memory in local mode (default 2g)")
    s.add_argument(
        "--salts",
        type=int,
        default=16,
        help="salts of the two-stage per-user/per-item caps, against hot keys (default 16)",
    )
    s.add_argument(
        "--swing-plan",
        choices=["items", "pairs"],
        default="items",
        help="items (default): the capped basis broadcast as CSR arrays (8 bytes per edge on every "
        "executor), items dealt to tasks; pairs: the two-pass user-pair plan in Spark SQL, for a "
        "basis past one executor's memory (about 30x slower at 10M events)",
    )
    s.add_argument(
        "--write-partitions",
        type=int,
        default=1,
        help="parallel write transactions to Neo4j (default 1: they lock the same item nodes)",
    )
    s.add_argument("--connector-jar", type=Path, help="the connector jar (default: fetched with Maven and cached)")
    s.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark settings, e.g. --conf spark.executor.memory=4g (repeatable)",
    )
    _add_score_settings(s.add_argument_group("scores (as in `graphrecall scores`)"))
    _add_conn(s)
    s.set_defaults(func=cmd_spark)

    s = sub.add_parser("embed", help="walks + EGES; vectors to Neo4j (vector index) and Faiss")
    _add_model(s)
    _add_conn(s)
    s.set_defaults(func=cmd_embed)

    s = sub.add_parser(
        "gnn",
        help="LightGCN (torch-geometric) on the user-item graph: GNN lists, item and user vectors",
        description="Trains LightGCN with BPR on the graph's ENGAGED pairs (torch-geometric; sparse "
        "propagation, so memory grows with the nodes, not the edges), writes each item's top-K by cosine "
        "as (:Item)-[:GNN {score, rank}]->(:Item), the item vectors as Item.gnn_embedding with the vector "
        "index item_gnn_embedding, and the user vectors beside the Faiss index, so that "
        "`GET /recall/{user}?channel=gnn` answers from the user's own vector. Items without events get no vector.",
    )
    _add_model(s)
    _add_conn(s)
    s.set_defaults(func=cmd_gnn)

    s = sub.add_parser(
        "refresh",
        help="ingest new event files and update every list in place (incremental)",
        parents=[ingest_options],
        description="For a graph that already has lists (`graphrecall demo`, or ingest + scores + "
        "embed): ingests the files, recomputes only the SWING/COOC rows whose users changed "
        "(with the settings of the last `graphrecall scores`; equal to a full recompute), "
        "warm-starts EGES from the stored model for --refresh-epochs epochs, writes vectors "
        "to Neo4j and Faiss, and bumps the data version once, so a running "
        "`graphrecall serve` reloads without downtime.",
    )
    s.add_argument("files", nargs="+", type=Path)
    s.add_argument("--format", required=True, help=FORMAT_HELP)
    s.add_argument(
        "--refresh-epochs",
        dest="epochs_refresh",
        type=int,
        default=2,
        help="EGES epochs from the stored state (default 2)",
    )
    _add_model(s)
    _add_conn(s)
    s.set_defaults(func=cmd_refresh)

    s = sub.add_parser(
        "tune",
        help="choose the blend for this graph on its last 20%% of time and store it",
        description="Holds out the sessions of the last 20%% of the graph's time, rebuilds every channel "
        "(swing, cooc, trans, side, eges, rank) from the earlier sessions with the settings given, "
        "scores each channel and a grid of blends by NDCG@20 on the held-out next items, "
        "prints the table and stores the best blend in Neo4j, where `graphrecall serve` "
        "finds it (`serve --blend` still overrides it).",
    )
    s.add_argument("--quantile", type=float, default=0.8, help="time quantile of the cut (default 0.8)")
    s.add_argument("--dry-run", action="store_true", help="print the table, store nothing")
    _add_model(s)
    _add_conn(s)
    s.set_defaults(func=cmd_tune)

    s = sub.add_parser(
        "demo",
        help="the main job end to end on the default dataset",
        description="Starts local Neo4j, resets the graph, ingests the dataset (REES46 head17k from "
        "../shared/data if present, else a generated one), computes Swing/ItemCF, the rank channel, walks, "
        "EGES, write-back and Faiss, tunes the blend (graphrecall tune), and prints sample lookups.",
    )
    s.add_argument("--data", nargs="*", help="event files instead of the default dataset")
    s.add_argument("--format", default="rees46", help=FORMAT_HELP)
    s.add_argument("--generated", action="store_true", help="use the generated dataset even if real data exists")
    s.add_argument("--keep", action="store_true", help="do not reset the graph first")
    s.add_argument("--no-tune", action="store_true", help="skip `graphrecall tune` (the built-in blend is served)")
    s.add_argument("--reject-dir", type=Path, default=Path("graphrecall-rejects"))
    _add_model(s)
    _add_conn(s)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("serve", help="run the i2i HTTP API (FastAPI + uvicorn)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument(
        "--blend",
        default=None,
        help="how channel=blend fuses swing/cooc/trans/side/eges; default: the blend `graphrecall tune` "
        "stored, else score:cooc=1,swing=0.5,eges=0.5. 'score' (each channel's scores over its best, "
        "weighted sum), 'rrf' (reciprocal-rank fusion), or with weights, e.g. "
        "'score:trans=1,side=1,eges=0.5' (channels left out get 0; also $GRAPHRECALL_BLEND)",
    )
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes (default 1); each loads its own snapshot, and /metrics counts per worker",
    )
    s.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="turn off the JSON access log (one line per request on stdout: method, path, query, status, "
        "ms, endpoint, channel, client)",
    )
    _add_conn(s)
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser(
        "explain",
        help="why is item B in item A's lists? the evidence, channel by channel",
        description="Reads the graph: B's rank, score and contribution to the blend in each of A's "
        "channels (live, as the API answers), the Swing user pairs and ItemCF users behind the "
        "stored SWING/COOC scores (their terms add up to those scores), the transitions both "
        "ways, the side fields they share and their EGES cosine. --out writes the evidence "
        "graph (networkx) as GraphML or GEXF; --png draws it.",
    )
    s.add_argument("a", help="the query item's id")
    s.add_argument("b", help="the id of an item in its lists")
    s.add_argument("--json", action="store_true", help="print the numbers as JSON (what GET /explain/A/B returns)")
    s.add_argument("--out", type=Path, help="write the evidence graph: FILE.graphml or FILE.gexf")
    s.add_argument("--png", type=Path, help="draw the evidence graph into this PNG (needs matplotlib)")
    _add_conn(s)
    s.set_defaults(func=cmd_explain)

    s = sub.add_parser("export", help="write the item vectors as files other tools load (gensim, word2vec text)")
    sp = s.add_subparsers(dest="export_command", required=True, metavar="WHAT")
    s = sp.add_parser(
        "vectors",
        help="the EGES item vectors, from the saved Faiss index",
        description="Writes the item vectors `graphrecall embed` saved (unit length, as the eges channel "
        "searches them) keyed by item id: --format keyedvectors is gensim's own file "
        "(KeyedVectors.load), word2vec the text format most embedding tools read "
        "(KeyedVectors.load_word2vec_format). Needs no Neo4j.",
    )
    s.add_argument("out", type=Path, help="the file to write")
    s.add_argument(
        "--format",
        choices=["keyedvectors", "word2vec"],
        default="keyedvectors",
        help="keyedvectors (default) or word2vec (text)",
    )
    s.add_argument(
        "--faiss-dir",
        type=Path,
        help="the saved index (default: $GRAPHRECALL_ARTIFACTS/faiss, where `graphrecall embed` writes it)",
    )
    s.set_defaults(func=cmd_export)
    s = sp.add_parser(
        "pyg",
        help="the graph (users, items, side features, edges) for PyTorch Geometric",
        description="Writes the user-item graph (ENGAGED: event counts, types, times) and the item "
        "transition graph (TRANSITION weights), with the items' side fields as codes and "
        "their prices, as one torch_geometric.data.HeteroData (torch.save), so that you can "
        "train your own GNN on the same graph. Reads Neo4j.",
    )
    s.add_argument("out", type=Path, help="the file to write (e.g. graph.pt)")
    _add_conn(s)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("generate", help="write a generated REES46-format event log")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--users", type=int, default=400)
    s.add_argument("--random-seed", type=int, default=0)
    s.set_defaults(func=cmd_generate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("neo4j").setLevel(logging.WARNING)
    logging.getLogger("faiss").setLevel(logging.WARNING)
    from ..graph_schema.server import Neo4jServerError
    from ..ingest.formats import IngestError

    try:
        return args.func(args)
    except (CliError, Neo4jServerError, IngestError, FileNotFoundError, ValueError) as exc:
        print(f"graphrecall: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "graphrecall: interrupted; committed batches are kept, re-run the same command to resume", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
