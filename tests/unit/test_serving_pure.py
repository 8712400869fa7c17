"""The pure parts of stage 4: the change-log contract, the bridge's mode choice, COPY formatting with
rejects, the newer-wins statement, reconcile's canonical values and comparison. No services needed."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from binance_cdc import change_log, datasets
from binance_cdc.serve import bridge, reconcile, serving_load
from binance_cdc.serve.cassandra_read import MAX_TOKEN, MIN_TOKEN, Progress, token_ranges
from binance_cdc.settings import PROJECT_ROOT

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
SERVING_SQL = (PROJECT_ROOT / "sql" / "05_serving.sql").read_text()


@pytest.mark.parametrize("dataset", list(datasets.DATASETS.values()), ids=lambda d: d.name)
def test_marks_round_trip_every_key_kind(dataset):
    partition = tuple({"date": date(2026, 4, 1), "text": "BTCUSDT"}[dataset.cql_columns[c]]
                      for c in dataset.cql_partition_key)
    samples = {"bigint": 9007199254740993, "text": "bid", "decimal": Decimal("67012.34000000"),
               "timestamp": datetime(2026, 4, 1, 0, 0, 4, 123000, tzinfo=timezone.utc)}
    key = tuple(samples[dataset.cql_columns[c]] for c in dataset.cql_clustering_key)
    rows = change_log.mark_rows(change_log.BatchRef(uuid.uuid4(), 1234), {(dataset.name, partition): [key]})
    (row,) = rows
    assert row[2] == 1234 and row[1] == 1 and row[3] == dataset.name and row[5] == 0
    assert change_log.decode_partition_key(dataset, row[4]) == partition
    (decoded,) = change_log.decode_clustering_keys(dataset, row[6])
    assert decoded == key
    assert [str(v) for v in decoded] == [str(v) for v in key]  # scale and digits kept


def test_naive_driver_times_are_utc_in_marks():
    naive = datetime(2026, 4, 1, 0, 0, 4, 123000)
    assert change_log.encode_key([naive]) == ["2026-04-01T00:00:04.123+00:00"]


def test_many_keys_are_chunked_and_none_lost():
    keys = [(i,) for i in range(change_log.KEYS_PER_MARK * 2 + 1)]
    rows = change_log.mark_rows(change_log.BatchRef(uuid.uuid4(), 0), {("recent_trades", ("A", date(2026, 1, 1))): keys})
    assert [r[5] for r in rows] == [0, 1, 2]
    back = [k for r in rows for k in change_log.decode_clustering_keys(datasets.RECENT_TRADES, r[6])]
    assert back == keys


def test_a_truncate_is_marked_apart_from_every_partition_key():
    batch = change_log.BatchRef(uuid.uuid4(), 7)
    rows = change_log.mark_rows(batch, {("klines", ("A", "30m", date(2026, 4, 1))): [(NOW,)]}, {"recent_trades": 4242})
    (truncate,) = [r for r in rows if r[3] == "recent_trades"]
    assert truncate == (batch.stream_id, 0, 7, "recent_trades", change_log.TRUNCATE_MARK, 0, '{"truncate_lsn":4242}')
    # The bridge tells it from a real mark by partition_key alone: a real one is always a JSON array.
    assert all(r[4].startswith("[") for r in rows if r[3] == "klines")
    with pytest.raises(ValueError):
        change_log.decode_partition_key(datasets.RECENT_TRADES, change_log.TRUNCATE_MARK)


def test_a_malformed_mark_is_an_error_not_a_guess():
    with pytest.raises(ValueError):
        change_log.decode_partition_key(datasets.RECENT_TRADES, json.dumps(["BTCUSDT"]))
    with pytest.raises(ValueError):
        change_log.decode_clustering_keys(datasets.KLINES, json.dumps([["2026-04-01T00:00:00"]]))  # no offset


@pytest.mark.parametrize("after,upto,expected", [(-1, 0, [0]), (998, 1001, [0, 1]), (999, 1999, [1]),
                                                 (5, 5, [])])
def test_buckets_between(after, upto, expected):
    assert list(change_log.buckets_between(after, upto)) == expected


def progress(stream_id, batch, at=NOW):
    return Progress(stream_id, batch, at, None)


def test_mode_choice():
    a, b = uuid.uuid4(), uuid.uuid4()
    assert bridge.choose_mode(True, {a: (5, NOW)}, {a: progress(a, 6)}, NOW)[0] == "full"
    assert bridge.choose_mode(False, {}, {a: progress(a, 6)}, NOW)[0] == "full"
    assert bridge.choose_mode(False, {a: (5, NOW)}, {a: progress(a, 6)}, NOW)[0] == "incremental"
    mode, why = bridge.choose_mode(False, {a: (5, NOW)}, {a: progress(a, 6), b: progress(b, 0)}, NOW)
    assert mode == "full" and str(b) in why
    old = NOW - timedelta(seconds=change_log.MARK_TTL_S)
    assert bridge.choose_mode(False, {a: (5, old)}, {a: progress(a, 6)}, NOW)[0] == "full"
    # An old cursor with nothing new since: no mark can have been lost.
    assert bridge.choose_mode(False, {a: (6, old)}, {a: progress(a, 6)}, NOW)[0] == "incremental"


def test_token_ranges_cover_the_ring_without_overlap():
    ranges = token_ranges(7)
    assert ranges[0][0] == MIN_TOKEN and ranges[-1][1] == MAX_TOKEN
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def trade_row(symbol="BTCUSDT", price=Decimal("67012.34000000")):
    when = datetime(2026, 4, 1, 0, 0, 4, 123000)  # naive UTC, as the driver returns it
    return (symbol, 7, price, Decimal("0.001"), price * Decimal("0.001"), when, True, False, date(2026, 4, 1),
            "u", 123, when, when, None, when)


def test_copy_text_is_exact_and_utc():
    rejected = []
    line = serving_load.copy_text(datasets.RECENT_TRADES, [trade_row()], rejected).getvalue()
    fields = line.rstrip("\n").split("\t")
    assert fields[2] == "67012.34000000" and fields[5] == "2026-04-01T00:00:04.123000+00"
    assert fields[6:8] == ["t", "f"] and fields[13] == r"\N" and not rejected
    tiny = serving_load.copy_text(datasets.RECENT_TRADES, [trade_row(price=Decimal("1E-8"))], rejected).getvalue()
    assert tiny.split("\t")[2] == "0.00000001"


@pytest.mark.parametrize("row,reason", [
    (trade_row(symbol="BAD\x00"), "NUL"),
    (trade_row(price=Decimal("1E+200000")), "NUMERIC"),
    (trade_row(price=Decimal("1E-20000")), "NUMERIC"),
])
def test_rows_postgres_cannot_hold_are_rejected_with_their_key(row, reason):
    rejected = []
    buf = serving_load.copy_text(datasets.RECENT_TRADES, [trade_row(), row], rejected)
    assert buf.getvalue().count("\n") == 1
    (r,) = rejected
    assert reason in r.reason and "trade_id=7" in r.key and r.key_values[2] == 7


def test_upsert_is_newer_wins_and_writes_only_changes():
    text = repr(serving_load.upsert_statement("serving", datasets.KLINES))
    assert "s.cdc_source_lsn <= EXCLUDED.cdc_source_lsn" in text
    assert "IS DISTINCT FROM" in text and "ON CONFLICT" in text


@pytest.mark.parametrize("dataset", list(datasets.DATASETS.values()), ids=lambda d: d.name)
def test_serving_ddl_mirrors_cassandra(dataset):
    body = re.search(rf'CREATE TABLE IF NOT EXISTS :"serving_schema"\.{dataset.name} \((.*?)\n\);', SERVING_SQL, re.S)
    assert body, dataset.name
    lines = [line.strip().rstrip(",") for line in body.group(1).strip().splitlines()]
    columns = {line.split()[0]: line.split()[1] for line in lines if not line.startswith("PRIMARY KEY")}
    expected = {c: datasets.PG_TYPES[k] for c, k in dataset.cql_columns.items()}
    assert columns == {**expected, "served_at": "timestamptz"}
    key = next(line for line in lines if line.startswith("PRIMARY KEY"))
    assert key == f"PRIMARY KEY ({', '.join(dataset.cql_partition_key + dataset.cql_clustering_key)})"


def test_canonical_values_agree_across_stores():
    aware = datetime(2026, 4, 1, 2, 0, 4, 123000, tzinfo=timezone(timedelta(hours=2)))
    naive_utc = datetime(2026, 4, 1, 0, 0, 4, 123000)
    assert reconcile.canonical(aware) == reconcile.canonical(naive_utc) == "2026-04-01T00:00:04.123000Z"
    assert reconcile.canonical(Decimal("1E-8")) == "0.00000001"
    assert reconcile.canonical(Decimal("0.00001000")) == "0.00001000"
    assert reconcile.canonical(Decimal("0.00001000")) != reconcile.canonical(Decimal("0.00001"))


def test_compare_names_missing_extra_and_differing_keys():
    snap = lambda d: {tuple(k): reconcile.digest([v]) for k, v in d.items()}  # noqa: E731
    pg = snap({("A",): 1, ("B",): 2, ("C",): 3})
    diff = reconcile.compare("t", {"postgres": pg, "cassandra": snap({("A",): 1, ("B",): 9, ("D",): 4}),
                                   "serving": dict(pg)})
    assert diff.missing["cassandra"] == [("C",)] and diff.extra["cassandra"] == [("D",)]
    assert diff.differing["cassandra"] == [("B",)] and not diff.clean
    assert not diff.missing["serving"] and diff.checksums["postgres"] == diff.checksums["serving"]
    same = reconcile.compare("t", {"postgres": pg, "cassandra": dict(pg), "serving": dict(pg)})
    assert same.clean and len(set(same.checksums.values())) == 1


def test_rendered_rows_pass_through_with_text_escaped_and_limits_checked():
    # As Cassandra renders them with CAST(... AS text): exact BigDecimal text, ISO times in UTC.
    row = ("BTC\tUSDT", "7", "67012.34000000", "1.00E-8", "0.00067012", "2026-04-01T00:00:04.123Z", "true", "false",
           "2026-04-01", "u", "123", "2026-04-01T00:00:04.123Z", "2026-04-01T00:00:04.128Z", None,
           "2026-04-01T00:00:05.000Z")
    rejected = []
    fields = serving_load.copy_rendered(datasets.RECENT_TRADES, [row], rejected).getvalue().rstrip("\n").split("\t")
    assert fields[0] == "BTC\\tUSDT" and fields[2] == "67012.34000000" and fields[3] == "1.00E-8"
    assert fields[13] == r"\N" and not rejected
    bad = serving_load.copy_rendered(datasets.RECENT_TRADES, [row[:2] + ("1E+200000",) + row[3:]], rejected)
    assert bad.getvalue() == "" and "NUMERIC" in rejected[0].reason and rejected[0].key_values[2] == "7"
