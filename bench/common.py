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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphrecall.app.neo4j import local_neo4j
from graphrecall.ingest.formats import RejectSink, read_events, read_items
from graphrecall.ingest.sessions import events_frame, session_rows
from graphrecall.query.channels.seqrules import rule_lists
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
NO_SIDE = "-noside"  # a dataset name + this: the same log with every side field removed (a click-only log)
DATASETS.update({name + NO_SIDE: path for name, path in list(DATASETS.items())})
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
    """``(events, item side info)`` of a :data:`DATASETS` log; a ``-noside`` name keeps the catalogue's item ids
    (so new items still exist) and drops every side field, as a click-only log has none."""
    path, fmt = DATASETS[name]
    data_file(path)
    df = events_frame(list(read_events(path, fmt, RejectSink(path, None))))
    side: dict[str, dict] = {}
    for info in read_items(path, fmt, RejectSink(path, None)):  # what `graphrecall ingest items` stores
        side.setdefault(info.item, {}).update({k: v for k, v in info.side.items() if v is not None})
    if name.endswith(NO_SIDE):
        side = {i: {} for i in side}
    return df, side


def baselines(d: Data) -> dict[str, dict]:
    """The simple baselines: popularity in the query's category, side-field match, directed co-visitation
    (adjacent pairs) and sequential rules (Ludewig & Jannach 2018: b up to 10 steps after a, weight 1/steps),
    each of the last two padded with either of the first two. Without side fields, popularity."""
    catpop = side_popularity_lists(d.cat, d.queries)
    side = side_popularity_lists(d.cat, d.queries, weights=SIDE_MATCH_WEIGHTS)
    trans = matrix_lists(transition_matrix(d.sessions, d.cat), d.cat.item_ids, K)
    rules = rule_lists([s["items"] for s in d.sessions], depth=K)
    return {
        "popularity in category": catpop,
        "side-field match": side,
        "co-visitation + category popularity": covisit_lists(trans, d.queries, fill=catpop),
        "co-visitation + side-field match": covisit_lists(trans, d.queries, fill=side),
        "sequential rules + category popularity": covisit_lists(rules, d.queries, fill=catpop),
        "sequential rules + side-field match": covisit_lists(rules, d.queries, fill=side),
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


# --------------------------------------------------------------------------- FunRec protocol (ml-latest-small)
DEFAULT_DATA = MOVIELENS


def train_test_split_rows(n: int, test_size: float = 0.2, random_state: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Row indices exactly as sklearn's train_test_split(shuffle=True) draws them (ShuffleSplit)."""
    n_test = int(np.ceil(test_size * n))
    n_train = n - n_test
    perm = np.random.RandomState(random_state).permutation(n)
    return perm[n_test : n_test + n_train], perm[:n_test]


def load_split(data: Path):
    ratings = pd.read_csv(data / "ratings.csv")
    tr, te = train_test_split_rows(len(ratings))
    try:  # cross-check against sklearn itself when it is installed
        from sklearn.model_selection import train_test_split

        a, b = train_test_split(np.arange(len(ratings)), test_size=0.2, random_state=42)
        if not (np.array_equal(a, tr) and np.array_equal(b, te)):
            raise RuntimeError("split differs from sklearn's train_test_split")
    except ImportError:
        pass
    # FunRec splits all ratings, then keeps the positives of each side (599 users)
    train, test = ratings.iloc[tr], ratings.iloc[te]
    train, test = train[train["rating"] >= 4], test[test["rating"] >= 4]
    return train, test


def evaluate(
    scores: np.ndarray, hist: sp.csr_matrix, truth: list[set[int]], ks=(5, 10), per_user: bool = False
) -> dict:
    """scores: users x items; hist rows are excluded; truth: relevant item indices per user.

    Ties rank the lower item index first. ``per_user=True`` returns each metric as an array
    over users (for paired bootstrap) instead of its mean."""
    scores = scores.copy()
    scores[hist.nonzero()] = -np.inf
    kmax = max(ks)
    n = scores.shape[0]
    out = {f"{m}@{k}": np.zeros(n) for k in ks for m in ("hr", "p")}
    out["ndcg@10"] = np.zeros(n)
    disc = 1.0 / np.log2(np.arange(2, 12))
    for u in range(n):
        row = scores[u]
        cand = np.flatnonzero(row > 0)
        if len(cand) > kmax:
            cand = cand[np.argpartition(-row[cand], kmax - 1)[:kmax]]
        rec = cand[np.lexsort((cand, -row[cand]))]
        hits = np.array([r in truth[u] for r in rec], dtype=bool)
        for k in ks:
            h = hits[:k]
            out[f"hr@{k}"][u] = float(h.any())
            out[f"p@{k}"][u] = h.sum() / max(1, min(k, len(rec)))
        ideal = disc[: min(10, len(truth[u]))].sum()
        out["ndcg@10"][u] = float((hits[:10] * disc[: len(hits[:10])]).sum() / ideal) if ideal else 0.0
    return out if per_user else {k: float(v.mean()) for k, v in out.items()}


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 2000, random_seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over users and its 95% percentile interval, resampling users with replacement."""
    d = np.asarray(a, float) - np.asarray(b, float)
    rng = np.random.default_rng(random_seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


def usercf_scores(
    hist_all: sp.csr_matrix, rows: np.ndarray, k_neighbors: int = 20, min_similarity: float = 0.1
) -> np.ndarray:
    """Reference UserCF as FunRec describes it (not a graphrecall channel): cosine user similarity
    ``|N(u) & N(v)| / sqrt(|N(u)||N(v)|)``, similarities below ``min_similarity`` dropped, each user's
    ``k_neighbors`` most similar users vote for their items with their similarity."""
    x = hist_all.astype(np.float64).tocsr()
    n_u = np.asarray(x.sum(axis=1)).ravel()
    sim = np.asarray((x[rows] @ x.T).todense())
    sim /= np.sqrt(np.outer(n_u[rows], n_u)).clip(min=1e-12)
    sim[np.arange(len(rows)), rows] = 0.0
    sim[sim < min_similarity] = 0.0
    top = np.argpartition(-sim, k_neighbors, axis=1)[:, :k_neighbors]
    w = np.zeros_like(sim)
    np.put_along_axis(w, top, np.take_along_axis(sim, top, axis=1), axis=1)
    return np.asarray(sp.csr_matrix(w) @ x.todense())


@dataclass
class Split:
    """One train/test split in matrix form: ``hist`` (evaluated users x items), ``all_users`` (every
    training user x items, for UserCF), ``rows`` (evaluated users' rows in ``all_users``), ``truth``."""

    train: pd.DataFrame
    item_ids: np.ndarray
    hist: sp.csr_matrix
    all_users: sp.csr_matrix
    rows: np.ndarray
    truth: list[set[int]]


def make_split(train: pd.DataFrame, test: pd.DataFrame) -> Split:
    users = sorted(set(train["userId"]) & set(test["userId"]))
    item_ids = np.array(sorted({str(i) for i in train["movieId"]}))
    index = {i: n for n, i in enumerate(item_ids)}
    every = sorted(set(train["userId"]))
    uindex = {u: n for n, u in enumerate(every)}
    all_users = sp.csr_matrix(
        (np.ones(len(train)), ([uindex[u] for u in train["userId"]], [index[str(i)] for i in train["movieId"]])),
        shape=(len(every), len(item_ids)),
    )
    all_users.data[:] = 1.0
    rows = np.array([uindex[u] for u in users])
    pos = {u: n for n, u in enumerate(users)}
    truth = [set() for _ in users]
    for u, i in zip(test["userId"], test["movieId"]):
        if u in pos and str(i) in index:
            truth[pos[u]].add(index[str(i)])
    return Split(train, item_ids, all_users[rows].tocsr(), all_users, rows, truth)
