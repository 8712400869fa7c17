-- The five tables, keyed on Binance's natural keys; every price and quantity is NUMERIC (exact, scale kept
-- as sent) and every time is timestamptz from Binance server times. Must agree with
-- binance_cdc/datasets.py (tests/unit/test_drift.py). REPLICA IDENTITY FULL: Debezium's `before` then carries
-- every column, so a delete can name the Cassandra partition (which includes a day/month bucket).

CREATE TABLE IF NOT EXISTS binance.recent_trades (
    symbol          text        NOT NULL,
    trade_id        bigint      NOT NULL,
    price           numeric     NOT NULL,
    qty             numeric     NOT NULL,
    quote_qty       numeric     NOT NULL,
    trade_time      timestamptz NOT NULL,
    is_buyer_maker  boolean     NOT NULL,
    is_best_match   boolean     NOT NULL,
    PRIMARY KEY (symbol, trade_id)
);

CREATE TABLE IF NOT EXISTS binance.order_book (
    symbol          text        NOT NULL,
    last_update_id  bigint      NOT NULL,
    side            text        NOT NULL CHECK (side IN ('bid', 'ask')),
    price           numeric     NOT NULL,
    quantity        numeric     NOT NULL,
    level           integer     NOT NULL,
    captured_at     timestamptz NOT NULL,
    PRIMARY KEY (symbol, last_update_id, side, price)
);

CREATE TABLE IF NOT EXISTS binance.klines (
    symbol                  text        NOT NULL,
    interval                text        NOT NULL,
    open_time               timestamptz NOT NULL,
    open_price              numeric     NOT NULL,
    high_price              numeric     NOT NULL,
    low_price               numeric     NOT NULL,
    close_price             numeric     NOT NULL,
    volume                  numeric     NOT NULL,
    close_time              timestamptz NOT NULL,
    quote_volume            numeric     NOT NULL,
    num_trades              bigint      NOT NULL,
    taker_buy_base_volume   numeric     NOT NULL,
    taker_buy_quote_volume  numeric     NOT NULL,
    is_closed               boolean     NOT NULL,
    PRIMARY KEY (symbol, interval, open_time)
);

CREATE TABLE IF NOT EXISTS binance.daily_ticker (
    symbol                text        NOT NULL,
    close_time            timestamptz NOT NULL,
    open_time             timestamptz NOT NULL,
    price_change          numeric     NOT NULL,
    price_change_percent  numeric     NOT NULL,
    weighted_avg_price    numeric     NOT NULL,
    prev_close_price      numeric     NOT NULL,
    last_price            numeric     NOT NULL,
    last_qty              numeric     NOT NULL,
    bid_price             numeric     NOT NULL,
    bid_qty               numeric     NOT NULL,
    ask_price             numeric     NOT NULL,
    ask_qty               numeric     NOT NULL,
    open_price            numeric     NOT NULL,
    high_price            numeric     NOT NULL,
    low_price             numeric     NOT NULL,
    volume                numeric     NOT NULL,
    quote_volume          numeric     NOT NULL,
    first_trade_id        bigint      NOT NULL,
    last_trade_id         bigint      NOT NULL,
    trade_count           bigint      NOT NULL,
    PRIMARY KEY (symbol, close_time)
);

CREATE TABLE IF NOT EXISTS binance.latest_prices (
    symbol       text        NOT NULL,
    price        numeric     NOT NULL,
    observed_at  timestamptz NOT NULL,
    PRIMARY KEY (symbol)
);

-- Not published: trades the extractor knows it has not stored, (after_trade_id, before_trade_id) exclusive,
-- with why (reason: 'budget' the run's weight share was spent, 'not_served' the host has no historicalTrades,
-- 'history_limit' Binance no longer serves them, 'sampled' recorded before the trade cursor existed).
-- A later run fills a gap from its start (filled_count) and closes it (closed_at) in the transaction that
-- stores its last trade.
CREATE TABLE IF NOT EXISTS binance.trade_gaps (
    symbol           text        NOT NULL,
    after_trade_id   bigint      NOT NULL,
    before_trade_id  bigint      NOT NULL,
    missed_count     bigint      NOT NULL,
    detected_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, after_trade_id)
);
ALTER TABLE binance.trade_gaps ADD COLUMN IF NOT EXISTS reason       text        NOT NULL DEFAULT 'sampled';
ALTER TABLE binance.trade_gaps ADD COLUMN IF NOT EXISTS filled_count bigint      NOT NULL DEFAULT 0;
ALTER TABLE binance.trade_gaps ADD COLUMN IF NOT EXISTS closed_at    timestamptz;
ALTER TABLE binance.trade_gaps ADD COLUMN IF NOT EXISTS updated_at   timestamptz;
CREATE INDEX IF NOT EXISTS trade_gaps_open ON binance.trade_gaps (symbol, after_trade_id) WHERE closed_at IS NULL;

ALTER TABLE binance.recent_trades REPLICA IDENTITY FULL;
ALTER TABLE binance.order_book    REPLICA IDENTITY FULL;
ALTER TABLE binance.klines        REPLICA IDENTITY FULL;
ALTER TABLE binance.daily_ticker  REPLICA IDENTITY FULL;
ALTER TABLE binance.latest_prices REPLICA IDENTITY FULL;
