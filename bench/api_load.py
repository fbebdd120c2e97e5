"""The i2i API under an open-loop, fixed-rate load on loopback, sharing the machine's cores.

The snapshot is built from the REES46 log without Neo4j (every channel, as ``graphrecall.query.evaluate.protocol.build_retriever``
builds them for the next-item bench), saved, and served by uvicorn (uvloop + httptools) through
``graphrecall.app.serve:app_from_saved_snapshot``: the same ``SnapshotRetriever`` and endpoints the live service answers
from. The load generator runs in this process: one asyncio loop sends ``GET /i2i/{item}?k=10&channel=..``
(channels mixed: blend, swing, cooc, trans, side, eges, rank; items drawn uniformly, so every lookup is a cache miss
at first) at fixed send times over a pool of keep-alive connections. Latency counts from the scheduled send
time, so a stalled server cannot hide queueing (no coordinated omission). Errors: non-200, timeouts (2 s)
and connection failures.

    python bench/api_load.py [--rates 200 500 1000 2000] [--seconds 60] [--workers 1 2]
    python bench/api_load.py --endpoint recall --rates 500 --workers 2   # POST /recall, 50-100 history items

``--endpoint recall`` sends ``POST /recall`` (the default blend, k=10) for carts of 50 to 100 distinct items with
events, drawn uniformly (a pool of 2,000 carts, repeated); the answers are the same as ``GET /recall/{user}`` gives
for a user with that history, without the history's read from Neo4j.

Prints one row per (workers, rate) and a JSON line; ``bench/results/api_load.json``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import parser, write_result

ROOT = Path(__file__).resolve().parents[1]

logger = logging.getLogger("bench.api_load")
CHANNELS = ("blend", "swing", "cooc", "trans", "side", "eges", "rank")
TIMEOUT = 2.0
MAX_CONNS = 900  # requests in flight at most (one connection each); more is counted as an error
KEEP_ALIVE = 4.0  # reuse a connection only if it was idle less than this (uvicorn closes them after 5 s)


def build_snapshot(out: Path) -> tuple[Path, Path, list[str], list[str]]:
    """Every channel from the whole REES46 log, saved as the service saves its snapshot."""
    from common import load
    from graphrecall.app.pipeline import PipelineConfig
    from graphrecall.ingest.sessions import session_rows
    from graphrecall.query.evaluate.protocol import Catalogue, build_retriever

    df, side = load("rees46")
    cat = Catalogue.build(side, df["item"])
    retriever, secs = build_retriever(df, session_rows(df), cat, PipelineConfig())
    faiss_dir = retriever.vectors.save(out / "faiss")
    retriever.save(out / "snapshot")
    logger.info("snapshot: %d items, built in %s", len(cat), {k: round(v, 1) for k, v in secs.items()})
    warm = sorted(set(map(str, df["item"])))
    return out / "snapshot", faiss_dir, [str(i) for i in cat.item_ids], warm


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(snapshot: Path, faiss_dir: Path, workers: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(
        os.environ,
        GRAPHRECALL_SNAPSHOT_DIR=str(snapshot),
        GRAPHRECALL_FAISS_DIR=str(faiss_dir),
        GRAPHRECALL_ACCESS_LOG="0",
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "graphrecall.app.serve:app_from_saved_snapshot",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ],
        env=env,
        cwd=str(ROOT),
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the API did not start within 120 s")


async def _request(reader, writer, path) -> int:
    if isinstance(path, tuple):  # (path, JSON body): a POST
        path, body = path
        writer.write(
            b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
    else:
        writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def open_loop(port: int, paths: list[bytes], rate: float, seconds: float, max_conns: int = MAX_CONNS) -> dict:
    """Send ``rate`` requests/s for ``seconds`` at fixed times; latency from each scheduled time."""
    idle: list = []
    n = int(rate * seconds)
    lat = np.full(n, np.nan)
    kinds: dict[str, int] = {}
    open_conns = [0]

    async def one(i: int, t_sched: float):
        conn = None
        while idle and conn is None:
            reader, writer, used = idle.pop()
            if time.perf_counter() - used < KEEP_ALIVE:
                conn = (reader, writer)
            else:  # the server closes keep-alive connections idle for 5 s; so does a real client
                writer.close()
                open_conns[0] -= 1
        try:
            if conn is None:
                if open_conns[0] >= max_conns:
                    raise ConnectionError("connection pool exhausted")
                open_conns[0] += 1
                conn = await asyncio.open_connection("127.0.0.1", port)
            status = await asyncio.wait_for(_request(*conn, paths[i % len(paths)]), TIMEOUT)
            lat[i] = time.perf_counter() - t_sched
            if status != 200:
                kinds[f"HTTP {status}"] = kinds.get(f"HTTP {status}", 0) + 1
            idle.append((*conn, time.perf_counter()))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
            if conn is not None:
                conn[1].close()
                open_conns[0] -= 1

    start = time.perf_counter() + 0.05
    pending: set = set()  # no list of every task: the client must not slow down as the run goes on
    gc.collect()
    gc.disable()  # no collector pauses in the client while it keeps time
    try:
        for i in range(n):
            t = start + i / rate
            delay = t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(i, t))
            pending.add(task)
            task.add_done_callback(pending.discard)
        while pending:
            await asyncio.gather(*list(pending))
    finally:
        gc.enable()
    wall = time.perf_counter() - start
    for _, w, _ in idle:
        w.close()
    done = lat[~np.isnan(lat)] * 1000
    return {
        "target_rate": rate,
        "sent": n,
        "answered": int(len(done)),
        "errors": sum(kinds.values()),
        "error_kinds": kinds,
        "achieved_rate": len(done) / wall,
        "p50_ms": float(np.percentile(done, 50)) if len(done) else None,
        "p99_ms": float(np.percentile(done, 99)) if len(done) else None,
        "max_ms": float(done.max()) if len(done) else None,
    }


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--rates", type=float, nargs="+", default=[200, 500, 1000, 2000])
    p.add_argument("--seconds", type=float, default=60.0, help="load duration per rate (bounded)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="uvicorn worker counts to try")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument(
        "--endpoint",
        choices=["i2i", "recall"],
        default="i2i",
        help="GET /i2i lookups (default) or POST /recall for carts of 50-100 items",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("neo4j", "faiss", "embed", "walkers"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        snapshot, faiss_dir, items, warm = build_snapshot(Path(tmp))
        rng = np.random.default_rng(0)
        if args.endpoint == "recall":
            carts = [rng.choice(warm, size=int(rng.integers(50, 101)), replace=False).tolist() for _ in range(2000)]
            paths = [(b"/recall", json.dumps({"items": c, "k": 10}).encode()) for c in carts]
        else:
            picks = rng.choice(items, size=200_000)
            from urllib.parse import quote

            paths = [
                f"/i2i/{quote(i, safe='')}?k=10&channel={CHANNELS[n % len(CHANNELS)]}".encode()
                for n, i in enumerate(picks)
            ]
        for workers in args.workers:
            proc, port = start_server(snapshot, faiss_dir, workers)
            try:
                asyncio.run(open_loop(port, paths[:2000], 200, 5))  # warm-up, not reported
                for rate in args.rates:
                    r = asyncio.run(open_loop(port, paths, rate, args.seconds))
                    r["workers"] = workers
                    rows.append(r)
                    logger.info(
                        "workers=%d rate=%g: achieved %.0f/s, p50 %.2f ms, p99 %.2f ms, %d errors",
                        workers,
                        rate,
                        r["achieved_rate"],
                        r["p50_ms"] or -1,
                        r["p99_ms"] or -1,
                        r["errors"],
                    )
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:  # a server still busy with a backlog
                    proc.kill()
                    proc.wait()
    print(
        f"{'workers':>7s} {'target/s':>9s} {'achieved/s':>11s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'errors':>7s}"
    )
    for r in rows:
        print(
            f"{r['workers']:7d} {r['target_rate']:9.0f} {r['achieved_rate']:11.0f} {r['p50_ms']:8.2f} "
            f"{r['p99_ms']:8.2f} {r['max_ms']:8.1f} {r['errors']:7d}"
        )
    out = {"machine_cores": os.cpu_count(), "seconds_per_rate": args.seconds, "endpoint": args.endpoint, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    write_result(args.out / ("api_load.json" if args.endpoint == "i2i" else "api_load_recall.json"), out)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
