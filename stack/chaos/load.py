"""The chaos suite's steady mixed writer: about `rate` rows a second into schema `binance`, as the app role.

One thread, one transaction per step, the steps in turn:
single-row INSERT, multi-row INSERT, COPY (its rows share one WAL record, so one LSN), UPDATE of earlier
rows, DELETE of earlier rows (Debezium sends a tombstone after each), an order-book snapshot by COPY and the
DELETE of an older one, a multi-row upsert of latest prices, the re-insert of a deleted key, and one key
inserted, updated, deleted and inserted again in a single transaction. Every row belongs to a symbol
starting with CHAOS, so `purge()` removes what an earlier run left.

Each step also upserts latest_prices `CHAOSPROBE` with the wall-clock time: `Probe` reads it back from
Cassandra, and its age is the end-to-end lag. When Postgres is down the step fails, the writer reconnects
with a short backoff and goes on; only committed rows are counted. Times are whole milliseconds (Cassandra
keeps no more), decimals exact strings.
"""

from __future__ import annotations

import io
import logging
import random
import threading
import time
from datetime import datetime, timezone
from typing import Callable

from binance_cdc import postgres_conn

log = logging.getLogger("chaos.load")

SYMBOLS = tuple(f"CHAOS{n}USDT" for n in range(4))
PROBE = "CHAOSPROBE"
TRADE_COLUMNS = ("symbol", "trade_id", "price", "qty", "quote_qty", "trade_time", "is_buyer_maker", "is_best_match")
BOOK_COLUMNS = ("symbol", "last_update_id", "side", "price", "quantity", "level", "captured_at")


def now_ms() -> datetime:
    moment = datetime.now(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def copy_text(rows: list[tuple]) -> io.StringIO:
    def cell(value) -> str:
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value).lower() if isinstance(value, bool) else str(value)

    return io.StringIO("".join("\t".join(cell(v) for v in row) + "\n" for row in rows))


