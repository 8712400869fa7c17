"""Weight accounting, header parsing, budget decisions and answer decoding of the Binance client (no I/O)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from binance_cdc import datasets as ds
from binance_cdc.extract.client import (
    BadResponseError,
    BannedError,
    BinanceClient,
    BinanceError,
    RestrictedLocationError,
    UnknownSymbolError,
    WeightBudget,
    NotServedError,
    chunks,
    parse_server_time,
    parse_used_weight,
    serves,
    symbols_param,
)


def call_params(dataset, n: int = 1) -> dict:
    """The parameters the cycle sends: `symbol=` per symbol, or `symbols=[...]` for a batched dataset."""
    if dataset.batched:
        return {**dataset.params, "symbols": symbols_param([f"S{i}USDT" for i in range(n)])}
    return {"symbol": "BTCUSDT", **dataset.params}


@pytest.mark.parametrize(
    "dataset, n, weight",
    [
        (ds.RECENT_TRADES, 1, 25),
        (ds.ORDER_BOOK, 1, 5),  # limit 100
        (ds.KLINES, 1, 2),
        (ds.DAILY_TICKER, 1, 2),
        (ds.DAILY_TICKER, 20, 2),
        (ds.DAILY_TICKER, 21, 40),
        (ds.DAILY_TICKER, 100, 40),
        (ds.DAILY_TICKER, 101, 80),
        (ds.LATEST_PRICES, 1, 4),
        (ds.LATEST_PRICES, 500, 4),
    ],
)
def test_documented_weights(dataset, n, weight):
    assert dataset.request_weight(call_params(dataset, n)) == weight


def test_single_symbol_and_all_symbol_ticker_weights():
    assert ds.DAILY_TICKER.request_weight({"symbol": "BTCUSDT"}) == 2
    assert ds.DAILY_TICKER.request_weight({}) == 80
    assert ds.LATEST_PRICES.request_weight({"symbol": "BTCUSDT"}) == 2
    assert ds.LATEST_PRICES.request_weight({}) == 4


def test_depth_weight_tiers_follow_the_limit():
    for limit, weight in ((1, 5), (100, 5), (101, 25), (500, 25), (501, 50), (1000, 50), (1001, 250), (5000, 250)):
        assert ds.ORDER_BOOK.request_weight({"symbol": "BTCUSDT", "limit": limit}) == weight
    assert ds.ORDER_BOOK.request_weight({"symbol": "BTCUSDT"}) == 5  # default limit 100


def test_cursor_calls_cost_their_documented_weight():
    trades = ds.RECENT_TRADES.cursor
    assert (trades.endpoint, trades.param, trades.limit) == ("/api/v3/historicalTrades", "fromId", 1000)
    assert trades.weight.charge({"symbol": "BTCUSDT", "fromId": 1, "limit": 1000}) == 25
    klines = ds.KLINES.cursor
    assert (klines.param, klines.limit) == ("startTime", 1000)
    assert klines.weight.charge({"symbol": "BTCUSDT", "startTime": 0, "limit": 1000}) == 2


def test_default_ten_symbol_cycle_fits_the_default_budget():
    n = len(ds.DEFAULT_SYMBOLS)
    per_symbol = sum(d.request_weight(call_params(d)) * n for d in ds.DATASETS.values() if not d.batched)
    batched = sum(d.request_weight(call_params(d, n)) for d in ds.DATASETS.values() if d.batched)
    assert per_symbol + batched + 20 == 346 < 6000 * 0.5


def test_market_data_only_host_does_not_serve_historical_trades():
    assert not serves("https://data-api.binance.vision", "/api/v3/historicalTrades")
    assert serves("https://data-api.binance.vision", "/api/v3/trades")
    assert serves("https://api.binance.com", "/api/v3/historicalTrades")


def test_symbols_param_is_compact_json_and_chunks_stay_in_the_40_tier():
    assert symbols_param(["BTCUSDT", "BNBUSDT"]) == '["BTCUSDT","BNBUSDT"]'
    parts = chunks([f"S{i}" for i in range(250)])
    assert [len(p) for p in parts] == [100, 100, 50]


def test_header_parsing():
    assert parse_used_weight(CaseInsensitiveDict({"x-mbx-used-weight-1m": "57"})) == 57
    assert parse_used_weight(CaseInsensitiveDict({"X-MBX-USED-WEIGHT": "12"})) == 12
    assert parse_used_weight(CaseInsensitiveDict({"X-MBX-USED-WEIGHT-1M": "x"})) is None
    assert parse_used_weight(CaseInsensitiveDict()) is None
    when = parse_server_time(CaseInsensitiveDict({"Date": "Tue, 14 Nov 2023 22:13:20 GMT"}))
    assert when == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc) and when.tzinfo is not None
    assert parse_server_time(CaseInsensitiveDict({"Date": "garbage"})) is None


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_budget_sends_while_under_limit_and_waits_for_next_window_when_over():
    clock = FakeClock(1_699_999_990.0)  # 10 s into a minute window
    budget = WeightBudget(100, clock, clock.sleep)
    for _ in range(4):
        budget.reserve(25)
        budget.settle(25, None)
    assert budget.used == 100 and clock.slept == []
    assert budget.wait_needed(25) == pytest.approx(50.05)
    budget.reserve(25)  # sleeps into the next window, then sends
    assert clock.slept == [pytest.approx(50.05)] and budget.in_flight == 25 and budget.used == 0


def test_budget_adopts_server_count_and_counts_in_flight():
    clock = FakeClock(1_700_000_010.0)
    budget = WeightBudget(3000, clock, clock.sleep)
    budget.reserve(40)
    assert budget.in_flight == 40
    headers = CaseInsensitiveDict({"X-MBX-USED-WEIGHT-1M": "2990", "Date": "Tue, 14 Nov 2023 22:13:30 GMT"})
    budget.settle(40, headers)  # another process on this IP used most of the minute
    assert budget.used == 2990 and budget.in_flight == 0
    assert budget.wait_needed(5) == 0 and budget.wait_needed(25) > 0
    with pytest.raises(BinanceError, match="exceeds the whole budget"):
        budget.wait_needed(3001)


def test_budget_follows_the_server_clock_window():
    clock = FakeClock(1_700_000_010.0)  # local clock 22:13:30 UTC
    budget = WeightBudget(100, clock, clock.sleep)
    # Server clock says 22:14:59 (window differs from the local one): the server's window counts.
    budget.settle(0, CaseInsensitiveDict({"X-MBX-USED-WEIGHT-1M": "90", "Date": "Tue, 14 Nov 2023 22:14:59 GMT"}))
    assert budget.used == 90
    assert budget.wait_needed(25) == pytest.approx(1.05, abs=0.1)


def response(status: int, body: bytes, headers: dict | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = body
    r.headers = CaseInsensitiveDict(headers or {})
    r.url = "https://api.binance.com/api/v3/trades?symbol=BTCUSDT"
    r.reason = "reason"
    return r


@pytest.fixture
def client():
    c = BinanceClient("https://api.binance.com/")
    yield c
    c.close()


def test_decode_keeps_numbers_exact(client):
    payload = client.decode(response(200, b'{"price": "4.00000200", "x": 0.1, "id": 7}'), "t")
    assert payload == {"price": "4.00000200", "x": Decimal("0.1"), "id": 7}
    assert client.base_url == "https://api.binance.com"


def test_truncated_body_is_a_bad_response(client):
    with pytest.raises(BadResponseError, match="invalid JSON"):
        client.decode(response(200, b'[{"id": 1, "price": "4.0'), "recent_trades BTCUSDT")


def test_unknown_symbol_is_its_own_error(client):
    with pytest.raises(UnknownSymbolError, match="recent_trades NOPE"):
        client.decode(response(400, json.dumps({"code": -1121, "msg": "Invalid symbol."}).encode()), "recent_trades NOPE")


def test_418_stops_the_client_with_retry_after(client):
    body = b'{"code":-1003,"msg":"Way too much request weight used; IP banned until 1659146400000."}'
    with pytest.raises(BannedError, match=r"418.*Retry-After 120") as info:
        client.decode(response(418, body, {"Retry-After": "120"}), "klines BTCUSDT")
    assert info.value.retry_after == "120" and client.stopped is info.value
    with pytest.raises(BannedError):
        client.get("/api/v3/klines", {}, 2, "klines ETHUSDT")  # no request once banned


def test_451_suggests_the_market_data_url(client):
    with pytest.raises(RestrictedLocationError, match="BINANCE_BASE_URL=https://data-api.binance.vision"):
        client.decode(response(451, b'{"code":0,"msg":"restricted"}'), "exchangeInfo")


def test_404_is_a_path_this_host_does_not_serve(client):
    with pytest.raises(NotServedError, match="historicalTrades BTCUSDT: HTTP 404"):
        client.decode(response(404, b'{"code":-1000,"msg":"Unknown endpoint."}'), "historicalTrades BTCUSDT")


def test_retried_requests_are_charged_weight_times_one_plus_retries():
    """Binance charges a refused or failed request too: two 500s then an answer cost three times 25."""
    from simulator import BinanceSimulator

    with BinanceSimulator(symbols=("BTCUSDT",), dead_symbols=(), seed=1, start_ms=1_700_000_000_000, warm=False) as sim:
        retrying = BinanceClient(sim.url, max_retries=3, backoff_factor=0.01)
        try:
            sim.inject("500", path="/api/v3/trades", count=2)
            answer = retrying.get("/api/v3/trades", {"symbol": "BTCUSDT", "limit": 5}, 25, "recent_trades BTCUSDT")
            assert len(answer.payload) == 5
            assert answer.weight == 25 * (1 + 2)
            assert [p for p, _ in sim.requests] == ["/api/v3/trades"] * 3
            once = retrying.get("/api/v3/trades", {"symbol": "BTCUSDT", "limit": 5}, 25, "recent_trades BTCUSDT")
            assert once.weight == 25
        finally:
            retrying.close()


def test_other_http_errors_name_the_request(client):
    with pytest.raises(BinanceError, match=r"klines BTCUSDT: HTTP 400 .*-1120"):
        client.decode(response(400, b'{"code":-1120,"msg":"Invalid interval."}'), "klines BTCUSDT")


# ---- the trade cursor's walk, against the in-process simulator (no database) ------------------------------


def walk(sim, last: dict, weight: int, gaps: dict | None = None):
    from concurrent.futures import ThreadPoolExecutor

    from binance_cdc.extract.cycle import fetch_sequence

    client = BinanceClient(sim.url, max_retries=1)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            return fetch_sequence(client, ds.RECENT_TRADES, list(last), pool, last, gaps or {}, weight, 500)
    finally:
        client.close()


def page_ids(item) -> list[int]:
    return [t["id"] for payload, _ in item.pages for t in payload]


def test_the_walk_shares_the_weight_fairly_and_names_what_it_could_not_fetch():
    from simulator import BinanceSimulator

    with BinanceSimulator(symbols=("BTCUSDT", "ETHUSDT"), dead_symbols=(), start_ms=1_700_000_000_000,
                          trades_per_minute=1000, warm=False) as sim:
        last = {s: sim.market.recent_trades(sim.market.specs[s], sim.now_ms(), 1)[0].id for s in ("BTCUSDT", "ETHUSDT")}
        sim.advance(600)  # ~10,000 trades each: ten pages each to reach the present
        # 100 weight: two closing latest-trades requests are kept aside, one page of 1000 each is left
        items = walk(sim, last, weight=100)
        for item in items:
            asked = [(p, q.get("fromId")) for p, q in sim.requests if q.get("symbol") == item.symbol]
            assert asked == [("/api/v3/historicalTrades", str(last[item.symbol] + 1)), ("/api/v3/trades", None)]
            [gap] = item.new_gaps
            newest = sim.market.recent_trades(sim.market.specs[item.symbol], sim.now_ms(), 1)[0].id
            assert (gap.after_trade_id, gap.before_trade_id, gap.reason) == (last[item.symbol] + 1000,
                                                                               newest - 999, "budget")
            ids = page_ids(item)
            assert ids[:1000] == list(range(last[item.symbol] + 1, last[item.symbol] + 1001))
            assert item.weight == 50 and item.error is None and item.transformed is not None


def test_the_walk_fills_an_open_gap_first_and_reports_how_far_it_got():
    from binance_cdc.extract import load as pg_load
    from simulator import BinanceSimulator

    with BinanceSimulator(symbols=("BTCUSDT",), dead_symbols=(), start_ms=1_700_000_000_000,
                          trades_per_minute=1000, warm=False) as sim:
        newest = sim.market.recent_trades(sim.market.specs["BTCUSDT"], sim.now_ms(), 1)[0].id
        gap = pg_load.TradeGap("BTCUSDT", newest - 5000, newest - 2000, 2999, "budget", filled_count=999)
        [item] = walk(sim, {"BTCUSDT": newest}, weight=10_000, gaps={"BTCUSDT": [gap]})
        assert item.fills == [pg_load.GapFill("BTCUSDT", newest - 5000, 2000, True)]  # the rest of it, closed
        assert page_ids(item)[:2000] == list(range(newest - 4000, newest - 2000))
        assert item.new_gaps == [] and page_ids(item)[-1] <= newest  # then the head: nothing new


def test_the_walk_names_ids_binance_no_longer_serves():
    from simulator import BinanceSimulator

    with BinanceSimulator(symbols=("BTCUSDT",), dead_symbols=(), start_ms=1_700_000_000_000, history_hours=1,
                          trades_per_minute=100, warm=False) as sim:
        oldest = sim.market.trades_from(sim.market.specs["BTCUSDT"], 0, sim.now_ms(), 1)[0].id
        [item] = walk(sim, {"BTCUSDT": oldest - 101}, weight=10_000)
        [gap] = item.new_gaps
        assert (gap.after_trade_id, gap.before_trade_id, gap.missed_count, gap.reason) == (
            oldest - 101, oldest, 100, "history_limit")
        ids = page_ids(item)
        assert ids == list(range(oldest, oldest + len(ids))) and len(ids) > 5000
