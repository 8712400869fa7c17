"""The Binance market-data endpoints: parameter validation with Binance's error codes, and JSON shapes.

`answer(market, path, params, now_ms, time_mult)` returns the JSON-able payload of a GET request or
raises `ApiError(status, code, msg)`. Validation follows the Binance Spot API documentation (parameters and error codes): `symbol` must match
`^[A-Z0-9-_.]{1,20}$` (else -1100), `symbols` must be a compact JSON array of such names (else -1100),
duplicates -1151, unknown -1121, missing mandatory -1102, empty -1105, bad interval -1120.
historicalTrades: `fromId` must match `^[0-9]{1,20}$` (else -1100), answers at most `limit` (default 500,
max 1000) trades from that id on, oldest first; without `fromId` the most recent ones (as documented).
Choices where the docs are silent (documented here, not guessed silently): `limit` above the maximum
is clamped (as depth documents), `limit=0` is -1130, a dead symbol's trades and book are empty, a
`fromId` older than the symbol's history starts at its first trade, one past the newest trade gives [].
"""

from __future__ import annotations

import json
import re
from typing import Any

from simulator.market import INTERVALS_MS, Market, dead_ticker
from simulator.symbols import UNIT, SymbolSpec, fmt8

SYMBOL_RANGE = "^[A-Z0-9-_.]{1,20}$"
SYMBOLS_RANGE = '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'
NUMBER_RANGE = "^[0-9]{1,20}$"
_SYMBOL_RE = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_SYMBOLS_RE = re.compile(r'^\[("[A-Z0-9\-_.]{1,20}"(,"[A-Z0-9\-_.]{1,20}")*)?\]$')
_NUMBER_RE = re.compile(r"^[0-9]{1,20}$")
_TZ_RE = re.compile(r"^([+-]?)(\d{1,2})(?::(\d{2}))?$")
STATUSES = ("TRADING", "HALT", "BREAK")
MINI_FIELDS = (
    "symbol openPrice highPrice lowPrice lastPrice volume quoteVolume openTime closeTime firstId lastId count"
).split()
_TIME_FIELDS = ("openTime", "closeTime")


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status, self.code, self.msg = status, code, msg

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg}


def _bad(code: int, msg: str) -> ApiError:
    return ApiError(400, code, msg)


