"""Connection settings, read from the environment (never hard-coded).

Resolution order for each value:

1. ``GRAPHRECALL_NEO4J_URI`` / ``GRAPHRECALL_NEO4J_USER`` / ``GRAPHRECALL_NEO4J_PASSWORD``;
2. for the password only, the file written by the local launcher
   (``$GRAPHRECALL_HOME/instances/<name>/auth/password``), when the URI points at
   that local instance;
3. defaults: ``bolt://127.0.0.1:7687`` and user ``neo4j``.

The Docker server from ``docker-compose.yml`` works the same way: export the
three variables and every CLI, test and the API use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BOLT_PORT = 7687
DEFAULT_HTTP_PORT = 7474


def graphrecall_home() -> Path:
    """Cache root for Neo4j jars, local server instances and model artifacts."""
    env = os.environ.get("GRAPHRECALL_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "graphrecall"


@dataclass(frozen=True)
class Neo4jSettings:
    uri: str = f"bolt://127.0.0.1:{DEFAULT_BOLT_PORT}"
    user: str = "neo4j"
    password: str | None = None
    database: str = "neo4j"

    @classmethod
    def from_env(cls, instance: str = "default", **overrides) -> Neo4jSettings:
        uri = os.environ.get("GRAPHRECALL_NEO4J_URI", cls.uri)
        user = os.environ.get("GRAPHRECALL_NEO4J_USER", cls.user)
        password = os.environ.get("GRAPHRECALL_NEO4J_PASSWORD")
        database = os.environ.get("GRAPHRECALL_NEO4J_DATABASE", cls.database)
        if password is None:
            pw_file = graphrecall_home() / "instances" / instance / "auth" / "password"
            if pw_file.exists():
                password = pw_file.read_text().strip()
        values = dict(uri=uri, user=user, password=password, database=database)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def driver(self, **kwargs):
        """Open a ``neo4j.Driver``. Raises a clear error when no password is known."""
        import neo4j

        if self.password is None:
            raise RuntimeError(
                "No Neo4j password known. Start the local server with "
                "`graphrecall neo4j start` (it writes one), or export "
                "GRAPHRECALL_NEO4J_PASSWORD for your own server (e.g. the one in docker-compose.yml)."
            )
        return neo4j.GraphDatabase.driver(
            self.uri, auth=(self.user, self.password), notifications_min_severity="OFF", **kwargs
        )
