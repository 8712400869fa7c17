"""Stage 4 (cron): Cassandra `binance_test` -> Postgres serving schema (default `serving`) for Grafana.

What: copies the five Cassandra tables into Postgres tables of the same shape (plus `served_at`, when the
bridge wrote the row), which Grafana reads natively and exactly. Incremental: each run re-reads only the
rows the streaming job marked as changed since the previous run (binance_cdc/change_log.py), upserts them
newer-wins by LSN and deletes what Cassandra deleted; its cursor commits with the rows, so a crash repeats
safely. `--full` copies everything and removes serving rows Cassandra no longer has (also done
automatically on the first run and after a new streaming checkpoint). One summary line per table.
An advisory lock keeps overlapping runs out. Cassandra is only read; the bridge's Postgres role writes the
serving schema and nothing else. Details: binance_cdc/serve/bridge.py.

Variables (.env or environment; see .env.example):
  CASSANDRA_HOSTS CASSANDRA_PORT CASSANDRA_LOCAL_DC CASSANDRA_KEYSPACE CASSANDRA_READER_USER CASSANDRA_READER_PASSWORD
  SERVING_PG_HOST SERVING_PG_PORT SERVING_PG_DATABASE SERVING_PG_SSLMODE SERVING_SCHEMA
  BRIDGE_PG_USER BRIDGE_PG_PASSWORD BRIDGE_INTERVAL_S BRIDGE_PAGE_SIZE

Run:
  .venv/bin/python pg_cassandra_bridge.py            # one run, then exit (make bridge)
  .venv/bin/python pg_cassandra_bridge.py --full     # resynchronise everything
  .venv/bin/python pg_cassandra_bridge.py --follow   # a run every BRIDGE_INTERVAL_S until Ctrl-C / SIGTERM

Cron (every minute, from the checkout):
  * * * * * cd /path/to/checkout && .venv/bin/python pg_cassandra_bridge.py >> .local/logs/bridge.log 2>&1

Exit codes:
  0 the run committed every row
  1 the run committed, but some rows could not be copied (listed in <schema>.bridge_rejects, logged by key)
  2 configuration error (a missing or invalid setting, or a wrong user or password: Cassandra or the serving
    Postgres refused the login, the line names the variables); nothing done
  3 another bridge run holds the lock; nothing written
  4 Cassandra or Postgres unreachable, or the run failed and was rolled back (the next run repeats it)
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from binance_cdc.serve.bridge import EXIT_CONFIG, EXIT_LOCKED, SETTINGS_GROUPS, run
from binance_cdc.settings import script_settings

log = logging.getLogger("pg_cassandra_bridge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cassandra -> Postgres serving schema (see module docstring).")
    parser.add_argument("--full", action="store_true", help="copy every row and remove what Cassandra lacks")
    parser.add_argument("--follow", action="store_true", help="repeat every BRIDGE_INTERVAL_S until stopped")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    settings = script_settings(*SETTINGS_GROUPS, level=args.log_level)
    if settings is None:
        return EXIT_CONFIG
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    full = args.full
    while True:
        report = run(settings, full=full)
        log.log(logging.ERROR if report.exit_code else logging.INFO,
                "run: exit=%d mode=%s partitions=%d rows_read=%d upserted=%d deleted=%d rejected=%d "
                "behind_s=%s seconds=%.2f%s", report.exit_code, report.mode, report.partitions,
                sum(t.rows_read for t in report.tables.values()), sum(t.upserted for t in report.tables.values()),
                sum(t.deleted for t in report.tables.values()), len(report.rejected),
                "-" if report.behind_s is None else f"{report.behind_s:.1f}", report.seconds,
                f" ({report.message})" if report.message else "")
        if not args.follow:
            return report.exit_code
        full = False  # --full --follow: resynchronise once, then follow
        if report.exit_code == EXIT_LOCKED:
            log.warning("another run holds the lock; trying again in %.0fs", settings.bridge.interval_s)
        if stop.wait(settings.bridge.interval_s):
            log.info("stopped")
            return 0


if __name__ == "__main__":
    sys.exit(main())
