"""`make status`, second part: the change path, stage by stage, not just the services.

- connector: the Debezium connector's state and its tasks' (Kafka Connect REST);
- slot: the replication slot's state and the WAL it holds back (bytes Debezium has not confirmed);
- stream: the streaming job's process, the age of its last finished micro-batch and its Kafka lag
  (messages in the topics after the offsets that batch reached, from `stream_progress`);
- bridge: its last run and how far the serving tables are behind the stream's last batch.
Each line says OK or what is wrong; `rows()` returns them with a healthy flag.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import requests

log = logging.getLogger(__name__)

STREAM = "spark_streaming"


@dataclass
class Row:
    name: str
    healthy: bool
    detail: str


def _age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return f"{(now - moment).total_seconds():.0f}s ago"


def connector_row(settings) -> Row:
    from connectors.register import render_local

    name = render_local(settings)["name"]
    try:
        answer = requests.get(f"{settings.connect.url}/connectors/{name}/status", timeout=5)
    except requests.RequestException as exc:
        return Row("connector", False, f"Kafka Connect unreachable: {exc.__class__.__name__}")
    if answer.status_code == 404:
        return Row("connector", False, f"{name} is not registered (make up registers it)")
    state = answer.json()
    tasks = state.get("tasks", [])
    task_states = ",".join(t.get("state", "?") for t in tasks) or "no task"
    healthy = state.get("connector", {}).get("state") == "RUNNING" and tasks and \
        all(t.get("state") == "RUNNING" for t in tasks)
    trace = next((t.get("trace", "").splitlines()[0] for t in tasks if t.get("trace")), "")
    return Row("connector", bool(healthy),
               f"{name} {state.get('connector', {}).get('state', '?')}, tasks {task_states}"
               + (f" ({trace[:120]})" if trace else ""))


def slot_row(settings) -> Row:
    import psycopg2

    from stack.postgres import admin_dsn

    try:
        with psycopg2.connect(admin_dsn(settings, settings.postgres.database), connect_timeout=3) as conn, \
                conn.cursor() as cur:
            cur.execute("SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, wal_status "
                        "FROM pg_replication_slots WHERE slot_name = %s", (settings.connect.slot_name,))
            row = cur.fetchone()
    except psycopg2.Error as exc:
        return Row("slot", False, f"Postgres unreachable: {str(exc).strip()[:120]}")
    if row is None:
        return Row("slot", False, f"{settings.connect.slot_name} does not exist")
    active, lag, wal_status = row
    return Row("slot", bool(active) and wal_status != "lost",
               f"{settings.connect.slot_name} {'active' if active else 'INACTIVE'}, holds {lag or 0:,} bytes of WAL "
               f"({wal_status})")


def stream_process(settings) -> tuple[str, bool]:
    """The stream's state from its pid file and from the lock it holds on the checkpoint (which stays
    right when the stream was restarted by hand and the pid file is stale): (text, healthy)."""
    from binance_cdc.stream import checkpoint_lock
    from binance_cdc.stream.job import checkpoint_location
    from stack import process

    pid = process.read_pid(STREAM)
    holder = checkpoint_lock.holder(checkpoint_location(settings))
    if pid and holder in (None, pid):
        return f"running (pid {pid})", True
    if holder:
        return (f"running (pid {holder}, holds the checkpoint; not the pid in {process.pid_file(STREAM)}: "
                "make demo or make down adopts it)"), True
    if process.pid_file(STREAM).exists():
        return "DEAD (its pid file is stale; see .local/logs/spark_streaming.log, then make demo)", False
    return "not started here (make demo starts it)", True


def adopt_stream(settings) -> int | None:
    """Point the stream's pid file at the process holding the checkpoint's lock (a stream restarted by
    hand), so `make down` stops it and `make demo` does not start a second one. Its pid, or None."""
    from binance_cdc.stream import checkpoint_lock
    from binance_cdc.stream.job import checkpoint_location
    from stack import process

    holder = checkpoint_lock.holder(checkpoint_location(settings))
    if holder and holder > 0 and process.read_pid(STREAM) != holder:
        process.RUN.mkdir(parents=True, exist_ok=True)
        process.pid_file(STREAM).write_text(str(holder))
        log.info("%s: pid %d holds the checkpoint; pid file updated", STREAM, holder)
    return holder


def stream_rows(settings, now: datetime, progress) -> list[Row]:
    """`progress`: read_progress's answer, or the text saying why Cassandra could not be read."""
    state, healthy = stream_process(settings)
    if isinstance(progress, str):
        return [Row("stream", False, f"{state}; {progress}")]
    last = max(progress.values(), key=lambda p: p.batch_completed_at, default=None)
    lag = _kafka_lag(settings, last.end_offsets if last else None)
    batch = f"last batch {last.last_batch_id} {_age(last.batch_completed_at, now)}" if last else "no batch yet"
    return [Row("stream", healthy, f"{state}; {batch}; Kafka lag {lag}")]


