-- The publication Debezium's pgoutput plugin reads: exactly the five dataset tables, plus the heartbeat table
-- (03_heartbeat.sql), whose changes the connector must receive to confirm WAL while the five are idle.
-- Created here by the table owner so the replication role needs no ownership
-- (the connector runs with publication.autocreate.mode=disabled).
SELECT format('CREATE PUBLICATION %I', :'publication')
WHERE NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = :'publication') \gexec

ALTER PUBLICATION :"publication" SET TABLE
    binance.recent_trades, binance.order_book, binance.klines, binance.daily_ticker, binance.latest_prices,
    cdc_heartbeat.beats;
