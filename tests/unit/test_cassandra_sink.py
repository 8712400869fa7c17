"""The pure half of the Cassandra sink (recorded Debezium events -> writes, dead letters and counts) and
the streaming job's pure configuration. No Cassandra, Kafka or Spark needed."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from binance_cdc import datasets
from binance_cdc.settings import load_settings
from binance_cdc.stream.job import kafka_options
from binance_cdc.stream.sink import (
    MAX_BATCH_STATEMENTS, Message, Write, batches_by_partition, key_columns, millis, plan, refuse_truncates,
    upsert_columns,
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
    p = plan(messages("klines")[:1], WRITTEN, fast=False)
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
    p = plan(messages("recent_trades"), WRITTEN, fast=False)
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


# --- issue 9, finding 2: no single message stops the stream; every dead letter can be written ---

from binance_cdc.stream import sink as sink_module  # noqa: E402
from binance_cdc.stream.sink import (  # noqa: E402
    DEAD_LETTER_COLUMNS, DEAD_LETTER_MAX_KEY, DEAD_LETTER_MAX_PAYLOAD, MAX_ERROR_CHARS, MAX_WRITE_BYTES,
    CassandraSink, DeadLetter,
)

TRADE = messages("recent_trades")[0]  # a snapshot read of one trade


def trade_with(**after) -> bytes:
    doc = json.loads(TRADE.value)
    doc["after"].update(after)
    return json.dumps(doc).encode()


def trade_raw(old: str, new: str) -> bytes:
    assert old in TRADE.value.decode()
    return TRADE.value.decode().replace(old, new, 1).encode()


# Each kind of poison, with what its reason must say (the recorded trade: compact JSON, price "0.00001000").
POISON = {
    "non-JSON": (b"not json at all", "malformed JSON in value"),
    "non-UTF-8": (b"\xff\xfe\x00{", "malformed JSON in value"),
    "empty": (b"", "malformed JSON in value"),
    "JSON but no envelope": (b'"just a string"', "not a Debezium envelope"),
    "wrong type": (trade_with(trade_id="9000000001"), "after.trade_id (bigint): expected an integer"),
    "unknown op": (trade_raw('"op":"r"', '"op":"x"'), "unknown op 'x'"),
    "integer in timestamptz": (trade_with(trade_time=1775001604123), "integer 1775001604123 in a time column"),
    "JSON number in decimal": (trade_raw('"price":"0.00001000"', '"price":0.00001000'),
                               "JSON number 0.00001000 in a decimal column"),
    "5000-digit decimal": (trade_with(price="9" * 5000), "decimal of 5000 digits: the Cassandra driver converts"),
    "scale beyond int32": (trade_with(price="1e-3000000000"), "does not fit Cassandra decimal's 32-bit scale"),
    "huge JSON integer": (trade_raw('"trade_id":9000000001', '"trade_id":' + "9" * 5000), "5000 digits"),
    "oversized row": (trade_with(symbol="S" * (2 * MAX_WRITE_BYTES)), "exceeds the 1048576-byte bound"),
    "deep nesting": (b"[" * 100_000, "nested too deeply"),
}


@pytest.mark.parametrize("kind", list(POISON))
def test_each_poison_kind_is_a_dead_letter_with_its_reason(kind):
    value, reason = POISON[kind]
    msg = Message(TRADE.topic, 0, 7, TRADE.key, value)
    p = plan([msg, TRADE], WRITTEN)
    assert [w.offset for w in p.writes] == [TRADE.offset]  # the valid message still goes through
    (dead,) = p.dead_letters
    assert dead.message is msg and reason in dead.error, dead.error
    assert len(dead.error) <= MAX_ERROR_CHARS
    assert p.counts[TRADE.topic]["dead_letter"] == 1


def test_an_unexpected_error_in_the_decoder_is_a_dead_letter_not_a_crash(monkeypatch):
    def broken(topic, key, value):
        raise KeyError("a bug")
    monkeypatch.setattr(sink_module, "decode", broken)
    p = plan([TRADE], WRITTEN, fast=False)
    assert not p.writes and "unexpected KeyError while decoding" in p.dead_letters[0].error


def test_a_dead_letter_of_a_huge_message_is_cut_with_its_size_and_digest():
    value = b'{"op": "c", "after": "' + b"x" * (5 << 20) + b'"}'  # 5 MiB, as produced with gzip in issue 9
    key = b"k" * (DEAD_LETTER_MAX_KEY + 10)
    received = WRITTEN
    params = dict(zip(DEAD_LETTER_COLUMNS, DeadLetter(Message("t", 2, 9, key, value), "why").params(received)))
    assert params["payload"] == value[:DEAD_LETTER_MAX_PAYLOAD] and params["payload_size"] == len(value)
    assert params["payload_sha256"] == hashlib.sha256(value).hexdigest()
    assert params["kafka_key"] == key[:DEAD_LETTER_MAX_KEY] and params["kafka_key_size"] == len(key)
    assert params["kafka_key_sha256"] == hashlib.sha256(key).hexdigest()
    assert params["error"].startswith("why [key cut to 65536 of 65546 bytes; payload cut to 1048576 of ")
    assert "partition 2 offset 9" in params["error"]
    stored = sum(len(v) for v in params.values() if isinstance(v, (bytes, str)))
    assert stored < 2 << 20  # far below Cassandra's 4 MiB request limit


def test_a_small_dead_letter_is_whole_and_a_null_value_has_no_size():
    params = dict(zip(DEAD_LETTER_COLUMNS, DeadLetter(Message("t", 0, 1, None, b"{"), "why").params(WRITTEN)))
    assert (params["payload"], params["payload_size"], params["error"]) == (b"{", 1, "why")
    assert params["kafka_key"] is params["kafka_key_size"] is params["kafka_key_sha256"] is None
    long = DeadLetter(Message("t", 0, 1, None, b"{"), "\ud800" + "e" * 10_000).params(WRITTEN)
    error = dict(zip(DEAD_LETTER_COLUMNS, long))["error"]
    assert len(error) <= MAX_ERROR_CHARS + 10 and error.encode("utf-8")  # storable text


def test_batches_are_cut_by_bytes_too():
    writes = [Write("recent_trades", False, ("A", 1), (i,), "t", i, size=400_000) for i in range(7)]
    assert [len(b) for b in batches_by_partition(writes)] == [2, 2, 2, 1]


class _Bound:
    def __init__(self, values):
        self.values = values


class _Prepared:
    def bind(self, params):
        if params[0] == "refuse":
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
        return _Bound([b"x" * params[1]])


def test_rows_the_driver_refuses_or_that_serialize_too_large_become_dead_letters():
    sink = object.__new__(CassandraSink)
    sink.upserts, sink.deletes = {"recent_trades": _Prepared()}, {}
    msg = lambda n: Message("t", 0, n, None, b"{}")  # noqa: E731
    ok = Write("recent_trades", False, ("A",), ("fine", 10), "t", 1, message=msg(1), op="c")
    refused = Write("recent_trades", False, ("A",), ("refuse", 10), "t", 2, message=msg(2), op="c")
    large = Write("recent_trades", False, ("A",), ("big", MAX_WRITE_BYTES + 1), "t", 3, message=msg(3), op="u")
    from collections import Counter
    p = sink_module.Plan([ok, refused, large], [], {"t": Counter({"c": 2, "u": 1})})
    bound = sink.bind_all(p)
    assert [w for w, _ in bound] == p.writes == [ok]
    assert [d.message.offset for d in p.dead_letters] == [2, 3]
    assert "cannot write this row: ValueError: Exceeds the limit" in p.dead_letters[0].error
    assert "exceeds the 1048576-byte bound" in p.dead_letters[1].error
    assert dict(p.counts["t"]) == {"c": 1, "u": 0, "dead_letter": 2}


def test_a_batch_releases_its_rows_once_written():
    # The driver's finished futures are cyclic garbage that keep their batch: its rows must not wait for
    # the cyclic collector (~1.5 us a row of collection once the task ends).
    query = pytest.importorskip("cassandra.query")

    class Prepared:
        def bind(self, params):
            statement = query.SimpleStatement(f"INSERT {params[0]}")
            statement.values = [b"x" * params[1]]
            return statement

    sink = object.__new__(CassandraSink)
    sink.upserts, sink.deletes = {"recent_trades": Prepared()}, {}
    sent: list = []

    def execute(requests, refusable=True):
        sent.extend((request, len(request)) for request, _ in requests)
        return {}

    sink.execute = execute
    from collections import Counter
    writes = [Write("recent_trades", False, ("A",), (f"row{i}", 10), "t", i, op="c") for i in range(3)]
    sink.apply(sink_module.Plan(writes, [], {"t": Counter({"c": 3})}))
    assert [n for _, n in sent] == [3]
    assert len(sent[0][0]) == 0


def truncate_message(lsn: int, offset: int, partition: int = 0) -> Message:
    """The documented truncate event (tests/fixtures/debezium/documented_truncate.json) at another LSN."""
    rec = json.loads((FIXTURES / "documented_truncate.json").read_text())["records"][0]
    doc = json.loads(rec["value"])
    doc["source"]["lsn"] = lsn
    return Message(rec["topic"], partition, offset, None, json.dumps(doc).encode())


def test_a_truncate_is_planned_once_per_table_at_its_highest_lsn_beside_the_row_writes():
    rows = messages("recent_trades")  # r, u, c, d, tombstone of the captured rows
    lsns = [json.loads(m.value)["source"]["lsn"] for m in rows if m.value]
    low, high = min(lsns) - 10, max(lsns) + 10
    p = plan([truncate_message(low, 90), *rows, truncate_message(high, 91)], WRITTEN)
    assert len(p.writes) == 4 and not p.dead_letters  # the row changes are written as before
    (t,) = p.truncates.values()
    assert (t.table, t.lsn, [m.offset for m in t.messages]) == ("recent_trades", high, [90, 91])
    assert p.counts["binance.binance.recent_trades"]["t"] == 2


def test_a_truncate_from_a_topic_of_several_partitions_is_refused_as_a_dead_letter():
    p = plan([truncate_message(500, 3, partition=1), *messages("recent_trades")], WRITTEN)
    kept = plan([truncate_message(500, 3)], WRITTEN)
    refuse_truncates(kept, lambda topic: 1)
    assert set(kept.truncates) == {"recent_trades"} and not kept.dead_letters
    refuse_truncates(p, lambda topic: 2)
    assert not p.truncates and len(p.writes) == 4
    (dl,) = p.dead_letters
    assert dl.message.offset == 3 and "TRUNCATE of recent_trades refused: the topic has 2 partitions" in dl.error
    counts = p.counts["binance.binance.recent_trades"]
    assert counts["t"] == 0 and counts["dead_letter"] == 1


def test_the_kafka_source_reads_each_partition_in_one_task():
    # A truncate is applied after the writes of its own task only: Spark must not split a Kafka partition.
    opts = kafka_options(job_settings())
    assert not {"minPartitions", "maxRecordsPerPartition"} & set(opts), opts


def test_a_task_drops_its_messages_before_the_cyclic_collector_comes_back(monkeypatch):
    # The first collection after the collector is re-enabled walks every container allocated while it was
    # off and still alive; a task's messages alive at that moment made each worker spend ~0.3 s per task in
    # full collections. gc.get_count()[0] at re-enable counts those containers.
    import gc

    pa = pytest.importorskip("pyarrow")
    n = 20_000
    table = pa.RecordBatch.from_arrays(
        [pa.array(["t"] * n), pa.array([0] * n, pa.int32()), pa.array(range(n), pa.int64()),
         pa.array([b"k"] * n), pa.array([b"v"] * n)], names=["topic", "partition", "offset", "key", "value"])
    seen: list[int] = []
    real_enable = gc.enable

    def enable() -> None:
        seen.append(gc.get_count()[0])
        real_enable()

    monkeypatch.setattr(sink_module.gc, "enable", enable)
    monkeypatch.setattr(sink_module, "write_messages", lambda messages, target, batch: [("t", "c", len(messages))])
    was_enabled = gc.isenabled()
    real_enable()
    try:
        out = list(sink_module.write_arrow([table], target=None))
    finally:
        if not was_enabled:
            gc.disable()
    assert out[0].column(2).to_pylist() == [n]
    assert len(seen) == 1 and seen[0] < n // 10, seen


def test_a_worker_takes_jars_off_its_import_path_and_keeps_the_zips(monkeypatch, tmp_path):
    import sys
    import zipfile

    jar, package = tmp_path / "spark-core_2.12.jar", tmp_path / "pyspark.zip"
    for archive in (jar, package):
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("org/apache/Thing.class" if archive == jar else "mod_in_zip.py", b"x = 1\n")
    monkeypatch.setattr(sys, "path", [str(package), *sys.path, str(jar)])
    monkeypatch.setattr(sys, "path_importer_cache", dict(sys.path_importer_cache))
    __import__("importlib").util.find_spec("no_such_module_anywhere")  # makes an importer per path entry
    sys.path_importer_cache[f"{jar}/org"] = sys.path_importer_cache[str(jar)]
    sink_module.drop_jars_from_import_path()
    assert str(jar) not in sys.path and str(package) in sys.path
    assert not [k for k in sys.path_importer_cache if k.startswith(str(jar))]
    assert str(package) in sys.path_importer_cache
