"""The one declarative description of the five Binance datasets.

Every stage follows from (or is checked against) these definitions:
- the extractor builds its requests and rows from `endpoint`, `params` and `columns`;
- `sql/` and `cql/` declare the same columns and keys (tests/unit/test_sql_drift.py and test_cql_drift.py parse them and compare);
- the Debezium decoder converts each `after`/`before` field by its `kind`;
- the bridge copies Cassandra rows back by the same column list.

Column kinds are logical types with one exact mapping per store:

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

from dataclasses import dataclass
from functools import cached_property

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
    "cdc_tx_id": "text",  # transaction.id when present, else source.txId
    "cdc_written_at": "timestamp",  # when the row reached Cassandra
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    api_field: str | int | None = None  # key (object) or index (array) in the API answer; None = derived
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.kind not in PG_TYPES:
            raise ValueError(f"column {self.name}: unknown kind {self.kind!r}")


@dataclass(frozen=True)
class Dataset:
    """One Binance endpoint and the table it lands in, in Postgres and in Cassandra."""

    name: str  # table name in Postgres schema `binance` and Cassandra keyspace `binance_test`
    endpoint: str
    params: dict[str, str | int]
    weight: int  # documented request weight of one call with `params`
    batched: bool  # True: one request for all symbols (`symbols=[...]`); False: one per symbol
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]  # the natural key, in Postgres and (as clustering + partition) in Cassandra
    on_conflict: str  # "ignore" (immutable facts) or "update" (values that change in place)
    # Cassandra: partition key = these columns; bucket_column is derived from bucket_source.
    cql_partition_key: tuple[str, ...]
    bucket_column: str | None = None
    bucket_source: str | None = None
    bucket_unit: str = "day"  # "day" or "month": keeps partitions bounded as data grows
    description: str = ""

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


KLINE_INTERVAL = "30m"

RECENT_TRADES = Dataset(
    name="recent_trades",
    endpoint="/api/v3/trades",
    params={"limit": 500},
    weight=25,
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
    cql_partition_key=("symbol", "trade_date"),
    bucket_column="trade_date",
    bucket_source="trade_time",
    description="Recent trades; trade ids are unique and increasing per symbol.",
)

ORDER_BOOK = Dataset(
    name="order_book",
    endpoint="/api/v3/depth",
    params={"limit": 100},
    weight=5,
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
    cql_partition_key=("symbol", "captured_date"),
    bucket_column="captured_date",
    bucket_source="captured_at",
    description="Order book snapshots, one row per price level; a snapshot is identified by lastUpdateId.",
)

KLINES = Dataset(
    name="klines",
    endpoint="/api/v3/klines",
    params={"interval": KLINE_INTERVAL, "limit": 10},
    weight=2,
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
    cql_partition_key=("symbol", "interval", "open_month"),
    bucket_column="open_month",
    bucket_source="open_time",
    bucket_unit="month",
    description="30-minute candles; the still-open candle is updated in place until it closes.",
)

DAILY_TICKER = Dataset(
    name="daily_ticker",
    endpoint="/api/v3/ticker/24hr",
    params={"type": "FULL"},
    weight=2,  # 1-20 symbols in one call; see binance_cdc.extract.client.request_weight
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
    cql_partition_key=("symbol", "close_date"),
    bucket_column="close_date",
    bucket_source="close_time",
    description="Rolling 24h statistics (FULL), one row per symbol and window end.",
)

LATEST_PRICES = Dataset(
    name="latest_prices",
    endpoint="/api/v3/ticker/price",
    params={},
    weight=4,
    batched=True,
    columns=(
        Column("symbol", "text", "symbol"),
        Column("price", "decimal", "price"),
        Column("observed_at", "timestamp"),  # Binance server time of the answer (HTTP Date header)
    ),
    primary_key=("symbol",),
    on_conflict="update",
    cql_partition_key=("symbol",),
    description="Latest price per symbol, updated in place each cycle.",
)

DATASETS: dict[str, Dataset] = {
    d.name: d for d in (RECENT_TRADES, ORDER_BOOK, KLINES, DAILY_TICKER, LATEST_PRICES)
}

# The original project's ten pairs; MATICUSDT stopped trading after its migration to POL, so the
# exchangeInfo check skips it with a warning on the real API.
DEFAULT_SYMBOLS = (
    "BTCUSDT", "ETHUSDT", "BNBUSDT", "XRPUSDT", "SOLUSDT",
    "ADAUSDT", "DOGEUSDT", "MATICUSDT", "DOTUSDT", "AVAXUSDT",
)


def get(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None
