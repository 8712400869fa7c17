"""`make demo`: the whole pipeline on the local stack, once, end to end.

`make up` has already started Postgres, Kafka, Connect (with the Debezium connector registered) and
Cassandra. This then:
1. starts spark_streaming.py in the background (kept running; `make down` stops it), log in
   .local/logs/spark_streaming.log;
2. runs one extraction cycle against the real Binance API when it answers, otherwise against the local
   simulator (and says so loudly);
3. runs the bridge (pg_cassandra_bridge) and reconciles Postgres, Cassandra and the serving tables until
   they agree, exactly (binance_cdc.serve.reconcile);
4. prints the rows per stage (Postgres, Kafka events, Cassandra, serving) and the end-to-end lag, and
   renders the dashboard's panels to PNGs in .local/charts/.

Needs the variables of .env (see .env.example). Run: `make demo` or `.venv/bin/python -m stack.demo`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import requests

from binance_cdc.datasets import DATASETS
from binance_cdc.settings import PROJECT_ROOT, load_dotenv_file, load_settings
from stack import process

log = logging.getLogger("demo")

STREAM = "spark_streaming"
SIMULATOR = "simulator"
CATCH_UP_TIMEOUT_S = 300
CHARTS_DIR = PROJECT_ROOT / ".local" / "charts"


def real_api_reachable(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/api/v3/ping", timeout=3).status_code == 200
    except requests.RequestException:
        return False


def ensure_stream_running(settings=None) -> None:
    """Start the stream unless one runs: by its pid file, or by the lock a stream holds on the checkpoint
    (one started by hand; spark_streaming.py would refuse a second one anyway)."""
    if settings is not None:
        from stack.pipeline import adopt_stream

        adopt_stream(settings)
    if process.read_pid(STREAM):
        log.info("streaming job already running (pid %s)", process.read_pid(STREAM))
        return
    process.spawn(STREAM, [sys.executable, str(PROJECT_ROOT / "spark_streaming.py")], cwd=PROJECT_ROOT)


def ensure_simulator_running(port: int) -> str:
    url = f"http://127.0.0.1:{port}"
    if not process.read_pid(SIMULATOR):
        process.spawn(SIMULATOR, [sys.executable, "-m", "simulator", "--port", str(port)],
                      cwd=PROJECT_ROOT)
    process.wait_until("simulator", lambda: real_api_reachable(url), 30, log_name=SIMULATOR)
    return url


def catch_up(settings) -> list:
    """Bridge runs and reconciliations until the three stores agree (or CATCH_UP_TIMEOUT_S passed)."""
    from binance_cdc.serve import bridge, reconcile

    began = time.monotonic()
    stores = reconcile.open_stores(settings)
    try:
        while True:
            report = bridge.run(settings)
            if report.exit_code not in (bridge.EXIT_OK, bridge.EXIT_REJECTED):
                log.error("bridge: %s", report.message)
            diffs = reconcile.reconcile(stores, settle_s=0)
            if all(d.clean for d in diffs):
                log.info("Cassandra and the serving tables caught up with Postgres in %.1fs", time.monotonic() - began)
                return diffs
            if time.monotonic() - began > CATCH_UP_TIMEOUT_S:
                log.error("not caught up after %ds; see .local/logs/spark_streaming.log\n%s", CATCH_UP_TIMEOUT_S,
                          process.tail(STREAM))
                return diffs
            if process.read_pid(STREAM) is None:
                log.error("the streaming job stopped\n%s", process.tail(STREAM))
                return diffs
            time.sleep(2)
    finally:
        stores.close()


def end_to_end_lag(settings) -> dict[str, float | None]:
    """Seconds from the Postgres commit to each later stage, over the rows of the last minute of commits."""
    from binance_cdc.postgres_conn import connect

    conn = connect(settings.serving, settings.grafana_login, "demo")
    try:
        with conn.cursor() as cur:
            parts = " UNION ALL ".join(
                f"SELECT cdc_source_ts, cdc_written_at, served_at FROM {settings.serving.schema}.{name}"
                for name in DATASETS)  # identifiers from datasets.py and typed settings, not input
            cur.execute(
                f"WITH r AS ({parts}), recent AS (SELECT * FROM r WHERE cdc_source_ts > "
                "(SELECT max(cdc_source_ts) FROM r) - interval '1 minute') "
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM cdc_written_at - cdc_source_ts)),"
                " max(extract(epoch FROM cdc_written_at - cdc_source_ts)),"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM served_at - cdc_source_ts)),"
                " max(extract(epoch FROM served_at - cdc_source_ts)) FROM recent")
            row = cur.fetchone()
        return dict(zip(("cassandra_p50", "cassandra_max", "serving_p50", "serving_max"),
                        [None if v is None else float(v) for v in row]))
    finally:
        conn.close()


def render_charts(settings, note: str) -> list:
    """The dashboard's panels as PNGs, from the same SQL Grafana runs, read as the Grafana role."""
    from sqlalchemy import create_engine

    from binance_cdc.postgres_conn import sqlalchemy_url
    from binance_cdc.serve import charts

    engine = create_engine(sqlalchemy_url(settings.serving, settings.grafana_login))
    try:
        return charts.render_all(engine, CHARTS_DIR, settings.serving.schema, note=note)
    finally:
        engine.dispose()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    load_dotenv_file()
    settings = load_settings()
    ensure_stream_running(settings)

    base_url = settings.binance.base_url
    simulated = None
    if not real_api_reachable(base_url):
        base_url = simulated = ensure_simulator_running(settings.local_ports.simulator_port)
        log.warning("=" * 78)
        log.warning("%s is NOT reachable from this machine: using the LOCAL SIMULATOR at %s",
                    settings.binance.base_url, base_url)
        log.warning("The rows below are simulated market data, not Binance's.")
        log.warning("=" * 78)
    extraction = subprocess.run([sys.executable, str(PROJECT_ROOT / "extraction_script.py"), "--base-url", base_url],
                                cwd=PROJECT_ROOT, env=os.environ.copy())
    if extraction.returncode != 0:
        log.error("extraction finished with exit code %d (see its log lines above)", extraction.returncode)

    diffs = catch_up(settings)
    from binance_cdc.kafka_client import message_counts, topics
    from binance_cdc.serve.reconcile import format_report

    kafka = message_counts(settings.kafka, topics(settings.kafka))
    print(f"\n{'table':<16}{'postgres':>10}{'kafka events':>14}{'cassandra':>11}{'serving':>9}")
    for d, topic in zip(diffs, topics(settings.kafka)):
        print(f"{d.name:<16}{d.counts['postgres']:>10}{kafka[topic]:>14}{d.counts['cassandra']:>11}"
              f"{d.counts['serving']:>9}")
    clean = all(d.clean for d in diffs)
    if not clean:
        print("\n" + format_report(diffs))
    lag = end_to_end_lag(settings)
    if lag["serving_max"] is not None:
        print(f"\nend-to-end lag of the last minute of commits: Postgres -> Cassandra p50 {lag['cassandra_p50']:.2f}s "
              f"(max {lag['cassandra_max']:.2f}s); Postgres -> serving p50 {lag['serving_p50']:.2f}s "
              f"(max {lag['serving_max']:.2f}s; the bridge runs when called: cron or --follow)")
    pictures = render_charts(settings, "" if simulated is None else f"simulated market data ({simulated})")
    print(f"\ncharts of the dashboard's {len(pictures)} panels (UTC): {CHARTS_DIR.relative_to(PROJECT_ROOT)}/")
    for path in pictures:
        print(f"  {path.name}")
    print("\nThe streaming job keeps running in the background; `make down` stops it. "
          "`make bridge` copies new changes to the serving tables, `make reconcile` compares the three stores.")
    return 0 if clean and extraction.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
