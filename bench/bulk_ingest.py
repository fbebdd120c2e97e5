"""Initial load: ``ingest events --bulk`` (neo4j-admin database import full) against the Bolt path, same file.

Generates a REES46-shaped log (``ingest/synthetic.py``, seeded), loads it into two empty local instances,
once over Bolt (checkpointed MERGE batches) and once with the bulk importer (parse, sessions, CSV, the
offline import, and the server's restart and schema all counted), and prints events/s for each and the
ratio. Both graphs' node and relationship counts are printed and must match.

    python bench/bulk_ingest.py [--users 12000]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graph_schema.schema import apply_schema  # noqa: E402
from graph_schema.server import LocalNeo4j  # noqa: E402
from graphrecall.pipeline import reset_graph  # noqa: E402
from ingest.bulk import bulk_import  # noqa: E402
from ingest.synthetic import generate_rees46  # noqa: E402
from ingest.writer import ingest_events  # noqa: E402


def counts(driver) -> dict:
    with driver.session() as s:
        nodes = dict(s.run("MATCH (n) UNWIND labels(n) AS l RETURN l, count(*)").values())
        rels = dict(s.run("MATCH ()-[r]->() RETURN type(r), count(*)").values())
    return {"nodes": {k: nodes[k] for k in sorted(nodes) if k not in ("DataVersion", "SchemaVersion")},
            "relationships": {k: rels[k] for k in sorted(rels)}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=12000, help="users in the generated log (12,000: about 270k events)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        log = generate_rees46(Path(tmp) / "gen.csv", n_users=args.users, random_seed=0)
        bolt = LocalNeo4j("bench", bolt_port=27687, http_port=27474, heap="2g", pagecache="512m").start()
        with bolt.settings().driver() as driver:
            apply_schema(driver)
            reset_graph(driver)
            t0 = time.perf_counter()
            rep = ingest_events(driver, log, "rees46", reject_dir=tmp, progress=False, batch_size=5000)
            bolt_s = time.perf_counter() - t0
            bolt_counts = counts(driver)
        bolt.stop()
        bulk = LocalNeo4j("bulkbench", bolt_port=28687, http_port=28474, heap="2g", pagecache="512m")
        bulk.start()
        with bulk.settings().driver() as driver:  # an empty database for the importer
            reset_graph(driver)
        t0 = time.perf_counter()
        bulk_import(bulk, [(log, "rees46")], reject_dir=tmp, progress=False, batch_size=5000)
        bulk_s = time.perf_counter() - t0
        with bulk.settings().driver() as driver:
            bulk_counts = counts(driver)
        bulk.stop()
    out = {"events": rep.lines_ok, "bolt_seconds": bolt_s, "bulk_seconds": bulk_s,
           "bolt_events_per_s": rep.lines_ok / bolt_s, "bulk_events_per_s": rep.lines_ok / bulk_s,
           "bulk_speedup": bolt_s / bulk_s, "same_counts": bolt_counts == bulk_counts, "counts": bulk_counts}
    print(f"{rep.lines_ok} events: Bolt {bolt_s:.1f} s ({out['bolt_events_per_s']:,.0f} events/s), bulk {bulk_s:.1f} s "
          f"({out['bulk_events_per_s']:,.0f} events/s end to end): {out['bulk_speedup']:.1f}x; same counts: {out['same_counts']}")
    print(json.dumps(out))
    return 0 if out["same_counts"] else 1


if __name__ == "__main__":
    sys.exit(main())
