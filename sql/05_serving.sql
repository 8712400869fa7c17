-- Schema :serving_schema (default `serving`): what the dashboards read. pg_cassandra_bridge.py copies the
-- five Cassandra tables of keyspace binance_test here (Grafana reads Postgres natively and exactly; its
-- Cassandra plugin serves neither decimals nor time buckets). Each table mirrors its Cassandra table: the
-- same columns (the dataset's, its partition bucket, the cdc_* change metadata) and the same primary key
-- (partition key + clustering columns), plus served_at, the time the bridge last wrote the row.
-- Follows binance_cdc/datasets.py (tests/unit/test_serving_drift.py parses this file and compares).
-- Not in the Debezium publication (04_publication.sql lists the binance tables only): no change loop.
-- The serving schema may live on another server: apply this file there with
--   psql -v serving_schema=serving -v bridge_role=binance_bridge -v grafana_role=binance_grafana \
--        -v reader_role=binance_readonly -f sql/05_serving.sql
CREATE SCHEMA IF NOT EXISTS :"serving_schema";

-- Recent trades; trade ids are unique and increasing per symbol.
CREATE TABLE IF NOT EXISTS :"serving_schema".recent_trades (
    symbol          text NOT NULL,
    trade_id        bigint NOT NULL,
    price           numeric NOT NULL,
    qty             numeric NOT NULL,
    quote_qty       numeric NOT NULL,
    trade_time      timestamptz NOT NULL,
    is_buyer_maker  boolean NOT NULL,
    is_best_match   boolean NOT NULL,
    trade_date      date NOT NULL,
    cdc_op          text NOT NULL,
    cdc_source_lsn  bigint NOT NULL,
    cdc_source_ts   timestamptz NOT NULL,
    cdc_event_ts    timestamptz NOT NULL,
    cdc_tx_id       text,
    cdc_written_at  timestamptz NOT NULL,
    served_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, trade_date, trade_id)
);

-- Order book snapshots, one row per price level; a snapshot is identified by lastUpdateId.
CREATE TABLE IF NOT EXISTS :"serving_schema".order_book (
    symbol          text NOT NULL,
    last_update_id  bigint NOT NULL,
    side            text NOT NULL,
    price           numeric NOT NULL,
    quantity        numeric NOT NULL,
    level           integer NOT NULL,
    captured_at     timestamptz NOT NULL,
    captured_date   date NOT NULL,
    cdc_op          text NOT NULL,
    cdc_source_lsn  bigint NOT NULL,
    cdc_source_ts   timestamptz NOT NULL,
    cdc_event_ts    timestamptz NOT NULL,
    cdc_tx_id       text,
    cdc_written_at  timestamptz NOT NULL,
    served_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, captured_date, last_update_id, side, price)
);

-- 30-minute candles; the still-open candle is updated in place until it closes.
CREATE TABLE IF NOT EXISTS :"serving_schema".klines (
    symbol                  text NOT NULL,
    interval                text NOT NULL,
    open_time               timestamptz NOT NULL,
    open_price              numeric NOT NULL,
    high_price              numeric NOT NULL,
    low_price               numeric NOT NULL,
    close_price             numeric NOT NULL,
    volume                  numeric NOT NULL,
    close_time              timestamptz NOT NULL,
    quote_volume            numeric NOT NULL,
    num_trades              bigint NOT NULL,
    taker_buy_base_volume   numeric NOT NULL,
    taker_buy_quote_volume  numeric NOT NULL,
    is_closed               boolean NOT NULL,
    open_month              date NOT NULL,
    cdc_op                  text NOT NULL,
    cdc_source_lsn          bigint NOT NULL,
    cdc_source_ts           timestamptz NOT NULL,
    cdc_event_ts            timestamptz NOT NULL,
    cdc_tx_id               text,
    cdc_written_at          timestamptz NOT NULL,
    served_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, interval, open_month, open_time)
);

