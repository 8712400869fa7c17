"""The Debezium envelope decoder on events recorded from the real connector (Debezium 3.4.3, pgoutput;
tests/fixtures/debezium/capture.py), in both JSON layouts, plus malformed input."""

from __future__ import annotations

import base64
import copy
import json
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from binance_cdc import datasets
from binance_cdc.stream.debezium import Change, DecodeError, Tombstone, Truncate, convert_value, decode

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "debezium"
SYMBOL = "TCAPTUREUSDT"  # what capture.py inserted
UTC = timezone.utc
PYTHON_TYPES = {"text": str, "decimal": Decimal, "timestamp": datetime, "bigint": int, "int": int,
                "boolean": bool, "date": date}


def records(variant: str, table: str) -> list[dict]:
    return json.loads((FIXTURES / f"{variant}_{table}.json").read_text())


def decode_record(rec: dict):
    enc = lambda s: None if s is None else s.encode("utf-8")  # noqa: E731 - Kafka hands bytes
    return decode(rec["topic"], enc(rec["key"]), enc(rec["value"]))


def decoded(variant: str, table: str) -> list:
    return [decode_record(r) for r in records(variant, table)]


def shape(results) -> list[str]:
    return ["tombstone" if isinstance(r, Tombstone) else r.op for r in results]


# capture.py: snapshot of row 1, update its first decimal column, insert row 2, delete row 1 (d + tombstone);
# latest_prices instead inserts row 2 after the delete and changes its primary key (d + tombstone + c).
# order_book's first decimal column is `price`, part of its key: that update is itself d + tombstone + c,
# and the later delete by the old key finds nothing.
EXPECTED_SHAPES = {
    "recent_trades": ["r", "u", "c", "d", "tombstone"],
    "order_book": ["r", "d", "tombstone", "c", "c"],
    "klines": ["r", "u", "c", "d", "tombstone"],
    "daily_ticker": ["r", "u", "c", "d", "tombstone"],
    "latest_prices": ["r", "u", "d", "tombstone", "c", "d", "tombstone", "c"],
}


@pytest.mark.parametrize("variant", ["plain", "schema"])
@pytest.mark.parametrize("table", list(datasets.DATASETS))
def test_recorded_events_decode_to_complete_typed_rows(variant, table):
    results = decoded(variant, table)
    assert shape(results) == EXPECTED_SHAPES[table]
    dataset = datasets.get(table)
    for result in results:
        assert result.dataset is dataset
        if isinstance(result, Tombstone):
            assert result.key is not None and result.key["symbol"].startswith(SYMBOL)
            continue
        assert set(result.row) == set(dataset.column_names)
        for col in dataset.columns:
            assert type(result.row[col.name]) is PYTHON_TYPES[col.kind], (col.name, result.row[col.name])
            if col.kind == "timestamp":
                assert result.row[col.name].utcoffset().total_seconds() == 0
        assert result.lsn > 0 and result.tx_id is not None and result.tx_id.isdigit()
        assert result.source_ts.tzinfo is UTC and result.event_ts >= result.source_ts


@pytest.mark.parametrize("table", list(datasets.DATASETS))
def test_both_layouts_give_the_same_rows(table):
    plain = [r.row for r in decoded("plain", table) if isinstance(r, Change)]
    wrapped = [r.row for r in decoded("schema", table) if isinstance(r, Change)]
    assert plain == wrapped
    # Decimal equality ignores scale: compare the exact text too.
    assert [{k: str(v) for k, v in row.items()} for row in plain] == \
        [{k: str(v) for k, v in row.items()} for row in wrapped]


def test_snapshot_read_values_are_exact():
    snap = decoded("plain", "latest_prices")[0]
    assert snap.op == "r"
    assert snap.row == {"symbol": SYMBOL, "price": Decimal("67012.34000000"),
                        "observed_at": datetime(2026, 4, 1, 0, 0, 1, 123000, tzinfo=UTC)}
    assert str(snap.row["price"]) == "67012.34000000"  # trailing zeros kept
    assert (snap.lsn, snap.tx_id) == (26823376, "822")
    assert snap.source_ts == datetime.fromtimestamp(1795458605823 / 1000, UTC)
    assert snap.event_ts == datetime.fromtimestamp(1795458606098 / 1000, UTC)


def test_large_decimals_are_not_rounded():
    snap = decoded("plain", "klines")[0]
    assert str(snap.row["high_price"]) == "12345678901234567890.123456789"
    assert str(snap.row["low_price"]) == "2820413769.36626970"
    assert snap.row["num_trades"] == 9000000010


