"""The one declarative description of the five Binance datasets.

Every stage follows from (or is checked against) these definitions:
- the extractor builds its requests, their weights, its cursor and its rows from `endpoint`, `params`,
  `weight`, `cursor`, `shape` and `columns`, and loads the datasets in `load_priority` order;
- the simulator charges the same weights (`ENDPOINT_WEIGHTS`) and serves every endpoint named here;
- `sql/` and `cql/` declare the same columns and keys (tests/unit/test_sql_drift.py and test_cql_drift.py parse them and compare);
- the Debezium decoder converts each `after`/`before` field by its `kind` (binance_cdc.values);
- the bridge copies Cassandra rows back by the same column list.

A new dataset whose answer has one of the known shapes needs changes here, in `sql/` and in `cql/` only;
tests/unit/test_sql_drift.py checks that every part of the code handles every dataset.

Column kinds (binance_cdc.values.KINDS) are logical types with one exact mapping per store:

    kind        Postgres       Cassandra   Python
    text        text           text        str
    decimal     numeric        decimal     decimal.Decimal (never float)
    timestamp   timestamptz    timestamp   datetime (UTC, tz-aware)
    bigint      bigint         bigint      int
    int         integer        int         int
    boolean     boolean        boolean     bool
    date        date           date        datetime.date
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

from binance_cdc.values import KINDS

PG_TYPES = {
    "text": "text",
    "decimal": "numeric",
    "timestamp": "timestamptz",
    "bigint": "bigint",
    "int": "integer",
    "boolean": "boolean",
    "date": "date",
}
CQL_TYPES = {
    "text": "text",
    "decimal": "decimal",
    "timestamp": "timestamp",
    "bigint": "bigint",
    "int": "int",
    "boolean": "boolean",
    "date": "date",
}

# Change metadata every Cassandra table carries besides the source columns (name -> kind).
CDC_COLUMNS: dict[str, str] = {
    "cdc_op": "text",  # c, r or u (deletes remove the row)
    "cdc_source_lsn": "bigint",  # source.lsn: also the Cassandra write timestamp, so the later LSN wins
    "cdc_source_ts": "timestamp",  # source.ts_ms: commit time in Postgres
    "cdc_event_ts": "timestamp",  # envelope ts_ms: when Debezium processed the change
    "cdc_tx_id": "text",  # source.txId, the Postgres transaction id (never the transaction block's "<txId>:<lsn>")
    "cdc_written_at": "timestamp",  # when the row reached Cassandra
}

# Answer shapes the extractor knows how to turn into rows (binance_cdc.extract.transforms.SHAPES):
#   objects  a JSON array of objects, one row each (deduplicated and ordered by a sequence cursor's column)
#   book     depth: {lastUpdateId, bids: [[price, qty]], asks: [...]}, one row per level and side
#   candles  a JSON array of kline arrays; is_closed derived from the answer's server time
#   tickers  one object or an array of objects, zero (dead-symbol) tickers dropped
SHAPES = ("objects", "book", "candles", "tickers")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    api_field: str | int | None = None  # key (object) or index (array) in the API answer; None = derived
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name}: unknown kind {self.kind!r}")


@dataclass(frozen=True)
class Weight:
    """The documented request weight of one call (Binance Spot API documentation, per endpoint).

    `one`: a fixed weight, or the weight of a call with `symbol=`. Otherwise `by` names what the tiers
    count: "limit" (the `limit` parameter, `default_limit` when absent) or "symbols" (names in `symbols=`);
    `tiers` are (upper bound inclusive, weight) ascending, the last also applying above its bound;
    `omitted` is the weight when neither `symbol` nor `symbols` is sent (every symbol).
    A malformed count is charged the lowest tier, as Binance charges a refused request.
    """

    one: int
    by: str | None = None
    tiers: tuple[tuple[int, int], ...] = ()
    omitted: int | None = None
    default_limit: int | None = None

    def __post_init__(self) -> None:
        if self.by not in (None, "limit", "symbols") or (self.by is not None and not self.tiers):
            raise ValueError(f"weight: by={self.by!r} needs tiers, and only 'limit' or 'symbols' are known")

    def tier(self, count: int) -> int:
        for upper, weight in self.tiers:
            if count <= upper:
                return weight
        return self.tiers[-1][1]

    def charge(self, params: Mapping[str, Any]) -> int:
        """Weight of a call with these query parameters (values as sent: str or int; `symbols` a JSON array)."""
        if self.by == "limit":
            raw = str(params.get("limit", self.default_limit if self.default_limit is not None else 1))
            return self.tier(int(raw)) if raw.isdigit() else self.tiers[0][1]
        if self.by == "symbols":
            if "symbol" in params:
                return self.one
            if "symbols" not in params:
                return self.omitted if self.omitted is not None else self.tiers[-1][1]
            return self.tier(_symbol_count(params["symbols"]))
        return self.one


def _symbol_count(raw: Any) -> int:
    if isinstance(raw, (list, tuple)):
        return len(raw)
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return 1
    return len(value) if isinstance(value, list) and value else 1


@dataclass(frozen=True)
class Cursor:
    """How a run continues from what is already stored instead of sampling the latest answer.

    kind "sequence": `column` is a per-symbol sequence without holes (Binance trade ids), so the next call
    asks `param` = last stored + 1, and any hole in what is stored is a gap that can be named and filled.
    kind "time": `column` is a time; the next call asks `param` = the last stored value (inclusive), so the
    last, possibly still open, row is asked again and updated in place.
    A symbol with nothing stored is asked the dataset's own `endpoint` and `params` (the first-run lookback).
    """

    kind: str
    column: str
    param: str
    endpoint: str
    limit: int  # documented maximum rows of one call
    weight: Weight

    def __post_init__(self) -> None:
        if self.kind not in ("sequence", "time"):
            raise ValueError(f"cursor kind must be 'sequence' or 'time', got {self.kind!r}")


@dataclass(frozen=True)
class Dataset:
    """One Binance endpoint and the table it lands in, in Postgres and in Cassandra."""

    name: str  # table name in Postgres schema `binance` and Cassandra keyspace `binance_test`
    endpoint: str
    params: dict[str, str | int]
    weight: Weight  # documented request weight of a call of `endpoint`
    batched: bool  # True: one request for all symbols (`symbols=[...]`); False: one per symbol
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]  # the natural key, in Postgres and (as clustering + partition) in Cassandra
    on_conflict: str  # "ignore" (immutable facts) or "update" (values that change in place)
    shape: str  # one of SHAPES: how an answer becomes rows
    load_priority: int  # lower loads first in a cycle; ties by name
    # Cassandra: partition key = these columns; bucket_column is derived from bucket_source.
    cql_partition_key: tuple[str, ...]
    bucket_column: str | None = None
    bucket_source: str | None = None
    bucket_unit: str = "day"  # "day" or "month": keeps partitions bounded as data grows
    cursor: Cursor | None = None  # None: every run samples the latest answer
    description: str = ""

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"dataset {self.name}: unknown shape {self.shape!r}; known: {', '.join(SHAPES)}")
        if self.cursor is not None and self.cursor.column not in {c.name for c in self.columns}:
            raise ValueError(f"dataset {self.name}: cursor column {self.cursor.column!r} is not a column")

    # Derived views are read for every change event the stream decodes: computed once per dataset.
    # Callers treat them as read-only.
    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @cached_property
    def kinds(self) -> dict[str, str]:
        return {c.name: c.kind for c in self.columns}

    @property
    def topic_suffix(self) -> str:
        return f"binance.{self.name}"

    @property
    def event_time(self) -> str:
        """The column saying when the data happened: what bounds it in time (its bucket source, else its
        only time column)."""
        if self.bucket_source:
            return self.bucket_source
        times = [c.name for c in self.columns if c.kind == "timestamp"]
        if len(times) != 1:
            raise ValueError(f"{self.name}: no bucket_source and {len(times)} time columns: name its event time")
        return times[0]

    @property
    def sequence_column(self) -> str | None:
        """The per-symbol id sequence (no holes, increasing, immutable rows), if the dataset has one."""
        return self.cursor.column if self.cursor is not None and self.cursor.kind == "sequence" else None

    @cached_property
    def cql_columns(self) -> dict[str, str]:
        cols = {c.name: c.kind for c in self.columns}
        if self.bucket_column:
            cols[self.bucket_column] = "date"
        cols.update(CDC_COLUMNS)
        return cols

    @cached_property
    def cql_clustering_key(self) -> tuple[str, ...]:
        return tuple(k for k in self.primary_key if k not in self.cql_partition_key)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    def request_weight(self, params: Mapping[str, Any]) -> int:
        """Documented weight of one call of `endpoint` with `params`."""
        return self.weight.charge(params)


KLINE_INTERVAL = "30m"

RECENT_TRADES = Dataset(
    name="recent_trades",
    endpoint="/api/v3/trades",
    params={"limit": 500},  # a symbol's first run: the latest 500 trades (the lookback, --trades-lookback)
    weight=Weight(25),
    batched=False,
    columns=(
        Column("symbol", "text"),
        Column("trade_id", "bigint", "id"),
        Column("price", "decimal", "price"),
        Column("qty", "decimal", "qty"),
        Column("quote_qty", "decimal", "quoteQty"),
        Column("trade_time", "timestamp", "time"),
        Column("is_buyer_maker", "boolean", "isBuyerMaker"),
        Column("is_best_match", "boolean", "isBestMatch"),
    ),
    primary_key=("symbol", "trade_id"),
    on_conflict="ignore",
    shape="objects",
    load_priority=50,  # the largest and slowest: after the cheap, most current datasets
    cql_partition_key=("symbol", "trade_date"),
    bucket_column="trade_date",
    bucket_source="trade_time",
    # Trade ids are a per-symbol sequence without holes: continue from the last stored id, up to 1000 a call.
    # historicalTrades needs no API key; data-api.binance.vision does not serve it (see MARKET_DATA_ONLY).
    cursor=Cursor("sequence", "trade_id", "fromId", "/api/v3/historicalTrades", 1000, Weight(25)),
    description="Every trade; trade ids are unique, increasing and contiguous per symbol.",
)

ORDER_BOOK = Dataset(
    name="order_book",
    endpoint="/api/v3/depth",
    params={"limit": 100},
    weight=Weight(5, "limit", ((100, 5), (500, 25), (1000, 50), (5000, 250)), default_limit=100),
    batched=False,
    columns=(
        Column("symbol", "text"),
        Column("last_update_id", "bigint", "lastUpdateId"),
        Column("side", "text"),  # 'bid' or 'ask'
        Column("price", "decimal", 0),
        Column("quantity", "decimal", 1),
        Column("level", "int"),  # 1 = best price on that side
        Column("captured_at", "timestamp"),  # Binance server time of the answer (HTTP Date header)
    ),
    primary_key=("symbol", "last_update_id", "side", "price"),
    on_conflict="ignore",
    shape="book",
    load_priority=40,
    cql_partition_key=("symbol", "captured_date"),
    bucket_column="captured_date",
    bucket_source="captured_at",
    description="Order book snapshots, one row per price level; a snapshot is identified by lastUpdateId.",
)

KLINES = Dataset(
    name="klines",
    endpoint="/api/v3/klines",
    params={"interval": KLINE_INTERVAL, "limit": 10},  # a symbol's first run: the latest ten candles
    weight=Weight(2),
    batched=False,
    columns=(
        Column("symbol", "text"),
        Column("interval", "text"),
        Column("open_time", "timestamp", 0),
        Column("open_price", "decimal", 1),
        Column("high_price", "decimal", 2),
        Column("low_price", "decimal", 3),
        Column("close_price", "decimal", 4),
        Column("volume", "decimal", 5),
        Column("close_time", "timestamp", 6),
        Column("quote_volume", "decimal", 7),
        Column("num_trades", "bigint", 8),
        Column("taker_buy_base_volume", "decimal", 9),
        Column("taker_buy_quote_volume", "decimal", 10),
        Column("is_closed", "boolean"),  # close_time < Binance server time of the answer
    ),
    primary_key=("symbol", "interval", "open_time"),
    on_conflict="update",
    shape="candles",
    load_priority=30,
    cql_partition_key=("symbol", "interval", "open_month"),
    bucket_column="open_month",
    bucket_source="open_time",
    bucket_unit="month",
    # From the last stored (possibly open) candle on: an outage is backfilled, the open candle updated.
    cursor=Cursor("time", "open_time", "startTime", "/api/v3/klines", 1000, Weight(2)),
    description="30-minute candles; the still-open candle is updated in place until it closes.",
)

DAILY_TICKER = Dataset(
    name="daily_ticker",
    endpoint="/api/v3/ticker/24hr",
    params={"type": "FULL"},
    weight=Weight(2, "symbols", ((20, 2), (100, 40), (101, 80)), omitted=80),
    batched=True,
    columns=(
        Column("symbol", "text", "symbol"),
        Column("close_time", "timestamp", "closeTime"),
        Column("open_time", "timestamp", "openTime"),
        Column("price_change", "decimal", "priceChange"),
        Column("price_change_percent", "decimal", "priceChangePercent"),
        Column("weighted_avg_price", "decimal", "weightedAvgPrice"),
        Column("prev_close_price", "decimal", "prevClosePrice"),
        Column("last_price", "decimal", "lastPrice"),
        Column("last_qty", "decimal", "lastQty"),
        Column("bid_price", "decimal", "bidPrice"),
        Column("bid_qty", "decimal", "bidQty"),
        Column("ask_price", "decimal", "askPrice"),
        Column("ask_qty", "decimal", "askQty"),
        Column("open_price", "decimal", "openPrice"),
        Column("high_price", "decimal", "highPrice"),
        Column("low_price", "decimal", "lowPrice"),
        Column("volume", "decimal", "volume"),
        Column("quote_volume", "decimal", "quoteVolume"),
        Column("first_trade_id", "bigint", "firstId"),
        Column("last_trade_id", "bigint", "lastId"),
        Column("trade_count", "bigint", "count"),
    ),
    primary_key=("symbol", "close_time"),
    on_conflict="update",
    shape="tickers",
    load_priority=20,
    cql_partition_key=("symbol", "close_date"),
    bucket_column="close_date",
    bucket_source="close_time",
    description="Rolling 24h statistics (FULL), one row per symbol and window end.",
)

LATEST_PRICES = Dataset(
    name="latest_prices",
    endpoint="/api/v3/ticker/price",
    params={},
    weight=Weight(2, "symbols", ((1, 4),), omitted=4),  # symbol=: 2; symbols= (any count) or none: 4
    batched=True,
    columns=(
        Column("symbol", "text", "symbol"),
        Column("price", "decimal", "price"),
        Column("observed_at", "timestamp"),  # Binance server time of the answer (HTTP Date header)
    ),
    primary_key=("symbol",),
    on_conflict="update",
    shape="tickers",
    load_priority=10,  # one request for every symbol, the most current data: first
    cql_partition_key=("symbol",),
    description="Latest price per symbol, updated in place each cycle.",
)

DATASETS: dict[str, Dataset] = {
    d.name: d for d in (RECENT_TRADES, ORDER_BOOK, KLINES, DAILY_TICKER, LATEST_PRICES)
}

# Endpoints that are not datasets, and their documented weights.
EXCHANGE_INFO = "/api/v3/exchangeInfo"
GENERAL_WEIGHTS: dict[str, Weight] = {
    "/api/v3/ping": Weight(1),
    "/api/v3/time": Weight(1),
    EXCHANGE_INFO: Weight(20),
}


def endpoint_weights() -> dict[str, Weight]:
    """Every endpoint the extractor calls, with its documented weight (the simulator charges the same)."""
    weights = dict(GENERAL_WEIGHTS)
    for d in DATASETS.values():
        weights[d.endpoint] = d.weight
        if d.cursor is not None:
            weights.setdefault(d.cursor.endpoint, d.cursor.weight)
    return weights


ENDPOINT_WEIGHTS = endpoint_weights()

# The market-data-only host users in restricted locations are told to use, and the paths it serves
# (Binance faqs/market_data_only.md): historicalTrades is not among them.
MARKET_DATA_ONLY_HOST = "data-api.binance.vision"
MARKET_DATA_ONLY_PATHS = (
    "/api/v3/aggTrades", "/api/v3/avgPrice", "/api/v3/depth", "/api/v3/exchangeInfo", "/api/v3/klines",
    "/api/v3/ping", "/api/v3/ticker", "/api/v3/ticker/24hr", "/api/v3/ticker/bookTicker",
    "/api/v3/ticker/price", "/api/v3/time", "/api/v3/trades", "/api/v3/uiKlines",
)

# The original project's ten pairs: the default of BINANCE_SYMBOLS (binance_cdc.settings) and the
# simulator's named symbols. MATICUSDT stopped trading after its migration to POL, so the exchangeInfo
# check skips it with a warning on the real API.
DEFAULT_SYMBOLS = (
    "BTCUSDT", "ETHUSDT", "BNBUSDT", "XRPUSDT", "SOLUSDT",
    "ADAUSDT", "DOGEUSDT", "MATICUSDT", "DOTUSDT", "AVAXUSDT",
)


def get(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def in_load_order(chosen) -> list[Dataset]:
    """The datasets of a cycle in load order (priority, then name): any dataset has a place."""
    return sorted(chosen, key=lambda d: (d.load_priority, d.name))
