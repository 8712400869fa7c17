"""The simulated market: trades as a pure function of (seed, symbol, minute), and everything derived from them.

Design (why it is exact and cheap):
- Each minute `m` of a symbol has `rate + g(m+1) - g(m)` trades, where `g` is a hash in [0, rate). The
  sum over minutes telescopes, so the first trade id of any minute is known in O(1): ids are contiguous
  and strictly increasing, without replaying history.
- Prices follow integer value-noise (four octaves, 1 min .. 6 h) around the symbol's reference price,
  plus per-trade noise, rounded to the tick. Quantities are whole lot steps, so `quoteQty = price * qty`
  is exact at 8 decimals. No float touches a price.
- Trades are generated an hour at a time (one RNG, one sort) and cached; klines and the 24h ticker
  aggregate the very same trades (per-minute and per-hour aggregates are cached), so open/high/low/close/volume/count/taker volumes and firstId/lastId agree with
  `/api/v3/trades` by construction.
- A symbol has history from `history_start_ms` (its "listing" in the simulation); a dead symbol stops
  trading at `DEAD_SINCE_MS`.

Nothing here reads a clock: every query takes the virtual `now_ms`. Pure apart from caches.
"""

from __future__ import annotations

import calendar
import random
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

from simulator.symbols import DEAD_SINCE_MS, UNIT, SymbolSpec, fmt8, mix64

MINUTE = 60_000
DAY = 86_400_000
_M0 = 27_000_000  # reference minute (2021-05) for trade-id offsets
# (period ms, amplitude in parts per million) of the price's value-noise octaves
_OCTAVES = ((21_600_000, 20_000), (3_600_000, 7_000), (600_000, 2_500), (60_000, 800))
_PPM = 1_000_000

INTERVALS_MS: dict[str, int | None] = {
    "1s": 1000,
    "1m": MINUTE,
    "3m": 3 * MINUTE,
    "5m": 5 * MINUTE,
    "15m": 15 * MINUTE,
    "30m": 30 * MINUTE,
    "1h": 60 * MINUTE,
    "2h": 120 * MINUTE,
    "4h": 240 * MINUTE,
    "6h": 360 * MINUTE,
    "8h": 480 * MINUTE,
    "12h": 720 * MINUTE,
    "1d": DAY,
    "3d": 3 * DAY,
    "1w": 7 * DAY,
    "1M": None,  # calendar month
}
_MONDAY_OFFSET = 4 * DAY  # 1970-01-01 was a Thursday; weekly klines open on Mondays


class Trade(NamedTuple):
    id: int
    price: int  # 1e-8 units
    qty: int
    quote: int
    time: int  # ms
    buyer_maker: bool


class Agg(NamedTuple):
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote: int
    count: int
    taker_volume: int
    taker_quote: int
    first_id: int
    last_id: int
    first_time: int
    last_time: int


class _Minute(NamedTuple):
    """One minute's trades as columns (cheap to build and to aggregate)."""

    first_id: int
    times: list[int]
    prices: list[int]
    qtys: list[int]
    quotes: list[int]
    makers: list[bool]

    def agg(self) -> Agg | None:
        if not self.times:
            return None
        taker = [not mk for mk in self.makers]
        return Agg(
            self.prices[0],
            max(self.prices),
            min(self.prices),
            self.prices[-1],
            sum(self.qtys),
            sum(self.quotes),
            len(self.times),
            sum(q for q, tk in zip(self.qtys, taker) if tk),
            sum(q for q, tk in zip(self.quotes, taker) if tk),
            self.first_id,
            self.first_id + len(self.times) - 1,
            self.times[0],
            self.times[-1],
        )


def aggregate(trades: list[Trade]) -> Agg | None:
    if not trades:
        return None
    prices = [t.price for t in trades]
    taker = [t for t in trades if not t.buyer_maker]  # buyer is the taker
    return Agg(
        trades[0].price,
        max(prices),
        min(prices),
        trades[-1].price,
        sum(t.qty for t in trades),
        sum(t.quote for t in trades),
        len(trades),
        sum(t.qty for t in taker),
        sum(t.quote for t in taker),
        trades[0].id,
        trades[-1].id,
        trades[0].time,
        trades[-1].time,
    )


