"""Run the Binance simulator until Ctrl-C, logging one line per request.

    python -m simulator --port 8765 [--latency-ms 50] [--symbols 100 | BTCUSDT,ETHUSDT] [--dead MATICUSDT]
                        [--seed 1] [--weight-limit 6000] [--frozen] [--trades-per-minute N]
                        [--trades-per-minute-by-symbol BTCUSDT=3480,...] [--no-warm] [--market-data-only] [--memo]

The virtual clock follows the wall clock (the market keeps trading) unless --frozen; either way
POST /_sim/advance {"seconds": N} moves it forward. Needs nothing but the standard library.
"""

from __future__ import annotations

import argparse
import logging
import threading

from binance_cdc.datasets import DEFAULT_SYMBOLS
from simulator.server import BinanceSimulator
from simulator.symbols import DEFAULT_DEAD, universe


def parse_symbols(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_SYMBOLS
    if raw.isdigit():
        return universe(int(raw))
    return tuple(s.strip() for s in raw.split(",") if s.strip())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--symbols", help="a count (first N of the universe) or a comma-separated list")
    parser.add_argument("--dead", default=",".join(DEFAULT_DEAD), help="comma-separated dead symbols")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--weight-limit", type=int, default=6000)
    parser.add_argument("--frozen", action="store_true", help="virtual clock moves only by /_sim/advance")
    parser.add_argument("--trades-per-minute", type=int, help="every symbol's trade rate (BTCUSDT: ~3500 really)")
    parser.add_argument("--trades-per-minute-by-symbol", metavar="SYM=N,...",
                        help="trade rate per symbol (overrides --trades-per-minute for those)")
    parser.add_argument("--no-warm", action="store_true", help="do not precompute the 24 h ticker aggregates")
    parser.add_argument("--market-data-only", action="store_true",
                        help="behave like data-api.binance.vision: no historicalTrades")
    parser.add_argument("--memo", action="store_true",
                        help="serve each distinct request's first answer from memory (benchmarks)")
    args = parser.parse_args(argv)
    rates: int | dict[str, int] | None = args.trades_per_minute
    if args.trades_per_minute_by_symbol:
        by_symbol = dict(pair.split("=", 1) for pair in args.trades_per_minute_by_symbol.split(",") if pair)
        rates = {name: int(by_symbol.get(name, args.trades_per_minute or 0)) or None for name in
                 set(by_symbol) | set(parse_symbols(args.symbols))}
        rates = {k: v for k, v in rates.items() if v}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sim = BinanceSimulator(
        symbols=parse_symbols(args.symbols),
        dead_symbols=tuple(s for s in args.dead.split(",") if s),
        latency_ms=args.latency_ms,
        seed=args.seed,
        weight_limit=args.weight_limit,
        host=args.host,
        port=args.port,
        realtime=not args.frozen,
        trades_per_minute=rates,
        warm=not args.no_warm,
        market_data_only=args.market_data_only,
        memo=args.memo,
    )
    sim.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        logging.getLogger("simulator").info("stopping")
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
