"""Each dataset's transform on recorded, real-shaped Binance answers: exact decimals, UTC times, keys."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from binance_cdc import datasets as ds
from binance_cdc.extract import load as pg_load, transforms

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "binance"
SERVER_TIME = datetime(2023, 11, 14, 22, 30, 0, tzinfo=timezone.utc)


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text(), parse_float=Decimal)


def as_dict(dataset, row):
    assert len(row) == len(dataset.columns)
    return dict(zip(dataset.column_names, row))


def test_kline_quote_volume_stays_the_exact_decimal_with_its_scale():
    out = transforms.transform(ds.KLINES, fixture("klines.json"), symbol="BTCUSDT", server_time=SERVER_TIME)
    row = as_dict(ds.KLINES, out.rows[1])
    assert row["quote_volume"] == Decimal("2820413769.36626970")
    assert str(row["quote_volume"]) == "2820413769.36626970"  # scale kept: not ...3662697 nor a float
    assert row["taker_buy_quote_volume"].as_tuple().exponent == -8
    assert all(not isinstance(v, float) for r in out.rows for v in r)


def test_klines_rows_times_interval_and_closed_flag_from_server_time():
    out = transforms.transform(ds.KLINES, fixture("klines.json"), symbol="BTCUSDT", server_time=SERVER_TIME)
    first, last = (as_dict(ds.KLINES, r) for r in out.rows)
    assert first["symbol"] == "BTCUSDT" and first["interval"] == "30m"
    assert first["open_time"] == datetime(2017, 7, 3, 0, 0, tzinfo=timezone.utc)
    assert first["close_time"] == datetime(2017, 7, 9, 23, 59, 59, 999000, tzinfo=timezone.utc)
    assert first["open_time"].utcoffset().total_seconds() == 0
    assert first["num_trades"] == 308 and first["open_price"] == Decimal("0.01634790")
    assert first["is_closed"] is True
    # 1700001799999 ms = 2023-11-14 22:43:19.999 UTC, after the server time: still open
    assert last["is_closed"] is False
    closed_later = transforms.transform(
        ds.KLINES, fixture("klines.json"), symbol="BTCUSDT",
        server_time=datetime(2023, 11, 14, 22, 43, 20, tzinfo=timezone.utc),
    )
    assert as_dict(ds.KLINES, closed_later.rows[1])["is_closed"] is True


def test_trades_deduplicated_by_id_and_sorted_with_exact_values():
    out = transforms.transform(ds.RECENT_TRADES, fixture("trades.json"), symbol="BNBBTC", server_time=SERVER_TIME)
    assert [as_dict(ds.RECENT_TRADES, r)["trade_id"] for r in out.rows] == [28457, 194686783]
    row = as_dict(ds.RECENT_TRADES, out.rows[0])
    assert row == {
        "symbol": "BNBBTC", "trade_id": 28457, "price": Decimal("4.00000100"), "qty": Decimal("12.00000000"),
        "quote_qty": Decimal("48.000012"),
        "trade_time": datetime(2017, 7, 12, 13, 19, 9, 590000, tzinfo=timezone.utc),
        "is_buyer_maker": True, "is_best_match": True,
    }


def test_order_book_one_row_per_level_with_side_level_and_server_time():
    out = transforms.transform(ds.ORDER_BOOK, fixture("depth.json"), symbol="BNBBTC", server_time=SERVER_TIME)
    rows = [as_dict(ds.ORDER_BOOK, r) for r in out.rows]
    assert [(r["side"], r["level"], r["price"], r["quantity"]) for r in rows] == [
        ("bid", 1, Decimal("4.00000000"), Decimal("431.00000000")),
        ("bid", 2, Decimal("3.99000000"), Decimal("9.00000000")),
        ("ask", 1, Decimal("4.00000200"), Decimal("12.00000000")),
    ]
    assert {r["last_update_id"] for r in rows} == {1027024}
    assert {r["captured_at"] for r in rows} == {SERVER_TIME}


def test_daily_ticker_keeps_live_symbol_and_drops_dead_zero_ticker():
    out = transforms.transform(ds.DAILY_TICKER, fixture("ticker_24hr.json"), symbol=None, server_time=SERVER_TIME)
    assert len(out.rows) == 1
    row = as_dict(ds.DAILY_TICKER, out.rows[0])
    assert row["symbol"] == "BNBBTC"
    assert row["price_change_percent"] == Decimal("-95.960") and str(row["price_change_percent"]) == "-95.960"
    assert row["close_time"] == datetime(2017, 7, 12, 14, 31, 39, 40000, tzinfo=timezone.utc)
    assert (row["first_trade_id"], row["last_trade_id"], row["trade_count"]) == (28385, 28460, 76)
    assert set(out.dropped) == {"MATICUSDT"} and "firstId -1" in out.dropped["MATICUSDT"]


def test_single_object_ticker_answer_is_accepted():
    one = fixture("ticker_24hr.json")[0]
    out = transforms.transform(ds.DAILY_TICKER, one, symbol="BNBBTC", server_time=SERVER_TIME)
    assert len(out.rows) == 1


def test_latest_prices_observed_at_is_server_time_and_zero_price_dropped():
    out = transforms.transform(ds.LATEST_PRICES, fixture("ticker_price.json"), symbol=None, server_time=SERVER_TIME)
    assert [as_dict(ds.LATEST_PRICES, r) for r in out.rows] == [
        {"symbol": "LTCBTC", "price": Decimal("4.00000200"), "observed_at": SERVER_TIME},
        {"symbol": "ETHBTC", "price": Decimal("0.07946600"), "observed_at": SERVER_TIME},
    ]
    assert list(out.dropped) == ["MATICUSDT"]


def test_floats_are_refused_not_rounded():
    with pytest.raises(TypeError, match="float"):
        transforms.to_decimal(2820413769.3662697)
    payload = [{"symbol": "ETHBTC", "price": 0.079466}]
    with pytest.raises(transforms.TransformError, match="price"):
        transforms.transform(ds.LATEST_PRICES, payload, symbol=None, server_time=SERVER_TIME)


def test_missing_field_names_dataset_symbol_and_field():
    bad = [{"id": 1, "price": "1.0", "qty": "1.0", "time": 1499865549590, "isBuyerMaker": True, "isBestMatch": True}]
    with pytest.raises(transforms.TransformError, match=r"recent_trades BTCUSDT.*quoteQty"):
        transforms.transform(ds.RECENT_TRADES, bad, symbol="BTCUSDT", server_time=SERVER_TIME)


def test_naive_server_time_is_rejected():
    with pytest.raises(ValueError, match="tz-aware"):
        transforms.transform(ds.LATEST_PRICES, [], symbol=None, server_time=datetime(2024, 1, 1))


FIXTURE_OF_SHAPE = {
    "objects": "trades.json", "book": "depth.json", "candles": "klines.json", "tickers": None,
}
TICKER_FIXTURES = {"/api/v3/ticker/24hr": "ticker_24hr.json", "/api/v3/ticker/price": "ticker_price.json"}


def recorded_answer(dataset):
    """A recorded answer of the dataset's endpoint (tests/fixtures/binance/)."""
    name = FIXTURE_OF_SHAPE[dataset.shape] or TICKER_FIXTURES[dataset.endpoint]
    return fixture(name)


