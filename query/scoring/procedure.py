"""Build and install graphrecall's Neo4j procedures (``java-procedures/``, Java, built with Maven).

``graphrecall.scores(kind, config)`` computes SWING or COOC top-k lists on the BASIS graph inside
the database, with the same definitions, ties and output as the Cypher of :mod:`~graphrecall.query.scoring.cypher`;
``graphrecall.version()`` names the build and ``graphrecall.progress(job)`` reports how far a call is.

The jar is built once per version of the sources (a hash of them names it) into
``$GRAPHRECALL_HOME/procedures`` and copied into an instance's ``plugins/`` before it starts
(:meth:`graph_schema.server.LocalNeo4j.start`). A server started before the sources changed keeps
the old build; :func:`procedure_status` tells, and the scores fall back to Cypher with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ...graph_schema.config import graphrecall_home

logger = logging.getLogger(__name__)

SOURCES = Path(__file__).with_name("java-procedures")
JAR_PREFIX = "graphrecall-procedures-"


class PluginBuildError(RuntimeError):
    pass


def _source_files() -> list[Path]:
    return sorted([SOURCES / "pom.xml", *SOURCES.glob("src/main/**/*.*")])


def build_id() -> str:
    """A hash of the procedure sources: the jar's name and what ``graphrecall.version()`` returns."""
    h = hashlib.sha256()
    for f in _source_files():
        h.update(str(f.relative_to(SOURCES)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def jar_path() -> Path:
    return graphrecall_home() / "procedures" / f"{JAR_PREFIX}{build_id()}.jar"


def build_jar() -> Path:
    """The procedures jar for the current sources, built with Maven when not cached."""
    out = jar_path()
    if out.exists():
        return out
    mvn = shutil.which("mvn")
    if mvn is None:
        raise PluginBuildError(
            "Maven (mvn) is not on PATH; install it (e.g. `apt-get install maven`) to build "
            "the graphrecall procedures, or use --engine cypher"
        )
    logger.info("building the graphrecall procedures with Maven (one time per source version)")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="graphrecall-procedures-") as tmp:
        work = Path(tmp) / "procedures"
        shutil.copytree(SOURCES, work, ignore=shutil.ignore_patterns("target"))
        proc = subprocess.run(
            [mvn, "-B", "-q", "-f", str(work / "pom.xml"), "package", f"-Dgraphrecall.build={build_id()}"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise PluginBuildError(
                f"mvn package of {SOURCES} failed (exit {proc.returncode}); check network access to Maven Central "
                f"and the Java sources, or use --engine cypher.\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".partial")
        shutil.copyfile(work / "target" / "graphrecall-procedures.jar", partial)
        partial.rename(out)
    logger.info("built %s in %.1fs", out.name, time.perf_counter() - t0)
    return out


def install(plugins_dir: Path, strict: bool = False) -> Path | None:
    """Put the current procedures jar into ``plugins_dir`` (replacing older builds). Returns it, or
    None (with a warning) when it cannot be built: the Cypher scores still work. ``strict`` raises instead."""
    try:
        jar = build_jar()
    except PluginBuildError as e:
        if strict:
            raise
        logger.warning("graphrecall procedures not installed, scores will use Cypher: %s", e)
        return None
    plugins_dir.mkdir(parents=True, exist_ok=True)
    for old in plugins_dir.glob(f"{JAR_PREFIX}*.jar"):
        if old.name != jar.name:
            old.unlink()
    target = plugins_dir / jar.name
    if not target.exists():
        shutil.copyfile(jar, target)
    return target


def procedure_status(driver, database: str = "neo4j") -> tuple[bool, str]:
    """``(usable, why)``: whether the server has ``graphrecall.scores`` of the current sources."""
    from neo4j.exceptions import ClientError

    try:
        with driver.session(database=database, default_access_mode="READ") as s:
            got = s.run("RETURN graphrecall.version() AS v").single()["v"]
    except ClientError as e:
        if "Unknown function" in str(e) or "graphrecall.version" in str(e):
            return False, (
                "the server has no graphrecall procedures; a server started by graphrecall installs them "
                "(restart it with `graphrecall neo4j stop` and start again), and for another server copy "
                f"{jar_path()} into its plugins/ folder"
            )
        raise
    want = build_id()
    if got != want:
        return False, (
            f"the server runs graphrecall procedures build {got}, but the sources are build {want}; "
            "restart the server (`graphrecall neo4j stop`, then any command starts it with the new build)"
        )
    return True, f"build {got}"
