"""The pure half of the Cassandra sink (recorded Debezium events -> writes, dead letters and counts) and
the streaming job's pure configuration. No Cassandra, Kafka or Spark needed."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from binance_cdc import datasets
from binance_cdc.settings import load_settings
from binance_cdc.stream.job import kafka_options
from binance_cdc.stream.sink import (
    MAX_BATCH_STATEMENTS, Message, Write, batches_by_partition, key_columns, millis, plan, upsert_columns,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "debezium"
WRITTEN = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def messages(table: str) -> list[Message]:
    recs = json.loads((FIXTURES / f"plain_{table}.json").read_text())
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    return [Message(r["topic"], r["partition"], r["offset"], enc(r["key"]), enc(r["value"])) for r in recs]


def test_plan_counts_every_message_once():
    msgs = messages("latest_prices")
    p = plan(msgs, WRITTEN)
    counts = p.counts["binance.binance.latest_prices"]
    assert dict(counts) == {"r": 1, "u": 1, "d": 2, "tombstone": 2, "c": 2}
    assert sum(counts.values()) == len(msgs) and not p.dead_letters
    assert len(p.writes) == 6


def test_upsert_binds_every_cassandra_column_then_the_lsn():
    p = plan(messages("klines")[:1], WRITTEN)
    (w,) = p.writes
    assert not w.delete and w.table == "klines"
    cols = upsert_columns(datasets.KLINES)
    assert set(cols) == set(datasets.KLINES.cql_columns)
    bound = dict(zip(cols, w.params))
    assert str(bound["high_price"]) == "12345678901234567890.123456789"
    assert bound["cdc_written_at"] == WRITTEN and bound["cdc_op"] == "r"
    assert w.params[-1] == bound["cdc_source_lsn"] == 26823376  # USING TIMESTAMP <lsn>
    assert w.partition_key == ("TCAPTUREUSDT", "30m", datetime(2026, 4, 1).date())


def test_delete_binds_the_lsn_then_the_full_key():
    p = plan(messages("recent_trades"), WRITTEN)
    (delete,) = [w for w in p.writes if w.delete]
    assert key_columns(datasets.RECENT_TRADES) == ("symbol", "trade_date", "trade_id")
    assert delete.params[1:] == ("TCAPTUREUSDT", datetime(2026, 4, 1).date(), 9000000001)
    assert delete.params[0] > max(w.params[-1] for w in p.writes if not w.delete)  # the delete is the latest


def test_undecodable_and_unrepresentable_messages_become_dead_letters():
    good = messages("latest_prices")[0]
    doc = json.loads(good.value)
    doc["after"]["observed_at"] = "2026-04-01T00:00:01.123456Z"  # finer than Cassandra's milliseconds
    bad_time = Message(good.topic, 0, 100, good.key, json.dumps(doc).encode())
    broken = Message(good.topic, 0, 101, b"k", b"{nope")
    p = plan([good, bad_time, broken], WRITTEN)
    assert len(p.writes) == 1
    assert [d.message.offset for d in p.dead_letters] == [100, 101]
    assert "sub-millisecond" in p.dead_letters[0].error and "observed_at" in p.dead_letters[0].error
    assert "malformed JSON" in p.dead_letters[1].error
    assert p.counts[good.topic]["dead_letter"] == 2


def test_millis_refuses_finer_times():
    assert millis(WRITTEN) is WRITTEN
    with pytest.raises(ValueError, match="sub-millisecond"):
        millis(WRITTEN.replace(microsecond=1))


def test_batches_hold_one_partition_and_a_bounded_number_of_statements():
    writes = [Write("recent_trades", False, ("A", 1), (i,), "t", i) for i in range(MAX_BATCH_STATEMENTS + 5)]
    writes += [Write("recent_trades", False, ("B", 1), (0,), "t", 0), Write("klines", False, ("A", 1), (0,), "t", 0)]
    batches = batches_by_partition(writes)
    assert sorted(len(b) for b in batches) == [1, 1, 5, MAX_BATCH_STATEMENTS]
    for batch in batches:
        assert len({(w.table, w.partition_key) for w in batch}) == 1


def job_settings(**env):
    return load_settings("kafka", "spark", env=env)


def test_kafka_options_local_and_confluent_cloud():
    local = kafka_options(job_settings())
    assert local["subscribe"].split(",") == [f"binance.binance.{n}" for n in datasets.DATASETS]
    assert local["failOnDataLoss"] == "true" and "kafka.security.protocol" not in local
    cloud = kafka_options(job_settings(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="KEY",
                                       KAFKA_SASL_PASSWORD='se"cret'))
    assert cloud["kafka.security.protocol"] == "SASL_SSL" and cloud["kafka.sasl.mechanism"] == "PLAIN"
    assert 'username="KEY" password="se\\"cret";' in cloud["kafka.sasl.jaas.config"]
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME"):
        kafka_options(job_settings(KAFKA_SECURITY_PROTOCOL="SASL_SSL"))
