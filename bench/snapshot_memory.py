"""Memory of N API workers serving one snapshot: everything memory-mapped and shared (the current format),
against each worker holding its own copy, measured in the same run.

The snapshot (top lists of every channel, the side index, the Faiss index of the item vectors) comes from a
built graph (``--instance``: lists, side fields and ``Item.embedding`` read from Neo4j) or is generated at a
given size (``--items N``: random lists, side fields and vectors shaped like the 10M-event graph's; memory
does not depend on the values). It is saved once, then loaded three ways by N worker processes at a time:

* ``mapped``: ``SnapshotRetriever.load(dir, faiss_dir)``, what the API does: lists, side index and Faiss
  index (``IO_FLAG_MMAP_IFC``) are mapped files the OS holds once;
* ``private``: the same files read into each worker (``mmap=False``);
* ``format2``: as the previous release served: lists mapped, the side index rebuilt from ``meta.json``
  and the Faiss index read, per worker. (That release also kept a dict of the vector ids per worker, which
  this does not reproduce, so its total here is a little low.)

Each worker looks up every list of every list channel and the side and eges lists of ``--queries`` items,
then its memory is read from ``/proc/<pid>/smaps_rollup`` while all N are alive:

* **USS** (private): pages only that worker has, above an idle interpreter that imported the same modules;
* **mapped snapshot files**: resident pages of files under the work folder, which the OS holds once for
  every process that maps them (from ``/proc/<pid>/smaps``);
* **total** = the workers' USS summed + the mapped files once: the memory the N workers really add.

Results go to ``bench/results/snapshot_memory.json`` with the ratios private / mapped and format2 / mapped.

    python bench/snapshot_memory.py --items 114471               # the 10M-event graph's size, generated
    python bench/snapshot_memory.py --instance scale --bolt-port 29687 --http-port 29474   # a built graph
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import parser, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("bench.snapshot_memory")
MODES = ("mapped", "private", "format2")

WORKER = r"""
import json, sys, time, gc
import numpy as np
from graphrecall.embed.index import ItemVectorIndex
from graphrecall.query.serve.snapshot import SnapshotRetriever
snap_dir, faiss_dir, mode, n_queries = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
t = time.perf_counter()
if mode == "format2":
    snap = SnapshotRetriever.load(snap_dir, None)
    snap.vectors = ItemVectorIndex.load(faiss_dir, mmap=False)
else:
    snap = SnapshotRetriever.load(snap_dir, faiss_dir, mmap=(mode == "mapped"))
load = time.perf_counter() - t
n = 0
for ch, per in snap.lists.items():
    for item in list(per):
        ids, scores = per.get(item)
        n += len(ids)
rows = np.flatnonzero(np.asarray(snap.items.member))  # no Python list of every item: the API holds none
pick = [str(snap.items.ids[r]) for r in np.random.default_rng(0).choice(rows, min(n_queries, len(rows)), replace=False)]
t = time.perf_counter()
for item in pick:
    for ch in ("side", "eges"):
        n += len(snap.similar_items(item, k=20, channel=ch))
query = time.perf_counter() - t
gc.collect()
print(json.dumps({"load_seconds": load, "neighbours": n, "query_seconds": query}), flush=True)
sys.stdin.readline()
"""


def smaps(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, val = line.split(":", 1)
        out[key.strip()] = int(val.split()[0]) * 1024
    return {"rss": out["Rss"], "pss": out["Pss"], "uss": out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)}


def mapped_rss(pid: int, directory: Path) -> int:
    """Resident bytes of ``pid``'s mappings of files under ``directory``."""
    total, inside = 0, False
    prefix = str(directory.resolve())
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            inside = len(head) >= 6 and head[5].startswith(prefix)
        elif inside and line.startswith("Rss:"):
            total += int(head[1]) * 1024
    return total


