"""`make status`, second part: the change path, stage by stage, not just the services.

- connector: the Debezium connector's state and its tasks' (Kafka Connect REST);
- slot: the replication slot's state, the WAL it holds back, and whether it confirms the connector's
  heartbeats (rows in cdc_heartbeat.beats, each with the WAL position it was written at);
- heartbeat: the connector's end-to-end liveness: its newest heartbeat row in Postgres and its newest
  heartbeat message in Kafka (so Kafka down is seen even while Connect's REST still says RUNNING);
- stream: the streaming job's process, the age of its last finished micro-batch and its Kafka lag
  (messages in the topics after the offsets that batch reached, from `stream_progress`);
- bridge: its last run and how far the serving tables are behind the stream's last batch.
This module reads; stack/change_path_verdicts.py judges. `rows()` returns the lines with a healthy flag.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import requests

from stack.change_path_verdicts import Row, SlotState, judge_connector, judge_heartbeat, judge_slot, judge_stream

log = logging.getLogger(__name__)

STREAM = "spark_streaming"


def _age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return f"{(now - moment).total_seconds():.0f}s ago"


def heartbeat_interval_s(settings) -> float:
    from connectors.register import render_local

    return int(render_local(settings)["config"].get("heartbeat.interval.ms", "0")) / 1000


def connector_row(settings, name: str | None = None) -> Row:
    """The pipeline's connector (named in connectors/debezium-postgres-local.json), or `name`."""
    from connectors.register import connector_status, render_local

    name = name or render_local(settings)["name"]
    try:
        status = connector_status(settings.connect.url.rstrip("/"), name, timeout=5)
    except requests.RequestException as exc:
        return Row("connector", False, f"Kafka Connect unreachable: {exc.__class__.__name__}")
    return judge_connector(name, status)


SLOT_QUERY = """
    SELECT s.slot_name, s.active, s.wal_status,
           coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::bigint,
           extract(epoch FROM now() - min(b.beat_at) FILTER (WHERE b.beat_lsn > s.confirmed_flush_lsn))::float8,
           extract(epoch FROM now() - max(b.beat_at))::float8
    FROM pg_replication_slots s LEFT JOIN cdc_heartbeat.beats b ON b.slot_name = s.slot_name
    WHERE s.slot_name = %s
    GROUP BY s.slot_name, s.active, s.wal_status, s.confirmed_flush_lsn"""


def read_slot(settings) -> SlotState | None | str:
    """The slot with its heartbeats, None when it does not exist, or the text saying why Postgres could not
    be read. As the superuser over the socket, like the rest of `make status`."""
    import psycopg2

    from stack.postgres import admin_dsn

    try:
        with psycopg2.connect(admin_dsn(settings, settings.postgres.database), connect_timeout=3) as conn, \
                conn.cursor() as cur:
            cur.execute(SLOT_QUERY, (settings.connect.slot_name,))
            row = cur.fetchone()
        conn.close()
    except psycopg2.Error as exc:
        return f"Postgres unreachable: {str(exc).strip()[:120]}"
    return None if row is None else SlotState(*row)


def slot_and_heartbeat_rows(settings) -> list[Row]:
    from binance_cdc.kafka_client import heartbeat_topic, newest_timestamp

    slot = read_slot(settings)
    if isinstance(slot, str):
        return [Row("slot", False, slot), Row("heartbeat", False, slot)]
    interval = heartbeat_interval_s(settings)
    topic = heartbeat_topic(settings.kafka)
    newest = newest_timestamp(settings.kafka, topic)
    kafka_age = newest if isinstance(newest, str) else max(0.0, datetime.now(timezone.utc).timestamp() - newest)
    return [judge_slot(slot, settings.connect.slot_name, interval),
            judge_heartbeat(slot.newest_beat_age_s if slot else None, kafka_age, topic, interval)]


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
    age = None
    if last is not None:
        completed = last.batch_completed_at
        completed = completed if completed.tzinfo else completed.replace(tzinfo=timezone.utc)
        age = (now - completed).total_seconds()
    return [judge_stream(state, healthy, lag, age, batch)]


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
    from binance_cdc.stream.retry import LoginRefused, log_in

    try:
        login = settings.cassandra_reader
        session = log_in(lambda: cassandra_read.reader_session(settings.cassandra, login, timeout=5),
                         "Cassandra", "cassandra_reader", login.user)
    except LoginRefused as exc:  # a wrong password is not an outage: say which variables to check
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - reported as a status line
        return f"Cassandra unreachable: {exc.__class__.__name__}"
    try:
        return cassandra_read.read_progress(session, settings.cassandra.keyspace)
    finally:
        session.cluster.shutdown()


def _kafka_lag(settings, end_offsets: str | None) -> int | str:
    """Messages in the five topics after `end_offsets`, or the text saying why Kafka could not tell."""
    from confluent_kafka import Consumer, TopicPartition

    from binance_cdc.kafka_client import client_conf, topics

    reached = json.loads(end_offsets) if end_offsets else {}
    try:
        consumer = Consumer({**client_conf(settings.kafka), "group.id": "binance-cdc-status"})
    except Exception as exc:  # noqa: BLE001
        return str(exc)[:80]
    try:
        metadata = consumer.list_topics(timeout=5).topics
        total = 0
        for name in topics(settings.kafka):
            topic = metadata.get(name)
            for partition in (topic.partitions if topic is not None else {}):
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=5)
                total += max(0, high - max(low, int(reached.get(name, {}).get(str(partition), low))))
        return total
    except Exception as exc:  # noqa: BLE001 - Kafka down is a status, not a crash
        return f"Kafka: {str(exc)[:80]}"
    finally:
        consumer.close()


def rows(settings) -> list[Row]:
    now = datetime.now(timezone.utc)
    progress = _progress(settings)  # one Cassandra session serves the stream and the bridge lines
    return [connector_row(settings), *slot_and_heartbeat_rows(settings), *stream_rows(settings, now, progress),
            bridge_row(settings, now, progress)]
