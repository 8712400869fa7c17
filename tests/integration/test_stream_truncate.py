"""A TRUNCATE through the real stream, bridge and reconcile: rows written before it are gone from Cassandra
and the serving table, rows written after it stay, a replay of every message from a fresh checkpoint gives
the same tables, and reconcile finds Postgres, Cassandra and serving equal.

Real components, throwaway namespaces: five topics of a random prefix (one partition each, as the broker
creates them), a scratch keyspace, serving schema and source schema (stack.scratch), checkpoints under a
tmp dir; `spark_streaming.py --once` as a subprocess (tests/stream_process.py). The messages are
Debezium-shaped (cdc_helpers.change_message; the truncate as Debezium documents it: no key, op "t", no row
images), since capturing a real truncate would mean truncating a shared `binance` table. The scratch source
table is given the same changes in SQL, TRUNCATE included, as the Postgres side reconcile compares with.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from binance_cdc import datasets, postgres_conn
from binance_cdc.cassandra_conn import session_scope
from binance_cdc.kafka_client import partition_count
from binance_cdc.serve import bridge, reconcile
from binance_cdc.stream.sink import Message
from stack.scratch import scratch_namespace
from tests.stream_process import StreamProcess

import cdc_helpers as h

pytestmark = pytest.mark.timeout(1500)

TRADES = datasets.RECENT_TRADES
TRUNCATE_LSN = 2000


def truncate_message(prefix: str, dataset: datasets.Dataset, lsn: int) -> Message:
    """Debezium's truncate event (postgresql.adoc, "truncate events") in our plain JSON layout."""
    envelope = {
        "before": None, "after": None,
        "source": {"version": "3.4.3.Final", "connector": "postgresql", "name": prefix, "db": "binance",
                   "schema": "binance", "table": dataset.name, "snapshot": "false", "ts_ms": h.EPOCH_MS + lsn,
                   "txId": 1000 + lsn, "lsn": lsn, "xmin": None},
        "transaction": None, "op": "t", "ts_ms": h.EPOCH_MS + lsn + 7,
    }
    return Message(f"{prefix}.{dataset.topic_suffix}", 0, 0, None, json.dumps(envelope).encode())


def history(prefix: str, tag: str):
    """(before the stream's first run, after it) messages, and the SQL-side changes, of one story: rows in
    three partitions, an update and a delete; then, in one batch, a row before the truncate (in a partition
    of its own), the truncate, and rows after it in an old partition and in a new one."""
    a, b, c = (f"T{tag}{x}USDT" for x in "ABC")
    col = h.non_key_decimal(TRADES)
    a0, a1, a2, b0 = h.sample_row(TRADES, a, 0), h.sample_row(TRADES, a, 1), h.sample_row(TRADES, a, 2), \
        h.sample_row(TRADES, b, 0)
    a1_updated = {**a1, col: Decimal("120.00000120")}
    a60, a3, c100 = h.sample_row(TRADES, a, 60), h.sample_row(TRADES, a, 3), h.sample_row(TRADES, c, 100)
    first = [h.change_message(TRADES, op, row, lsn, prefix) for op, row, lsn in (
        ("c", a0, 1100), ("c", a1, 1110), ("c", a2, 1120), ("c", b0, 1130), ("u", a1_updated, 1140),
        ("d", a2, 1150))]
    first.append(h.tombstone_message(first[-1]))
    after = [h.change_message(TRADES, "c", row, lsn, prefix) for row, lsn in ((a3, 2100), (c100, 2110))]
    second = [h.change_message(TRADES, "c", a60, 1900, prefix), truncate_message(prefix, TRADES, TRUNCATE_LSN),
              *after]
    sql_steps = [("insert", r) for r in (a0, a1, a2, b0)] + [("update", a1_updated), ("delete", a2),
                                                               ("insert", a60), ("truncate", None),
                                                               ("insert", a3), ("insert", c100)]
    return first, second, after, sql_steps


def apply_in_postgres(settings, schema: str, steps) -> None:
    """The same changes in the scratch source table, as the app role (which owns no shared table)."""
    conn = postgres_conn.app_connection(settings, "test_stream_truncate")
    cols = TRADES.column_names
    table = f'"{schema}".{TRADES.name}'
    try:
        with conn.cursor() as cur:
            for op, row in steps:
                if op == "insert":
                    cur.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                                [row[c] for c in cols])
                elif op == "update":
                    cur.execute(f"UPDATE {table} SET {', '.join(f'{c} = %s' for c in cols)} WHERE symbol = %s AND "
                                "trade_id = %s", [*(row[c] for c in cols), row["symbol"], row["trade_id"]])
                elif op == "delete":
                    cur.execute(f"DELETE FROM {table} WHERE symbol = %s AND trade_id = %s",
                                (row["symbol"], row["trade_id"]))
                else:
                    cur.execute(f"TRUNCATE {table}")
        conn.commit()
    finally:
        conn.close()