def bridge_row(settings, now: datetime, progress) -> Row:
    from binance_cdc import postgres_conn

    try:
        conn = postgres_conn.connect(settings.serving, settings.grafana_login, "status", connect_timeout=3)
    except Exception as exc:  # noqa: BLE001 - any connection failure is what status reports
        return Row("bridge", False, f"serving Postgres unreachable: {str(exc).strip()[:120]}")
    try:
        with conn.cursor() as cur:
            schema = settings.serving.schema
            cur.execute(f"SELECT finished_at, mode, upserted, deleted, rejected FROM {schema}.bridge_runs "
                        "ORDER BY run_id DESC LIMIT 1")  # schema: a validated identifier from settings
            run = cur.fetchone()
            cur.execute(f"SELECT max(batch_completed_at) FROM {schema}.bridge_cursor")
            copied_upto = cur.fetchone()[0]
    finally:
        conn.close()
    if run is None:
        return Row("bridge", True, "never ran (make bridge, or make demo)")
    newest = max((p.batch_completed_at for p in progress.values()), default=None) \
        if not isinstance(progress, str) else None
    behind = "-" if newest is None or copied_upto is None else \
        f"{max(0.0, (newest - copied_upto).total_seconds()):.0f}s behind the stream's last batch"
    return Row("bridge", run[4] == 0,
               f"last run {_age(run[0], now)} ({run[1]}: {run[2]} upserted, {run[3]} deleted, {run[4]} rejected); "
               f"{behind}")


def _progress(settings):
    from binance_cdc.serve import cassandra_read

    try:
        session = cassandra_read.reader_session(settings.cassandra, settings.cassandra_reader, timeout=5)
    except Exception as exc:  # noqa: BLE001 - reported as a status line
        return f"Cassandra unreachable: {exc.__class__.__name__}"
    try:
        return cassandra_read.read_progress(session, settings.cassandra.keyspace)
    finally:
        session.cluster.shutdown()


def _kafka_lag(settings, end_offsets: str | None) -> str:
    from confluent_kafka import Consumer, TopicPartition

    from binance_cdc.kafka_client import client_conf, topics

    reached = json.loads(end_offsets) if end_offsets else {}
    try:
        consumer = Consumer({**client_conf(settings.kafka), "group.id": "binance-cdc-status"})
    except Exception as exc:  # noqa: BLE001
        return f"unknown ({exc})"
    try:
        metadata = consumer.list_topics(timeout=5).topics
        total = 0
        for name in topics(settings.kafka):
            topic = metadata.get(name)
            for partition in (topic.partitions if topic is not None else {}):
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=5)
                total += max(0, high - max(low, int(reached.get(name, {}).get(str(partition), low))))
        return f"{total:,} messages"
    except Exception as exc:  # noqa: BLE001 - Kafka down is a status, not a crash
        return f"unknown (Kafka: {str(exc)[:80]})"
    finally:
        consumer.close()


def rows(settings) -> list[Row]:
    now = datetime.now(timezone.utc)
    progress = _progress(settings)  # one Cassandra session serves the stream and the bridge lines
    return [connector_row(settings), slot_row(settings), *stream_rows(settings, now, progress),
            bridge_row(settings, now, progress)]
