"""Local Neo4j 5.26 Community server, fetched with Maven and run without Docker.

``LocalNeo4j(name).start()``:

* fetches ``org.neo4j:neo4j``, ``org.neo4j.app:neo4j-server`` and Neo4j Browser
  with ``mvn dependency:copy-dependencies -DincludeScope=runtime`` into
  ``$GRAPHRECALL_HOME/neo4j-<version>/lib`` (once; cached);
* writes a ``neo4j.conf`` bound to 127.0.0.1 and sets a random initial password,
  stored with mode 0600 in the instance folder (``auth/password``);
* starts ``org.neo4j.server.CommunityEntryPoint --console-mode`` with the JVM
  flags the stock ``neo4j`` launcher passes, detached from the caller;
* runs each of its ``plugins`` installers on the instance's ``plugins/`` folder (graphrecall's own
  procedures: :func:`graphrecall.app.neo4j.local_neo4j` passes :func:`graphrecall.query.scoring.procedure.install`);
* waits until Bolt answers; a server already running for that instance is reused.

``stop()`` sends SIGTERM (a clean shutdown: Neo4j checkpoints) and waits.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .config import DEFAULT_BOLT_PORT, DEFAULT_HTTP_PORT, Neo4jSettings, graphrecall_home

logger = logging.getLogger(__name__)

# read through importlib.resources, so that it is found from a wheel on a zip path too (spark-submit --py-files)
POM = resources.files(__package__).joinpath("neo4j-server", "pom.xml")


def neo4j_version() -> str:
    match = re.search(r"<neo4j.version>([^<]+)</neo4j.version>", POM.read_text())
    if not match:  # pragma: no cover - the pom ships with the package
        raise RuntimeError(f"{POM} has no <neo4j.version> property")
    return match.group(1)


# The flags of server.jvm.additional in the stock 5.26 neo4j.conf.
STOCK_JVM_FLAGS = [
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+UnlockExperimentalVMOptions",
    "-XX:+TrustFinalNonStaticFields",
    "-XX:+DisableExplicitGC",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djdk.tls.ephemeralDHKeySize=2048",
    "-Djdk.tls.rejectClientInitiatedRenegotiation=true",
    "-XX:FlightRecorderOptions=stackdepth=256",
    "-XX:+UnlockDiagnosticVMOptions",
    "-XX:+DebugNonSafepoints",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED",
    "-Dlog4j2.disable.jmx=true",
    "-Dlog4j.layout.jsonTemplate.maxStringLength=32768",
    "-Dfile.encoding=UTF-8",
]


class Neo4jServerError(RuntimeError):
    pass


def _port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); check /proc where available
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False
    return True


@dataclass
class LocalNeo4j:
    """One local server instance: its own folder, ports and password."""

    name: str = "default"
    bolt_port: int = DEFAULT_BOLT_PORT
    http_port: int = DEFAULT_HTTP_PORT
    heap: str = "1g"
    pagecache: str = "512m"
    home: Path | None = None
    # called with the instance's plugins/ folder before each start (e.g. to build and copy a procedure jar)
    plugins: tuple[Callable[[Path], object], ...] = ()

    def __post_init__(self) -> None:
        root = graphrecall_home()
        self.version = neo4j_version()
        self.lib_dir = root / f"neo4j-{self.version}" / "lib"
        self.home = Path(self.home) if self.home else root / "instances" / self.name
        self.conf_dir = self.home / "conf"
        self.password_file = self.home / "auth" / "password"
        self.pid_file = self.home / "run" / "graphrecall-neo4j.pid"
        self.console_log = self.home / "logs" / "console.log"

    # ------------------------------------------------------------------ paths
    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"

    @property
    def browser_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/browser/"

    def settings(self) -> Neo4jSettings:
        return Neo4jSettings(uri=self.uri, user="neo4j", password=self.password())

    def password(self) -> str | None:
        return self.password_file.read_text().strip() if self.password_file.exists() else None

    # ------------------------------------------------------------------ fetch
    def fetch(self) -> Path:
        """Download the server jars with Maven into the cache (no-op when cached)."""
        marker = self.lib_dir / ".complete"
        if marker.exists():
            return self.lib_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise Neo4jServerError(
                "Maven (mvn) is not on PATH; install it (e.g. `apt-get install maven`) "
                "or point GRAPHRECALL_NEO4J_URI at a running server (see docker-compose.yml)."
            )
        if shutil.which("java") is None:
            raise Neo4jServerError(
                "java is not on PATH; install OpenJDK 17 or 21 (e.g. `apt-get install openjdk-17-jre-headless`)."
            )
        tmp = self.lib_dir.with_name("lib.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        logger.info("fetching Neo4j %s jars with Maven into %s (one time)", self.version, self.lib_dir)
        t0 = time.perf_counter()
        with resources.as_file(POM) as pom:  # a real file for Maven, extracted when the package is zipped
            proc = subprocess.run(
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(pom),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={tmp}",
                ],
                capture_output=True,
                text=True,
            )
        if proc.returncode != 0:
            raise Neo4jServerError(
                f"mvn dependency:copy-dependencies failed (exit {proc.returncode}); check network access "
                f"to Maven Central and ~/.m2/settings.xml.\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
        shutil.rmtree(self.lib_dir, ignore_errors=True)
        tmp.rename(self.lib_dir)
        n = len(list(self.lib_dir.glob("*.jar")))
        marker.write_text(f"{n} jars\n")
        logger.info("fetched %d jars in %.1fs", n, time.perf_counter() - t0)
        return self.lib_dir

    # ------------------------------------------------------------------ config
    def _write_conf(self) -> None:
        for sub in ("conf", "data", "logs", "plugins", "run", "import", "auth"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        h = self.home
        conf = f"""# written by graphrecall (graph_schema/server.py); edits are overwritten on start