def test_update_carries_after_and_a_later_lsn():
    snap, update = decoded("plain", "recent_trades")[:2]
    assert update.op == "u" and update.lsn > snap.lsn
    assert update.row["price"] == Decimal("42.00000100")
    assert {k: v for k, v in update.row.items() if k != "price"} == \
        {k: v for k, v in snap.row.items() if k != "price"}


def test_delete_names_the_row_from_before_and_its_bucket():
    results = decoded("plain", "recent_trades")
    delete = results[3]
    assert delete.is_delete
    assert delete.row["trade_id"] == 9000000001 and delete.row["price"] == Decimal("42.00000100")
    # trade_time 2026-04-01T00:00:04.123Z: the bucket is that UTC day
    assert delete.cql_key() == {"symbol": SYMBOL, "trade_date": date(2026, 4, 1), "trade_id": 9000000001}


def test_primary_key_change_is_a_delete_then_a_create_at_the_same_lsn():
    results = decoded("plain", "latest_prices")
    delete, tomb, create = results[5:]
    assert delete.op == "d" and delete.row["symbol"] == SYMBOL
    assert isinstance(tomb, Tombstone) and tomb.key == {"symbol": SYMBOL}
    assert create.op == "c" and create.row["symbol"] == SYMBOL + "2"
    assert delete.lsn == create.lsn  # different keys, so one timestamp for both is harmless


def test_cql_row_has_exactly_the_cassandra_columns():
    kline = decoded("plain", "klines")[0]
    written = datetime(2026, 5, 1, tzinfo=UTC)
    row = kline.cql_row(written)
    assert set(row) == set(datasets.KLINES.cql_columns)
    assert row["open_month"] == date(2026, 4, 1)
    assert (row["cdc_op"], row["cdc_source_lsn"], row["cdc_written_at"]) == ("r", kline.lsn, written)
    assert kline.cql_key() == {"symbol": SYMBOL, "interval": "30m", "open_month": date(2026, 4, 1),
                               "open_time": datetime(2026, 4, 1, 0, 0, 1, 123000, tzinfo=UTC)}
    lp = decoded("plain", "latest_prices")[0]
    assert lp.cql_key() == {"symbol": SYMBOL}


# --- schema-wrapper logical types the string/adaptive config does not emit, on a real envelope ---

def wrapped_snapshot(table: str) -> tuple[str, dict]:
    rec = records("schema", table)[0]
    return rec["topic"], json.loads(rec["value"])


def with_field(doc: dict, column: str, schema_patch: dict, value) -> bytes:
    doc = copy.deepcopy(doc)
    for part in doc["schema"]["fields"]:
        if part["field"] in ("before", "after"):
            for field in part["fields"]:
                if field["field"] == column:
                    field.clear()
                    field.update({"field": column, "optional": False, **schema_patch})
    doc["payload"]["after"][column] = value
    return json.dumps(doc).encode()


def unscaled_b64(unscaled: int) -> str:
    length = (unscaled.bit_length() + 8) // 8
    return base64.b64encode(unscaled.to_bytes(length, "big", signed=True)).decode()


def test_connect_decimal_base64_with_scale():
    topic, doc = wrapped_snapshot("latest_prices")
    value = with_field(doc, "price", {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                                      "parameters": {"scale": "8"}}, unscaled_b64(6701234000000))
    assert str(decode(topic, None, value).row["price"]) == "67012.34000000"
    negative = with_field(doc, "price", {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                                         "parameters": {"scale": "3"}}, unscaled_b64(-1250))
    assert str(decode(topic, None, negative).row["price"]) == "-1.250"


