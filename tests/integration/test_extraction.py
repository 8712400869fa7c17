"""The extraction cycle against real Postgres and the in-process Binance simulator.

Each test uses its own fresh symbols and deletes its rows (as the app role) at the end, so it shares the
database with the CDC tests safely. The simulator's clock is frozen at 59 s into a minute (Retry-After of
an injected 429 is then 1 s) and 59 s into a 30-minute kline window (advancing 10 minutes keeps the same
open kline).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from binance_cdc import datasets as ds
from binance_cdc.extract import load as pg_load
from binance_cdc.postgres_conn import app_connection
from binance_cdc.extract.cycle import (
    EXIT_BANNED,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_RESTRICTED,
    RunOptions,
    run,
)
from binance_cdc.settings import load_settings
from binance_cdc.extract.transforms import ms_to_utc
from simulator import BinanceSimulator

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("recent_trades", "order_book", "klines", "daily_ticker", "latest_prices", "trade_gaps")
HALF_HOUR_MS = 1_800_000


def fresh_symbols(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6].upper()
    return [f"X{tag}{chr(65 + i)}USDT" for i in range(n)]


@pytest.fixture
def cfg(settings):
    env = {
        **os.environ,
        "BINANCE_TIMEOUT_S": "1",
        "BINANCE_MAX_RETRIES": "3",
        "BINANCE_MAX_WORKERS": "4",
        "BINANCE_WEIGHT_SHARE": "0.5",
    }
    return load_settings("postgres", "postgres_app", "binance", env=env)


@pytest.fixture
def db(settings):
    conn = app_connection(settings, "test_extraction")
    conn.autocommit = True
    created: list[str] = []
    yield conn, created
    with conn.cursor() as cur:
        for table in TABLES:
            cur.execute(f"DELETE FROM binance.{table} WHERE symbol = ANY(%s)", (created,))
    conn.close()


@pytest.fixture
def make_sim(db):
    _, created = db
    sims: list[BinanceSimulator] = []

    def make(n: int = 2, dead: int = 0, latency_ms: int = 0, names: list[str] | None = None, **options):
        names = names or fresh_symbols(n + dead)
        created.extend(names)
        start = (int(time.time() * 1000) // HALF_HOUR_MS - 1) * HALF_HOUR_MS + 59_000
        sim = BinanceSimulator(
            symbols=tuple(names[:n]), dead_symbols=tuple(names[n:]), latency_ms=latency_ms, seed=7, start_ms=start,
            **options,
        ).start()
        sims.append(sim)
        return sim, names[:n], names[n:]

    yield make
    for sim in sims:
        sim.stop()


def count(conn, table: str, symbols) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM binance.{table} WHERE symbol = ANY(%s)", (list(symbols),))
        return cur.fetchone()[0]


def served(sim, path: str, **params):
    """What the simulator answers (its clock is frozen, so the same as the extractor saw)."""
    r = requests.get(sim.url + path, params=params, timeout=5)
    r.raise_for_status()
    return r.json(parse_float=Decimal), r.headers


def server_time(sim) -> datetime:
    return datetime.fromtimestamp(sim.now_ms() // 1000, tz=timezone.utc)


def test_full_cycle_loads_all_five_tables_with_exact_values(cfg, db, make_sim, caplog):
    conn, created = db
    sim, live, dead = make_sim(2, dead=1)
    unknown = fresh_symbols(1)
    created.extend(unknown)

    report = run(cfg, live + dead + unknown, base_url=sim.url)

    assert report.exit_code == EXIT_OK, report.message
    assert set(report.skipped_symbols) == set(dead + unknown)
    assert "BREAK" in report.skipped_symbols[dead[0]] and "-1121" in report.skipped_symbols[unknown[0]]
    for table in TABLES[:5]:
        assert count(conn, table, dead + unknown) == 0, table
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dataset=")]
    assert sorted(m.split()[0] for m in summaries) == sorted(f"dataset={n}" for n in ds.DATASETS)
    when = server_time(sim)

    with conn.cursor() as cur:
        for symbol in live:
            trades, _ = served(sim, "/api/v3/trades", symbol=symbol, limit=500)
            cur.execute(
                "SELECT trade_id, price::text, qty::text, quote_qty::text, trade_time, is_buyer_maker"
                " FROM binance.recent_trades WHERE symbol = %s ORDER BY trade_id", (symbol,),
            )
            assert cur.fetchall() == [
                (t["id"], t["price"], t["qty"], t["quoteQty"], ms_to_utc(t["time"]), t["isBuyerMaker"])
                for t in trades
            ]

            book, _ = served(sim, "/api/v3/depth", symbol=symbol, limit=100)
            cur.execute(
                "SELECT side, level, price::text, quantity::text, last_update_id, captured_at FROM binance.order_book"
                " WHERE symbol = %s ORDER BY side DESC, level", (symbol,),
            )
            expected = [("bid", i, p, q, book["lastUpdateId"], when) for i, (p, q) in enumerate(book["bids"], 1)]
            expected += [("ask", i, p, q, book["lastUpdateId"], when) for i, (p, q) in enumerate(book["asks"], 1)]
            assert cur.fetchall() == expected

            klines, _ = served(sim, "/api/v3/klines", symbol=symbol, interval="30m", limit=10)
            cur.execute(
                "SELECT (extract(epoch FROM open_time) * 1000)::bigint, open_price::text, close_price::text,"
                " volume::text, quote_volume::text, num_trades, taker_buy_quote_volume::text, is_closed"
                " FROM binance.klines WHERE symbol = %s AND interval = '30m' ORDER BY open_time", (symbol,),
            )
            assert cur.fetchall() == [
                (k[0], k[1], k[4], k[5], k[7], k[8], k[10], k[6] < sim.now_ms() // 1000 * 1000) for k in klines
            ]
            assert [row[-1] for row in klines_rows(cur, symbol)] == [True] * 9 + [False]

        prices, _ = served(sim, "/api/v3/ticker/price", symbols=json.dumps(live, separators=(",", ":")))
        cur.execute("SELECT symbol, price::text, observed_at FROM binance.latest_prices WHERE symbol = ANY(%s)"
                    " ORDER BY symbol", (live,))
        assert cur.fetchall() == sorted((p["symbol"], p["price"], when) for p in prices)

        tickers, _ = served(sim, "/api/v3/ticker/24hr", symbols=json.dumps(live, separators=(",", ":")))
        cur.execute("SELECT symbol, last_price::text, quote_volume::text, first_trade_id, last_trade_id, trade_count"
                    " FROM binance.daily_ticker WHERE symbol = ANY(%s) ORDER BY symbol", (live,))
        assert cur.fetchall() == sorted(
            (t["symbol"], t["lastPrice"], t["quoteVolume"], t["firstId"], t["lastId"], t["count"]) for t in tickers
        )


def klines_rows(cur, symbol):
    cur.execute("SELECT open_time, is_closed FROM binance.klines WHERE symbol = %s ORDER BY open_time", (symbol,))
    return cur.fetchall()


def test_second_cycle_adds_no_duplicates_updates_open_kline_and_leaves_unchanged_rows_alone(cfg, db, make_sim):
    conn, _ = db
    sim, live, _ = make_sim(2)
    assert run(cfg, live, base_url=sim.url).exit_code == EXIT_OK

    again = run(cfg, live, base_url=sim.url)  # same clock: nothing changed on Binance's side
    assert again.exit_code == EXIT_OK
    for name in ("latest_prices", "klines", "recent_trades"):
        assert (again.dataset(name).inserted, again.dataset(name).updated) == (0, 0), name
    assert count(conn, "recent_trades", live) == 1000 and count(conn, "klines", live) == 20

    with conn.cursor() as cur:
        cur.execute("SELECT symbol, open_time, close_price, num_trades FROM binance.klines"
                    " WHERE symbol = ANY(%s) AND NOT is_closed", (live,))
        open_before = {r[0]: r for r in cur.fetchall()}
        sim.advance(600)
        third = run(cfg, live, base_url=sim.url)
        assert third.exit_code == EXIT_OK
        assert third.dataset("klines").inserted == 0 and third.dataset("klines").updated == 2
        new_trades = third.dataset("recent_trades").inserted
        assert 0 < new_trades < 1000
        assert count(conn, "recent_trades", live) == 1000 + new_trades
        cur.execute("SELECT symbol, open_time, close_price, num_trades FROM binance.klines"
                    " WHERE symbol = ANY(%s) AND NOT is_closed", (live,))
        open_after = {r[0]: r for r in cur.fetchall()}
        for symbol in live:
            assert open_after[symbol][1] == open_before[symbol][1]  # the same candle, updated in place
            assert open_after[symbol][3] > open_before[symbol][3]
            klines, _ = served(sim, "/api/v3/klines", symbol=symbol, interval="30m", limit=10)
            assert open_after[symbol][2] == Decimal(klines[-1][4]) and open_after[symbol][3] == klines[-1][8]
        assert count(conn, "trade_gaps", live) == 0  # 500 per 10 minutes overlaps: nothing missed


BUSY = 1200  # trades per minute and symbol: 6000 in a 5-minute cron interval, six historicalTrades pages


def stored_ids(conn, symbol: str) -> list[int]:
    with conn.cursor() as cur:
        cur.execute("SELECT trade_id FROM binance.recent_trades WHERE symbol = %s ORDER BY trade_id", (symbol,))
        return [r[0] for r in cur.fetchall()]


def gaps_of(conn, symbol: str) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT after_trade_id, before_trade_id, missed_count, reason, filled_count, closed_at IS NOT NULL"
            " FROM binance.trade_gaps WHERE symbol = %s ORDER BY after_trade_id", (symbol,),
        )
        return cur.fetchall()


def summary_line(caplog, dataset: str) -> str:
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"dataset={dataset} ")]
    return lines[-1]


def newest_id(sim, symbol: str) -> int:
    return served(sim, "/api/v3/trades", symbol=symbol, limit=1)[0][-1]["id"]


def test_two_runs_a_cron_interval_apart_miss_no_trade(cfg, db, make_sim, caplog):
    conn, _ = db
    sim, live, _ = make_sim(2, trades_per_minute=BUSY, warm=False)
    first = run(cfg, live, [ds.RECENT_TRADES], base_url=sim.url)
    assert first.exit_code == EXIT_OK and first.dataset("recent_trades").inserted == 1000  # the lookback, 500 each
    before = {s: stored_ids(conn, s)[-1] for s in live}
    sim.advance(300)

    second = run(cfg, live, [ds.RECENT_TRADES], base_url=sim.url)

    assert second.exit_code == EXIT_OK, second.message
    for symbol in live:
        ids = stored_ids(conn, symbol)
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # contiguous: not one trade missed
        assert ids[-1] == newest_id(sim, symbol) and ids[-1] - before[symbol] > 3000  # thousands per interval
        assert gaps_of(conn, symbol) == []
    pages = [p for p, _ in sim.requests if p == "/api/v3/historicalTrades"]
    report = second.dataset("recent_trades")
    assert report.weight == 25 * len(pages) and len(pages) >= 8  # 1000 a page
    assert (report.gaps, report.gap_filled, report.open_gaps, report.open_missing) == (0, 0, 0, 0)
    line = summary_line(caplog, "recent_trades")
    assert f"fetched={report.fetched}" in line and "gap_filled=0" in line and "still_missing=0" in line


def test_a_run_out_of_budget_leaves_a_gap_with_its_reason_that_the_next_run_closes(cfg, db, make_sim, caplog):
    conn, _ = db
    sim, live, _ = make_sim(1, trades_per_minute=BUSY, warm=False)
    symbol = live[0]
    assert run(cfg, live, [ds.RECENT_TRADES], base_url=sim.url).exit_code == EXIT_OK
    last = stored_ids(conn, symbol)[-1]
    sim.advance(600)  # about 12,000 trades

    # Two pages of 1000 plus the closing latest-trades request: the rest cannot be fetched in this run.
    short = run(cfg, live, [ds.RECENT_TRADES], base_url=sim.url, options=RunOptions(sequence_weight=75))

    assert short.exit_code == EXIT_OK, short.message
    newest = newest_id(sim, symbol)
    [(after, before, missed, reason, filled, closed)] = gaps_of(conn, symbol)
    assert (after, before, reason, filled, closed) == (last + 2000, newest - 999, "budget", 0, False)
    assert missed == before - after - 1 > 5000
    ids = stored_ids(conn, symbol)
    assert set(range(ids[0], after + 1)) <= set(ids) and set(range(before, newest + 1)) <= set(ids)
    assert not set(range(after + 1, before)) & set(ids)  # exactly the recorded gap is missing
    report = short.dataset("recent_trades")
    assert (report.gaps, report.open_gaps, report.open_missing) == (1, 1, missed)
    assert f"still_missing={missed}" in summary_line(caplog, "recent_trades")

    again = run(cfg, live, [ds.RECENT_TRADES], base_url=sim.url)

    assert again.exit_code == EXIT_OK, again.message
    assert gaps_of(conn, symbol) == [(after, before, missed, "budget", missed, True)]
    ids = stored_ids(conn, symbol)
    assert ids == list(range(ids[0], newest + 1))
    report = again.dataset("recent_trades")
    assert (report.gap_filled, report.gaps_closed, report.open_gaps, report.open_missing) == (missed, 1, 0, 0)
    assert f"gap_filled={missed} gaps_closed=1 open_gaps=0 still_missing=0" in summary_line(caplog, "recent_trades")


def test_a_host_without_historical_trades_falls_back_with_an_honest_gap_a_full_host_fills(cfg, db, make_sim, caplog):
    conn, _ = db
    restricted, live, _ = make_sim(1, trades_per_minute=BUSY, market_data_only=True, warm=False)
    symbol = live[0]
    assert run(cfg, live, [ds.RECENT_TRADES], base_url=restricted.url).exit_code == EXIT_OK
    last = stored_ids(conn, symbol)[-1]
    restricted.advance(300)

    report = run(cfg, live, [ds.RECENT_TRADES], base_url=restricted.url)

    assert report.exit_code == EXIT_OK, report.message
    asked = [p for p, _ in restricted.requests]
    assert asked.count("/api/v3/historicalTrades") == 1  # detected once, then not asked again
    newest = newest_id(restricted, symbol)
    first_latest = newest - 999  # the fallback takes the latest 1000 trades
    assert gaps_of(conn, symbol) == [(last, first_latest, first_latest - last - 1, "not_served", 0, False)]
    assert any("falls back to the latest trades" in r.getMessage() for r in caplog.records)
    assert stored_ids(conn, symbol)[-1] == newest

    # The same market served by a host with historicalTrades: the next run fills the gap and closes it.
    full = BinanceSimulator(symbols=(symbol,), dead_symbols=(), seed=7, start_ms=restricted.now_ms(),
                            trades_per_minute=BUSY, warm=False).start()
    try:
        assert run(cfg, live, [ds.RECENT_TRADES], base_url=full.url).exit_code == EXIT_OK
    finally:
        full.stop()
    [(_, _, missed, _, filled, closed)] = gaps_of(conn, symbol)
    assert filled == missed and closed
    ids = stored_ids(conn, symbol)
    assert ids == list(range(ids[0], newest + 1))


def test_data_api_host_is_known_not_to_serve_historical_trades_before_any_request():
    from binance_cdc.extract.client import serves

    assert not serves("https://data-api.binance.vision", ds.RECENT_TRADES.cursor.endpoint)


def test_klines_after_a_three_hour_outage_are_all_there_and_the_open_candle_is_updated(cfg, db, make_sim):
    conn, _ = db
    sim, live, _ = make_sim(1, warm=False)
    symbol = live[0]
    assert run(cfg, live, [ds.KLINES], base_url=sim.url).exit_code == EXIT_OK
    assert count(conn, "klines", live) == 10
    sim.advance(3 * 3600)

    after = run(cfg, live, [ds.KLINES], base_url=sim.url)

    assert after.exit_code == EXIT_OK, after.message
    with conn.cursor() as cur:
        cur.execute("SELECT (extract(epoch FROM open_time) * 1000)::bigint, close_price::text, num_trades, is_closed"
                    " FROM binance.klines WHERE symbol = %s ORDER BY open_time", (symbol,))
        rows = cur.fetchall()
    opens = [r[0] for r in rows]
    assert opens == list(range(opens[0], opens[0] + HALF_HOUR_MS * len(opens), HALF_HOUR_MS))  # none missing
    assert len(rows) == 10 + 6  # six new half hours, the formerly open candle now closed
    assert [r[3] for r in rows] == [True] * 15 + [False]
    served_now, _ = served(sim, "/api/v3/klines", symbol=symbol, interval="30m", startTime=opens[9], limit=1000)
    assert [(k[0], k[4], k[8]) for k in served_now] == [(r[0], r[1], r[2]) for r in rows[9:]]
    assert (after.dataset("klines").inserted, after.dataset("klines").updated) == (6, 1)
    startimes = [q.get("startTime") for p, q in sim.requests if p == "/api/v3/klines"]
    assert startimes[-1] == str(opens[9])  # asked from the last stored (then open) candle on

    sim.advance(600)
    later = run(cfg, live, [ds.KLINES], base_url=sim.url)
    assert (later.dataset("klines").inserted, later.dataset("klines").updated) == (0, 1)  # the open one, in place
    with conn.cursor() as cur:
        cur.execute("SELECT num_trades FROM binance.klines WHERE symbol = %s AND NOT is_closed", (symbol,))
        assert cur.fetchone()[0] > rows[-1][2]


@pytest.mark.parametrize(
    "fault, path, extra",
    [
        ("429", "/api/v3/klines", {}),
        ("500", "/api/v3/depth", {}),
        ("503", "/api/v3/ticker/24hr", {}),
        ("timeout", "/api/v3/trades", {"delay_s": 2.5}),
        ("unknown_symbol", "/api/v3/exchangeInfo", {}),
    ],
)
def test_transient_faults_are_retried_and_the_cycle_succeeds(cfg, db, make_sim, fault, path, extra):
    conn, _ = db
    sim, live, _ = make_sim(2)
    sim.inject(fault, path=path, count=1, **extra)

    report = run(cfg, live, base_url=sim.url)

    assert report.exit_code == EXIT_OK, report.message
    assert sim.faults.pending() == 0  # the fault was hit
    calls = [p for p, _ in sim.requests if p == path]
    batched = path in ("/api/v3/ticker/24hr", "/api/v3/exchangeInfo")
    assert len(calls) == (2 if batched else 3)  # the failed call was sent again, nothing more
    assert count(conn, "klines", live) == 20 and count(conn, "recent_trades", live) == 1000
    assert count(conn, "order_book", live) == 400 and count(conn, "daily_ticker", live) == 2


def test_unknown_symbol_on_one_endpoint_skips_that_symbol_only(cfg, db, make_sim):
    conn, _ = db
    sim, live, _ = make_sim(2)
    sim.inject("unknown_symbol", path="/api/v3/trades", symbol=live[0])
    sim.inject("unknown_symbol", path="/api/v3/ticker/price")  # the batch: asked again one by one

    report = run(cfg, live, base_url=sim.url)

    assert report.exit_code == EXIT_OK, report.message
    assert list(report.dataset("recent_trades").skipped) == [live[0]]
    assert count(conn, "recent_trades", live[:1]) == 0 and count(conn, "recent_trades", live[1:]) == 500
    assert count(conn, "latest_prices", live) == 2


def test_truncated_body_fails_that_dataset_for_that_symbol_and_commits_the_rest(cfg, db, make_sim):
    conn, _ = db
    sim, live, _ = make_sim(2)
    sim.inject("truncated", path="/api/v3/depth", symbol=live[0], count=2)  # the retry is cut short too

    report = run(cfg, live, base_url=sim.url)

    assert report.exit_code == EXIT_FAILED
    assert "order_book" in report.message
    assert len(report.dataset("order_book").errors) == 1 and live[0] in report.dataset("order_book").errors[0]
    assert count(conn, "order_book", live[:1]) == 0 and count(conn, "order_book", live[1:]) == 200
    assert count(conn, "klines", live) == 20 and count(conn, "recent_trades", live) == 1000
    assert count(conn, "latest_prices", live) == 2


def test_truncated_once_is_read_again(cfg, db, make_sim):
    conn, _ = db
    sim, live, _ = make_sim(1)
    sim.inject("truncated", path="/api/v3/depth", count=1)
    assert run(cfg, live, base_url=sim.url).exit_code == EXIT_OK
    assert count(conn, "order_book", live) == 200


def test_418_stops_the_run_with_the_ban_exit_code_keeping_what_was_committed(cfg, db, make_sim, caplog):
    conn, _ = db
    sim, live, _ = make_sim(2)
    sim.inject("418", path="/api/v3/klines", count=1)

    report = run(cfg, live, base_url=sim.url)

    assert report.exit_code == EXIT_BANNED
    assert "banned" in report.message and "418" in report.message and "Retry-After 120" in report.message
    assert count(conn, "latest_prices", live) == 2 and count(conn, "daily_ticker", live) == 2
    assert count(conn, "order_book", live) == 0 and count(conn, "recent_trades", live) == 0
    # no request after the ban, apart from the klines calls already in flight
    assert not any(p in ("/api/v3/depth", "/api/v3/trades") for p, _ in sim.requests)


def test_451_explains_and_suggests_the_market_data_url(cfg, db, make_sim):
    conn, _ = db
    sim, live, _ = make_sim(1)
    sim.inject("451", path="/api/v3/exchangeInfo")

    report = run(cfg, live, base_url=sim.url)

    assert report.exit_code == EXIT_RESTRICTED
    assert "BINANCE_BASE_URL=https://data-api.binance.vision" in report.message
    assert count(conn, "latest_prices", live) == 0


def test_a_run_holding_the_lock_keeps_a_second_one_out(cfg, db, make_sim, settings):
    conn, _ = db
    sim, live, _ = make_sim(2, latency_ms=100)
    holder = app_connection(settings, "test_lock_holder")
    try:
        assert pg_load.try_run_lock(holder)
        blocked = run(cfg, live, base_url=sim.url)
        assert blocked.exit_code == EXIT_LOCKED and "lock" in blocked.message
        assert sim.requests == [] and count(conn, "latest_prices", live) == 0
    finally:
        holder.close()

    # two overlapping runs: the second starts while the first is fetching
    first: dict = {}
    thread = threading.Thread(target=lambda: first.setdefault("report", run(cfg, live, base_url=sim.url)))
    thread.start()
    deadline = time.monotonic() + 20
    while not sim.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    second = run(cfg, live, base_url=sim.url)
    thread.join(60)
    assert second.exit_code == EXIT_LOCKED
    assert first["report"].exit_code == EXIT_OK
    assert count(conn, "recent_trades", live) == 1000 and count(conn, "klines", live) == 20


def script(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "BINANCE_TIMEOUT_S": "2", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "extraction_script.py"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_script_runs_one_cycle_and_exits_with_documented_codes(db, make_sim):
    conn, _ = db
    sim, live, _ = make_sim(2)
    ok = script("--base-url", sim.url, "--symbols", ",".join(live), "--datasets", "klines,latest_prices")
    assert ok.returncode == EXIT_OK, ok.stderr
    assert count(conn, "klines", live) == 20 and count(conn, "recent_trades", live) == 0
    assert "dataset=klines" in ok.stderr and "dataset=latest_prices" in ok.stderr

    before = len(sim.requests)
    bad = script("--base-url", sim.url, "--symbols", f"{live[0]},btc usdt,ethusdt")
    assert bad.returncode == EXIT_CONFIG
    assert "'btc usdt'" in bad.stderr and "'ethusdt'" in bad.stderr
    assert len(sim.requests) == before  # rejected before any request

    unknown_dataset = script("--base-url", sim.url, "--datasets", "candles")
    assert unknown_dataset.returncode == EXIT_CONFIG and "candles" in unknown_dataset.stderr


def test_zero_ticker_of_a_symbol_exchangeinfo_calls_trading_is_not_loaded(cfg, db):
    """The dead-symbol guard does not depend on exchangeInfo: a zero ticker never becomes a price."""
    from binance_cdc.extract.cycle import DatasetReport, Fetched, load_dataset

    conn, created = db
    live, dead = fresh_symbols(2)
    created.extend([live, dead])
    fixture = json.loads((ROOT / "tests/fixtures/binance/ticker_24hr.json").read_text())
    fixture[0]["symbol"], fixture[1]["symbol"] = live, dead
    load_conn = app_connection(cfg)
    try:
        report = DatasetReport("daily_ticker")
        when = datetime(2024, 1, 1, tzinfo=timezone.utc)
        load_dataset(load_conn, ds.DAILY_TICKER, [Fetched(None, pages=[(fixture, when)], weight=2)], report)
    finally:
        load_conn.close()
    assert (report.fetched, report.inserted, report.errors) == (1, 1, [])
    assert list(report.skipped) == [dead] and "firstId -1" in report.skipped[dead]
    assert count(conn, "daily_ticker", [live]) == 1 and count(conn, "daily_ticker", [dead]) == 0


def test_sequence_load_copies_new_ids_straight_and_still_ignores_known_and_repeated_ones(settings):
    """Ids above the stored maximum skip ON CONFLICT; a repeated id falls back to it, with the same result."""
    from psycopg2 import sql

    conn = app_connection(settings, "test_sequence_load")
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE seq_trades (LIKE binance.recent_trades INCLUDING ALL)")
        target = sql.Identifier("seq_trades")
        when = datetime(2024, 1, 1, tzinfo=timezone.utc)

        def rows(ids, symbol="SEQAUSDT"):
            return [(symbol, i, Decimal("1.00000000"), Decimal("2.00000000"), Decimal("2.00000000"), when, True, True)
                    for i in ids]

        assert pg_load.load(conn, ds.RECENT_TRADES, rows([1, 2, 3, 4, 5]), target).inserted == 5
        # 3..5 are stored (ON CONFLICT), 6..8 are new (straight COPY), another symbol starts fresh
        assert pg_load.load(conn, ds.RECENT_TRADES, rows([3, 4, 5, 6, 7, 8]) + rows([1], "SEQBUSDT"),
                            target).inserted == 4
        # 9 twice: the straight COPY meets its own duplicate and the rows take the ON CONFLICT way
        assert pg_load.load(conn, ds.RECENT_TRADES, rows([9, 9, 10]), target).inserted == 2
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("SELECT symbol, trade_id FROM seq_trades ORDER BY symbol, trade_id")
            assert cur.fetchall() == [("SEQAUSDT", i) for i in range(1, 11)] + [("SEQBUSDT", 1)]
    finally:
        conn.close()


def test_run_takes_any_dataset_it_is_given_and_reports_one_it_cannot_load(cfg, db, make_sim):
    """A dataset the cycle has never heard of gets its place by load_priority; its missing table is an
    error of that dataset in the report, not an exception, and the others are loaded."""
    from dataclasses import replace

    conn, _ = db
    sim, live, _ = make_sim(1, warm=False)
    newcomer = replace(ds.LATEST_PRICES, name="newcomer_prices", load_priority=5)

    report = run(cfg, live, [ds.KLINES, newcomer], base_url=sim.url)

    assert report.exit_code == EXIT_FAILED and "newcomer_prices" in report.message
    assert [d.name for d in report.datasets] == ["newcomer_prices", "klines"]
    assert "load failed" in report.dataset("newcomer_prices").errors[0]
    assert report.dataset("newcomer_prices").fetched == 1
    assert count(conn, "klines", live) == 10