server.default_listen_address=127.0.0.1
server.default_advertised_address=127.0.0.1
server.bolt.listen_address=127.0.0.1:{self.bolt_port}
server.bolt.advertised_address=127.0.0.1:{self.bolt_port}
server.http.listen_address=127.0.0.1:{self.http_port}
server.http.advertised_address=127.0.0.1:{self.http_port}
server.https.enabled=false
server.directories.data={h / "data"}
server.directories.logs={h / "logs"}
server.directories.plugins={h / "plugins"}
server.directories.run={h / "run"}
server.directories.import={h / "import"}
server.memory.pagecache.size={self.pagecache}
dbms.security.auth_enabled=true
dbms.usage_report.enabled=false
db.tx_log.rotation.retention_policy=2 files
# Browser may fetch the graphrecall guide and style from the API (`:play http://localhost:8000/guide/guide.html`)
browser.remote_content_hostname_whitelist=localhost,127.0.0.1,guides.neo4j.com
"""
        (self.conf_dir / "neo4j.conf").write_text(conf)

    def _java_env(self) -> dict:
        env = dict(os.environ)
        env["NEO4J_HOME"] = str(self.home)
        env["NEO4J_CONF"] = str(self.conf_dir)
        return env

    def _set_initial_password(self, password: str | None = None) -> None:
        """Set the instance's first password (``password``, else a random one) with ``neo4j-admin dbms
        set-initial-password`` and keep it in :attr:`password_file` (mode 0600). The password goes after
        ``--``, so one that begins with ``-`` is not read as an option. When the tool fails, whatever it
        wrote is removed, so the next start tries afresh."""
        if self.password_file.exists():
            return
        if (self.home / "data" / "databases" / "system").exists():
            raise Neo4jServerError(
                f"{self.home} has a database but no password file {self.password_file}; "
                f"remove {self.home} to start afresh, or write the password into that file."
            )
        password = secrets.token_urlsafe(18) if password is None else password
        auth = self.home / "data" / "dbms" / "auth.ini"
        proc = subprocess.run(
            [
                "java",
                "-cp",
                f"{self.lib_dir}/*",
                "org.neo4j.cli.AdminTool",
                "dbms",
                "set-initial-password",
                "--",
                password,
            ],
            env=self._java_env(),
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            auth.unlink(missing_ok=True)
            raise Neo4jServerError(
                f"setting the first password of instance {self.name!r} in {self.home} failed (neo4j-admin dbms "
                f"set-initial-password exited {proc.returncode}); nothing was kept, so the next start tries again. "
                f"Its output:\n{proc.stdout}{proc.stderr}"
            )
        self.password_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")

    # ------------------------------------------------------------------ state
    def _recorded_pid(self) -> int | None:
        """The pid our last start wrote, alive or not."""
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def pid(self) -> int | None:
        pid = self._recorded_pid()
        return pid if pid is not None and _pid_alive(pid) else None

    def is_running(self) -> bool:
        return self.pid() is not None and _port_open(self.bolt_port)

    def _bolt_ready(self) -> bool:
        if not _port_open(self.bolt_port):
            return False
        try:
            with self.settings().driver() as driver:
                driver.verify_connectivity()
                with driver.session(database="neo4j") as s:
                    s.run("RETURN 1").consume()
            return True
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            return False

    # ------------------------------------------------------------------ start/stop
    def start(self, timeout: float = 180.0) -> LocalNeo4j:
        if self.pid() is not None:
            if self.wait_ready(timeout):
                logger.info("reusing running Neo4j %s (pid %s) at %s", self.name, self.pid(), self.uri)
                return self
            raise Neo4jServerError(
                f"Neo4j pid {self.pid()} is alive but Bolt at {self.uri} does not answer; see {self.console_log}"
            )
        if self.pid_file.exists():  # a server of ours died without stop(): clear up, let its sockets close
            self.stop(timeout=30.0)
        if _port_open(self.bolt_port) or _port_open(self.http_port):
            raise Neo4jServerError(
                f"port {self.bolt_port} or {self.http_port} on 127.0.0.1 is taken by another process. "
                "Stop it, or pick other ports (GRAPHRECALL_NEO4J_BOLT_PORT / GRAPHRECALL_NEO4J_HTTP_PORT, "
                "or --bolt-port/--http-port), or use that server via GRAPHRECALL_NEO4J_URI/PASSWORD."
            )
        self.fetch()
        self._write_conf()
        self._set_initial_password()
        for install in self.plugins:
            install(self.home / "plugins")
        cmd = [
            "java",
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            *STOCK_JVM_FLAGS,
            "-cp",
            f"{self.home / 'plugins'}/*:{self.conf_dir}:{self.lib_dir}/*",
            "org.neo4j.server.CommunityEntryPoint",
            f"--home-dir={self.home}",
            f"--config-dir={self.conf_dir}",
            "--console-mode",
        ]
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.console_log, "ab")
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._java_env(),
            start_new_session=True,
        )
        log.close()
        self.pid_file.write_text(str(proc.pid))
        logger.info(
            "starting Neo4j %s (pid %d), Bolt %s, Browser %s", self.version, proc.pid, self.uri, self.browser_url
        )
        if not self.wait_ready(timeout, proc=proc):
            tail = self.console_log.read_text(errors="replace")[-3000:]
            self.stop()
            raise Neo4jServerError(
                f"Neo4j did not answer on {self.uri} within {timeout:.0f}s. Console log tail:\n{tail}"
            )
        return self

    def wait_ready(self, timeout: float, proc: subprocess.Popen | None = None) -> bool:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if proc is not None and proc.poll() is not None:
                return False
            if self._bolt_ready():
                logger.info("Neo4j %s ready after %.1fs", self.name, time.monotonic() - t0)
                return True
            time.sleep(0.5)
        return False

    def _wait_ports_closed(self, timeout: float) -> bool:
        """A killed JVM's leader thread turns zombie before its other threads let go of the
        sockets, so "pid gone" does not yet mean "ports free"; wait for the ports too."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not (_port_open(self.bolt_port) or _port_open(self.http_port)):
                return True
            time.sleep(0.2)
        return False

    @staticmethod
    def _reap(pid: int) -> None:
        """Collect that pid if it is our own dead child (a zombie); a no-op for other processes."""
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass

    def stop(self, timeout: float = 60.0) -> bool:
        recorded = self._recorded_pid()
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            if recorded is not None:  # it died on its own (or was killed): let its sockets close
                self._wait_ports_closed(timeout)
                self._reap(recorded)
            return False
        os.kill(pid, signal.SIGTERM)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout and _pid_alive(pid):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
        if _pid_alive(pid):
            logger.warning("Neo4j pid %d ignored SIGTERM for %.0fs; killing", pid, timeout)
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        self._wait_ports_closed(timeout)
        logger.info("stopped Neo4j %s (pid %d)", self.name, pid)
        return True


def instance_from_env(name: str = "default", **options) -> LocalNeo4j:
    """The local instance with ports from GRAPHRECALL_NEO4J_BOLT_PORT / _HTTP_PORT."""
    return LocalNeo4j(
        name=name,
        bolt_port=int(os.environ.get("GRAPHRECALL_NEO4J_BOLT_PORT", DEFAULT_BOLT_PORT)),
        http_port=int(os.environ.get("GRAPHRECALL_NEO4J_HTTP_PORT", DEFAULT_HTTP_PORT)),
        **options,
    )