@pytest.mark.parametrize("dataset", list(ds.DATASETS.values()), ids=lambda d: d.name)
def test_every_dataset_transforms_a_recorded_answer_and_copy_text_keeps_exact_values(dataset):
    out = transforms.transform(dataset, recorded_answer(dataset), symbol="BNBBTC", server_time=SERVER_TIME)
    assert out.rows
    text = pg_load.copy_buffer(out.rows, dataset).getvalue()
    assert text == pg_load.copy_buffer(out.rows).getvalue()
    assert "e-" not in text.lower() and "e+" not in text.lower()  # no float-style exponents
    for row in out.rows:
        for value in row:
            assert not isinstance(value, float)
            if isinstance(value, datetime):
                assert value.tzinfo is not None and value.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("dataset", list(ds.DATASETS.values()), ids=lambda d: d.name)
def test_tiny_and_zero_decimals_are_copied_in_fixed_point_with_their_scale(dataset):
    """str(Decimal("0.00000001")) is "1E-8": the COPY text must still read 0.00000001, scale 8."""
    row = transforms.transform(dataset, recorded_answer(dataset), symbol="BNBBTC", server_time=SERVER_TIME).rows[0]
    decimals = [i for i, c in enumerate(dataset.columns) if c.kind == "decimal"]
    assert decimals
    for tiny, text in ((Decimal("0.00000001"), "0.00000001"), (Decimal("0E-8"), "0.00000000"),
                       (Decimal("-1.5E-7"), "-0.00000015")):
        changed = tuple(tiny if i in decimals else v for i, v in enumerate(row))
        fields = pg_load.copy_buffer([changed], dataset).getvalue().rstrip("\n").split("\t")
        assert [fields[i] for i in decimals] == [text] * len(decimals)


def test_copy_text_format():
    when = datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=timezone.utc)
    buf = pg_load.copy_buffer([("A\tB", Decimal("0.10000000"), True, None, when, 7)])
    assert buf.getvalue() == "A\\tB\t0.10000000\tt\t\\N\t2024-01-02T03:04:05.006000+00:00\t7\n"
    with pytest.raises(TypeError):
        pg_load.copy_buffer([(1.5,)])
    with pytest.raises(ValueError):
        pg_load.copy_buffer([(datetime(2024, 1, 1),)])


def test_dedupe_and_compared_columns_follow_datasets():
    rows = [("X", Decimal("1"), SERVER_TIME), ("X", Decimal("2"), SERVER_TIME)]
    assert pg_load.dedupe(ds.LATEST_PRICES, rows) == [rows[1]]
    assert pg_load.compared_columns(ds.LATEST_PRICES) == ["price"]
    assert "is_closed" in pg_load.compared_columns(ds.KLINES)
    assert "observed_at" not in pg_load.compared_columns(ds.LATEST_PRICES)


def test_trade_gap_is_missed_trades_not_quiet_symbol():
    gaps = pg_load.find_trade_gaps({"A": 100, "B": 100, "C": 100}, {"A": 101, "B": 100, "C": 150, "D": 5},
                                   pg_load.GAP_NOT_SERVED)
    assert gaps == [pg_load.TradeGap("C", 100, 150, 49, pg_load.GAP_NOT_SERVED)]
    assert gaps[0].next_id == 101 and gaps[0].open_count == 49
    assert pg_load.find_trade_gaps({"A": 100}, {"A": 90}) == []  # overlap: nothing missed