def measure(work: Path, snap_dir: Path, faiss_dir: Path, mode: str, workers: int, queries: int, baseline: dict) -> dict:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(ROOT), str(snap_dir), str(faiss_dir), mode, str(queries)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    reports = [json.loads(p.stdout.readline()) for p in procs]
    mem = [smaps(p.pid) for p in procs]
    files = max(mapped_rss(p.pid, work) for p in procs)
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
        p.wait()
    uss = [m["uss"] - baseline["uss"] for m in mem]  # above an idle interpreter
    return {
        "workers": workers,
        "load_seconds": [r["load_seconds"] for r in reports],
        "query_seconds": [r["query_seconds"] for r in reports],
        "neighbours": reports[0]["neighbours"],
        "uss_above_idle_bytes": uss,
        "rss_bytes": [m["rss"] for m in mem],
        "mapped_files_rss_bytes": files,
        "total_bytes": sum(uss) + files,
    }


def idle_baseline() -> dict:
    code = (
        "import sys; import numpy, faiss, graphrecall.query.serve.snapshot, graphrecall.embed.index; "
        "print('ok', flush=True); sys.stdin.readline()"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(ROOT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    p.stdout.readline()
    m = smaps(p.pid)
    p.stdin.write("\n")
    p.stdin.flush()
    p.wait()
    return m


def from_graph(args):
    """The snapshot and item vectors of a built graph."""
    from common import server as bench_instance
    from graphrecall.embed.index import ItemVectorIndex
    from graphrecall.query.serve.snapshot import SnapshotRetriever

    server = bench_instance(
        name=args.instance, bolt_port=args.bolt_port, http_port=args.http_port, heap=args.heap, pagecache="1g"
    ).start()
    driver = server.settings().driver()
    snap = SnapshotRetriever.from_neo4j(driver)
    with driver.session(default_access_mode="READ") as s:
        rows = s.run("MATCH (i:Item) WHERE i.embedding IS NOT NULL RETURN i.id, i.embedding ORDER BY i.id").values()
    driver.close()
    if not rows:
        raise SystemExit(
            f"instance {args.instance} has no Item.embedding; run the pipeline on it first "
            "(`python bench/scale.py`) or use --items N"
        )
    return snap, ItemVectorIndex([r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.float32))


# share of items with a list, and neighbours per list: the 10M-event graph's (bench/results/scale.json: 47.8k swing,
# 112.8k cooc, 102.2k trans and 114.5k rank lists over 114.5k items; 3.37M neighbours in the first three)
LIST_SHAPES = {"swing": (0.42, 13), "cooc": (0.99, 13), "trans": (0.89, 13), "rank": (1.0, 50)}


def synthetic(n: int, dim: int, seed: int):
    """A snapshot of ``n`` items shaped like the 10M-event graph's (:data:`LIST_SHAPES`), with REES46-like
    side fields (Zipf categories and brands, log-normal prices) and random vectors."""
    from graphrecall.embed.index import ItemVectorIndex
    from graphrecall.query.channels.side import SideIndex
    from graphrecall.query.data import SortedIds
    from graphrecall.query.serve.snapshot import CsrLists, SnapshotRetriever

    rng = np.random.default_rng(seed)
    ids = np.array(sorted(str(1_000_000 + 7 * r) for r in range(n)))
    sid = SortedIds(ids)
    lists = {}
    for ch, (share, per_list) in LIST_SHAPES.items():
        lengths = np.where(rng.random(n) < share, per_list, 0)
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        nbr = rng.integers(0, n, int(indptr[-1])).astype(np.int32)
        scores = np.sort(rng.random(int(indptr[-1])).astype(np.float32))[::-1].copy()
        lists[ch] = CsrLists(sid, indptr, nbr, scores)
    cats = np.minimum(rng.zipf(1.3, n), 2000)
    brands = np.minimum(rng.zipf(1.2, n), 5000)
    price = np.round(rng.lognormal(4.5, 1.2, n), 2)
    side = {
        "category": [f"c{c}" for c in cats],
        "brand": [None if b > 4000 else f"b{b}" for b in brands],
        "market": [f"m{c % 13}" for c in cats],
        "shop": [None] * n,
        "price": price.tolist(),
        "price_bucket": [f"p{int(np.log2(1 + p))}" for p in price],
    }
    pop = np.where(rng.random(n) < 0.15, 0, rng.zipf(1.6, n)).astype(float)
    snap = SnapshotRetriever(sid, lists, side=SideIndex(ids, side, pop))
    return snap, ItemVectorIndex(ids, rng.standard_normal((n, dim)).astype(np.float32))


def main() -> int:
    p = parser(__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--instance", help="a local instance holding a built graph (lists, side fields, embeddings)")
    src.add_argument("--items", type=int, help="generate a snapshot of this many items instead")
    p.add_argument("--bolt-port", type=int, default=7687)
    p.add_argument("--http-port", type=int, default=7474)
    p.add_argument("--heap", default="2g")
    p.add_argument("--dim", type=int, default=32, help="vector size with --items (the pipeline's default)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--queries", type=int, default=2000, help="items whose side and eges lists each worker reads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "snapshot_memory.json")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/graphrecall-snapshot-memory"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.workers < 1 or (args.items is not None and args.items < 2):
        p.error("--workers must be >= 1 and --items >= 2")

    from graphrecall.common.versions import current

    t = time.perf_counter()
    snap, vectors = from_graph(args) if args.instance else synthetic(args.items, args.dim, args.seed)
    build_s = time.perf_counter() - t
    shutil.rmtree(args.work_dir, ignore_errors=True)
    snap_dir, faiss_dir, old_dir = args.work_dir / "snapshot", args.work_dir / "faiss", args.work_dir / "format2"
    t = time.perf_counter()
    snap.save(snap_dir)
    vectors.save(faiss_dir)
    save_s = time.perf_counter() - t
    shutil.copytree(snap_dir, old_dir)  # format 2: the side index as JSON in meta.json
    sub = current(old_dir)
    meta = json.loads((sub / "meta.json").read_text())
    meta.update(format=2, side=snap.side.to_json())
    (sub / "meta.json").write_text(json.dumps(meta))
    for f in sub.glob("side.*.npy"):
        f.unlink()
    stats = {k: v for k, v in snap.stats().items() if k != "loaded_at"}
    stats.update(eges_vectors=len(vectors.item_ids), faiss_kind=vectors.kind, dim=vectors.dim)
    del snap, vectors
    base = idle_baseline()
    res = {
        "source": f"instance {args.instance}" if args.instance else f"generated, {args.items} items, seed {args.seed}",
        "snapshot": stats,
        "build_seconds": build_s,
        "save_seconds": save_s,
        "idle_interpreter_bytes": base,
        "files_bytes": {
            "snapshot": sum(f.stat().st_size for f in snap_dir.rglob("*") if f.is_file()),
            "faiss": sum(f.stat().st_size for f in faiss_dir.rglob("*") if f.is_file()),
        },
    }
    for mode in MODES:
        res[mode] = measure(
            args.work_dir, old_dir if mode == "format2" else snap_dir, faiss_dir, mode, args.workers, args.queries, base
        )
    res["ratio_total_private_over_mapped"] = res["private"]["total_bytes"] / max(res["mapped"]["total_bytes"], 1)
    res["ratio_total_format2_over_mapped"] = res["format2"]["total_bytes"] / max(res["mapped"]["total_bytes"], 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, res)
    mib = 2**20
    print(f"{res['source']}: {stats}")
    for mode in MODES:
        r = res[mode]
        print(
            f"{mode:8s} {r['workers']} workers: {r['total_bytes'] / mib:8.1f} MiB in total (private per worker "
            f"{[round(x / mib, 1) for x in r['uss_above_idle_bytes']]} MiB + mapped files "
            f"{r['mapped_files_rss_bytes'] / mib:.1f} MiB once); load {[round(x, 2) for x in r['load_seconds']]} s; "
            f"{args.queries} side+eges queries {[round(x, 2) for x in r['query_seconds']]} s"
        )
    print(
        f"total private / mapped: {res['ratio_total_private_over_mapped']:.1f}x; "
        f"format2 / mapped: {res['ratio_total_format2_over_mapped']:.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
