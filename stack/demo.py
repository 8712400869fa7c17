"""`make demo`: the whole pipeline on the local stack, once, end to end.

`make up` has already started Postgres, Kafka, Connect (with the Debezium connector registered) and
Cassandra. This then:
1. starts spark_streaming.py in the background (kept running; `make down` stops it), log in
   .local/logs/spark_streaming.log;
2. runs one extraction cycle against the real Binance API when it answers, otherwise against the local
   simulator (and says so loudly);
3. waits until every Cassandra table holds as many rows as its Postgres table;
4. prints the row count of each table in Postgres and in Cassandra.

Needs the variables of .env (see .env.example). Run: `make demo` or `.venv/bin/python -m stack.demo`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import requests

from binance_cdc.cassandra_conn import connect as cassandra_connect
from binance_cdc.datasets import DATASETS
from binance_cdc.postgres_conn import app_connection
from binance_cdc.settings import PROJECT_ROOT, load_dotenv_file, load_settings
from stack import process

log = logging.getLogger("demo")

STREAM = "spark_streaming"
SIMULATOR = "simulator"
SIMULATOR_PORT = 8765
CATCH_UP_TIMEOUT_S = 300


def real_api_reachable(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/api/v3/ping", timeout=3).status_code == 200
    except requests.RequestException:
        return False


def ensure_stream_running() -> None:
    if process.read_pid(STREAM):
        log.info("streaming job already running (pid %s)", process.read_pid(STREAM))
        return
    process.spawn(STREAM, [sys.executable, str(PROJECT_ROOT / "spark_streaming.py")], cwd=PROJECT_ROOT)


def ensure_simulator_running() -> str:
    url = f"http://127.0.0.1:{SIMULATOR_PORT}"
    if not process.read_pid(SIMULATOR):
        process.spawn(SIMULATOR, [sys.executable, "-m", "simulator", "--port", str(SIMULATOR_PORT)],
                      cwd=PROJECT_ROOT)
    process.wait_until("simulator", lambda: real_api_reachable(url), 30, log_name=SIMULATOR)
    return url


def postgres_counts(settings) -> dict[str, int]:
    with app_connection(settings, "demo") as conn:
        with conn.cursor() as cur:
            counts = {}
            for name in DATASETS:
                cur.execute(f"SELECT count(*) FROM binance.{name}")  # names come from datasets.py, not input
                counts[name] = cur.fetchone()[0]
            return counts


def cassandra_counts(session, keyspace: str) -> dict[str, int]:
    return {name: session.execute(f"SELECT count(*) FROM {keyspace}.{name}").one()[0] for name in DATASETS}


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_dotenv_file()
    settings = load_settings("postgres", "postgres_app", "binance", "cassandra", "cassandra_writer")
    ensure_stream_running()

    base_url = settings.binance.base_url
    if not real_api_reachable(base_url):
        base_url = ensure_simulator_running()
        log.warning("=" * 78)
        log.warning("%s is NOT reachable from this machine: using the LOCAL SIMULATOR at %s",
                    settings.binance.base_url, base_url)
        log.warning("The rows below are simulated market data, not Binance's.")
        log.warning("=" * 78)
    extraction = subprocess.run([sys.executable, str(PROJECT_ROOT / "extraction_script.py"), "--base-url", base_url],
                                cwd=PROJECT_ROOT, env=os.environ.copy())
    if extraction.returncode != 0:
        log.error("extraction finished with exit code %d (see its log lines above)", extraction.returncode)

    session = cassandra_connect(settings.cassandra, settings.cassandra_writer)
    # count(*) over a whole table is what a demo wants and what Cassandra warns about on every poll.
    logging.getLogger("cassandra.protocol").setLevel(logging.ERROR)
    began = time.monotonic()
    while True:
        pg, cass = postgres_counts(settings), cassandra_counts(session, settings.cassandra.keyspace)
        if pg == cass:
            log.info("Cassandra caught up with Postgres in %.1fs", time.monotonic() - began)
            break
        if time.monotonic() - began > CATCH_UP_TIMEOUT_S:
            log.error("Cassandra has not caught up after %ds; see .local/logs/spark_streaming.log\n%s",
                      CATCH_UP_TIMEOUT_S, process.tail(STREAM))
            break
        if process.read_pid(STREAM) is None:
            log.error("the streaming job stopped\n%s", process.tail(STREAM))
            break
        time.sleep(2)

    print(f"\n{'table':<16}{'postgres':>10}{'cassandra':>11}")
    for name in DATASETS:
        print(f"{name:<16}{pg[name]:>10}{cass[name]:>11}")
    print("\nThe streaming job keeps running in the background; `make down` stops it.")
    return 0 if pg == cass and extraction.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