-- Rolling 24h statistics (FULL), one row per symbol and window end.
CREATE TABLE IF NOT EXISTS :"serving_schema".daily_ticker (
    symbol                text NOT NULL,
    close_time            timestamptz NOT NULL,
    open_time             timestamptz NOT NULL,
    price_change          numeric NOT NULL,
    price_change_percent  numeric NOT NULL,
    weighted_avg_price    numeric NOT NULL,
    prev_close_price      numeric NOT NULL,
    last_price            numeric NOT NULL,
    last_qty              numeric NOT NULL,
    bid_price             numeric NOT NULL,
    bid_qty               numeric NOT NULL,
    ask_price             numeric NOT NULL,
    ask_qty               numeric NOT NULL,
    open_price            numeric NOT NULL,
    high_price            numeric NOT NULL,
    low_price             numeric NOT NULL,
    volume                numeric NOT NULL,
    quote_volume          numeric NOT NULL,
    first_trade_id        bigint NOT NULL,
    last_trade_id         bigint NOT NULL,
    trade_count           bigint NOT NULL,
    close_date            date NOT NULL,
    cdc_op                text NOT NULL,
    cdc_source_lsn        bigint NOT NULL,
    cdc_source_ts         timestamptz NOT NULL,
    cdc_event_ts          timestamptz NOT NULL,
    cdc_tx_id             text,
    cdc_written_at        timestamptz NOT NULL,
    served_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, close_date, close_time)
);

-- Latest price per symbol, updated in place each cycle.
CREATE TABLE IF NOT EXISTS :"serving_schema".latest_prices (
    symbol          text NOT NULL,
    price           numeric NOT NULL,
    observed_at     timestamptz NOT NULL,
    cdc_op          text NOT NULL,
    cdc_source_lsn  bigint NOT NULL,
    cdc_source_ts   timestamptz NOT NULL,
    cdc_event_ts    timestamptz NOT NULL,
    cdc_tx_id       text,
    cdc_written_at  timestamptz NOT NULL,
    served_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol)
);

-- The bridge's own state, written in the same transaction as the rows it describes.
-- Per streaming query (its id survives restarts of one checkpoint): the last micro-batch whose touched
-- partitions are copied. A crash before the commit repeats the run; after it, nothing is lost.
CREATE TABLE IF NOT EXISTS :"serving_schema".bridge_cursor (
    stream_id           uuid        NOT NULL,
    last_batch_id       bigint      NOT NULL,
    batch_completed_at  timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id)
);

-- One row per bridge run: what it did and how far behind Cassandra it was (status and freshness panel).
CREATE TABLE IF NOT EXISTS :"serving_schema".bridge_runs (
    run_id          bigserial   PRIMARY KEY,
    mode            text        NOT NULL CHECK (mode IN ('incremental', 'full')),
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL DEFAULT now(),
    partitions      bigint      NOT NULL,
    rows_read       bigint      NOT NULL,
    upserted        bigint      NOT NULL,
    deleted         bigint      NOT NULL,
    rejected        bigint      NOT NULL,
    behind_s        numeric
);

-- Rows Postgres cannot hold (reported by key and reason; the rest of their table still loads).
CREATE TABLE IF NOT EXISTS :"serving_schema".bridge_rejects (
    table_name  text        NOT NULL,
    row_key     text        NOT NULL,
    reason      text        NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, row_key)
);

-- Least privilege: the bridge writes this schema and nothing else (it holds no right on schema binance);
-- Grafana and `make psql`'s read-only role may only read it. The roles are created by `make up` with
-- passwords from .env.
REVOKE ALL ON SCHEMA :"serving_schema" FROM PUBLIC;
GRANT USAGE ON SCHEMA :"serving_schema" TO :"bridge_role", :"grafana_role", :"reader_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA :"serving_schema" TO :"bridge_role";
GRANT USAGE ON ALL SEQUENCES IN SCHEMA :"serving_schema" TO :"bridge_role";
GRANT SELECT ON ALL TABLES IN SCHEMA :"serving_schema" TO :"grafana_role", :"reader_role";
