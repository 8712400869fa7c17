"""The Binance simulator, over real HTTP in-process: shapes, weights, rate limits, faults, market evolution."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from email.utils import parsedate_to_datetime

import pytest
import requests

from simulator import BinanceSimulator, universe
from simulator.weights import request_weight

START_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z: 20 s into a minute, 1000 s before a 30m boundary
SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPUSDT")
FULL_FIELDS = [
    "symbol", "priceChange", "priceChangePercent", "weightedAvgPrice", "prevClosePrice", "lastPrice", "lastQty",
    "bidPrice", "bidQty", "askPrice", "askQty", "openPrice", "highPrice", "lowPrice", "volume", "quoteVolume",
    "openTime", "closeTime", "firstId", "lastId", "count",
]  # fmt: skip
MINI_FIELDS = [
    "symbol", "openPrice", "highPrice", "lowPrice", "lastPrice", "volume", "quoteVolume", "openTime", "closeTime",
    "firstId", "lastId", "count",
]  # fmt: skip
INTERVAL_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000}


@pytest.fixture
def sim():
    with BinanceSimulator(symbols=SYMBOLS, dead_symbols=("MATICUSDT",), seed=1, start_ms=START_MS, warm=False) as s:
        yield s


def get(sim, path, timeout=30, headers=None, **params):
    return requests.get(sim.url + path, params=params, timeout=timeout, headers=headers)


def ok(sim, path, **params):
    resp = get(sim, path, **params)
    assert resp.status_code == 200, resp.text
    return resp.json(parse_float=Decimal)


def is_decimal_str(value) -> bool:
    return isinstance(value, str) and Decimal(value) == Decimal(value) and "e" not in value.lower()


def compact(names) -> str:
    return json.dumps(list(names), separators=(",", ":"))


# ---- general endpoints ------------------------------------------------------------------------------------


def test_ping_time_and_date_header_follow_the_virtual_clock(sim):
    assert ok(sim, "/api/v3/ping") == {}
    resp = get(sim, "/api/v3/time")
    assert resp.json() == {"serverTime": START_MS}
    assert parsedate_to_datetime(resp.headers["Date"]).timestamp() == START_MS // 1000
    sim.advance(90)
    assert ok(sim, "/api/v3/time") == {"serverTime": START_MS + 90_000}


def test_microsecond_time_unit_and_bad_unit(sim):
    resp = get(sim, "/api/v3/time", headers={"X-MBX-TIME-UNIT": "MICROSECOND"})
    assert resp.json() == {"serverTime": START_MS * 1000}
    bad = get(sim, "/api/v3/time", headers={"X-MBX-TIME-UNIT": "NANOSECOND"})
    assert (bad.status_code, bad.json()["code"]) == (400, -1194)


def test_exchange_info_statuses_and_string_filters(sim):
    info = ok(sim, "/api/v3/exchangeInfo")
    assert info["timezone"] == "UTC" and info["serverTime"] == START_MS
    assert {s["symbol"]: s["status"] for s in info["symbols"]} == {
        "BTCUSDT": "TRADING", "ETHUSDT": "TRADING", "XRPUSDT": "TRADING", "MATICUSDT": "BREAK",
    }  # fmt: skip
    weight = next(r for r in info["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT")
    assert weight == {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}
    btc = ok(sim, "/api/v3/exchangeInfo", symbol="BTCUSDT")["symbols"]
    assert len(btc) == 1 and (btc[0]["baseAsset"], btc[0]["quoteAsset"]) == ("BTC", "USDT")
    filters = {f["filterType"]: f for f in btc[0]["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    assert all(is_decimal_str(filters["LOT_SIZE"][k]) for k in ("minQty", "maxQty", "stepSize"))
    two = ok(sim, "/api/v3/exchangeInfo", symbols=compact(["ETHUSDT", "MATICUSDT"]))["symbols"]
    assert [s["symbol"] for s in two] == ["ETHUSDT", "MATICUSDT"]
    assert get(sim, "/api/v3/exchangeInfo", symbol="FOOUSDT").json() == {"code": -1121, "msg": "Invalid symbol."}


# ---- trades, depth ----------------------------------------------------------------------------------------


def test_trades_shape_exact_quote_qty_and_contiguous_ids(sim):
    trades = ok(sim, "/api/v3/trades", symbol="BTCUSDT")
    assert len(trades) == 500
    for t in trades:
        assert set(t) == {"id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"}
        assert isinstance(t["id"], int) and isinstance(t["time"], int) and isinstance(t["isBuyerMaker"], bool)
        assert all(is_decimal_str(t[k]) and len(t[k].split(".")[1]) == 8 for k in ("price", "qty", "quoteQty"))
        assert Decimal(t["price"]) * Decimal(t["qty"]) == Decimal(t["quoteQty"])
        assert t["time"] <= START_MS
    ids = [t["id"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert [t["time"] for t in trades] == sorted(t["time"] for t in trades)
    assert len({t["qty"] for t in trades}) > 20  # quantities vary
    assert len(ok(sim, "/api/v3/trades", symbol="BTCUSDT", limit=1500)) == 1000
    assert ok(sim, "/api/v3/trades", symbol="BTCUSDT", limit=3) == trades[-3:]


def test_depth_orders_sides_and_limits(sim):
    book = ok(sim, "/api/v3/depth", symbol="ETHUSDT")
    assert isinstance(book["lastUpdateId"], int)
    assert len(book["bids"]) == len(book["asks"]) == 100
    bids = [Decimal(p) for p, _ in book["bids"]]
    asks = [Decimal(p) for p, _ in book["asks"]]
    assert bids == sorted(bids, reverse=True) and len(set(bids)) == 100
    assert asks == sorted(asks) and len(set(asks)) == 100
    assert bids[0] < asks[0]
    assert all(is_decimal_str(p) and is_decimal_str(q) for p, q in book["bids"] + book["asks"])
    assert len(ok(sim, "/api/v3/depth", symbol="ETHUSDT", limit=5)["asks"]) == 5


# ---- klines -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("interval", list(INTERVAL_MS))
def test_klines_shape_alignment_and_open_last_candle(sim, interval):
    klines = ok(sim, "/api/v3/klines", symbol="BTCUSDT", interval=interval, limit=10)
    assert 1 <= len(klines) <= 10
    length = INTERVAL_MS[interval]
    for k in klines:
        assert len(k) == 12
        assert all(isinstance(k[i], int) for i in (0, 6, 8))
        assert all(is_decimal_str(k[i]) for i in (1, 2, 3, 4, 5, 7, 9, 10)) and k[11] == "0"
        assert k[0] % length == 0 and k[6] == k[0] + length - 1
        assert Decimal(k[3]) <= min(Decimal(k[1]), Decimal(k[4])) <= max(Decimal(k[1]), Decimal(k[4])) <= Decimal(k[2])
    assert [k[0] for k in klines] == sorted(k[0] for k in klines)
    assert klines[-1][0] <= START_MS <= klines[-1][6]  # the last candle is the still-open one


def test_kline_aggregates_exactly_the_trades(sim):
    candle = ok(sim, "/api/v3/klines", symbol="BTCUSDT", interval="30m", limit=1)[0]
    trades = ok(sim, "/api/v3/trades", symbol="BTCUSDT", limit=1000)
    assert trades[0]["time"] < candle[0]  # the trades cover the whole candle
    inside = [t for t in trades if candle[0] <= t["time"] <= candle[6]]
    prices = [Decimal(t["price"]) for t in inside]
    taker = [t for t in inside if not t["isBuyerMaker"]]
    assert Decimal(candle[1]) == prices[0] and Decimal(candle[4]) == prices[-1]
    assert Decimal(candle[2]) == max(prices) and Decimal(candle[3]) == min(prices)
    assert Decimal(candle[5]) == sum(Decimal(t["qty"]) for t in inside)
    assert Decimal(candle[7]) == sum(Decimal(t["quoteQty"]) for t in inside)
    assert candle[8] == len(inside)
    assert Decimal(candle[9]) == sum(Decimal(t["qty"]) for t in taker)
    assert Decimal(candle[10]) == sum(Decimal(t["quoteQty"]) for t in taker)


def test_klines_start_and_end_time(sim):
    start = START_MS - 10 * 3_600_000
    klines = ok(sim, "/api/v3/klines", symbol="ETHUSDT", interval="1h", startTime=start, limit=3)
    assert [k[0] for k in klines] == [start - start % 3_600_000 + i * 3_600_000 for i in (1, 2, 3)]
    before = ok(sim, "/api/v3/klines", symbol="ETHUSDT", interval="1h", endTime=klines[0][0], limit=2)
    assert before[-1] == klines[0] and before[0][0] == klines[0][0] - 3_600_000


# ---- the market evolves -------------------------------------------------------------------------------


def test_advance_brings_new_trades_with_higher_ids(sim):
    first = ok(sim, "/api/v3/trades", symbol="ETHUSDT", limit=50)
    sim.advance(120)
    second = ok(sim, "/api/v3/trades", symbol="ETHUSDT", limit=1000)
    old = {t["id"]: t for t in first}
    assert all(old[t["id"]] == t for t in second if t["id"] in old)  # history does not change
    new = [t for t in second if t["id"] > first[-1]["id"]]
    assert new and all(START_MS < t["time"] <= START_MS + 120_000 for t in new)
    assert second[-1]["id"] > first[-1]["id"]


def test_open_kline_changes_then_closes_at_the_boundary(sim):
    open_now = ok(sim, "/api/v3/klines", symbol="BTCUSDT", interval="30m", limit=1)[0]
    sim.advance(300)
    later = ok(sim, "/api/v3/klines", symbol="BTCUSDT", interval="30m", limit=1)[0]
    assert later[0] == open_now[0] and later[8] > open_now[8] and Decimal(later[5]) > Decimal(open_now[5])
    sim.advance(1000)  # past the 30m boundary at START_MS + 1000 s
    last_two = ok(sim, "/api/v3/klines", symbol="BTCUSDT", interval="30m", limit=2)
    closed, fresh = last_two
    assert closed[0] == open_now[0] and fresh[0] == open_now[0] + 1_800_000
    sim.advance(600)
    again = ok(sim, "/api/v3/klines", symbol="BTCUSDT", interval="30m", limit=2)
    assert again[0] == closed  # a closed candle never changes
    assert again[1][0] == fresh[0] and again[1][8] > fresh[8]


def test_same_seed_and_clock_give_the_same_market():
    bodies = []
    for seed in (7, 7, 8):
        with BinanceSimulator(symbols=SYMBOLS, seed=seed, start_ms=START_MS, warm=False) as s:
            bodies.append(get(s, "/api/v3/trades", symbol="XRPUSDT", limit=100).text)
    assert bodies[0] == bodies[1] != bodies[2]


# ---- tickers ----------------------------------------------------------------------------------------------


def test_ticker_24h_shapes_and_consistency(sim):
    one = ok(sim, "/api/v3/ticker/24hr", symbol="BTCUSDT")
    assert list(one) == FULL_FIELDS
    assert all(isinstance(one[k], int) for k in ("openTime", "closeTime", "firstId", "lastId", "count"))
    assert all(is_decimal_str(one[k]) for k in FULL_FIELDS[1:16])
    assert (one["openTime"], one["closeTime"]) == (START_MS - 86_400_000, START_MS)
    assert one["count"] == one["lastId"] - one["firstId"] + 1
    last = ok(sim, "/api/v3/trades", symbol="BTCUSDT", limit=1)[-1]
    assert (one["lastId"], one["lastPrice"], one["lastQty"]) == (last["id"], last["price"], last["qty"])
    assert Decimal(one["priceChange"]) == Decimal(one["lastPrice"]) - Decimal(one["openPrice"])
    assert Decimal(one["lowPrice"]) <= Decimal(one["weightedAvgPrice"]) <= Decimal(one["highPrice"])
    assert Decimal(one["bidPrice"]) < Decimal(one["askPrice"])
    listed = ok(sim, "/api/v3/ticker/24hr", symbols=compact(["BTCUSDT"]))
    assert listed == [one]
    mini = ok(sim, "/api/v3/ticker/24hr", symbols=compact(["ETHUSDT", "BTCUSDT"]), type="MINI")
    assert [list(t) for t in mini] == [MINI_FIELDS, MINI_FIELDS] and mini[1]["count"] == one["count"]
    everything = ok(sim, "/api/v3/ticker/24hr", type="MINI")
    assert sorted(t["symbol"] for t in everything) == sorted(SYMBOLS + ("MATICUSDT",))


def test_ticker_price_shapes(sim):
    one = ok(sim, "/api/v3/ticker/price", symbol="ETHUSDT")
    assert list(one) == ["symbol", "price"] and is_decimal_str(one["price"])
    assert one["price"] == ok(sim, "/api/v3/trades", symbol="ETHUSDT", limit=1)[-1]["price"]
    many = ok(sim, "/api/v3/ticker/price", symbols=compact(["ETHUSDT", "XRPUSDT"]))
    assert [t["symbol"] for t in many] == ["ETHUSDT", "XRPUSDT"] and many[0] == one
    assert len(ok(sim, "/api/v3/ticker/price")) == 4


def test_dead_symbol_answers_like_matic_after_the_pol_migration(sim):
    ticker = ok(sim, "/api/v3/ticker/24hr", symbol="MATICUSDT")
    assert list(ticker) == FULL_FIELDS
    assert all(ticker[k] == "0.00000000" for k in FULL_FIELDS[1:16] if k != "priceChangePercent")
    assert (ticker["firstId"], ticker["lastId"], ticker["count"]) == (-1, -1, 0)
    assert ok(sim, "/api/v3/ticker/price", symbol="MATICUSDT") == {"symbol": "MATICUSDT", "price": "0.00000000"}
    assert ok(sim, "/api/v3/trades", symbol="MATICUSDT") == []
    book = ok(sim, "/api/v3/depth", symbol="MATICUSDT")
    assert (book["bids"], book["asks"]) == ([], [])


# ---- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, params, code",
    [
        ("/api/v3/ticker/price", {"symbols": '["BTCUSDT", "ETHUSDT"]'}, -1100),  # Python str(list) spacing
        ("/api/v3/ticker/24hr", {"symbols": '["BTCUSDT","BTCUSDT"]'}, -1151),
        ("/api/v3/ticker/24hr", {"symbols": '["BTCUSDT","FOOUSDT"]'}, -1121),
        ("/api/v3/ticker/price", {"symbols": '["btcusdt"]'}, -1100),
        ("/api/v3/trades", {"symbol": "FOOUSDT"}, -1121),
        ("/api/v3/trades", {"symbol": "btcusdt"}, -1100),
        ("/api/v3/trades", {}, -1102),
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "-5"}, -1100),
        ("/api/v3/klines", {"interval": "30m"}, -1102),
        ("/api/v3/klines", {"symbol": "BTCUSDT"}, -1102),
        ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "30M"}, -1120),
        ("/api/v3/ticker/24hr", {"symbol": "BTCUSDT", "type": "HUGE"}, -1139),
    ],
)
def test_parameter_errors(sim, path, params, code):
    resp = get(sim, path, **params)
    assert resp.status_code == 400
    body = resp.json()
    assert body["code"] == code and isinstance(body["msg"], str) and body["msg"]
    assert "X-MBX-USED-WEIGHT-1M" in resp.headers


def test_error_messages_name_the_parameter(sim):
    assert get(sim, "/api/v3/klines", symbol="BTCUSDT").json()["msg"] == (
        "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."
    )
    assert "'symbol'" in get(sim, "/api/v3/trades", symbol="btcusdt").json()["msg"]


# ---- weights and rate limits ------------------------------------------------------------------------------


def test_weight_header_accumulates_per_clock_aligned_minute(sim):
    expected = 0
    for path, params, weight in [
        ("/api/v3/ping", {}, 1),
        ("/api/v3/exchangeInfo", {}, 20),
        ("/api/v3/trades", {"symbol": "BTCUSDT"}, 25),
        ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "30m"}, 2),
        ("/api/v3/depth", {"symbol": "BTCUSDT"}, 5),
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "101"}, 25),
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "1000"}, 50),
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "5000"}, 250),
        ("/api/v3/ticker/24hr", {"symbol": "BTCUSDT"}, 2),
        ("/api/v3/ticker/24hr", {"symbols": compact(SYMBOLS)}, 2),
        ("/api/v3/ticker/24hr", {}, 80),
        ("/api/v3/ticker/price", {"symbol": "BTCUSDT"}, 2),
        ("/api/v3/ticker/price", {"symbols": compact(SYMBOLS)}, 4),
        ("/api/v3/ticker/price", {}, 4),
    ]:
        expected += weight
        resp = get(sim, path, **params)
        assert resp.status_code == 200, (path, resp.text)
        assert int(resp.headers["X-MBX-USED-WEIGHT-1M"]) == expected, path
    assert sim.weight_used == expected
    sim.advance(40)  # 22:13:20 + 40 s = the next minute: a fresh window
    assert sim.weight_used == 0
    assert get(sim, "/api/v3/ping").headers["X-MBX-USED-WEIGHT-1M"] == "1"


@pytest.mark.parametrize("count, weight", [(1, 2), (20, 2), (21, 40), (100, 40), (101, 80)])
def test_ticker_24h_weight_tiers(count, weight):
    assert request_weight("/api/v3/ticker/24hr", {"symbols": compact(universe(count))}) == weight


def test_429_then_418_ban_with_retry_after():
    with BinanceSimulator(symbols=SYMBOLS, start_ms=START_MS, weight_limit=60, ban_after=2, warm=False) as sim:
        assert [get(sim, "/api/v3/trades", symbol="BTCUSDT").status_code for _ in range(2)] == [200, 200]
        limited = get(sim, "/api/v3/trades", symbol="BTCUSDT")
        assert limited.status_code == 429 and limited.json()["code"] == -1003
        assert limited.headers["Retry-After"] == "40"  # seconds to 22:14:00
        assert "current limit is 60 request weight per 1 MINUTE" in limited.json()["msg"]
        assert get(sim, "/api/v3/ping").status_code == 429
        banned = get(sim, "/api/v3/ping")
        assert banned.status_code == 418 and banned.headers["Retry-After"] == "120"
        assert banned.json()["code"] == -1003 and "IP banned until" in banned.json()["msg"]
        sim.advance(60)  # a new window does not lift the ban
        assert get(sim, "/api/v3/ping").status_code == 418
        sim.advance(61)
        assert get(sim, "/api/v3/ping").status_code == 200


def test_limit_window_resets_without_ban_when_client_waits():
    with BinanceSimulator(symbols=SYMBOLS, start_ms=START_MS, weight_limit=30, warm=False) as sim:
        assert get(sim, "/api/v3/trades", symbol="BTCUSDT").status_code == 200
        resp = get(sim, "/api/v3/trades", symbol="BTCUSDT")
        assert resp.status_code == 429
        sim.advance(int(resp.headers["Retry-After"]))
        assert get(sim, "/api/v3/trades", symbol="BTCUSDT").status_code == 200


# ---- faults -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, status, code",
    [("429", 429, -1003), ("418", 418, -1003), ("451", 451, 0), ("500", 500, -1001), ("503", 503, -1008),
     ("unknown_symbol", 400, -1121)],
)  # fmt: skip
def test_error_faults_hit_the_next_matching_requests_only(sim, fault, status, code):
    sim.inject(fault, path="/api/v3/trades", count=2)
    assert get(sim, "/api/v3/ping").status_code == 200  # other paths are untouched
    for _ in range(2):
        resp = get(sim, "/api/v3/trades", symbol="BTCUSDT")
        assert resp.status_code == status and resp.json()["code"] == code
        assert "X-MBX-USED-WEIGHT-1M" in resp.headers
        if status in (429, 418):
            assert int(resp.headers["Retry-After"]) > 0
    assert get(sim, "/api/v3/trades", symbol="BTCUSDT").status_code == 200


def test_451_body_is_binances_restricted_location_answer(sim):
    sim.inject("451")
    assert "restricted location" in get(sim, "/api/v3/time").json()["msg"]


def test_fault_filtered_by_symbol(sim):
    sim.inject("500", symbol="ETHUSDT")
    assert get(sim, "/api/v3/trades", symbol="BTCUSDT").status_code == 200
    assert get(sim, "/api/v3/ticker/price", symbols=compact(["BTCUSDT", "ETHUSDT"])).status_code == 500
    assert get(sim, "/api/v3/trades", symbol="ETHUSDT").status_code == 200


def test_truncated_fault_returns_200_with_broken_json(sim):
    sim.inject("truncated", path="klines")
    resp = get(sim, "/api/v3/klines", symbol="BTCUSDT", interval="30m")
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()
    assert len(get(sim, "/api/v3/klines", symbol="BTCUSDT", interval="30m").json()) > 0


def test_timeout_fault_outlasts_the_client_timeout(sim):
    sim.inject("timeout", path="/api/v3/ticker/price", delay_s=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(sim, "/api/v3/ticker/price", symbol="BTCUSDT", timeout=0.2)
    assert get(sim, "/api/v3/ticker/price", symbol="BTCUSDT", timeout=5).status_code == 200


def test_unknown_fault_name_is_refused(sim):
    with pytest.raises(ValueError, match="unknown fault"):
        sim.inject("404")


def test_http_control_endpoints(sim):
    resp = requests.post(sim.url + "/_sim/inject", json={"fault": "503", "path": "/api/v3/depth", "count": 1}, timeout=5)
    assert resp.json() == {"faultsPending": 1}
    assert get(sim, "/api/v3/depth", symbol="BTCUSDT").status_code == 503
    assert requests.post(sim.url + "/_sim/advance", json={"seconds": 30}, timeout=5).json() == {
        "serverTime": START_MS + 30_000
    }
    stats = requests.get(sim.url + "/_sim/stats", timeout=5).json()
    assert stats["requests"] == 1 and stats["serverTime"] == START_MS + 30_000 and stats["faultsPending"] == 0
    bad = requests.post(sim.url + "/_sim/inject", json={"fault": "nope"}, timeout=5)
    assert bad.status_code == 400 and "unknown fault" in bad.json()["error"]


def test_requests_are_recorded(sim):
    get(sim, "/api/v3/klines", symbol="BTCUSDT", interval="30m", limit="2")
    assert sim.requests == [("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "30m", "limit": "2"})]


# ---- scale ------------------------------------------------------------------------------------------------


def test_hundred_symbols_concurrently():
    names = universe(100)
    with BinanceSimulator(symbols=names, start_ms=START_MS, latency_ms=20, warm=False) as sim:
        with requests.Session() as session, ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(
                pool.map(
                    lambda n: session.get(sim.url + "/api/v3/trades", params={"symbol": n, "limit": 5}, timeout=30),
                    names,
                )
            )
        assert [r.status_code for r in statuses] == [200] * 100
        assert all(len(r.json()) == (0 if n == "MATICUSDT" else 5) for n, r in zip(names, statuses))
        assert sim.weight_used == 25 * 100


# ---- historicalTrades, the busy market, the market-data-only host, memo mode ------------------------------


def test_historical_trades_from_id_ascending_contiguous_and_equal_to_recent_trades(sim):
    recent = ok(sim, "/api/v3/trades", symbol="BTCUSDT", limit=1000)
    from_id = recent[100]["id"]
    page = ok(sim, "/api/v3/historicalTrades", symbol="BTCUSDT", fromId=from_id, limit=50)
    assert page == recent[100:150]  # the same trades, oldest first, starting at fromId
    assert [t["id"] for t in page] == list(range(from_id, from_id + 50))
    assert len(ok(sim, "/api/v3/historicalTrades", symbol="BTCUSDT", fromId=from_id)) == 500  # default limit
    assert len(ok(sim, "/api/v3/historicalTrades", symbol="BTCUSDT", fromId=recent[0]["id"] - 5000, limit=1500)) == 1000
    assert ok(sim, "/api/v3/historicalTrades", symbol="BTCUSDT", limit=3) == recent[-3:]  # no fromId: most recent
    past_newest = ok(sim, "/api/v3/historicalTrades", symbol="BTCUSDT", fromId=recent[-1]["id"] + 1)
    assert past_newest == []
    sim.advance(120)
    later = ok(sim, "/api/v3/historicalTrades", symbol="BTCUSDT", fromId=recent[-1]["id"] + 1, limit=1000)
    assert later and later[0]["id"] == recent[-1]["id"] + 1


def test_historical_trades_weight_and_errors(sim):
    resp = get(sim, "/api/v3/historicalTrades", symbol="BTCUSDT", fromId="1", limit="1000")
    assert resp.status_code == 200 and resp.headers["X-MBX-USED-WEIGHT-1M"] == "25"
    for params, code in (
        ({"symbol": "BTCUSDT", "fromId": "-1"}, -1100),
        ({"symbol": "BTCUSDT", "fromId": "12x"}, -1100),
        ({"symbol": "BTCUSDT", "limit": "-5"}, -1100),
        ({"symbol": "NOPEUSDT"}, -1121),
        ({"symbol": "btcusdt"}, -1100),
        ({}, -1102),
    ):
        bad = get(sim, "/api/v3/historicalTrades", **params)
        assert (bad.status_code, bad.json()["code"]) == (400, code), params
    assert "'fromId'" in get(sim, "/api/v3/historicalTrades", symbol="BTCUSDT", fromId="x").json()["msg"]


def test_history_starts_at_the_first_trade_of_the_simulated_listing(sim):
    oldest = ok(sim, "/api/v3/historicalTrades", symbol="ETHUSDT", fromId=0, limit=5)
    assert len(oldest) == 5 and oldest[0]["id"] > 0
    assert ok(sim, "/api/v3/historicalTrades", symbol="ETHUSDT", fromId=oldest[0]["id"], limit=5) == oldest


def test_busy_market_holds_thousands_of_trades_per_cron_interval():
    with BinanceSimulator(symbols=("BTCUSDT",), dead_symbols=(), start_ms=START_MS, trades_per_minute=1200,
                          warm=False) as busy:
        before = ok(busy, "/api/v3/trades", symbol="BTCUSDT", limit=1)[0]["id"]
        busy.advance(300)
        after = ok(busy, "/api/v3/trades", symbol="BTCUSDT", limit=1)[0]["id"]
        assert 4000 < after - before < 8000


def test_market_data_only_host_does_not_serve_historical_trades():
    with BinanceSimulator(symbols=SYMBOLS, start_ms=START_MS, market_data_only=True, warm=False) as host:
        missing = get(host, "/api/v3/historicalTrades", symbol="BTCUSDT", fromId="1")
        assert missing.status_code == 404 and missing.json()["code"] == -1000
        assert get(host, "/api/v3/trades", symbol="BTCUSDT", limit="5").status_code == 200
        assert get(host, "/api/v3/klines", symbol="BTCUSDT", interval="30m").status_code == 200


def test_memo_mode_serves_the_first_answer_from_memory_and_still_charges_weight():
    with BinanceSimulator(symbols=SYMBOLS, start_ms=START_MS, memo=True, warm=False) as memo:
        first = get(memo, "/api/v3/trades", symbol="BTCUSDT", limit="5")
        memo.advance(120)  # the market moves on, the memo does not
        second = get(memo, "/api/v3/trades", symbol="BTCUSDT", limit="5")
        assert first.content == second.content and second.headers["X-MBX-USED-WEIGHT-1M"] == "25"
        stats = requests.get(memo.url + "/_sim/stats", timeout=5).json()
        assert stats["memoAnswers"] == 1 and stats["cpuSeconds"] > 0
