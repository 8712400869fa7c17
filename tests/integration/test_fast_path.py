"""The Spark SQL fast path (binance_cdc.fast_path) against the reference Python decoder, on a local Spark.

For every recorded Debezium event (tests/fixtures/debezium, both JSON layouts) and synthetic variants of
them (finer times, odd decimals, missing/null/extra/reordered columns, wrong JSON types, deletes,
tombstones, wrappers, malformed or trailing JSON, invalid UTF-8, duplicate keys...), the test states the
expected route and checks it; and every message the fast path takes must give exactly the Cassandra row
of binance_cdc.debezium.decode(...).cql_row (decimals compared as text, so with their scale; times as UTC
instants; the LSN as write time). Needs no service: Spark runs in this process (local[1], UTC), which is
why it lives under tests/integration.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from binance_cdc import datasets, fast_path
from binance_cdc.cassandra_sink import millis
from binance_cdc.debezium import Change, DecodeError, decode

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "debezium"
WRITTEN = datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
UTC = timezone.utc
FAST, FALLBACK = "fast", "fallback"
KAFKA_SCHEMA = "topic string, partition int, offset long, key binary, value binary"


@pytest.fixture(scope="module")
def spark(settings):
    from binance_cdc.spark_session import build_session

    session = build_session(settings, "test-fast-path", master="local[1]",
                            extra_conf={"spark.ui.enabled": "false", "spark.driver.memory": "512m"})
    assert session.conf.get("spark.sql.session.timeZone") == "UTC"
    return session


def fixture_records(variant: str) -> list[dict]:
    out = []
    for d in datasets.DATASETS.values():
        out += json.loads((FIXTURES / f"{variant}_{d.name}.json").read_text())
    return out


def first_upsert(table: str) -> dict:
    rec = next(r for r in json.loads((FIXTURES / f"plain_{table}.json").read_text())
               if r["value"] and json.loads(r["value"])["op"] in ("c", "r"))
    return rec


def compact(doc: dict) -> str:
    """As Kafka Connect's JsonConverter writes it: no spaces, key order kept, non-ASCII as is."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def variant(table: str, edit) -> bytes:
    doc = json.loads(first_upsert(table)["value"])
    edit(doc)
    return compact(doc).encode("utf-8")


def set_after(**values):
    def edit(doc):
        doc["after"].update(values)
    return edit


def replace_text(old: str, new: str, table: str = "klines") -> bytes:
    raw = first_upsert(table)["value"]
    assert old in raw, old
    return raw.replace(old, new, 1).encode("utf-8")


def _drop(column):
    def edit(doc):
        del doc["after"][column]
    return edit


def _reorder(doc):
    doc["after"] = dict(reversed(list(doc["after"].items())))


def _extra(doc):
    doc["after"]["unexpected"] = "1"


def _op(op):
    def edit(doc):
        doc["op"] = op
    return edit


def _source(**values):
    def edit(doc):
        doc["source"].update(values)
    return edit


def _transaction(doc):
    doc["transaction"] = {"id": "571:26823376", "total_order": 1, "data_collection_order": 1}


def _wrap(doc):
    doc.clear()
    doc.update({"schema": {"type": "struct", "fields": []}, "payload": {}})