class MixedLoad(threading.Thread):
    def __init__(self, settings, rate: float = 200.0) -> None:
        super().__init__(name="chaos-load", daemon=True)
        self.settings = settings
        self.rate = rate
        self.rows = 0  # rows changed by committed transactions
        self.failures = 0  # transactions that failed (Postgres down, connection cut)
        self._running = threading.Event()
        self._halt = threading.Event()
        self._stepping = threading.Lock()  # held while a transaction is open
        self._conn = None
        self._rng = random.Random(9)
        self._next_trade = int(time.time() * 1000) * 100  # above any earlier run's ids
        self._next_book = self._next_trade
        self._trades: list[tuple[str, int]] = []
        self._deleted: list[tuple[str, int]] = []
        self._books: list[tuple[str, int]] = []
        self._step = 0

    # --- control ---------------------------------------------------------------------------------------

    def resume(self) -> None:
        self._running.set()

    def pause(self) -> None:
        """Stops after the running step; returns once no transaction is open."""
        self._running.clear()
        with self._stepping:
            pass

    def stop(self) -> None:
        self._halt.set()
        self._running.set()
        self.join(30)
        if self._conn is not None:
            self._conn.close()

    # --- the steps -------------------------------------------------------------------------------------

    def _trade(self, symbol: str, trade_id: int) -> tuple:
        price = f"{self._rng.randint(1, 99999)}.{self._rng.randint(0, 99999999):08d}"
        qty = f"0.{self._rng.randint(1, 99999):05d}"
        return (symbol, trade_id, price, qty, f"{self._rng.randint(1, 9999)}.1234567890", now_ms(),
                self._rng.random() < 0.5, True)

    def _new_trades(self, n: int) -> list[tuple]:
        rows = []
        for _ in range(n):
            self._next_trade += 1
            rows.append(self._trade(self._rng.choice(SYMBOLS), self._next_trade))
        return rows

    def _insert(self, cur, rows: list[tuple]) -> int:
        marks = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
        cur.execute(f"INSERT INTO binance.recent_trades ({', '.join(TRADE_COLUMNS)}) VALUES {marks} "
                    "ON CONFLICT DO NOTHING", [v for row in rows for v in row])
        return len(rows)

    def _pick(self, keys: list, n: int) -> list:
        return self._rng.sample(keys, min(n, len(keys)))

    def step(self, cur) -> tuple[int, Callable[[], None]]:
        """Run one step in the open transaction: (rows it changes, what to remember once it committed)."""
        kind = self._step % 10
        if kind == 0:  # single-row INSERT
            rows = self._new_trades(1)
            return self._insert(cur, rows), lambda: self._trades.extend(r[:2] for r in rows)
        if kind == 1:  # multi-row INSERT
            rows = self._new_trades(5)
            return self._insert(cur, rows), lambda: self._trades.extend(r[:2] for r in rows)
        if kind == 2:  # COPY: one multi-insert WAL record, so the rows share an LSN
            rows = self._new_trades(10)
            cur.copy_expert(f"COPY binance.recent_trades ({', '.join(TRADE_COLUMNS)}) FROM STDIN", copy_text(rows))
            return len(rows), lambda: self._trades.extend(r[:2] for r in rows)
        if kind == 3:  # UPDATE earlier rows
            keys = self._pick(self._trades, 3)
            for symbol, trade_id in keys:
                cur.execute("UPDATE binance.recent_trades SET price = %s, qty = %s WHERE symbol = %s AND trade_id = %s",
                            (f"{self._rng.randint(1, 9999)}.{self._rng.randint(0, 999999):06d}", "1.50", symbol,
                             trade_id))
            return len(keys), lambda: None
        if kind == 4:  # DELETE earlier rows (each followed by a tombstone)
            keys = self._pick(self._trades, 2)
            for key in keys:
                cur.execute("DELETE FROM binance.recent_trades WHERE symbol = %s AND trade_id = %s", key)

            def forget() -> None:
                for key in keys:
                    self._trades.remove(key)
                self._deleted.extend(keys)
            return len(keys), forget
        if kind == 5:  # an order-book snapshot by COPY
            self._next_book += 1
            symbol, book = self._rng.choice(SYMBOLS), self._next_book
            at = now_ms()
            rows = [(symbol, book, side, f"{100 + level}.{self._rng.randint(0, 99):02d}",
                     f"{self._rng.randint(1, 500)}.000", level, at)
                    for side in ("bid", "ask") for level in range(1, 6)]
            cur.copy_expert(f"COPY binance.order_book ({', '.join(BOOK_COLUMNS)}) FROM STDIN", copy_text(rows))
            return len(rows), lambda: self._books.append((symbol, book))
        if kind == 6:  # DELETE an older order-book snapshot (REPLICA IDENTITY FULL: the whole row goes along)
            if len(self._books) < 3:
                return 0, lambda: None
            key = self._books[0]
            cur.execute("DELETE FROM binance.order_book WHERE symbol = %s AND last_update_id = %s", key)
            count = cur.rowcount
            return count, lambda: self._books.remove(key)
        if kind == 7:  # multi-row upsert of latest prices
            at = now_ms()
            values = [(s, f"{self._rng.randint(1, 99999)}.{self._rng.randint(0, 99):02d}", at) for s in SYMBOLS[:3]]
            cur.execute("INSERT INTO binance.latest_prices (symbol, price, observed_at) VALUES "
                        + ", ".join(["(%s, %s, %s)"] * len(values))
                        + " ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, observed_at = EXCLUDED.observed_at",
                        [v for row in values for v in row])
            return len(values), lambda: None
        if kind == 8:  # a deleted key comes back with new values
            if not self._deleted:
                return 0, lambda: None
            key = self._deleted[0]
            count = self._insert(cur, [self._trade(*key)])
            return count, lambda: (self._deleted.remove(key), self._trades.append(key))
        # kind 9: one key inserted, updated, deleted and inserted again in one transaction
        row = self._new_trades(1)[0]
        self._insert(cur, [row])
        cur.execute("UPDATE binance.recent_trades SET qty = %s WHERE symbol = %s AND trade_id = %s",
                    ("2.5", *row[:2]))
        cur.execute("DELETE FROM binance.recent_trades WHERE symbol = %s AND trade_id = %s", row[:2])
        self._insert(cur, [self._trade(*row[:2])])
        return 4, lambda: self._trades.append(row[:2])

    def _probe(self, cur) -> None:
        cur.execute("INSERT INTO binance.latest_prices (symbol, price, observed_at) VALUES (%s, %s, %s) "
                    "ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, observed_at = EXCLUDED.observed_at",
                    (PROBE, f"{self._step}.0", now_ms()))

    # --- the loop --------------------------------------------------------------------------------------

    def _connection(self):
        if self._conn is None or self._conn.closed:
            self._conn = postgres_conn.app_connection(self.settings, "chaos_load", connect_timeout=3)
        return self._conn

    def run(self) -> None:
        began, done = time.monotonic(), 0
        while not self._halt.is_set():
            if not self._running.wait(0.5):
                began, done = time.monotonic(), 0
                continue
            with self._stepping:
                if not self._running.is_set():  # paused while this loop waited for the lock
                    continue
                count = self._one_step()
            if count is None:
                time.sleep(0.5)
                continue
            done += count
            ahead = done / self.rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)

    def _one_step(self) -> int | None:
        """One committed step's row count; None when it failed."""
        try:
            conn = self._connection()
            with conn.cursor() as cur:
                count, remember = self.step(cur)
                self._probe(cur)
            conn.commit()
        except Exception as exc:  # noqa: BLE001 - Postgres down is expected here; count it and go on
            self.failures += 1
            self._step += 1  # an in-doubt step is not repeated: its keys are simply never touched again
            log.debug("load step failed: %s", exc)
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:  # noqa: BLE001 - the connection is gone either way
                    pass
            self._conn = None
            return None
        remember()
        self.rows += count
        self._step += 1
        return count


def purge(settings) -> int:
    """Delete every row an earlier chaos run left (symbols starting with CHAOS); returns how many."""
    conn = postgres_conn.app_connection(settings, "chaos_purge")
    try:
        with conn.cursor() as cur:
            total = 0
            for table in ("recent_trades", "order_book", "latest_prices"):
                cur.execute(f"DELETE FROM binance.{table} WHERE symbol LIKE 'CHAOS%%'")
                total += cur.rowcount
        conn.commit()
        return total
    finally:
        conn.close()
