"""``recall`` per user, in process: a saved snapshot's coded path against the in-memory (factorised) path.

A snapshot of random lists (20,000 items; swing, cooc and trans lists of 50; the default blend over them) is
built in memory, saved and loaded as the API loads it. Carts of 50 to 100 distinct items are recalled through
both, after one warm-up pass (answers cached, as in a running service); the answers are checked equal and the
time per recall is printed with the ratio against the in-memory path measured in the same run.

    python bench/recall_speed.py [--items 20000] [--carts 500] [--channels swing blend]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import parser, write_result
from graphrecall.query.serve.snapshot import SnapshotRetriever


def random_snapshot(n: int, seed: int = 0) -> SnapshotRetriever:
    rng = np.random.default_rng(seed)
    ids = np.array([f"item{r:07d}" for r in range(n)], dtype=object)
    pop = 1.0 / np.arange(1, n + 1) ** 0.8  # a popularity skew, so lists overlap as they do in a log
    pop /= pop.sum()
    lists = {}
    for ch in ("swing", "cooc", "trans"):
        per = {}
        for r in range(n):
            nbr = np.unique(rng.choice(n, 60, p=pop))
            nbr = nbr[nbr != r][:50]
            per[ids[r]] = (ids[nbr], np.sort(rng.random(len(nbr)).astype(np.float32))[::-1])
        lists[ch] = per
    return SnapshotRetriever(items=set(ids), lists=lists)


def time_recalls(snap, carts, channel: str) -> tuple[float, list]:
    for c in carts:  # warm-up: answers cached
        snap.recall(c, k=10, channel=channel)
    t0 = time.perf_counter()
    got = [snap.recall(c, k=10, channel=channel) for c in carts]
    return (time.perf_counter() - t0) / len(carts) * 1000, got


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--carts", type=int, default=500)
    p.add_argument("--channels", nargs="+", default=["swing", "blend"])
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = p.parse_args(argv)
    mem = random_snapshot(args.items)
    rng = np.random.default_rng(1)
    every = sorted(mem.items)
    carts = [list(rng.choice(every, int(rng.integers(50, 101)), replace=False)) for _ in range(args.carts)]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        saved = SnapshotRetriever.load(mem.save(Path(tmp) / "snap"))
        print(f"{'channel':10s}{'in memory ms':>14s}{'saved ms':>10s}{'ratio':>8s}")
        for ch in args.channels:
            a, got_a = time_recalls(mem, carts, ch)
            b, got_b = time_recalls(saved, carts, ch)
            for x, y in zip(got_a, got_b):
                if list(x.ids) != list(y.ids) or x.scores.tobytes() != y.scores.tobytes() or x.sources != y.sources:
                    raise SystemExit(f"{ch}: the saved snapshot's recall differs from the in-memory one")
            rows[ch] = {"in_memory_ms": a, "saved_ms": b, "ratio": a / b}
            print(f"{ch:10s}{a:14.3f}{b:10.3f}{a / b:7.1f}x")
    write_result(args.out / "recall_speed.json", {"items": args.items, "carts": args.carts, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