KLINES_TOPIC = "binance.binance.klines"
TS_KLINE = '"open_time":"2026-04-01T00:00:01.123000Z"'
KLINE_PRICE = '"open_price":"-1.250"'
# (case id, topic, value bytes or None, expected route)
SYNTHETIC = [
    ("millisecond time, 3 digits", KLINES_TOPIC, replace_text(TS_KLINE, TS_KLINE.replace(".123000Z", ".123Z")),
     FAST),
    ("time with tenths", KLINES_TOPIC, replace_text(TS_KLINE, TS_KLINE.replace(".123000Z", ".1Z")), FAST),
    ("time without fraction", KLINES_TOPIC, replace_text(TS_KLINE, TS_KLINE.replace(".123000Z", "Z")), FAST),
    ("sub-millisecond time", KLINES_TOPIC, replace_text(TS_KLINE, TS_KLINE.replace(".123000Z", ".123400Z")),
     FALLBACK),
    ("time with +00:00", KLINES_TOPIC, replace_text(TS_KLINE, TS_KLINE.replace("Z", "+00:00")), FALLBACK),
    ("invalid date", KLINES_TOPIC, replace_text(TS_KLINE, TS_KLINE.replace("04-01", "02-30")), FALLBACK),
    ("year 0", KLINES_TOPIC, replace_text(TS_KLINE, TS_KLINE.replace("2026", "0000")), FALLBACK),
    ("time as JSON number", KLINES_TOPIC, replace_text(TS_KLINE, '"open_time":1775001601123000'), FALLBACK),
    ("decimal 1e5", KLINES_TOPIC, variant("klines", set_after(open_price="1e5")), FALLBACK),
    ("decimal NaN", KLINES_TOPIC, variant("klines", set_after(open_price="NaN")), FALLBACK),
    ("decimal empty", KLINES_TOPIC, variant("klines", set_after(open_price="")), FALLBACK),
    ("decimal +1", KLINES_TOPIC, variant("klines", set_after(open_price="+1")), FALLBACK),
    ("decimal -0.0", KLINES_TOPIC, variant("klines", set_after(open_price="-0.0")), FAST),
    ("decimal 40 digits", KLINES_TOPIC,
     variant("klines", set_after(open_price="1234567890123456789012345678901234567890.0000000001")), FAST),
    ("decimal as JSON float", KLINES_TOPIC, replace_text(KLINE_PRICE, '"open_price":-1.250'), FALLBACK),
    ("decimal as JSON exponent", KLINES_TOPIC, replace_text(KLINE_PRICE, '"open_price":1.5e3'), FALLBACK),
    ("decimal as JSON integer", KLINES_TOPIC, replace_text(KLINE_PRICE, '"open_price":15'), FALLBACK),
    ("text as JSON number", KLINES_TOPIC, replace_text('"interval":"30m"', '"interval":30'), FALLBACK),
    ("bigint as string", KLINES_TOPIC, replace_text('"num_trades":9000000010', '"num_trades":"9000000010"'),
     FALLBACK),
    ("bigint max", KLINES_TOPIC, replace_text('"num_trades":9000000010', '"num_trades":9223372036854775807'),
     FAST),
    ("bigint overflow", KLINES_TOPIC, replace_text('"num_trades":9000000010', '"num_trades":9223372036854775808'),
     FALLBACK),
    ("bigint as float", KLINES_TOPIC, replace_text('"num_trades":9000000010', '"num_trades":9000000010.0'),
     FALLBACK),
    ("boolean as string", KLINES_TOPIC, replace_text('"is_closed":true', '"is_closed":"true"'), FALLBACK),
    ("int overflow", "binance.binance.order_book",
     replace_text('"level":1', '"level":2147483648', "order_book"), FALLBACK),
    ("missing column", KLINES_TOPIC, variant("klines", _drop("volume")), FALLBACK),
    ("null column", KLINES_TOPIC, variant("klines", set_after(volume=None)), FALLBACK),
    ("extra column", KLINES_TOPIC, variant("klines", _extra), FALLBACK),
    ("columns in another order", KLINES_TOPIC, variant("klines", _reorder), FALLBACK),
    ("unicode and escapes in text", KLINES_TOPIC, variant("klines", set_after(symbol='TÄ"\\😀USDT')), FAST),
    ("escaped ASCII in text", KLINES_TOPIC, replace_text('"interval":"30m"', '"interval":"\\u0033\\u0030m"'),
     FALLBACK),
    ("op d", KLINES_TOPIC, variant("klines", _op("d")), FALLBACK),
    ("op x", KLINES_TOPIC, variant("klines", _op("x")), FALLBACK),
    ("op missing", KLINES_TOPIC, variant("klines", lambda doc: doc.pop("op")), FALLBACK),
    ("transaction id", KLINES_TOPIC, variant("klines", _transaction), FAST),
    ("txId as string", KLINES_TOPIC, variant("klines", _source(txId="822")), FAST),
    ("txId null", KLINES_TOPIC, variant("klines", _source(txId=None)), FAST),
    ("txId as object", KLINES_TOPIC, variant("klines", _source(txId={"a": 1})), FALLBACK),
    ("negative lsn", KLINES_TOPIC, variant("klines", _source(lsn=-1)), FALLBACK),
    ("lsn as string", KLINES_TOPIC, variant("klines", _source(lsn="26823376")), FALLBACK),
    ("no ts_ms", KLINES_TOPIC, variant("klines", lambda doc: doc.pop("ts_ms")), FALLBACK),
    ("source.ts_ms out of datetime range", KLINES_TOPIC, variant("klines", _source(ts_ms=10 ** 15)), FALLBACK),
    ("schema/payload wrapper", KLINES_TOPIC, variant("klines", _wrap), FALLBACK),
    ("tombstone", KLINES_TOPIC, None, FALLBACK),
    ("truncated JSON", KLINES_TOPIC, first_upsert("klines")["value"][:-20].encode(), FALLBACK),
    ("trailing data", KLINES_TOPIC, first_upsert("klines")["value"].encode() + b" x", FALLBACK),
    ("trailing bracket", KLINES_TOPIC, first_upsert("klines")["value"].encode() + b"],[1", FALLBACK),
    ("trailing whitespace", KLINES_TOPIC, first_upsert("klines")["value"].encode() + b" \n", FAST),
    ("second object", KLINES_TOPIC, first_upsert("klines")["value"].encode() + b",{}", FALLBACK),
    ("NaN outside the row", KLINES_TOPIC, replace_text('"xmin":null', '"xmin":NaN'), FALLBACK),
    ("single quotes", KLINES_TOPIC, replace_text('"op":"r"', "'op':'r'"), FALLBACK),
    ("invalid UTF-8 outside the row", KLINES_TOPIC,
     first_upsert("klines")["value"].encode().replace(b'"db":"binance"', b'"db":"bin\xc0\x80ance"'), FALLBACK),
    ("byte order mark", KLINES_TOPIC, b"\xef\xbb\xbf" + first_upsert("klines")["value"].encode(), FALLBACK),
    ("JSON array", KLINES_TOPIC, b"[" + first_upsert("klines")["value"].encode() + b"]", FALLBACK),
    ("duplicate after, last one differs", KLINES_TOPIC,
     replace_text(',"source":', ',"after":{"symbol":"X"},"source":'), FALLBACK),
    ("unknown topic", "binance.binance.unknown_table", first_upsert("klines")["value"].encode(), FALLBACK),
    ("topic is only the suffix", ".binance.klines", first_upsert("klines")["value"].encode(), FALLBACK),
]


