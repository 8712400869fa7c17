"""Symbol universe of the simulator: tick/lot sizes, base prices, trade rates, exact decimal formatting.

All prices and quantities are integers in units of 1e-8 (Binance's 8-decimal strings), so every
computation is exact; `fmt8` turns such an integer into the string Binance sends. Pure, no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Mapping

from binance_cdc.datasets import DEFAULT_SYMBOLS

UNIT = 10**8  # one whole coin / quote unit in 1e-8 units
MASK64 = (1 << 64) - 1

# base price, tick size, lot step, mean trades per minute (real tick/lot sizes of these pairs) of the
# extractor's default symbols (binance_cdc.datasets.DEFAULT_SYMBOLS, one list for both).
KNOWN: dict[str, tuple[str, str, str, int]] = {
    "BTCUSDT": ("95000.00", "0.01", "0.00001", 12),
    "ETHUSDT": ("3300.00", "0.01", "0.0001", 10),
    "BNBUSDT": ("650.00", "0.01", "0.001", 6),
    "XRPUSDT": ("2.3000", "0.0001", "0.1", 7),
    "SOLUSDT": ("190.00", "0.01", "0.001", 8),
    "ADAUSDT": ("0.9000", "0.0001", "0.1", 5),
    "DOGEUSDT": ("0.32000", "0.00001", "1", 6),
    "MATICUSDT": ("0.3800", "0.0001", "0.1", 4),
    "DOTUSDT": ("7.000", "0.001", "0.01", 4),
    "AVAXUSDT": ("35.00", "0.01", "0.01", 4),
}
# MATICUSDT is dead since the POL migration.
DEFAULT_DEAD = ("MATICUSDT",)
# Binance halted MATIC trading for the POL migration at 2024-09-10 04:00 UTC.
DEAD_SINCE_MS = 1_725_940_800_000

_MORE_BASES = (
    "LINK LTC TRX UNI ATOM NEAR APT ARB OP FIL ICP ETC XLM HBAR INJ SUI AAVE BCH SEI TIA "
    "RUNE ALGO VET GRT EGLD SAND MANA AXS THETA FTM"
).split()
QUOTES = ("USDT", "USDC", "FDUSD", "BTC", "ETH", "BNB")


def universe(n: int) -> tuple[str, ...]:
    """`n` plausible symbol names: the original ten, then real-looking pairs, then synthetic ones."""
    names = list(DEFAULT_SYMBOLS) + [b + "USDT" for b in _MORE_BASES]
    i = 0
    while len(names) < n:
        names.append(f"SIM{i:03d}USDT")
        i += 1
    return tuple(names[:n])


def fmt8(units: int) -> str:
    """Exact 8-decimal string of an integer amount of 1e-8 units (no float anywhere)."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), UNIT)
    return f"{sign}{whole}.{frac:08d}"


def to_units(text: str) -> int:
    value = Decimal(text) * UNIT
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} has more than 8 decimals")
    return int(value)


def mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, portable integer hash (deterministic across platforms)."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


@dataclass(frozen=True)
class SymbolSpec:
    name: str
    base_asset: str
    quote_asset: str
    price: int  # reference price, 1e-8 units
    tick: int  # PRICE_FILTER tickSize, 1e-8 units
    step: int  # LOT_SIZE stepSize, 1e-8 units
    rate: int  # mean trades per minute (a minute has 1 .. 2*rate-1 trades)
    key: int  # per-symbol hash key (seeded)
    dead: bool

    @property
    def typical_qty_steps(self) -> int:
        # about 50 quote units per trade before the heavy tail
        return max(1, 50 * UNIT * UNIT // (self.price * self.step * 4))


def split_pair(name: str) -> tuple[str, str]:
    for quote in QUOTES:
        if name.endswith(quote) and len(name) > len(quote):
            return name[: -len(quote)], quote
    return name[:-4] or name, name[-4:]


def _sizes_for(price: int) -> tuple[int, int]:
    """Tick and step for a price, chosen like Binance's and so that tick*step is a multiple of 1e-8."""
    for floor, tick, step in (
        (1000 * UNIT, 10**6, 10**3),
        (100 * UNIT, 10**6, 10**4),
        (10 * UNIT, 10**6, 10**5),
        (1 * UNIT, 10**4, 10**7),
        (UNIT // 10, 10**3, UNIT),
        (UNIT // 1000, 10, UNIT),
    ):
        if price >= floor:
            return tick, step
    return 1, UNIT


def make_spec(name: str, seed: int, dead: bool, trades_per_minute: int | Mapping[str, int] | None = None) -> SymbolSpec:
    """The symbol's spec; `trades_per_minute` (one rate for all, or by symbol) overrides its rate."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big")
    base, quote = split_pair(name)
    if name in KNOWN:
        price_s, tick_s, step_s, rate = KNOWN[name]
        price, tick, step = to_units(price_s), to_units(tick_s), to_units(step_s)
    else:
        # 0.0001 .. 9000 quote units, log-spread by the name's hash
        price = (1 + key % 9) * 10 ** (4 + (key >> 8) % 8)
        tick, step = _sizes_for(price)
        price -= price % tick
        rate = 2 + (key >> 16) % 6
    if (tick * step) % UNIT:
        raise ValueError(f"{name}: tick*step must be a multiple of 1e-8 so quoteQty is exact")
    if isinstance(trades_per_minute, Mapping):
        trades_per_minute = trades_per_minute.get(name)
    if trades_per_minute is not None:
        if trades_per_minute < 1:
            raise ValueError(f"trades_per_minute must be >= 1, got {trades_per_minute}")
        rate = trades_per_minute
    return SymbolSpec(name, base, quote, price, tick, step, rate, key, dead)
