-- Least privilege: the application role reads and writes the tables, nothing else; the replication
-- role (Debezium) may only read them for the initial snapshot. Both roles are created by `make up`
-- with passwords from .env (never stored here).
REVOKE ALL ON SCHEMA binance FROM PUBLIC;
GRANT USAGE ON SCHEMA binance TO :"app_role", :"cdc_role";
-- No TRUNCATE for the app role: the extractor never empties a captured table (it truncates only its own
-- temporary staging tables). A TRUNCATE is captured and emptied in Cassandra too (skipped.operations=none).
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA binance TO :"app_role";
GRANT SELECT ON binance.recent_trades, binance.order_book, binance.klines, binance.daily_ticker,
    binance.latest_prices TO :"cdc_role";
-- The read-only role of `make psql`: looks, never touches.
GRANT USAGE ON SCHEMA binance TO :"reader_role";
GRANT SELECT ON ALL TABLES IN SCHEMA binance TO :"reader_role";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
