"""pg_cassandra_bridge against the real Cassandra and Postgres, in a throwaway keyspace and serving schema.

Changes reach Cassandra the way the stream writes them (binance_cdc.stream.sink: plan + apply with the
batch's marks, then the driver's progress row), so the bridge is tested on the contract it relies on;
spark_streaming.py itself writes the same through `make demo` and tests/integration/test_cdc.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg2
import pytest

from binance_cdc import change_log, datasets, postgres_conn
from binance_cdc.cassandra_conn import connect
from binance_cdc.serve import bridge
from binance_cdc.settings import PROJECT_ROOT, Settings
from binance_cdc.stream.sink import CassandraSink, Message, plan
from stack.scratch import scratch_namespace

pytestmark = pytest.mark.timeout(300)

T0 = datetime(2026, 4, 1, 10, 0, 0, 123000, tzinfo=timezone.utc)


def json_value(kind: str, value):
    if kind == "decimal":
        return str(value)
    if kind == "timestamp":
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


def trade(symbol: str, trade_id: int, price: str, when: datetime = T0) -> dict:
    return {"symbol": symbol, "trade_id": trade_id, "price": Decimal(price), "qty": Decimal("0.00100000"),
            "quote_qty": Decimal(price) * Decimal("0.00100000"), "trade_time": when, "is_buyer_maker": True,
            "is_best_match": True}


def price_row(symbol: str, price: str) -> dict:
    return {"symbol": symbol, "price": Decimal(price), "observed_at": T0}


def message(prefix: str, dataset: datasets.Dataset, op: str, row: dict, lsn: int, offset: int) -> Message:
    image = {c.name: json_value(c.kind, row[c.name]) for c in dataset.columns}
    envelope = {"before": image if op == "d" else None, "after": None if op == "d" else image,
                "source": {"lsn": lsn, "ts_ms": int(T0.timestamp() * 1000), "txId": lsn},
                "op": op, "ts_ms": int(T0.timestamp() * 1000) + 5}
    key = {k: image[k] for k in dataset.primary_key}
    return Message(f"{prefix}.{dataset.topic_suffix}", 0, offset, json.dumps(key).encode(),
                   json.dumps(envelope).encode())


class World:
    """A throwaway keyspace and serving schema (stack.scratch), and the stream's side of the contract:
    apply a micro-batch with its marks, then record its progress."""

    def __init__(self, settings: Settings, ns) -> None:
        self.base = settings
        self.keyspace, self.schema, self.settings, self.admin = ns.keyspace, ns.serving_schema, ns.settings, ns.admin
        self.writer = connect(self.settings.cassandra, settings.cassandra_writer, timeout=60)
        self.sink = CassandraSink(self.writer, self.keyspace)
        self.stream_id = uuid.uuid4()
        self.batch_id = -1
        self.lsn = 1000
        self.offset = 0

    def batch(self, *changes: tuple[datasets.Dataset, str, dict]) -> None:
        """One micro-batch: each (dataset, op, row) at the next LSN, written, marked, then its progress."""
        messages = []
        for dataset, op, row in changes:
            self.lsn += 10
            self.offset += 1
            messages.append(message("binance", dataset, op, row, self.lsn, self.offset))
        p = plan(messages)
        assert not p.dead_letters, p.dead_letters
        self.batch_id += 1
        ref = change_log.BatchRef(self.stream_id, self.batch_id)
        self.sink.apply(p, ref)
        self.writer.execute(
            f"INSERT INTO {self.keyspace}.{change_log.STREAM_PROGRESS} (stream_id, last_batch_id, batch_completed_at, "
            "end_offsets) VALUES (%s, %s, %s, %s)", (self.stream_id, self.batch_id, datetime.now(timezone.utc), "{}"))

    def serving_rows(self, dataset: datasets.Dataset, login=None) -> dict:
        conn = postgres_conn.connect(self.settings.serving, login or self.base.grafana_login, "test_bridge")
        try:
            with conn.cursor() as cur:
                cols = ", ".join(dataset.column_names)
                cur.execute(f'SELECT {cols}, cdc_source_lsn FROM "{self.schema}".{dataset.name}')
                return {tuple(r[dataset.column_names.index(k)] for k in dataset.primary_key): r for r in cur.fetchall()}
        finally:
            conn.close()

    def run(self, full: bool = False) -> bridge.RunReport:
        report = bridge.run(self.settings, full=full)
        assert report.exit_code in (bridge.EXIT_OK, bridge.EXIT_REJECTED), report.message
        return report


@pytest.fixture
def world(settings):
    with scratch_namespace(settings, "it_bridge") as ns:
        w = World(settings, ns)
        try:
            yield w
        finally:
            w.writer.cluster.shutdown()


TRADES, PRICES = datasets.RECENT_TRADES, datasets.LATEST_PRICES


def test_first_run_copies_everything_then_only_what_changed(world):
    world.batch(*[(TRADES, "r", trade("BTCUSDT", i, f"67012.3400000{i}")) for i in range(1, 6)],
                (PRICES, "r", price_row("BTCUSDT", "67012.34000000")), (PRICES, "r", price_row("ETHUSDT", "2820.00")))
    first = world.run()
    assert first.mode == "full"
    rows = world.serving_rows(TRADES)
    assert sorted(rows) == [("BTCUSDT", i) for i in range(1, 6)]
    assert str(rows[("BTCUSDT", 3)][2]) == "67012.34000003"  # exact, scale kept
    assert rows[("BTCUSDT", 3)][5] == T0

    nothing = world.run()
    assert nothing.mode == "incremental" and nothing.partitions == 0
    assert sum(t.rows_read for t in nothing.tables.values()) == 0

    # An update, a delete and an insert, in one micro-batch; another partition (ETHUSDT) untouched.
    world.batch((TRADES, "u", trade("BTCUSDT", 2, "1.50000000")), (TRADES, "d", trade("BTCUSDT", 4, "67012.34000004")),
                (TRADES, "c", trade("BTCUSDT", 6, "67013.00000000", T0 + timedelta(days=1))),
                (PRICES, "u", price_row("ETHUSDT", "2821.50")))
    second = world.run()
    assert second.mode == "incremental"
    assert second.tables["recent_trades"].rows_read == 2  # the deleted row is checked, and is gone
    assert second.tables["recent_trades"].deleted == 1
    assert second.tables["latest_prices"].rows_read == 1
    rows = world.serving_rows(TRADES)
    assert sorted(rows) == [("BTCUSDT", i) for i in (1, 2, 3, 5, 6)]
    assert str(rows[("BTCUSDT", 2)][2]) == "1.50000000"
    assert str(world.serving_rows(PRICES)[("ETHUSDT",)][1]) == "2821.50"
    assert str(world.serving_rows(PRICES)[("BTCUSDT",)][1]) == "67012.34000000"


def test_an_older_row_never_overwrites_a_newer_one_and_reruns_write_nothing(world):
    world.batch((PRICES, "r", price_row("BTCUSDT", "1.00")))
    world.run()
    world.batch((PRICES, "u", price_row("BTCUSDT", "2.00")))
    world.run()
    conn = postgres_conn.connect(world.settings.serving, world.base.bridge_login, "test_bridge", autocommit=True)
    try:
        with conn.cursor() as cur:
            # As if a replayed, older copy of the row were staged again: the LSN guard keeps the newer row.
            cur.execute(f'SELECT cdc_source_lsn FROM "{world.schema}".latest_prices WHERE symbol = %s', ("BTCUSDT",))
            newer = cur.fetchone()[0]
            cur.execute(f'UPDATE "{world.schema}".latest_prices SET cdc_source_lsn = cdc_source_lsn + 1000000 '
                        "WHERE symbol = %s", ("BTCUSDT",))
    finally:
        conn.close()
    report = world.run(full=True)
    row = world.serving_rows(PRICES)[("BTCUSDT",)]
    assert row[-1] == newer + 1000000 and str(row[1]) == "2.00"
    assert report.tables["latest_prices"].upserted == 0
    again = world.run(full=True)
    assert again.tables["latest_prices"].upserted == 0 and again.tables["latest_prices"].deleted == 0


def test_full_removes_rows_cassandra_no_longer_has(world):
    world.batch(*[(TRADES, "r", trade("SOLUSDT", i, "150.25")) for i in range(1, 4)])
    world.run()
    # Deleted behind the stream's back (no mark): only a full run can see it.
    world.admin.execute(f"DELETE FROM {world.keyspace}.recent_trades WHERE symbol = 'SOLUSDT' "
                        f"AND trade_date = '{T0.date().isoformat()}' AND trade_id = 2")
    assert world.run().tables["recent_trades"].deleted == 0
    full = world.run(full=True)
    assert full.mode == "full" and full.tables["recent_trades"].deleted == 1
    assert sorted(world.serving_rows(TRADES)) == [("SOLUSDT", 1), ("SOLUSDT", 3)]


def test_a_row_postgres_cannot_hold_is_reported_and_the_rest_loads(world):
    world.batch((TRADES, "r", trade("XRPUSDT", 1, "0.5")), (TRADES, "r", trade("BAD\x00SYM", 1, "0.5")),
                (TRADES, "r", trade("XRPUSDT", 2, "0.6")))
    report = bridge.run(world.settings)
    assert report.exit_code == bridge.EXIT_REJECTED
    (rejected,) = report.rejected
    assert rejected.table == "recent_trades" and "BAD" in rejected.key and "NUL" in rejected.reason
    assert sorted(world.serving_rows(TRADES)) == [("XRPUSDT", 1), ("XRPUSDT", 2)]
    conn = postgres_conn.connect(world.settings.serving, world.base.grafana_login, "test_bridge")
    try:
        with conn.cursor() as cur:
            cur.execute(f'SELECT table_name, reason FROM "{world.schema}".bridge_rejects')
            assert cur.fetchall() == [("recent_trades", rejected.reason)]
    finally:
        conn.close()


def test_a_second_run_is_kept_out_by_the_lock(world):
    holder = postgres_conn.connect(world.settings.serving, world.base.bridge_login, "test_lock_holder")
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (bridge.LOCK_KEY,))
        report = bridge.run(world.settings)
        assert report.exit_code == bridge.EXIT_LOCKED and "lock" in report.message
        with holder.cursor() as cur:
            # Unlock explicitly: a closed connection's backend lets go of its locks a moment later.
            cur.execute("SELECT pg_advisory_unlock(%s)", (bridge.LOCK_KEY,))
            assert cur.fetchone() == (True,)
    finally:
        holder.close()


def test_roles_hold_only_their_rights(world):
    world.batch((PRICES, "r", price_row("BTCUSDT", "1.00")))
    world.run()
    bridge_conn = postgres_conn.connect(world.base.postgres, world.base.bridge_login, "test_bridge", autocommit=True)
    grafana = postgres_conn.connect(world.settings.serving, world.base.grafana_login, "test_bridge", autocommit=True)
    try:
        with bridge_conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT count(*) FROM binance.latest_prices")
        with grafana.cursor() as cur:
            cur.execute(f'SELECT count(*) FROM "{world.schema}".latest_prices')
            assert cur.fetchone() == (1,)
            for statement in (f'DELETE FROM "{world.schema}".latest_prices',
                              "SELECT count(*) FROM binance.latest_prices"):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(statement)
    finally:
        bridge_conn.close()
        grafana.close()
    from cassandra import Unauthorized

    reader = connect(world.settings.cassandra, world.base.cassandra_reader)
    try:
        with pytest.raises(Unauthorized):
            reader.execute(f"DELETE FROM {world.keyspace}.latest_prices WHERE symbol = 'BTCUSDT'")
    finally:
        reader.cluster.shutdown()


def test_serving_tables_are_not_published_so_no_change_loop(world, settings):
    world.batch((PRICES, "r", price_row("BTCUSDT", "1.00")))
    world.run()
    conn = postgres_conn.app_connection(settings, "test_bridge")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
                        (settings.connect.publication,))
            published = cur.fetchall()
    finally:
        conn.close()
    # The five tables and the connector's heartbeat (sql/03_heartbeat.sql); never a serving schema.
    assert published and {s for s, _ in published} <= {"binance", "cdc_heartbeat"}
    assert {t for s, t in published if s == "binance"} and settings.serving.schema not in {s for s, _ in published}
    from confluent_kafka.admin import AdminClient

    from binance_cdc.kafka_client import client_conf

    time.sleep(2)
    topics = AdminClient(client_conf(settings.kafka)).list_topics(timeout=10).topics
    assert not [t for t in topics if world.schema in t or f".{settings.serving.schema}." in t]


def test_script_exit_codes(world):
    env = {"CASSANDRA_KEYSPACE": world.keyspace, "SERVING_SCHEMA": world.schema}
    ok = subprocess.run([sys.executable, "pg_cassandra_bridge.py"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                        env={**os.environ, **env}, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "table=recent_trades mode=full" in ok.stderr
    bad = subprocess.run([sys.executable, "pg_cassandra_bridge.py"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         env={**os.environ, **env, "BRIDGE_PAGE_SIZE": "zero"}, timeout=60)
    assert bad.returncode == 2 and "BRIDGE_PAGE_SIZE" in bad.stderr


def test_follow_copies_each_new_change_and_stops_cleanly(world):
    import signal

    world.batch((PRICES, "r", price_row("BTCUSDT", "1.00")))
    env = {**os.environ, "CASSANDRA_KEYSPACE": world.keyspace, "SERVING_SCHEMA": world.schema, "BRIDGE_INTERVAL_S": "0.5"}
    follower = subprocess.Popen([sys.executable, "pg_cassandra_bridge.py", "--follow"], cwd=PROJECT_ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def price_served(expected: str, timeout: float = 60) -> float:
            began = time.monotonic()
            while time.monotonic() - began < timeout:
                row = world.serving_rows(PRICES).get(("BTCUSDT",))
                if row is not None and str(row[1]) == expected:
                    return time.monotonic() - began
                time.sleep(0.2)
            raise AssertionError(f"price {expected} not served within {timeout}s")

        price_served("1.00")
        world.batch((PRICES, "u", price_row("BTCUSDT", "2.50")))
        assert price_served("2.50") < 30
        world.batch((PRICES, "d", price_row("BTCUSDT", "2.50")))
        began = time.monotonic()
        while ("BTCUSDT",) in world.serving_rows(PRICES):
            assert time.monotonic() - began < 30, "delete not served"
            time.sleep(0.2)
    finally:
        follower.send_signal(signal.SIGTERM)
        out, _ = follower.communicate(timeout=60)
    assert follower.returncode == 0, out
    assert "mode=incremental" in out and "stopped" in out
