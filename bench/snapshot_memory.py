"""Memory of N API workers: one memory-mapped snapshot shared by all, against one copy each (the format-1
JSON snapshot every worker used to load into Python objects).

On a graph that is already built (a local instance), the snapshot is read from Neo4j once and saved in
both forms. Then, for each form, N worker processes load it at the same time and look up every list of
every channel (so every page they would ever use is touched), and their memory is read from
``/proc/<pid>/smaps_rollup`` while all N are alive:

* **USS** (private): pages only that worker has, above an idle interpreter that imported the same modules;
* **mapped snapshot files**: resident pages of the snapshot's ``.npy`` files, which the OS holds once
  for every process that maps them (from ``/proc/<pid>/smaps``);
* **total** = the workers' USS summed + the mapped files once: the memory the N workers really add.

The Faiss index is left out of both (each worker still loads its own; see the README). Results go to
``bench/results/snapshot_memory.json`` with the ratios old / new, measured in the same run.

    python bench/snapshot_memory.py --instance scale --bolt-port 29687 --http-port 29474   # the 10M graph
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
logger = logging.getLogger("bench.snapshot_memory")

WORKER = r"""
import json, sys, time, gc
sys.path.insert(0, sys.argv[1])
from query.retriever import SnapshotRetriever
t = time.perf_counter()
snap = SnapshotRetriever.load(sys.argv[2])
load = time.perf_counter() - t
n = 0
for ch, per in snap.lists.items():
    for item in list(per):
        ids, scores = per.get(item)
        n += len(ids)
gc.collect()
print(json.dumps({"load_seconds": load, "neighbours": n}), flush=True)
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


def measure(directory: Path, workers: int, baseline: dict) -> dict:
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(ROOT), str(directory)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(workers)]
    reports = [json.loads(p.stdout.readline()) for p in procs]
    mem = [smaps(p.pid) for p in procs]
    files = max(mapped_rss(p.pid, directory) for p in procs)
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
        p.wait()
    uss = [m["uss"] - baseline["uss"] for m in mem]  # above an idle interpreter
    return {"workers": workers, "load_seconds": [r["load_seconds"] for r in reports],
            "neighbours": reports[0]["neighbours"], "uss_above_idle_bytes": uss, "rss_bytes": [m["rss"] for m in mem],
            "mapped_files_rss_bytes": files, "total_bytes": sum(uss) + files}


def idle_baseline() -> dict:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import numpy, query.retriever; print('ok', flush=True); "
            "sys.stdin.readline()")
    p = subprocess.Popen([sys.executable, "-c", code, str(ROOT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    p.stdout.readline()
    m = smaps(p.pid)
    p.stdin.write("\n")
    p.stdin.flush()
    p.wait()
    return m


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instance", default="default")
    p.add_argument("--bolt-port", type=int, default=7687)
    p.add_argument("--http-port", type=int, default=7474)
    p.add_argument("--heap", default="2g")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "snapshot_memory.json")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/graphrecall-snapshot-memory"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from graph_schema.server import LocalNeo4j
    from query.retriever import SnapshotRetriever

    server = LocalNeo4j(args.instance, bolt_port=args.bolt_port, http_port=args.http_port, heap=args.heap,
                        pagecache="1g").start()
    driver = server.settings().driver()
    t = time.perf_counter()
    snap = SnapshotRetriever.from_neo4j(driver)
    read_s = time.perf_counter() - t
    driver.close()
    new_dir, old_dir = args.work_dir / "mapped", args.work_dir / "json"
    for d in (new_dir, old_dir):
        d.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    snap.save(new_dir)
    save_s = time.perf_counter() - t
    body = {"items": sorted(snap.items), "loaded_at": snap.loaded_at, "version": snap.version,  # format 1
            "blend": str(snap.blend_config), "blend_source": snap.blend_source,
            "side": None if snap.side is None else snap.side.to_json(),
            "lists": {ch: {i: [list(map(str, ids)), [float(x) for x in sc]] for i, (ids, sc) in per.items()}
                      for ch, per in snap.lists.items()}}
    (old_dir / "snapshot.json").write_text(json.dumps(body))
    del snap, body
    base = idle_baseline()
    res = {"instance": args.instance, "read_from_neo4j_seconds": read_s, "save_seconds": save_s,
           "idle_interpreter_bytes": base,
           "files_bytes": {"mapped": sum(f.stat().st_size for f in new_dir.rglob("*.npy")),
                           "json": (old_dir / "snapshot.json").stat().st_size}}
    res["json_each_worker"] = measure(old_dir, args.workers, base)
    res["mapped_shared"] = measure(new_dir, args.workers, base)
    o, n = res["json_each_worker"], res["mapped_shared"]
    res["ratio_total_json_over_mapped"] = o["total_bytes"] / max(n["total_bytes"], 1)
    res["ratio_load_seconds_json_over_mapped"] = max(o["load_seconds"]) / max(max(n["load_seconds"]), 1e-9)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    mib = 2 ** 20
    for name, r in (("json, one copy per worker", o), ("mapped, shared", n)):
        print(f"{name:28s} {r['workers']} workers: {r['total_bytes'] / mib:8.1f} MiB in total (private per worker "
              f"{[round(x / mib, 1) for x in r['uss_above_idle_bytes']]} MiB + mapped files "
              f"{r['mapped_files_rss_bytes'] / mib:.1f} MiB once); load {[round(x, 2) for x in r['load_seconds']]} s; "
              f"{r['neighbours']} neighbours")
    print(f"total json / mapped: {res['ratio_total_json_over_mapped']:.1f}x; "
          f"load time json / mapped: {res['ratio_load_seconds_json_over_mapped']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