def recorded_cases() -> list[tuple]:
    cases = []
    for layout in ("plain", "schema"):
        for rec in fixture_records(layout):
            value = None if rec["value"] is None else rec["value"].encode("utf-8")
            op = None if value is None else json.loads(rec["value"]).get("op") or \
                json.loads(rec["value"])["payload"]["op"]
            expected = FAST if layout == "plain" and op in ("c", "r", "u") else FALLBACK
            cases.append((f"{layout} {rec['topic']}@{rec['offset']} op={op}", rec["topic"], value, expected))
    return cases


CASES = recorded_cases() + SYNTHETIC


def python_row(topic: str, key: bytes | None, value: bytes | None) -> dict | None:
    """What the Python sink would upsert, or None when it would not upsert (delete, tombstone, dead letter)."""
    try:
        result = decode(topic, key, value)
    except DecodeError:
        return None
    if not isinstance(result, Change) or result.is_delete:
        return None
    try:
        for col in result.dataset.columns:
            if col.kind == "timestamp":
                millis(result.row[col.name])
    except ValueError:
        return None
    return {**result.cql_row(WRITTEN), fast_path.WRITETIME_COLUMN: result.lsn}


def comparable(value):
    """Exact comparison form: decimals and text as text, times as UTC ISO text, the rest as is."""
    if isinstance(value, datetime):
        assert value.tzinfo is not None, value
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    if value is None or isinstance(value, (bool, int)):
        return value
    return str(value)


def utc_text(frame):
    """Timestamps leave Spark as UTC text (the session time zone is UTC), never through local time."""
    from pyspark.sql import functions as F

    types = dict(frame.dtypes)
    return frame.select(*[F.date_format(c, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS+00:00").alias(c)
                          if types[c] == "timestamp" else F.col(c) for c in frame.columns])


@pytest.fixture(scope="module")
def routed(spark):
    """({offset: routed row}, {offset: (dataset, Cassandra row as fast_rows gives it)})."""
    from pyspark.sql import functions as F

    rows = [(topic, 0, i, b'{"k":1}', value) for i, (_, topic, value, _) in enumerate(CASES)]
    out = fast_path.route(spark.createDataFrame(rows, KAFKA_SCHEMA)).cache()
    collected = {r["offset"]: r for r in out.collect()}
    fast_rows = {}
    for d in datasets.DATASETS.values():
        col = fast_path.row_column(d)
        mine = out.where(F.col(col).isNotNull())
        written = fast_path.fast_rows(mine, d, WRITTEN)
        assert set(written.columns) == set(d.cql_columns) | {fast_path.WRITETIME_COLUMN}, d.name
        with_offset = utc_text(mine.select("offset", F.col(col).alias("r"))
                               .select("offset", "r.*", F.lit(WRITTEN).cast("timestamp").alias("cdc_written_at")))
        assert with_offset.count() == written.count()
        for r in with_offset.collect():
            values = r.asDict()
            fast_rows[values.pop("offset")] = (d, values)
    return collected, fast_rows


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c[0] for c in CASES])
def test_route_and_row_equal_the_python_decoder(routed, index):
    name, topic, value, expected = CASES[index]
    collected, fast_rows = routed
    row = collected[index]
    route = FAST if row["fast"] else FALLBACK
    assert route == expected, f"{name}: routed {route}, expected {expected}"
    if route == FALLBACK:
        assert row["fallback_value"] == value and all(row[fast_path.row_column(d)] is None
                                                     for d in datasets.DATASETS.values())
        return
    reference = python_row(topic, b'{"k":1}', value)
    assert reference is not None, f"{name}: fast path took a message the Python sink would not upsert"
    assert row["fallback_value"] is None and row["op"] == reference["cdc_op"]
    dataset, fast = fast_rows[index]
    assert dataset.name == row["dataset"]
    expected_columns = set(dataset.cql_columns) | {fast_path.WRITETIME_COLUMN}
    assert set(fast) == expected_columns
    assert {k: comparable(v) for k, v in fast.items()} == {k: comparable(reference[k]) for k in expected_columns}


def test_every_dataset_and_op_is_exercised_on_the_fast_path(routed):
    collected, fast_rows = routed
    seen = {(d.name, collected[i]["op"]) for i, (d, _) in fast_rows.items()}
    for d in datasets.DATASETS.values():
        assert {(d.name, "r"), (d.name, "c")} <= seen, d.name
    assert any(op == "u" for _, op in seen)
