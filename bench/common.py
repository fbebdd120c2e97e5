"""What every bench shares: the bench server, the data loaders, the argument parser and the result writer.

Each ``bench/*.py`` runs as a script (``python bench/NAME.py --help``), so this folder is first on
``sys.path`` and ``import common`` finds this file; ``graphrecall`` comes from the installed project.
Every result file carries ``meta``: the commit, the date, the machine (cores, RAM) and the command line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from graphrecall.app.neo4j import local_neo4j
from graphrecall.ingest.formats import RejectSink, read_events, read_items
from graphrecall.ingest.sessions import events_frame, session_rows
from graphrecall.query.data import Catalogue, matrix_lists, next_item_cases, transition_matrix
from graphrecall.query.evaluate.protocol import (
    SIDE_MATCH_WEIGHTS,
    K,
    case_masks,
    covisit_lists,
    score_lists,
    side_popularity_lists,
    summarize,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED_DATA = Path(os.environ.get("GRAPHRECALL_SHARED_DATA", ROOT.parent / "shared" / "data"))
REES46_HEAD = SHARED_DATA / "rees46" / "2019-Oct_head17k_clean.csv"
MOVIELENS = SHARED_DATA / "ml-latest-small"
TAOBAO = SHARED_DATA / "taobao"

# the bench instance: its own folder and ports, apart from a user's `default` and the tests' `test`
BENCH_INSTANCE = dict(name="bench", bolt_port=27687, http_port=27474, heap="2g", pagecache="512m")


def data_file(path: Path) -> Path:
    """``path``, or an error that says where the shared data is expected and how to point elsewhere."""
    if not Path(path).exists():
        raise SystemExit(
            f"{path} not found: the benches read ../shared/data next to the repository; set "
            "GRAPHRECALL_SHARED_DATA to the folder that holds rees46/, taobao/ and ml-latest-small/"
        )
    return Path(path)


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser whose description is the docstring's first line and whose epilog is the docstring."""
    return argparse.ArgumentParser(
        description=doc.split("\n")[0], epilog=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def server(**options):
    """A local Neo4j instance with graphrecall's procedures: the bench instance unless ``options`` say
    otherwise (``name``, ports, ``heap``, ``pagecache``). Not started."""
    return local_neo4j(**{**BENCH_INSTANCE, **options})


@contextmanager
def bench_server(**options):
    """The started bench server (reused when running) and a driver to it: ``with bench_server() as (srv, driver)``."""
    srv = server(**options).start()
    with srv.settings().driver() as driver:
        yield srv, driver


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def meta() -> dict:
    """Where and how a result was measured."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        ram = None
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "ram_gib": None if ram is None else round(ram, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "command": " ".join([Path(sys.argv[0]).name and f"python bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
    }


def write_result(path: Path, result, indent: int = 1) -> Path:
    """Write ``result`` (a dict, or a list wrapped as ``{"rows": ...}``) as JSON with :func:`meta` under ``"meta"``."""
    body = dict(result) if isinstance(result, dict) else {"rows": result}
    body["meta"] = meta()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=indent))
    return path


# --------------------------------------------------------------------------- data loaders
DATASETS = {
    "rees46": (SHARED_DATA / "rees46" / "2019-Oct_head17k_clean.csv", "rees46"),
    "taobao": (SHARED_DATA / "taobao" / "UserBehavior_timeslice96k_clean.csv", "taobao"),
    "taobao-tail10k": (SHARED_DATA / "taobao" / "UserBehavior_tail10k_HotItems.csv", "taobao"),  # smoke test
}
# EGES starts from the pipeline's settings with same-market negatives on (the paper's recipe); the greedy
# search below is what set the pipeline's defaults (graphrecall.query.config.PipelineConfig)


class Data:
    """One split's training sessions, catalogue, cases and the baselines' lists."""

    def __init__(self, split, item_side: dict):
        self.split = split
        self.sessions = session_rows(split.train)
        self.cat = Catalogue.build(item_side, split.train["item"])
        self.cases = next_item_cases(split.test_sessions)
        self.masks = case_masks(self.cases, self.cat)
        self.queries = set(self.cases.query)

    def evaluate(self, lists) -> tuple[dict, np.ndarray, np.ndarray]:
        hit, ndcg = score_lists(lists, self.cases)
        return summarize(hit, ndcg, self.masks), hit, ndcg


def load(name: str):
    path, fmt = DATASETS[name]
    data_file(path)
    df = events_frame(list(read_events(path, fmt, RejectSink(path, None))))
    side: dict[str, dict] = {}
    for info in read_items(path, fmt, RejectSink(path, None)):  # what `graphrecall ingest items` stores
        side.setdefault(info.item, {}).update({k: v for k, v in info.side.items() if v is not None})
    return df, side


def baselines(d: Data) -> dict[str, dict]:
    catpop = side_popularity_lists(d.cat, d.queries)
    side = side_popularity_lists(d.cat, d.queries, weights=SIDE_MATCH_WEIGHTS)
    trans = matrix_lists(transition_matrix(d.sessions, d.cat), d.cat.item_ids, K)
    return {
        "popularity in category": catpop,
        "side-field match": side,
        "co-visitation + category popularity": covisit_lists(trans, d.queries, fill=catpop),
        "co-visitation + side-field match": covisit_lists(trans, d.queries, fill=side),
    }


def counts(driver) -> dict:
    """Nodes per label and relationships per type (the bookkeeping nodes left out)."""
    with driver.session() as s:
        nodes = dict(s.run("MATCH (n) UNWIND labels(n) AS l RETURN l, count(*)").values())
        rels = dict(s.run("MATCH ()-[r]->() RETURN type(r), count(*)").values())
    return {
        "nodes": {k: nodes[k] for k in sorted(nodes) if k not in ("DataVersion", "SchemaVersion")},
        "relationships": {k: rels[k] for k in sorted(rels)},
    }
