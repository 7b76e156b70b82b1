#!/usr/bin/env python3
"""The chaos soak as a benchmark: several daemons on one database, one SIGKILLed every few
seconds and restarted, while the API adds and cancels rows (dlstore.testing.chaos).

    python scripts/bench_soak.py [--db URL] [--soak-seconds 45] [--soak-hosts]

Prints rows, kills, completions, bytes fetched twice (server-side counters, against
what was in flight at each kill) and recovery time (kill → the row downloading again).
The database is a new SQLite file in a temporary folder unless --db names another (a
PostgreSQL URL must point at an empty schema); --soak-hosts gives each daemon a host
name of its own (unshare --uts, as root). Exit 1 if a figure misses its target.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from dlstore.testing.chaos import Soak, SoakPlan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="database URL (default: a new SQLite file)")
    parser.add_argument("--soak-seconds", type=float, default=45.0)
    parser.add_argument("--soak-hosts", action="store_true", help="a host name per daemon")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dlstore-soak-"))
    plan = SoakPlan(seconds=args.soak_seconds, hosts=args.soak_hosts)
    print(f"soak: {plan.seconds:g} s, {plan.daemons} daemons, {plan.rows} rows, in {folder}")
    report = Soak(folder / "soak", args.db, plan).run()
    figures = report.figures()
    clean = not report.problems
    results = [
        ("rows", figures["rows"], "every row completed once or cancelled", clean),
        ("kills", figures["kills"], "one every 3-5 s", len(report.kills) > 0),
        ("completions", figures["completions"], "rows − cancelled", clean),
        ("bytes fetched twice", figures["bytes fetched twice"], "≤ in flight",
         report.refetched_bytes <= report.refetch_bound),
        ("recovery", figures["recovery"], "kill → downloading again", bool(report.recovery)),
        ("problems", figures["problems"], "none", clean),
    ]  # fmt: skip
    width = max(len(r[0]) for r in results)
    for name, figure, target, ok in results:
        verdict = "OK" if ok else "MISSED"
        print(f"{name:<{width}}  {figure}\n{'':<{width}}  target {target}: {verdict}")
    return 0 if all(r[3] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
