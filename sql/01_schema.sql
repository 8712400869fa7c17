-- Schema `binance`: the five Binance datasets, loaded by extraction_script.py.
-- Apply with: psql -v app_role=binance_app -v cdc_role=binance_cdc -v publication=binance_publication -f sql/01_schema.sql
-- (make up applies every file in sql/ in order, as the cluster's superuser; all files are idempotent.)
CREATE SCHEMA IF NOT EXISTS binance;