def _missing(name: str) -> ApiError:
    return _bad(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _illegal(name: str, legal: str) -> ApiError:
    return _bad(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")


def status_of(spec: SymbolSpec) -> str:
    return "BREAK" if spec.dead else "TRADING"


def _present(params: dict[str, str], name: str) -> str | None:
    raw = params.get(name)
    if raw == "":
        raise _bad(-1105, f"Parameter '{name}' was empty.")
    return raw


def one_symbol(market: Market, params: dict[str, str], mandatory: bool = True) -> SymbolSpec | None:
    raw = _present(params, "symbol")
    if raw is None:
        if mandatory:
            raise _missing("symbol")
        return None
    if not _SYMBOL_RE.match(raw):
        raise _illegal("symbol", SYMBOL_RANGE)
    spec = market.specs.get(raw)
    if spec is None:
        raise _bad(-1121, "Invalid symbol.")
    return spec


def many_symbols(market: Market, params: dict[str, str]) -> list[SymbolSpec] | None:
    raw = _present(params, "symbols")
    if raw is None:
        return None
    if not _SYMBOLS_RE.match(raw):
        raise _illegal("symbols", SYMBOLS_RANGE)
    names = json.loads(raw)
    if not names:
        raise _missing("symbols")
    if len(set(names)) != len(names):
        raise _bad(-1151, "Symbol is present multiple times in the list.")
    unknown = [n for n in names if n not in market.specs]
    if unknown:
        raise _bad(-1121, "Invalid symbol.")
    return [market.specs[n] for n in names]


def symbol_or_symbols(market: Market, params: dict[str, str]) -> tuple[SymbolSpec | None, list[SymbolSpec]]:
    """(single spec, []) for `symbol`, (None, specs) for `symbols`, (None, all) for neither."""
    if "symbol" in params and "symbols" in params:
        raise _bad(
            -1128,
            "Combination of optional parameters invalid. Recommendation: 'symbol' and 'symbols' cannot both be sent.",
        )
    spec = one_symbol(market, params, mandatory=False)
    if spec is not None:
        return spec, []
    specs = many_symbols(market, params)
    return None, list(market.specs.values()) if specs is None else specs


def filter_status(params: dict[str, str], single: SymbolSpec | None, specs: list[SymbolSpec]) -> list[SymbolSpec]:
    raw = _present(params, "symbolStatus")
    if raw is None:
        return specs
    if raw not in STATUSES:
        raise _bad(-1122, "Invalid symbolStatus.")
    if single is not None and status_of(single) != raw:
        raise _bad(-1220, "The symbol's status does not match the requested symbolStatus.")
    return [s for s in specs if status_of(s) == raw]


def number(params: dict[str, str], name: str) -> int | None:
    raw = _present(params, name)
    if raw is None:
        return None
    if not _NUMBER_RE.match(raw):
        raise _illegal(name, NUMBER_RANGE)
    return int(raw)


def limit_param(params: dict[str, str], default: int, maximum: int) -> int:
    value = number(params, "limit")
    if value is None:
        return default
    if value == 0:
        raise _bad(-1130, "Data sent for parameter 'limit' is not valid.")
    return min(value, maximum)


def time_param(params: dict[str, str], name: str) -> int | None:
    value = number(params, name)
    # Binance accepts ms or µs for timestamp parameters; µs values are 16 digits.
    return value // 1000 if value is not None and value >= 10**14 else value


def timezone_ms(params: dict[str, str]) -> int:
    raw = _present(params, "timeZone")
    if raw is None:
        return 0
    match = _TZ_RE.match(raw)
    if not match:
        raise _bad(-1100, "Illegal characters found in parameter 'timeZone'; legal range is '[-12:00 to +14:00]'.")
    sign = -1 if match.group(1) == "-" else 1
    minutes = int(match.group(2)) * 60 + int(match.group(3) or 0)
    if int(match.group(3) or 0) >= 60 or not (-12 * 60 <= sign * minutes <= 14 * 60):
        raise _bad(-1100, "Illegal characters found in parameter 'timeZone'; legal range is '[-12:00 to +14:00]'.")
    return sign * minutes * 60_000


# ---- endpoints -----------------------------------------------------------------------------------------


def exchange_info(market: Market, params: dict[str, str], now: int, weight_limit: int) -> dict:
    single, specs = symbol_or_symbols(market, params)
    chosen = [single] if single is not None else specs
    if single is None and "symbols" not in params:
        chosen = filter_status(params, None, chosen)
    return {
        "timezone": "UTC",
        "serverTime": now,
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_limit},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ],
        "exchangeFilters": [],
        "symbols": [symbol_info(spec) for spec in chosen],
    }