def test_variable_scale_decimal():
    topic, doc = wrapped_snapshot("latest_prices")
    value = with_field(doc, "price", {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"},
                       {"scale": 8, "value": unscaled_b64(282041376936626970)})
    assert str(decode(topic, None, value).row["price"]) == "2820413769.36626970"


@pytest.mark.parametrize("logical, raw", [
    ("io.debezium.time.MicroTimestamp", 1775001601123000),
    ("io.debezium.time.Timestamp", 1775001601123),
    ("org.apache.kafka.connect.data.Timestamp", 1775001601123),
    ("io.debezium.time.NanoTimestamp", 1775001601123000000),
    ("io.debezium.time.ZonedTimestamp", "2026-04-01T02:00:01.123+02:00"),
])
def test_time_logical_types(logical, raw):
    topic, doc = wrapped_snapshot("latest_prices")
    value = with_field(doc, "observed_at", {"type": "int64", "name": logical}, raw)
    assert decode(topic, None, value).row["observed_at"] == datetime(2026, 4, 1, 0, 0, 1, 123000, tzinfo=UTC)


# Issue 9, finding 3: the plain layout is our connectors' encoding (ZonedTimestamp, decimal.handling.mode=
# string). These two replaced tests that accepted a bare integer as microseconds and a JSON number as exact.
@pytest.mark.parametrize("raw", [1775001601123456, 1775001601123])
def test_bare_integer_time_without_schema_is_refused_not_read_as_microseconds(raw):
    # 1775001601123 is 2026-04-01 in epoch milliseconds; read as microseconds it was 1970-01-21.
    with pytest.raises(TypeError, match="integer .* in a time column without a schema"):
        convert_value("timestamp", raw)
    topic, doc = plain_event()
    doc["after"]["trade_time"] = raw
    assert "unit (ms, us, ns) is unknown" in error_of(topic, doc)


def test_json_number_in_a_decimal_column_without_schema_is_refused():
    topic, doc = wrapped_snapshot("latest_prices")
    text = json.dumps(doc["payload"]).replace('"67012.34000000"', "67012.34000000")
    with pytest.raises(DecodeError, match="JSON number 67012.34000000.* may have lost precision"):
        decode(topic, None, text.encode())
    with pytest.raises(TypeError, match="JSON number"):
        convert_value("decimal", 5)


def test_json_numbers_never_become_floats_under_a_numeric_decimal_schema():
    # JsonConverter decimal.format=NUMERIC writes org.apache.kafka.connect.data.Decimal as a JSON number:
    # exact, read at the schema's scale (trailing zeros restored), never through a float.
    topic, doc = wrapped_snapshot("latest_prices")
    schema = {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "8"}}
    value = with_field(doc, "price", schema, "PLACEHOLDER").replace(b'"PLACEHOLDER"', b"67012.34")
    assert str(decode(topic, None, value).row["price"]) == "67012.34000000"
    finer = with_field(doc, "price", schema, "PLACEHOLDER").replace(b'"PLACEHOLDER"', b"0.123456789")
    with pytest.raises(DecodeError, match="does not fit the schema's scale 8"):
        decode(topic, None, finer)


# --- malformed input: every case is a DecodeError naming the topic and the cause ---

def plain_event(table: str = "recent_trades", index: int = 0) -> tuple[str, dict]:
    rec = records("plain", table)[index]
    return rec["topic"], json.loads(rec["value"])


def error_of(topic: str, value, key=None) -> str:
    with pytest.raises(DecodeError) as err:
        decode(topic, key, value if value is None or isinstance(value, bytes) else json.dumps(value).encode())
    assert topic in str(err.value)
    return str(err.value)


def test_unknown_topic():
    assert "unknown topic" in error_of("binance.binance.trade_gaps", {"op": "c"})
    assert "unknown topic" in error_of("recent_trades", {"op": "c"})


def test_unknown_op():
    topic, doc = plain_event()
    doc["op"] = "m"  # Debezium's logical decoding message: not a row change, and never captured here
    assert "unknown op 'm'" in error_of(topic, doc)


def truncate_records() -> list[dict]:
    return json.loads((FIXTURES / "documented_truncate.json").read_text())["records"]


@pytest.mark.parametrize("index", range(3), ids=["plain", "plain-without-images", "schema"])
def test_documented_truncate_event_decodes_to_a_truncate_of_its_table_at_its_lsn(index):
    result = decode_record(truncate_records()[index])
    assert isinstance(result, Truncate) and result.op == "t"
    assert result.dataset is datasets.RECENT_TRADES and result.topic == "binance.binance.recent_trades"
    assert result.lsn == 46523128 and result.tx_id == "556"
    assert result.source_ts == datetime(2026, 4, 1, 0, 0, 0, 863000, tzinfo=UTC)
    assert result.event_ts == datetime(2026, 4, 1, 0, 0, 0, 961000, tzinfo=UTC)


def test_truncate_with_a_row_image_or_without_an_lsn_is_refused():
    rec = truncate_records()[0]
    doc = json.loads(rec["value"])
    doc["after"] = {"symbol": "X"}
    assert "op 't' (truncate) with a 'after' row" in error_of(rec["topic"], doc)
    doc = json.loads(rec["value"])
    del doc["source"]["lsn"]
    assert "source.lsn missing" in error_of(rec["topic"], doc)


