"""Simulated serving rows for the dashboard tests: a throwaway copy of the serving schema, seeded.

`throwaway_serving_schema(settings)` creates `serving_test_<random>` from sql/05_serving.sql with the
project's psql variables (run as the server user through stack.postgres.psql, exactly as `make up`
applies the file; only -v serving_schema differs), so its grants to the bridge and Grafana roles are
the real ones, and drops it afterwards. `seed(conn, schema)` writes deterministic, realistic rows as the
bridge role (exact decimals at Binance's tick sizes) and returns them, for the tests to compare with.

Seeded (24 h ending at SEED_END, UTC): 7 symbols; 30-minute klines over 26 h (ETHUSDT volume spikes
13:00-14:00 as in the original post); 30 trades an hour per symbol with CDC timestamps per hop; hourly
24 h tickers (XRP, AVAX, BTC, DOGE trade most); two order-book snapshots per symbol (the older one must
not count); one latest price per symbol.
"""

from __future__ import annotations

import contextlib
import random
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal

from psycopg2 import sql
from psycopg2.extras import execute_values

from stack import postgres

UTC = timezone.utc
SEED_END = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
SEED_START = SEED_END - timedelta(hours=24)

# symbol -> (start price, tick, lot step, typical trade qty, 24 h trade count scale, book qty scale)
SYMBOLS = {
    "BTCUSDT": (Decimal("96250.00"), Decimal("0.01"), Decimal("0.00001"), 0.02, 2_400_000, 0.15),
    "ETHUSDT": (Decimal("3580.25"), Decimal("0.01"), Decimal("0.0001"), 0.4, 1_500_000, 4),
    "XRPUSDT": (Decimal("2.1834"), Decimal("0.0001"), Decimal("0.1"), 900, 2_900_000, 9_000),
    "DOGEUSDT": (Decimal("0.38412"), Decimal("0.00001"), Decimal("1"), 4_000, 2_100_000, 14_000),
    "AVAXUSDT": (Decimal("44.12"), Decimal("0.01"), Decimal("0.01"), 30, 2_600_000, 250),
    "ADAUSDT": (Decimal("1.0521"), Decimal("0.0001"), Decimal("0.1"), 2_000, 1_200_000, 11_000),
    "SOLUSDT": (Decimal("238.61"), Decimal("0.01"), Decimal("0.001"), 5, 1_900_000, 60),
}


def q(value: float | Decimal, step: Decimal) -> Decimal:
    return (Decimal(str(value)) / step).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * step


@dataclass
class Seeded:
    schema: str
    klines: list[tuple] = field(default_factory=list)
    trades: list[tuple] = field(default_factory=list)
    tickers: list[tuple] = field(default_factory=list)
    book: list[tuple] = field(default_factory=list)
    prices: list[tuple] = field(default_factory=list)


@contextlib.contextmanager
def throwaway_serving_schema(settings):
    name = f"serving_test_{secrets.token_hex(4)}"
    path = str(postgres.SQL_DIR / postgres.SERVING_SQL)
    db = settings.serving.database
    try:
        postgres.psql(settings, *postgres.sql_variables(settings), "-v", f"serving_schema={name}", "-f", path,
                      dbname=db)
        yield name
    finally:
        postgres.psql(settings, "-c", f'DROP SCHEMA IF EXISTS "{name}" CASCADE', dbname=db)


def _cdc(rng: random.Random, lsn: int, source_ts: datetime, served_lag: float) -> tuple:
    written = source_ts + timedelta(seconds=rng.uniform(0.4, 3.0))
    return ("r" if lsn % 7 == 0 else "c", lsn, source_ts, source_ts + timedelta(milliseconds=rng.randint(20, 300)),
            f"tx{lsn // 10}", written, written + timedelta(seconds=served_lag))