def symbol_info(spec: SymbolSpec) -> dict:
    dead = spec.dead
    return {
        "symbol": spec.name,
        "status": status_of(spec),
        "baseAsset": spec.base_asset,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote_asset,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "opoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "pegInstructionsAllowed": True,
        "isSpotTradingAllowed": not dead,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": fmt8(spec.tick), "maxPrice": fmt8(spec.tick * 10**7),
             "tickSize": fmt8(spec.tick)},
            {"filterType": "LOT_SIZE", "minQty": fmt8(spec.step), "maxQty": fmt8(spec.step * 10**9),
             "stepSize": fmt8(spec.step)},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "MARKET_LOT_SIZE", "minQty": fmt8(0), "maxQty": fmt8(spec.step * 10**7),
             "stepSize": fmt8(0)},
            {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
             "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
            {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
             "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
            {"filterType": "NOTIONAL", "minNotional": fmt8(5 * UNIT), "applyMinToMarket": True,
             "maxNotional": fmt8(9_000_000 * UNIT), "applyMaxToMarket": False, "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"],
    }


def trades(market: Market, params: dict[str, str], now: int, mult: int) -> list[dict]:
    spec = one_symbol(market, params)
    limit = limit_param(params, 500, 1000)
    if spec.dead:
        return []
    return [_trade(t, mult) for t in market.recent_trades(spec, now, limit)]


def historical_trades(market: Market, params: dict[str, str], now: int, mult: int) -> list[dict]:
    """Old trade lookup: `fromId` (default: the most recent trades), limit default 500, max 1000, ascending."""
    spec = one_symbol(market, params)
    limit = limit_param(params, 500, 1000)
    from_id = number(params, "fromId")
    if spec.dead:
        return []
    found = market.recent_trades(spec, now, limit) if from_id is None else market.trades_from(spec, from_id, now, limit)
    return [_trade(t, mult) for t in found]


def _trade(t, mult: int) -> dict:
    return {
        "id": t.id,
        "price": fmt8(t.price),
        "qty": fmt8(t.qty),
        "quoteQty": fmt8(t.quote),
        "time": t.time * mult,
        "isBuyerMaker": t.buyer_maker,
        "isBestMatch": True,
    }


def depth(market: Market, params: dict[str, str], now: int) -> dict:
    spec = one_symbol(market, params)
    limit = limit_param(params, 100, 5000)
    filter_status(params, spec, [spec])
    update_id, bids, asks = market.depth(spec, now, 0 if spec.dead else limit)
    return {
        "lastUpdateId": update_id,
        "bids": [[fmt8(p), fmt8(q)] for p, q in bids],
        "asks": [[fmt8(p), fmt8(q)] for p, q in asks],
    }


def klines(market: Market, params: dict[str, str], now: int, mult: int) -> list[list[Any]]:
    spec = one_symbol(market, params)
    interval = _present(params, "interval")
    if interval is None:
        raise _missing("interval")
    if interval not in INTERVALS_MS:
        raise _bad(-1120, "Invalid interval.")
    start, end = time_param(params, "startTime"), time_param(params, "endTime")
    if start is not None and end is not None and start > end:
        raise _bad(-1023, "Start time is greater than end time.")
    tz = timezone_ms(params)
    limit = limit_param(params, 500, 1000)
    return [
        [
            open_ms * mult,
            fmt8(a.open),
            fmt8(a.high),
            fmt8(a.low),
            fmt8(a.close),
            fmt8(a.volume),
            (close_ms + 1) * mult - 1,
            fmt8(a.quote),
            a.count,
            fmt8(a.taker_volume),
            fmt8(a.taker_quote),
            "0",
        ]
        for open_ms, close_ms, a in market.klines(spec, interval, now, limit, start, end, tz)
    ]


def _ticker_24h(market: Market, spec: SymbolSpec, now: int, mini: bool, mult: int) -> dict:
    full = dead_ticker(spec.name, now - 86_400_000, now) if spec.dead else market.ticker_24h(spec, now)
    for name in _TIME_FIELDS:
        full[name] *= mult
    return {name: full[name] for name in MINI_FIELDS} if mini else full


def ticker_24h(market: Market, params: dict[str, str], now: int, mult: int) -> dict | list[dict]:
    single, specs = symbol_or_symbols(market, params)
    kind = _present(params, "type") or "FULL"
    if kind not in ("FULL", "MINI"):
        raise _bad(-1139, "Invalid ticker type.")
    mini = kind == "MINI"
    if single is not None:
        filter_status(params, single, [single])
        return _ticker_24h(market, single, now, mini, mult)
    return [_ticker_24h(market, s, now, mini, mult) for s in filter_status(params, None, specs)]


def _price(market: Market, spec: SymbolSpec, now: int) -> dict:
    last = None if spec.dead else market.last_trade(spec, now)
    return {"symbol": spec.name, "price": fmt8(last.price if last else 0)}


def ticker_price(market: Market, params: dict[str, str], now: int) -> dict | list[dict]:
    single, specs = symbol_or_symbols(market, params)
    if single is not None:
        filter_status(params, single, [single])
        return _price(market, single, now)
    return [_price(market, s, now) for s in filter_status(params, None, specs)]


PATHS = (
    "/api/v3/ping",
    "/api/v3/time",
    "/api/v3/exchangeInfo",
    "/api/v3/trades",
    "/api/v3/historicalTrades",
    "/api/v3/depth",
    "/api/v3/klines",
    "/api/v3/ticker/24hr",
    "/api/v3/ticker/price",
)


def answer(market: Market, path: str, params: dict[str, str], now: int, mult: int, weight_limit: int) -> Any:
    if path == "/api/v3/ping":
        return {}
    if path == "/api/v3/time":
        return {"serverTime": now * mult}
    if path == "/api/v3/exchangeInfo":
        info = exchange_info(market, params, now, weight_limit)
        info["serverTime"] *= mult
        return info
    if path == "/api/v3/trades":
        return trades(market, params, now, mult)
    if path == "/api/v3/historicalTrades":
        return historical_trades(market, params, now, mult)
    if path == "/api/v3/depth":
        return depth(market, params, now)
    if path == "/api/v3/klines":
        return klines(market, params, now, mult)
    if path == "/api/v3/ticker/24hr":
        return ticker_24h(market, params, now, mult)
    if path == "/api/v3/ticker/price":
        return ticker_price(market, params, now)
    raise ApiError(404, -1000, f"Unknown endpoint {path}.")
