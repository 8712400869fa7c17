"""The drain bench's seed-job baseline without services: its hand-written schemas, how stored rows are judged,
and that its batch lines are timed by the same parser as ours (bench/seed_job.py, bench/seed_drain.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bench import cdc
from bench.seed_drain import defects, epoch_ms, tally
from bench.seed_job import AFTER_FIELDS, PRIMARY_KEYS, after_fields, table_cql
from binance_cdc import datasets as ds

# The original's type rules, applied to our columns: what the rebuilt pattern must keep.
ORIGINAL_TYPES = {"text": "STRING", "decimal": "DOUBLE", "timestamp": "BIGINT", "bigint": "BIGINT", "int": "INT",
                  "boolean": "BOOLEAN"}


@pytest.mark.parametrize("name", list(ds.DATASETS))
def test_hand_written_schemas_cover_every_column_with_the_original_types(name):
    dataset = ds.DATASETS[name]
    assert after_fields(name) == [(c.name, ORIGINAL_TYPES[c.kind]) for c in dataset.columns]
    assert PRIMARY_KEYS[name] == dataset.primary_key


def test_table_cql_is_the_after_fields_plus_the_four_envelope_columns():
    cql = table_cql("ks", "recent_trades")
    assert cql.startswith("CREATE TABLE ks.recent_trades (")
    assert '"price" double' in cql and '"trade_time" bigint' in cql and '"source" text' in cql
    assert cql.endswith('PRIMARY KEY (("symbol"), "trade_id"))')
    assert set(AFTER_FIELDS) == set(ds.DATASETS)


def expected_row(i: int = 7) -> dict:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return cdc.drain_values(i, cdc.drain_symbols("abc"), start, timedelta(days=cdc.DRAIN_DAYS), 1000)


def exact_copy(expected: dict) -> dict:
    return {"price": float(expected["price"]), "qty": float(expected["qty"]),
            "quote_qty": float(expected["quote_qty"]), "trade_time": epoch_ms(expected["trade_time"]),
            "source": '{"lsn":100000000}', "op": "c"}


def test_a_row_holding_the_produced_values_has_no_defect():
    expected = expected_row()
    assert defects(exact_copy(expected), expected) == []
    assert expected["qty"] == "0.00008"  # a double of it reads 8e-05: judged by value and plain digits


def test_what_the_original_pattern_stores_is_counted_per_field():
    expected = expected_row()
    stored = {"price": None, "qty": None, "quote_qty": None, "trade_time": None, "source": "{}", "op": "c"}
    assert defects(stored, expected) == ["price_null", "qty_null", "quote_qty_null", "trade_time_null",
                                         "source_lost"]


def test_a_double_that_rounds_or_drops_zeros_is_changed_or_not_identical():
    expected = dict(expected_row(), price="2820413769.36626970", qty="0.10000")
    stored = dict(exact_copy(expected_row()), price=float("2820413769.36626970"), qty=0.1)
    found = defects(stored, expected)
    assert "price_changed" in found  # float64 keeps 2820413769.3662696
    assert "qty_not_identical" in found and "qty_changed" not in found  # the same number, not the same string


def test_a_time_in_another_unit_is_changed():
    expected = expected_row()
    stored = dict(exact_copy(expected), trade_time=epoch_ms(expected["trade_time"]) * 1000)
    assert defects(stored, expected) == ["trade_time_changed"]


def test_tally_counts_missing_and_mangled_rows():
    expected = expected_row()
    rows = [exact_copy(expected), dict(exact_copy(expected), price=None)]
    damage = tally(iter(rows), lambda _row: expected, events=5)
    assert damage == {"rows_produced": 5, "rows_stored": 2, "rows_missing": 3, "rows_exact": 1, "rows_mangled": 1,
                      "defects": {"price_null": 1}}


def test_epoch_ms_reads_the_drain_values_times_as_utc():
    assert epoch_ms("1970-01-01T00:00:01.250000Z") == 1250


LOG = """\
2026-12-02 08:00:00,000 INFO seed_job.recent_trades: query recent_trades started (id 1)
2026-12-02 08:00:00,500 INFO seed_job.order_book: query order_book started (id 2)
2026-12-02 08:00:05,000 INFO seed_job.recent_trades: batch 0: processed 100 messages, 0 dead letters (none); 9 ms
2026-12-02 08:00:05,100 INFO seed_job.order_book: batch 0: processed 999 messages, 0 dead letters (none); 9 ms
2026-12-02 08:00:06,000 INFO seed_job.recent_trades: batch 1: processed 100 messages, 0 dead letters (none); 9 ms
2026-12-02 08:00:07,000 INFO spark_streaming: batch 7: processed 5 messages, 0 dead letters
2026-12-02 08:00:08,000 INFO seed_job.recent_trades: batch 2: processed 300 messages, 0 dead letters (none); 9 ms
"""


def test_seed_batches_are_parsed_per_query_and_timed_like_ours():
    started, batches = cdc.parse_job_log(LOG, logger="seed_job.recent_trades")
    assert started == datetime(2026, 12, 2, 8, 0, 0)
    assert [(b.batch_id, b.rows) for b in batches] == [(0, 100), (1, 100), (2, 300)]
    rates = cdc.drain_rates(started, batches)
    assert rates["steady_rows_per_s"] == pytest.approx(400 / 3.0)
    assert [b.batch_id for b in cdc.parse_job_log(LOG)[1]] == [7]  # ours still reads only its own lines