def build(schema: str, seed: int = 20261130) -> Seeded:
    rng = random.Random(seed)
    out = Seeded(schema)
    lsn = 1_000_000
    for symbol, (price0, tick, lot, trade_qty, count_scale, book_scale) in SYMBOLS.items():
        price = price0
        # 30-minute klines from SEED_START - 2h: open = previous close, a random walk with wicks.
        kline_start = SEED_START - timedelta(hours=2)
        for i in range(52):
            open_time = kline_start + timedelta(minutes=30 * i)
            open_p = price
            close_p = q(float(open_p) * (1 + rng.gauss(0, 0.004)), tick)
            high_p = q(float(max(open_p, close_p)) * (1 + abs(rng.gauss(0, 0.0015))), tick)
            low_p = q(float(min(open_p, close_p)) * (1 - abs(rng.gauss(0, 0.0015))), tick)
            base = trade_qty * 3_000 * (1 + 0.5 * rng.random())
            if symbol == "ETHUSDT" and open_time.hour == 13:
                base *= 3.2
            volume = q(base, lot)
            quote_volume = q(float(volume) * float(open_p + close_p) / 2, Decimal("0.0001"))
            close_time = open_time + timedelta(minutes=30) - timedelta(milliseconds=1)
            lsn += 1
            source_ts = close_time + timedelta(seconds=rng.uniform(1, 20))
            out.klines.append((symbol, "30m", open_time, open_p, high_p, low_p, close_p, volume, close_time,
                               quote_volume, rng.randint(2_000, 40_000), q(float(volume) * 0.52, lot),
                               q(float(quote_volume) * 0.52, Decimal("0.0001")), i < 51,
                               open_time.date().replace(day=1)) + _cdc(rng, lsn, source_ts, rng.uniform(2, 12)))
            price = close_p
        last_price = price
        # recent trades: 30 per hour; the extractor polls every minute, so exchange -> Postgres is 1-60 s.
        trade_id = rng.randint(10**8, 10**9)
        for hour in range(24):
            for k in range(30):
                trade_id += rng.randint(1, 50)
                t = SEED_START + timedelta(hours=hour, seconds=k * 120 + rng.randint(0, 119),
                                           milliseconds=rng.randint(0, 999))
                p = q(float(last_price) * (1 + rng.gauss(0, 0.002)), tick)
                qty = q(trade_qty * rng.lognormvariate(0, 0.8), lot) or lot
                lsn += 1
                source_ts = t + timedelta(seconds=rng.uniform(1, 60))
                out.trades.append((symbol, trade_id, p, qty, q(p * qty, Decimal("0.00000001")), t,
                                   rng.random() < 0.5, True, t.date())
                                  + _cdc(rng, lsn, source_ts, rng.uniform(2, 12) + (20 if hour == 20 else 0)))
        # hourly 24 h tickers
        for hour in range(24):
            close_time = SEED_START + timedelta(hours=hour, minutes=59, seconds=59)
            count = int(count_scale * (0.9 + 0.2 * rng.random()))
            change_pct = q(rng.gauss(0, 2.5), Decimal("0.001"))
            last = q(float(last_price) * (1 + rng.gauss(0, 0.002)), tick)
            prev = q(float(last) / (1 + float(change_pct) / 100), tick)
            lsn += 1
            out.tickers.append((symbol, close_time, close_time - timedelta(hours=24), last - prev, change_pct,
                                q((float(last) + float(prev)) / 2, tick), prev, last, lot, last - tick, lot * 10,
                                last, lot * 12, prev, max(last, prev) + tick * 50, min(last, prev) - tick * 50,
                                q(count * trade_qty, lot), q(count * trade_qty * float(last), Decimal("0.0001")),
                                10**9, 10**9 + count - 1, count, close_time.date())
                               + _cdc(rng, lsn, close_time + timedelta(seconds=5), 4.0))
        # two order-book snapshots; the newer one is what the panel counts
        for snap, captured in enumerate((SEED_END - timedelta(minutes=75), SEED_END - timedelta(minutes=5))):
            update_id = 5_000_000_000 + snap * 1000 + rng.randint(0, 999)
            for side, sign in (("bid", -1), ("ask", 1)):
                for level in range(1, 21):
                    level_price = last_price + sign * tick * level * 3
                    qty = q(book_scale * rng.lognormvariate(0, 0.7) * (3 if snap == 0 else 1), lot) or lot
                    lsn += 1
                    out.book.append((symbol, update_id, side, level_price, qty, level, captured, captured.date())
                                    + _cdc(rng, lsn, captured + timedelta(seconds=2), 6.0))
        lsn += 1
        observed = SEED_END - timedelta(seconds=rng.randint(5, 50))
        out.prices.append((symbol, last_price, observed) + _cdc(rng, lsn, observed + timedelta(seconds=1), 3.0))
    return out


_COLUMNS = {
    "klines": ("symbol, interval, open_time, open_price, high_price, low_price, close_price, volume, close_time, "
               "quote_volume, num_trades, taker_buy_base_volume, taker_buy_quote_volume, is_closed, open_month"),
    "recent_trades": ("symbol, trade_id, price, qty, quote_qty, trade_time, is_buyer_maker, is_best_match, "
                      "trade_date"),
    "daily_ticker": ("symbol, close_time, open_time, price_change, price_change_percent, weighted_avg_price, "
                     "prev_close_price, last_price, last_qty, bid_price, bid_qty, ask_price, ask_qty, open_price, "
                     "high_price, low_price, volume, quote_volume, first_trade_id, last_trade_id, trade_count, "
                     "close_date"),
    "order_book": "symbol, last_update_id, side, price, quantity, level, captured_at, captured_date",
    "latest_prices": "symbol, price, observed_at",
}
_CDC = "cdc_op, cdc_source_lsn, cdc_source_ts, cdc_event_ts, cdc_tx_id, cdc_written_at, served_at"


def seed(conn, schema: str) -> Seeded:
    """Insert the simulated rows (conn: the bridge role, which may write the serving schema)."""
    data = build(schema)
    rows = {"klines": data.klines, "recent_trades": data.trades, "daily_ticker": data.tickers,
            "order_book": data.book, "latest_prices": data.prices}
    with conn.cursor() as cur:
        for table, values in rows.items():
            statement = sql.SQL("INSERT INTO {}.{} ({}) VALUES %s").format(
                sql.Identifier(schema), sql.Identifier(table), sql.SQL(_COLUMNS[table] + ", " + _CDC))
            execute_values(cur, statement.as_string(conn), values, page_size=2000)
    conn.commit()
    return data
