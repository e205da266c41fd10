"""Run every benchmark, print one table of figures, write them as JSON.

    python -m benchmarks.run [--quick] [--pg] [--json FILE] [--only NAME ...]

(``bash scripts/bench`` makes the venv and calls this.) Each benchmark module
runs in a process of its own, on a fresh copy of a migrated database: SQLite
always, PostgreSQL (database ``maillog_bench``) with ``--pg``. Timings are
printed beside their targets, never asserted: the exit status is non-zero
only when a benchmark crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import harness, report

#: The measures of issue 7, in order: (module in benchmarks/, what it measures).
MODULES: list[tuple[str, str]] = [
    ("webhook_ingest", "(a) webhook ingest: events/s, queries per POST, raw floor"),
    # ---- (b) mailing queue vs django-post_office ---------------------------------
    # benchmarks/mailing_queue.py times django-post_office's send_many now; our
    # side is the stub mailing_queue.queue_ours(), to fill in once the mailing
    # API lands. Its figures show "–" and "not built yet" until then.
    ("mailing_queue", "(b) mailing queue vs django-post_office"),
    # ------------------------------------------------------------------------------
    ("maillog_pages", "(c) mail log at scale: five admin pages"),
    ("outbox_badge", "(d) outbox menu badge count"),
    ("send_throughput", "(e) send throughput: django-q2 cluster, 2 workers"),
    ("purge_expired", "(f) purge: total time, longest transaction"),
    ("deliverability", "(g) deliverability: rollup counting, page over a year"),
    ("peers", "(h) side by side with post_office, django-mailer, anymail-history, anymail"),
    ("write_volume", "(i) write volume: the WAL of a queued mail and of a webhook event"),
]
DEFAULT_JSON = harness.ROOT / "benchmarks" / "results.json"


def run_module(module: str, db: str, quick: bool) -> dict[str, Any]:
    """One benchmark in its own process; its figures, or the error it died of."""
    env = dict(os.environ, MAILLOG_TEST_DB=db, PYTHONPATH=str(harness.ROOT))
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, "-m", f"benchmarks.{module}", "--json-out", out.name]
        started = time.monotonic()
        done = subprocess.run(
            command + (["--quick"] if quick else []),
            env=env,
            cwd=harness.ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        seconds = time.monotonic() - started
        if done.returncode != 0 or not Path(out.name).read_text():
            return {"error": f"benchmarks.{module} exited {done.returncode}", "seconds": seconds}
        return {**json.loads(Path(out.name).read_text()), "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: < 2 minutes, for CI")
    parser.add_argument("--pg", action="store_true", help="PostgreSQL too (maillog_bench*)")
    parser.add_argument("--mysql", action="store_true", help="MariaDB too (maillog_bench*)")
    parser.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the figures")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[m for m, _ in MODULES])
    args = parser.parse_args()

    databases = ["sqlite"] + ["postgres"] * args.pg + ["mysql"] * args.mysql
    modules = [(m, what) for m, what in MODULES if not args.only or m in args.only]
    own = not {"MAILLOG_BENCH_SQLITE", "MAILLOG_BENCH_PG_NAME", "MAILLOG_BENCH_MYSQL_NAME"} & set(
        os.environ
    )
    harness.use_own_databases()
    info = report.machine()
    figures: list[dict[str, Any]] = []
    errors: list[str] = []
    described: dict[str, str] = {}
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for db in databases:
            os.environ["MAILLOG_TEST_DB"] = db
            print(f"==> {report.DATABASE_LABELS[db]}: migrating the template", flush=True)
            harness.prepare_template()
            for module, what in modules:
                print(f"==> {report.DATABASE_LABELS[db]}: {what}", flush=True)
                result = run_module(module, db, args.quick)
                runs.append({"module": module, "db": db, "seconds": round(result["seconds"], 1)})
                if "error" in result:
                    errors.append(f"{report.DATABASE_LABELS[db]}: {result['error']}")
                    print(f"!!! {errors[-1]}", flush=True)
                    continue
                described[db] = result["database"]
                figures += [
                    {**f, "database": result["database"], "db": db} for f in result["figures"]
                ]
    finally:
        if own:
            harness.drop_own_databases()

    print()
    print(report.heading(info, args.quick, described))
    print()
    print(report.table(figures, databases))
    print(f"\n{len(runs)} benchmark runs in {time.monotonic() - started:.0f} s")
    for error in errors:
        print(f"!!! FAILED: {error}")
    Path(args.json).write_text(
        json.dumps(
            {
                "quick": args.quick,
                "machine": info,
                "databases": described,
                "runs": runs,
                "figures": figures,
                "errors": errors,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"figures written to {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
