"""Stage 1 (cron): one extraction cycle, Binance REST market data -> PostgreSQL schema `binance`.

What: checks the symbols against /api/v3/exchangeInfo (not TRADING or unknown -> skipped with a warning),
then loads five datasets (binance_cdc/datasets.py): latest_prices and daily_ticker (one request each for
all symbols), klines 30m, order_book and recent_trades (per symbol, in parallel). Each dataset is loaded
in bulk (COPY + INSERT ... ON CONFLICT on its natural key) and committed on its own; rerunning adds no
duplicates, an open kline or a changed price is updated in place, an unchanged one is not touched.
Klines continue from the last stored candle (an outage is backfilled). Trades continue from the last
stored id with historicalTrades (1000 a call) until the present or the run's trade weight is spent;
what could not be fetched is recorded in binance.trade_gaps with its reason, and a later run fills and
closes it. A symbol's first run takes the latest --trades-lookback trades. Logs one summary line per
dataset and exits; overlapping runs are prevented by a Postgres advisory lock.

Variables (.env or environment; see .env.example):
  PG_HOST PG_PORT PG_DATABASE PG_APP_USER PG_APP_PASSWORD PG_SSLMODE
  BINANCE_BASE_URL (default https://api.binance.com; https://data-api.binance.vision where 451)
  BINANCE_SYMBOLS BINANCE_WEIGHT_SHARE BINANCE_TIMEOUT_S BINANCE_MAX_WORKERS BINANCE_MAX_RETRIES

Run:
  .venv/bin/python extraction_script.py
  .venv/bin/python extraction_script.py --symbols BTCUSDT,ETHUSDT --datasets recent_trades,klines
  .venv/bin/python extraction_script.py --base-url http://127.0.0.1:8765 --log-level DEBUG   # simulator
  .venv/bin/python extraction_script.py --trade-weight 1000 --trades-lookback 1000

Cron (every 5 minutes, from the checkout):
  */5 * * * * cd /path/to/checkout && .venv/bin/python extraction_script.py >> .local/logs/extraction.log 2>&1

Exit codes:
  0 every dataset loaded
  1 some dataset (or symbol) failed, or Postgres/exchangeInfo unreachable; the others were committed
  2 configuration error (invalid variable, symbol or dataset name, or Postgres refused the login: a wrong
    PG_APP_USER or PG_APP_PASSWORD); nothing requested
  3 another run holds the lock; nothing written
  4 IP banned by Binance (HTTP 418); wait for Retry-After before the next run
  5 restricted location (HTTP 451); set BINANCE_BASE_URL=https://data-api.binance.vision
"""

from __future__ import annotations

import argparse
import logging
import sys

from binance_cdc import datasets as ds
from binance_cdc.extract.cycle import EXIT_CONFIG, RunOptions, run
from binance_cdc.settings import SettingsError, load_dotenv_file, load_settings

log = logging.getLogger("extraction_script")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="One Binance -> Postgres extraction cycle (see module docstring).")
    parser.add_argument("--symbols", help="comma-separated symbols (default: BINANCE_SYMBOLS)")
    parser.add_argument(
        "--datasets", help=f"comma-separated datasets (default: all of {','.join(ds.DATASETS)})"
    )
    parser.add_argument("--base-url", help="overrides BINANCE_BASE_URL")
    parser.add_argument(
        "--trade-weight", type=int,
        help="request weight this run may spend on historicalTrades pages (25 per 1000 trades; "
             "default: half of BINANCE_WEIGHT_SHARE x 6000)",
    )
    parser.add_argument(
        "--trades-lookback", type=int,
        help="a symbol's first run: how many of its latest trades to take, 1..1000 (default 500)",
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_dotenv_file()
    try:
        settings = load_settings("postgres", "postgres_app", "binance")
        base_url = args.base_url.rstrip("/") if args.base_url else None
        if base_url and not base_url.startswith(("http://", "https://")):
            raise ValueError(f"--base-url {args.base_url!r} must start with http:// or https://")
        chosen = [ds.get(n.strip()) for n in args.datasets.split(",") if n.strip()] if args.datasets else None
        if args.trade_weight is not None and args.trade_weight < 0:
            raise ValueError(f"--trade-weight must be >= 0, got {args.trade_weight}")
        if args.trades_lookback is not None and not 1 <= args.trades_lookback <= 1000:
            raise ValueError(f"--trades-lookback must be 1..1000, got {args.trades_lookback}")
        options = RunOptions(sequence_weight=args.trade_weight, lookback=args.trades_lookback)
    except (SettingsError, KeyError, ValueError) as exc:
        log.error("configuration: %s", exc)
        return EXIT_CONFIG
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    report = run(settings, symbols, chosen, base_url=base_url, options=options)
    if report.exit_code:
        log.error("exit %d: %s", report.exit_code, report.message)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
