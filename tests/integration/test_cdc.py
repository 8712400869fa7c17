"""End to end on the real stack: Postgres -> Debezium (Connect) -> Kafka -> spark_streaming.py -> Cassandra.

The module registers its own Debezium connector (own slot and topic prefix, snapshot initial) after
inserting rows, so those arrive as snapshot reads; then runs `python spark_streaming.py` as a subprocess
with a fresh checkpoint under a tmp dir, TOPIC_PREFIX pointing at that connector's topics and
CASSANDRA_KEYSPACE at a throwaway keyspace made from cql/ (own writer role). Nothing is shared with the
pipeline's own topics, keyspace or checkpoint, so a stream left running by `make demo` changes nothing
here (and the tests change nothing there but the source rows, which they delete again). Tests run
in file order against that one job: snapshot, insert/update/delete of every table, a malformed message
(dead letter, stream continues), and a stop/restart (no loss, no duplicate, no replay). Rows use unique
symbols (T<random>USDT); Postgres is written as the application role. Afterwards the connector, its slot
and topics, the Postgres rows, the keyspace and its role are removed.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from binance_cdc import datasets
from binance_cdc.cassandra_conn import connect as cassandra_connect
from binance_cdc.stream.sink import DEAD_LETTER_TABLE
from binance_cdc.stream.debezium import bucket_of
from tests.stream_process import StreamProcess

import cdc_helpers as h

pytestmark = pytest.mark.timeout(600)

WAIT = 120  # seconds for a change to reach Cassandra
UTC = timezone.utc
DATASETS = list(datasets.DATASETS.values())


class World:
    """What the tests share: the job, the connector, the symbols used and every row ever written."""

    def __init__(self, settings, tmp_path) -> None:
        self.tag = tag = h.random_suffix().upper()
        self.settings = settings
        self.tmp = tmp_path
        self.symbols = {name: f"T{tag}{name}USDT" for name in ("PRE", "LIVE", "LIVE2", "LIVE3", "DLQ", "RST")}
        self.touched: dict[str, list[dict]] = {d.name: [] for d in DATASETS}  # rows ever inserted
        self.job: StreamProcess | None = None
        self.connector: dict | None = None
        self.cassandra = None

    def insert(self, dataset, row) -> None:
        h.insert_row(self.settings, dataset, row)
        self.touched[dataset.name].append(row)

    def partitions(self, dataset) -> set[tuple]:
        return {tuple({**row, **bucket_of(dataset, row)}[c] for c in dataset.cql_partition_key)
                for row in self.touched[dataset.name]}


def normalize(dataset, row: dict) -> tuple:
    """Source columns as exact strings: decimals keep their scale, times are UTC ISO strings."""
    out = []
    for col in dataset.columns:
        value = row[col.name]
        if col.kind == "timestamp":
            value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
        out.append((col.name, str(value)))
    return tuple(out)


def postgres_rows(world, dataset) -> set[tuple]:
    conn = h.pg_connect(world.settings)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join(dataset.column_names)} FROM binance.{dataset.name} "
                        "WHERE symbol = ANY(%s)", (list(world.symbols.values()),))
            return {normalize(dataset, dict(zip(dataset.column_names, r))) for r in cur.fetchall()}
    finally:
        conn.close()


def cassandra_rows(world, dataset, with_meta: bool = False):
    where = " AND ".join(f"{c} = %s" for c in dataset.cql_partition_key)
    rows = []
    for partition in world.partitions(dataset):
        rows += list(world.cassandra.execute(f"SELECT * FROM {dataset.name} WHERE {where}", partition))
    if with_meta:
        return rows
    return {normalize(dataset, r._asdict()) for r in rows}


def wait_until_equal(world, what: str) -> dict[str, set]:
    """Poll until, for every dataset, Cassandra holds exactly the Postgres rows of the test symbols."""
    state: dict[str, tuple] = {}

    def equal() -> bool:
        assert world.job.alive(), f"streaming job died:\n{world.job.text()[-4000:]}"
        for d in DATASETS:
            pg, cass = postgres_rows(world, d), cassandra_rows(world, d)
            state[d.name] = (pg, cass)
            if pg != cass:
                return False
        return True

    try:
        h.wait_for(equal, WAIT, what, poll=2)
    except AssertionError:
        diffs = {n: {"only_postgres": pg - cass, "only_cassandra": cass - pg} for n, (pg, cass) in state.items()
                 if pg != cass}
        raise AssertionError(f"{what}: Cassandra differs from Postgres after {WAIT}s: {diffs}\n"
                             f"job log tail:\n{world.job.text()[-3000:]}") from None
    return {n: pg for n, (pg, _) in state.items()}


def processed_counts(log_text: str) -> list[int]:
    return [int(n) for n in re.findall(r"batch \d+: processed (\d+) messages", log_text)]


def end_offsets(settings, topics: list[str]) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**h.kafka_conf(settings.kafka), "group.id": f"offsets-{h.random_suffix()}"})
    try:
        total = 0
        for topic in topics:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            for p in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                total += high - low
        return total
    finally:
        consumer.close()


def non_key_decimal(dataset) -> str:
    return next(c.name for c in dataset.columns if c.kind == "decimal" and c.name not in dataset.primary_key)


@pytest.fixture(scope="module")
def world(settings, tmp_path_factory):
    w = World(settings, tmp_path_factory.mktemp("cdc"))
    with h.throwaway_keyspace(settings, label="itcdc") as keyspace:
        w.cassandra = cassandra_connect(keyspace.cassandra, keyspace.writer, keyspace=keyspace.name)
        try:
            for d in DATASETS:  # present before the connector exists: they can only arrive by the snapshot
                w.insert(d, h.sample_row(d, w.symbols["PRE"], 0))
            with h.throwaway_connector(settings, label="it", snapshot_symbols=f"T{w.tag}%") as connector:
                w.connector = connector
                h.wait_for(lambda: set(connector["topics"]) <= set(_topic_names(settings)), 60,
                           "snapshot topics created")
                w.job = StreamProcess(h.stream_env(keyspace, connector["prefix"], w.tmp / "checkpoint"),
                                      w.tmp / "job.log")
                w.job.start()
                w.job.wait_started(300)  # JVM start is not part of the time a change may take
                yield w
                w.job.stop()
        finally:
            if w.job:
                w.job.stop()
            for d in DATASETS:
                h.pg_execute(settings, f"DELETE FROM binance.{d.name} WHERE symbol = ANY(%s)",
                             (list(w.symbols.values()),))
            w.cassandra.cluster.shutdown()


def _topic_names(settings) -> list[str]:
    from confluent_kafka.admin import AdminClient

    return list(AdminClient(h.kafka_conf(settings.kafka)).list_topics(timeout=10).topics)


def test_rows_present_before_the_connector_arrive_by_snapshot(world):
    state = wait_until_equal(world, "snapshot rows")
    for d in DATASETS:
        assert len(state[d.name]) == 1, d.name
        (row,) = cassandra_rows(world, d, with_meta=True)
        assert row.cdc_op == "r" and row.cdc_source_lsn > 0 and row.cdc_written_at is not None
    # exact decimals: every digit and the scale, e.g. "2820413769.36626970"
    decimals = {v for d in DATASETS for row in state[d.name] for _, v in row if "." in v and ":" not in v}
    assert {"2820413769.36626970", "67012.34000000", "0.00001000"} <= decimals


def test_insert_update_delete_of_every_table(world):
    live = [world.symbols[s] for s in ("LIVE", "LIVE2", "LIVE3")]
    for d in DATASETS:
        if d.name == "latest_prices":  # one row per symbol
            rows = [h.sample_row(d, symbol, n) for n, symbol in enumerate(live)]
        else:
            rows = [h.sample_row(d, live[0], n) for n in range(3)]
        for row in rows:
            world.insert(d, row)
        column = non_key_decimal(d)
        h.update_row(world.settings, d, h.key_of(d, rows[0]), {column: Decimal("31337.00000042")})
        h.delete_rows(world.settings, d, h.key_of(d, rows[1]))
    state = wait_until_equal(world, "inserts, updates and deletes")
    for d in DATASETS:
        symbols_live = [row for row in state[d.name] if dict(row)["symbol"] in live]
        assert len(symbols_live) == 2, (d.name, symbols_live)  # 3 inserted, 1 deleted
        assert any(dict(row)[non_key_decimal(d)] == "31337.00000042" for row in symbols_live), d.name
        by_op = sorted(r.cdc_op for r in cassandra_rows(world, d, with_meta=True) if r.symbol in live)
        assert by_op == ["c", "u"], (d.name, by_op)


def test_malformed_message_is_a_dead_letter_and_the_stream_goes_on(world):
    settings = world.settings
    topic = f"{world.connector['prefix']}.binance.latest_prices"
    payload = b'{"op": "c", "after": {"symbol": "BROKEN"'  # truncated JSON
    h.produce(settings, topic, b'{"symbol":"BROKEN"}', payload)
    lp = datasets.LATEST_PRICES
    world.insert(lp, h.sample_row(lp, world.symbols["DLQ"], 4))
    wait_until_equal(world, "a valid change after the malformed message")
    today = datetime.now(UTC).date()

    def dead_letter():
        for day in (today, today - timedelta(days=1)):
            for row in world.cassandra.execute(f"SELECT * FROM {DEAD_LETTER_TABLE} WHERE topic = %s AND "
                                               "received_date = %s", (topic, day)):
                if row.payload == payload:
                    return row
        return None

    row = h.wait_for(dead_letter, 30, "dead letter row")
    assert row.kafka_key == b'{"symbol":"BROKEN"}'
    assert topic in row.error and "malformed JSON in value" in row.error
    assert row.partition == 0 and row.kafka_offset >= 0


def test_restart_resumes_without_loss_duplicate_or_replay(world):
    settings, d = world.settings, datasets.RECENT_TRADES
    before = {(r.symbol, r.trade_id): (r.cdc_written_at, r.cdc_source_lsn)
              for r in cassandra_rows(world, d, with_meta=True)}
    assert world.job.stop() == 0, world.job.text()[-3000:]
    assert "streaming query stopped cleanly" in world.job.text()
    # Changes made while the job is down must arrive after the restart.
    for n in range(3):
        world.insert(d, h.sample_row(d, world.symbols["RST"], n))
    h.update_row(settings, datasets.LATEST_PRICES, {"symbol": world.symbols["LIVE"]},
                 {"price": Decimal("1.10000000")})
    world.job.start()
    state = wait_until_equal(world, "changes made while the job was stopped")
    assert len([r for r in state[d.name] if dict(r)["symbol"] == world.symbols["RST"]]) == 3
    after = {(r.symbol, r.trade_id): (r.cdc_written_at, r.cdc_source_lsn)
             for r in cassandra_rows(world, d, with_meta=True)}
    # Rows written before the stop were not written again: the restart did not replay old offsets.
    assert {k: after[k] for k in before} == before
    # Every message of the connector's topics was processed exactly once over both runs.
    total = end_offsets(settings, world.connector["topics"])
    h.wait_for(lambda: sum(processed_counts(world.job.text())) >= total, 60, "all offsets processed")
    assert sum(processed_counts(world.job.text())) == total