def merge(a: Agg | None, b: Agg | None) -> Agg | None:
    """Aggregate of two consecutive spans (a before b)."""
    if a is None or b is None:
        return a or b
    return Agg(
        a.open,
        max(a.high, b.high),
        min(a.low, b.low),
        b.close,
        a.volume + b.volume,
        a.quote + b.quote,
        a.count + b.count,
        a.taker_volume + b.taker_volume,
        a.taker_quote + b.taker_quote,
        a.first_id,
        b.last_id,
        a.first_time,
        b.last_time,
    )


def interval_open(interval: str, t: int, tz_ms: int = 0) -> int:
    """Open time of the `interval` candle containing `t` (boundaries shifted by the timeZone offset)."""
    length = INTERVALS_MS[interval]
    local = t + tz_ms
    if length is None:
        d = datetime.fromtimestamp(local // 1000, tz=timezone.utc)
        return calendar.timegm((d.year, d.month, 1, 0, 0, 0)) * 1000 - tz_ms
    anchor = _MONDAY_OFFSET if interval == "1w" else 0
    return (local - anchor) // length * length + anchor - tz_ms


def interval_step(interval: str, open_ms: int, tz_ms: int, direction: int) -> int:
    """Open time of the next (direction=1) or previous (-1) candle."""
    length = INTERVALS_MS[interval]
    if length is not None:
        return open_ms + direction * length
    d = datetime.fromtimestamp((open_ms + tz_ms) // 1000, tz=timezone.utc)
    month = d.year * 12 + d.month - 1 + direction
    return calendar.timegm((month // 12, month % 12 + 1, 1, 0, 0, 0)) * 1000 - tz_ms


class Market:
    def __init__(self, specs: dict[str, SymbolSpec], history_start_ms: int, history_ms: int) -> None:
        self.specs = specs
        self.history_start_ms = history_start_ms - history_start_ms % MINUTE
        self.history_ms = history_ms
        self._lock = threading.Lock()
        self._blocks: OrderedDict[tuple[str, int], tuple[_Minute, list[int]]] = OrderedDict()
        self._knots: dict[tuple[int, int, int], int] = {}
        self._ticks: dict[tuple[int, int], int] = {}
        self._aggs: dict[tuple[str, int], Agg | None] = {}

    # ---- existence -------------------------------------------------------------------------------
    def span(self, spec: SymbolSpec) -> tuple[int, int | None]:
        """[first ms, end ms) in which the symbol trades; end None = still trading."""
        if spec.dead:
            end = DEAD_SINCE_MS
            return end - self.history_ms - (end - self.history_ms) % MINUTE, end
        return self.history_start_ms, None

    # ---- the trade generator -----------------------------------------------------------------------
    def _g(self, spec: SymbolSpec, m: int) -> int:
        return mix64(spec.key ^ (m * 0x2545F4914F6CDD1D)) % spec.rate

    def first_id(self, spec: SymbolSpec, m: int) -> int:
        id_base = 10**8 + spec.key % (9 * 10**8)
        return id_base + spec.rate * (m - _M0) + self._g(spec, m)

    def _knot(self, spec: SymbolSpec, octave: int, idx: int) -> int:
        key = (spec.key, octave, idx)
        value = self._knots.get(key)
        if value is None:
            amp = _OCTAVES[octave][1]
            value = mix64(spec.key ^ mix64((octave << 48) ^ idx)) % (2 * amp + 1) - amp
            if len(self._knots) > 500_000:
                self._knots.clear()
            self._knots[key] = value
        return value

    def _ticks_at(self, spec: SymbolSpec, t: int) -> int:
        """Reference price in ticks at time t: integer value noise, linear between knots."""
        memo = self._ticks.get((spec.key, t))
        if memo is not None:
            return memo
        total = 0
        for octave, (period, _) in enumerate(_OCTAVES):
            idx, r = divmod(t, period)
            a, b = self._knot(spec, octave, idx), self._knot(spec, octave, idx + 1)
            total += a + (b - a) * r // period
        ticks = spec.price // spec.tick * (_PPM + total) // _PPM
        if len(self._ticks) > 500_000:
            self._ticks.clear()
        self._ticks[(spec.key, t)] = ticks
        return ticks

    def _generate(self, spec: SymbolSpec, h: int) -> tuple[_Minute, list[int]]:
        """All trades of hour `h` as columns, and the index where each of its 60 minutes starts."""
        m0 = h * 60
        bounds = [self.first_id(spec, m0 + i) for i in range(61)]
        starts = [b - bounds[0] for b in bounds]
        rng = random.Random(mix64(spec.key ^ mix64(h) ^ 0x5851F42D4C957F2D))
        # One draw per trade: minute index in bits 48+, time within the minute in bits 32-47, so one sort
        # orders the hour by time; the low bits give price noise, size and side.
        draws = sorted(
            (i << 48) | rng.getrandbits(48) for i in range(60) for _ in range(starts[i + 1] - starts[i])
        )
        ref = [self._ticks_at(spec, (m0 + i) * MINUTE) for i in range(61)]
        noise = max(1, ref[0] * 300 // _PPM)
        width = 2 * noise + 1
        tick, step, typical = spec.tick, spec.step, spec.typical_qty_steps
        minute_of = [k >> 48 for k in draws]
        offsets = [((k >> 32) & 0xFFFF) * MINUTE >> 16 for k in draws]
        prices = [
            max(1, ref[i] + (ref[i + 1] - ref[i]) * off // MINUTE + (k & 0xFFFF) % width - noise) * tick
            for i, off, k in zip(minute_of, offsets, draws)
        ]
        qtys = [max(1, (typical * (((k >> 16) & 0x3FF) + 1) << ((k >> 26) & 7)) >> 12) * step for k in draws]
        block = _Minute(
            bounds[0],
            [(m0 + i) * MINUTE + off for i, off in zip(minute_of, offsets)],
            prices,
            qtys,
            [p * q // UNIT for p, q in zip(prices, qtys)],
            [bool((k >> 29) & 1) for k in draws],
        )
        return block, starts

    def _block(self, spec: SymbolSpec, h: int) -> tuple[_Minute, list[int]]:
        key = (spec.name, h)
        with self._lock:
            cached = self._blocks.get(key)
            if cached is not None:
                self._blocks.move_to_end(key)
                return cached
        block = self._generate(spec, h)
        with self._lock:
            self._blocks[key] = block
            if len(self._blocks) > 10_000:
                self._blocks.popitem(last=False)
        return block

    def _in_span(self, spec: SymbolSpec, lo: int, hi: int) -> bool:
        first, end = self.span(spec)
        return first <= lo and (end is None or hi <= end)

    def _minute(self, spec: SymbolSpec, m: int) -> _Minute | None:
        if not self._in_span(spec, m * MINUTE, (m + 1) * MINUTE):
            return None
        block, starts = self._block(spec, m // 60)
        a, b = starts[m % 60], starts[m % 60 + 1]
        return _Minute(
            block.first_id + a, block.times[a:b], block.prices[a:b], block.qtys[a:b], block.quotes[a:b],
            block.makers[a:b],
        )

    def minute_trades(self, spec: SymbolSpec, m: int) -> list[Trade]:
        """All trades of minute `m` (regardless of now), [] outside the symbol's trading span."""
        minute = self._minute(spec, m)
        if minute is None:
            return []
        return [
            Trade(minute.first_id + j, *row)
            for j, row in enumerate(zip(minute.prices, minute.qtys, minute.quotes, minute.times, minute.makers))
        ]

    def trades_between(self, spec: SymbolSpec, lo: int, hi: int) -> list[Trade]:
        """Trades with lo <= time < hi (hi exclusive)."""
        out: list[Trade] = []
        for m in range(lo // MINUTE, (hi - 1) // MINUTE + 1):
            out.extend(t for t in self.minute_trades(spec, m) if lo <= t.time < hi)
        return out

    def _minute_agg(self, spec: SymbolSpec, m: int) -> Agg | None:
        key = (spec.name, m)
        if key not in self._aggs:
            minute = self._minute(spec, m)
            self._aggs[key] = None if minute is None else minute.agg()
        return self._aggs[key]

    def _hour_agg(self, spec: SymbolSpec, h: int) -> Agg | None:
        key = (spec.name, -1 - h)  # negative keys: hour blocks, in the same cache as minutes
        if key not in self._aggs:
            self._aggs[key] = self._block(spec, h)[0].agg()
        return self._aggs[key]

    def agg_between(self, spec: SymbolSpec, lo: int, hi: int) -> Agg | None:
        """Aggregate of trades with lo <= time < hi; whole hours and minutes come from the cache."""
        result: Agg | None = None
        m, last = lo // MINUTE, (hi - 1) // MINUTE
        while m <= last:
            if (
                m % 60 == 0
                and lo <= m * MINUTE
                and (m + 60) * MINUTE <= hi
                and self._in_span(spec, m * MINUTE, (m + 60) * MINUTE)
            ):
                result = merge(result, self._hour_agg(spec, m // 60))
                m += 60
                continue
            if lo <= m * MINUTE and (m + 1) * MINUTE <= hi:
                part = self._minute_agg(spec, m)
            else:
                part = aggregate([t for t in self.minute_trades(spec, m) if lo <= t.time < hi])
            result = merge(result, part)
            m += 1
        return result

    # ---- queries -----------------------------------------------------------------------------------
    def recent_trades(self, spec: SymbolSpec, now: int, limit: int) -> list[Trade]:
        first, end = self.span(spec)
        top = now if end is None else min(now, end - 1)
        out: list[Trade] = []
        m = top // MINUTE
        while len(out) < limit and m * MINUTE + MINUTE > first:
            batch = [t for t in self.minute_trades(spec, m) if t.time <= top]
            out[:0] = batch
            m -= 1
        return out[-limit:] if limit else []

    def minute_of_id(self, spec: SymbolSpec, trade_id: int) -> int:
        """The minute whose trades include `trade_id` (ids are contiguous, so every id has one)."""
        id_base = 10**8 + spec.key % (9 * 10**8)
        m = _M0 + (trade_id - id_base) // spec.rate
        # first_id(m) lies in [base + rate*(m-M0), base + rate*(m-M0) + rate): at most a step or two off
        while self.first_id(spec, m) > trade_id:
            m -= 1
        while self.first_id(spec, m + 1) <= trade_id:
            m += 1
        return m

    def trades_from(self, spec: SymbolSpec, from_id: int, now: int, limit: int) -> list[Trade]:
        """Up to `limit` trades with id >= from_id that happened by `now`, oldest first (historicalTrades).
        An id older than the symbol's history starts at its first trade; one in the future gives []."""
        first, end = self.span(spec)
        top = now if end is None else min(now, end - 1)
        m = max(self.minute_of_id(spec, from_id), first // MINUTE)
        out: list[Trade] = []
        while len(out) < limit and m <= top // MINUTE:
            out.extend(t for t in self.minute_trades(spec, m) if t.id >= from_id and t.time <= top)
            m += 1
        return out[:limit]

    def last_trade(self, spec: SymbolSpec, now: int) -> Trade | None:
        trades = self.recent_trades(spec, now, 1)
        return trades[-1] if trades else None

    def klines(
        self,
        spec: SymbolSpec,
        interval: str,
        now: int,
        limit: int,
        start: int | None = None,
        end: int | None = None,
        tz_ms: int = 0,
    ) -> list[tuple[int, int, Agg]]:
        """(open, close, aggregate) of up to `limit` candles, chronological; the last may still be open."""
        first, stop = self.span(spec)
        last_ms = now if stop is None else min(now, stop - 1)
        if last_ms < first:
            return []
        lo_open = interval_open(interval, first, tz_ms)
        hi_open = interval_open(interval, last_ms, tz_ms)
        if end is not None:
            hi_open = min(hi_open, interval_open(interval, end, tz_ms))
        opens: list[int] = []
        if start is not None:
            o = interval_open(interval, start, tz_ms)
            if o < start:
                o = interval_step(interval, o, tz_ms, 1)
            o = max(o, lo_open)
            while o <= hi_open and len(opens) < limit:
                opens.append(o)
                o = interval_step(interval, o, tz_ms, 1)
        else:
            o = hi_open
            while o >= lo_open and len(opens) < limit:
                opens.append(o)
                o = interval_step(interval, o, tz_ms, -1)
            opens.reverse()
        out = []
        for o in opens:
            close = interval_step(interval, o, tz_ms, 1) - 1
            agg = self.agg_between(spec, max(o, first), min(close, last_ms) + 1)
            if agg is not None:
                out.append((o, close, agg))
        return out

    def depth(self, spec: SymbolSpec, now: int, limit: int) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
        """(lastUpdateId, bids high->low, asks low->high) around the last trade price; levels in 1e-8 units."""
        last = self.last_trade(spec, now)
        update_id = spec.key % 10**9 + now // 100
        if last is None:
            return update_id, [], []
        rng = random.Random(mix64(spec.key ^ mix64(now // 1000) ^ 0xD1B54A32D192ED03))
        last_ticks = last.price // spec.tick
        bid = last_ticks - rng.getrandbits(1)
        ask = bid + 1 + rng.getrandbits(1)
        typical = spec.typical_qty_steps

        def qty() -> int:
            return max(1, (typical * (rng.getrandbits(10) + 1) << rng.getrandbits(4)) >> 11) * spec.step

        bids, asks = [], []
        for _ in range(limit):
            if bid < 1:
                break
            bids.append((bid * spec.tick, qty()))
            bid -= 1 + rng.getrandbits(2) % 3
        for _ in range(limit):
            asks.append((ask * spec.tick, qty()))
            ask += 1 + rng.getrandbits(2) % 3
        return update_id, bids, asks

    def ticker_24h(self, spec: SymbolSpec, now: int) -> dict:
        """Rolling 24 h statistics [now - 24 h, now], as Binance's FULL ticker fields (decimals as strings)."""
        open_time = now - DAY
        agg = self.agg_between(spec, open_time, now + 1)
        if agg is None:
            return dead_ticker(spec.name, open_time, now)
        before = self.recent_trades(spec, open_time - 1, 1)
        _, bids, asks = self.depth(spec, now, 1)
        last = self.last_trade(spec, now)
        change = agg.close - agg.open
        pct = (Decimal(change) * 100 / Decimal(agg.open)).quantize(Decimal("0.001"), ROUND_HALF_UP)
        # quote and volume are both in 1e-8 units, so the average price in 1e-8 units is quote*1e8/volume
        wavg = (Decimal(agg.quote) * UNIT / Decimal(agg.volume)).quantize(Decimal(1), ROUND_HALF_UP)
        return {
            "symbol": spec.name,
            "priceChange": fmt8(change),
            "priceChangePercent": f"{pct:.3f}",
            "weightedAvgPrice": fmt8(int(wavg)),
            "prevClosePrice": fmt8(before[-1].price if before else 0),
            "lastPrice": fmt8(agg.close),
            "lastQty": fmt8(last.qty if last else 0),
            "bidPrice": fmt8(bids[0][0] if bids else 0),
            "bidQty": fmt8(bids[0][1] if bids else 0),
            "askPrice": fmt8(asks[0][0] if asks else 0),
            "askQty": fmt8(asks[0][1] if asks else 0),
            "openPrice": fmt8(agg.open),
            "highPrice": fmt8(agg.high),
            "lowPrice": fmt8(agg.low),
            "volume": fmt8(agg.volume),
            "quoteVolume": fmt8(agg.quote),
            "openTime": open_time,
            "closeTime": now,
            "firstId": agg.first_id,
            "lastId": agg.last_id,
            "count": agg.count,
        }


def dead_ticker(symbol: str, open_time: int, close_time: int) -> dict:
    """What Binance answers for a symbol with no trade in the window (e.g. MATICUSDT after the POL swap)."""
    zero = fmt8(0)
    ticker = {
        name: zero
        for name in (
            "priceChange weightedAvgPrice prevClosePrice lastPrice lastQty bidPrice bidQty askPrice "
            "askQty openPrice highPrice lowPrice volume quoteVolume"
        ).split()
    }
    ticker["priceChangePercent"] = "0.000"
    order = (
        "symbol priceChange priceChangePercent weightedAvgPrice prevClosePrice lastPrice lastQty bidPrice "
        "bidQty askPrice askQty openPrice highPrice lowPrice volume quoteVolume openTime closeTime firstId "
        "lastId count"
    ).split()
    ticker.update(symbol=symbol, openTime=open_time, closeTime=close_time, firstId=-1, lastId=-1, count=0)
    return {name: ticker[name] for name in order}