def test_missing_after_and_before():
    topic, doc = plain_event()
    doc["after"] = None
    assert "op 'r' without 'after'" in error_of(topic, doc)
    topic, doc = plain_event(index=3)
    del doc["before"]
    assert "op 'd' without 'before'" in error_of(topic, doc)


def test_missing_null_and_extra_columns():
    topic, doc = plain_event()
    del doc["after"]["qty"]
    assert "lacks column(s) qty" in error_of(topic, doc)
    topic, doc = plain_event()
    doc["after"]["price"] = None
    assert "after.price is null" in error_of(topic, doc)
    topic, doc = plain_event()
    doc["after"]["fee"] = "0.1"
    assert "column(s) fee not declared" in error_of(topic, doc)


@pytest.mark.parametrize("bad", ["12,5", "", "1.2.3", "NaN", "Infinity", " 1", True, [1]])
def test_non_decimal_values(bad):
    topic, doc = plain_event()
    doc["after"]["price"] = bad
    assert "after.price (decimal)" in error_of(topic, doc)


@pytest.mark.parametrize("bad", ["yesterday", "2026-04-01T00:00:01", "2026-13-01T00:00:00Z", 1.5, False])
def test_unparsable_times(bad):
    topic, doc = plain_event()
    doc["after"]["trade_time"] = bad
    assert "after.trade_time (timestamp)" in error_of(topic, doc)


@pytest.mark.parametrize("column, bad", [("trade_id", "9000000001"), ("trade_id", True), ("trade_id", 2 ** 63),
                                         ("is_buyer_maker", 1), ("symbol", 5)])
def test_wrong_json_types(column, bad):
    topic, doc = plain_event()
    doc["after"][column] = bad
    assert f"after.{column}" in error_of(topic, doc)


def test_int_range():
    topic, doc = plain_event("order_book")
    doc["after"]["level"] = 2 ** 31
    assert "out of range for int" in error_of(topic, doc)


def test_malformed_json_and_bytes():
    topic = "binance.binance.klines"
    assert "malformed JSON in value" in error_of(topic, b'{"op": "c", ')
    assert "malformed JSON in value" in error_of(topic, b"\xff\xfe")
    assert "malformed JSON in value" in error_of(topic, b'{"price": NaN}')
    assert "not a Debezium envelope" in error_of(topic, b"[1, 2]")
    assert "malformed JSON in key" in error_of(topic, None, key=b"{")


def test_missing_metadata():
    topic, doc = plain_event()
    del doc["source"]["lsn"]
    assert "source.lsn" in error_of(topic, doc)
    topic, doc = plain_event()
    del doc["source"]
    assert "no source block" in error_of(topic, doc)
    topic, doc = plain_event()
    del doc["ts_ms"], doc["ts_us"], doc["ts_ns"]
    assert "neither ts_ms nor ts_us" in error_of(topic, doc)


@pytest.mark.parametrize("field", ["source.ts_ms", "ts_ms", "after.trade_time"])
def test_times_outside_the_datetime_range_are_decode_errors_not_crashes(field):
    # An OverflowError here would fail the Spark task and, after retries, stop the whole stream.
    topic, doc = plain_event()
    huge = 10**20  # beyond year 9999 whether read as milliseconds or microseconds
    if field == "source.ts_ms":
        doc["source"]["ts_ms"] = huge
    elif field == "ts_ms":
        doc["ts_ms"] = huge
    else:  # a bare integer time is refused without a schema (finding 3): give it its unit
        topic, wrapped = wrapped_snapshot("recent_trades")
        value = with_field(wrapped, "trade_time", {"type": "int64", "name": "io.debezium.time.MicroTimestamp"},
                           huge)
        assert "outside the datetime range" in error_of(topic, value)
        return
    assert "outside the datetime range" in error_of(topic, doc)


# --- issue 9, finding 3: only what the configured encodings produce, in the schema's units and precision ---

