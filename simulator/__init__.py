"""A faithful local simulator of the Binance Spot public market-data REST API (the one fake we allow).

Serves /api/v3/{ping,time,exchangeInfo,trades,historicalTrades,depth,klines,ticker/24hr,ticker/price} with Binance's
shapes, weights, `X-MBX-USED-WEIGHT-1M` header, 429/418 rate limiting and error codes, on a virtual
clock over a deterministic market (same seed and clock -> same answers). Standard library only.

    from simulator import BinanceSimulator
    with BinanceSimulator(symbols=("BTCUSDT", "ETHUSDT"), seed=1) as sim:
        requests.get(sim.url + "/api/v3/trades", params={"symbol": "BTCUSDT"})
        sim.advance(60)

CLI: `python -m simulator --port 8765 [--latency-ms 50] [--symbols 100|BTCUSDT,ETHUSDT] [--dead MATICUSDT]`.
"""

from binance_cdc.datasets import DEFAULT_SYMBOLS
from simulator.faults import FAULTS
from simulator.server import BinanceSimulator
from simulator.symbols import DEFAULT_DEAD, universe

__all__ = ["BinanceSimulator", "FAULTS", "DEFAULT_SYMBOLS", "DEFAULT_DEAD", "universe"]