def run_stream(ns, prefix: str, checkpoint, log_path) -> str:
    env = {"CASSANDRA_KEYSPACE": ns.keyspace, "TOPIC_PREFIX": prefix, "SPARK_CHECKPOINT_DIR": str(checkpoint),
           "SPARK_TRIGGER_SECONDS": "1", "SPARK_STARTING_OFFSETS": "earliest"}
    text = StreamProcess(env, log_path, once=True).run(timeout=600)  # raises on a non-zero exit
    assert "streaming query stopped cleanly" in text
    return text


def run_bridge(ns) -> bridge.RunReport:
    report = bridge.run(ns.settings)
    assert report.exit_code == bridge.EXIT_OK, report.message
    return report


def assert_reconciled(ns) -> None:
    stores = reconcile.open_stores(ns.settings, ns.source_schema)
    try:
        diffs = reconcile.reconcile(stores, settle_s=0)
    finally:
        stores.close()
    assert all(d.clean for d in diffs), reconcile.format_report(diffs)
    (trades,) = [d for d in diffs if d.name == TRADES.name]
    assert trades.counts == {"postgres": 2, "cassandra": 2, "serving": 2}


def test_truncate_removes_older_rows_keeps_newer_ones_replays_alike_and_all_stores_agree(settings, tmp_path):
    prefix = f"ittrunc{h.random_suffix()}"
    topics = h.topics_for(prefix)
    first, second, after, sql_steps = history(prefix, h.random_suffix().upper())
    with scratch_namespace(settings, "it_trunc", source=True) as ns:
        h.create_topics(settings, topics)  # one partition each: the only layout a truncate is applied from
        try:
            assert partition_count(settings.kafka, topics[0]) == 1
            apply_in_postgres(settings, ns.source_schema, sql_steps)
            expected = h.latest_state(after)  # only the rows written after the truncate
            everything = first + second

            h.produce_all(settings, first)
            run_stream(ns, prefix, tmp_path / "checkpoint", tmp_path / "first.log")
            with session_scope(ns.settings.cassandra, settings.cassandra_writer) as session:
                assert len(h.cassandra_state(session, ns.keyspace, everything)[TRADES.name]) == 3  # a0, a1, b0 (a2 deleted)
            assert run_bridge(ns).mode == "full"  # the bridge's cursor now precedes the truncate

            h.produce_all(settings, second)
            text = run_stream(ns, prefix, tmp_path / "checkpoint", tmp_path / "second.log")
            with session_scope(ns.settings.cassandra, settings.cassandra_writer) as session:
                assert h.cassandra_state(session, ns.keyspace, everything) == expected
            assert f"{prefix}.binance.recent_trades: c=3 r=0 u=0 d=0 tombstone=0 dead_letter=0 t=1" in text, text[-3000:]
            report = run_bridge(ns)
            assert report.mode == "incremental" and report.tables[TRADES.name].deleted == 3  # a0, a1, b0
            assert_reconciled(ns)

            # Replay: every message again, from a fresh checkpoint (a new streaming query), after the rows
            # that followed the truncate were written. Old rows come back with old LSNs and stay shadowed.
            run_stream(ns, prefix, tmp_path / "replay", tmp_path / "replay.log")
            with session_scope(ns.settings.cassandra, settings.cassandra_writer) as session:
                assert h.cassandra_state(session, ns.keyspace, everything) == expected
            assert run_bridge(ns).mode == "full"  # a new streaming query
            assert_reconciled(ns)
        finally:
            h.delete_topics(settings, topics)


def test_the_sink_learns_a_topics_partition_count_from_kafka(settings):
    """What decides whether a truncate is applied (one partition) or refused as a dead letter (more): the
    refusal itself is tested in tests/unit/test_cassandra_sink.py."""
    topic = f"ittrunc{h.random_suffix()}.binance.recent_trades"
    h.create_topics(settings, [topic], partitions=2)
    try:
        assert partition_count(settings.kafka, topic) == 2
    finally:
        h.delete_topics(settings, [topic])
    assert partition_count(settings.kafka, f"ittrunc{h.random_suffix()}.binance.nothing") == 0