def test_base64_decimals_keep_every_digit():
    # numeric(38,18) at full precision: Decimal(unscaled).scaleb(-18) in Python's default context rounded
    # this to 28 significant digits.
    topic, doc = wrapped_snapshot("latest_prices")
    unscaled = 12345678901234567890123456789012345678
    value = with_field(doc, "price", {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                                      "parameters": {"scale": "18", "connect.decimal.precision": "38"}},
                       unscaled_b64(unscaled))
    assert str(decode(topic, None, value).row["price"]) == "12345678901234567890.123456789012345678"
    variable = with_field(doc, "price", {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"},
                          {"scale": 18, "value": unscaled_b64(unscaled)})
    assert str(decode(topic, None, variable).row["price"]) == "12345678901234567890.123456789012345678"


def test_decimal_beyond_the_schemas_precision_is_refused():
    topic, doc = wrapped_snapshot("latest_prices")
    value = with_field(doc, "price", {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                                      "parameters": {"scale": "2", "connect.decimal.precision": "5"}},
                       unscaled_b64(1234567))
    assert "more digits than the schema's precision 5" in error_of(topic, value)


@pytest.mark.parametrize("schema, raw, reason", [
    ({"type": "double"}, "PLACEHOLDER", "not an exact decimal encoding"),  # decimal.handling.mode=double
    ({"type": "string"}, "PLACEHOLDER", "the schema says string"),  # a number where the schema says string
    ({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal"}, "AQ==", "without a scale"),
    ({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "x"}}, "AQ==",
     "scale parameter is not an integer"),
    ({"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"}, {"scale": 1.5, "value": "AQ=="},
     "expected an integer"),
])
def test_decimal_schemas_that_are_not_exact_are_refused(schema, raw, reason):
    topic, doc = wrapped_snapshot("latest_prices")
    value = with_field(doc, "price", schema, raw).replace(b'"PLACEHOLDER"', b"67012.34")
    assert reason in error_of(topic, value)


@pytest.mark.parametrize("schema, raw, reason", [
    ({"type": "int64"}, 1775001601123, "expected io.debezium.time.ZonedTimestamp"),  # no logical type
    ({"type": "int64", "name": "io.debezium.time.MicroTimestamp"}, "2026-04-01T00:00:01Z", "expected an epoch"),
    ({"type": "int32", "name": "io.debezium.time.Date"}, 20544, "expected io.debezium.time.ZonedTimestamp"),
])
def test_time_schemas_decide_the_unit_or_refuse(schema, raw, reason):
    topic, doc = wrapped_snapshot("latest_prices")
    assert reason in error_of(topic, with_field(doc, "observed_at", schema, raw))


def test_tx_id_is_source_txid_with_or_without_transaction_metadata():
    topic, doc = plain_event()
    plain = decode(topic, None, json.dumps(doc).encode())
    doc["transaction"] = {"id": f"{doc['source']['txId']}:{doc['source']['lsn']}", "total_order": 1,
                          "data_collection_order": 1}
    with_metadata = decode(topic, None, json.dumps(doc).encode())
    assert plain.tx_id == with_metadata.tx_id == str(doc["source"]["txId"])
    doc["source"]["txId"] = "822"
    assert "source.txId is not a non-negative integer" in error_of(topic, doc)


# --- issue 9, finding 2: nothing a message holds makes the decoder crash or write an oversized reason ---

def test_huge_integers_are_decode_errors_not_crashes():
    topic, doc = plain_event()
    text = json.dumps(doc).replace(str(doc["after"]["trade_id"]), "9" * 5000).encode()
    assert "JSON integer of 5000 digits" in error_of(topic, text)


def test_huge_base64_decimal_is_refused_before_conversion():
    topic, doc = wrapped_snapshot("latest_prices")
    value = with_field(doc, "price", {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"},
                       {"scale": 0, "value": unscaled_b64(10 ** 20000)})
    assert "more than 4096 bytes" in error_of(topic, value)


def test_deeply_nested_json_is_a_decode_error_not_a_recursion_crash():
    assert "nested too deeply" in error_of("binance.binance.klines", b"[" * 200_000)


def test_lone_surrogate_text_is_refused():
    topic, doc = plain_event()
    text = json.dumps(doc).replace('"TCAPTUREUSDT"', '"\\ud800"', 1).encode()
    assert "not valid Unicode" in error_of(topic, text)


@pytest.mark.parametrize("column, bad", [("price", "1" * 100_000 + "x"), ("symbol", ["x" * 100_000]),
                                         ("trade_time", "y" * 100_000)])
def test_reasons_stay_short_whatever_the_value(column, bad):
    topic, doc = plain_event()
    doc["after"][column] = bad
    assert len(error_of(topic, doc)) < 400


def test_huge_exponent_is_a_decode_error():
    topic, doc = plain_event()
    doc["after"]["price"] = "1e9999999999999999999999"
    assert "exponent out of range" in error_of(topic, doc)
