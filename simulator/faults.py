"""Injectable faults: a FIFO of (fault, path, symbol, remaining count) consumed by matching requests.

Fault names: "429", "418", "451", "500", "503", "timeout", "truncated", "unknown_symbol". Error bodies
follow Binance's documented wording; the 451 body is Binance's restricted-location answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

FAULTS = ("429", "418", "451", "500", "503", "timeout", "truncated", "unknown_symbol")

RESTRICTED_MSG = (
    "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you received "
    "this message in error."
)
# status, body for the faults that replace the answer
ERROR_FAULTS: dict[str, tuple[int, dict]] = {
    "451": (451, {"code": 0, "msg": RESTRICTED_MSG}),
    "500": (500, {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}),
    "503": (
        503,
        {"code": -1008, "msg": "Server is currently overloaded with other requests. Please try again in a few minutes."},
    ),
    "unknown_symbol": (400, {"code": -1121, "msg": "Invalid symbol."}),
}


def normalize_path(path: str | None) -> str | None:
    if path is None or path.startswith("/"):
        return path
    return "/api/v3/" + path


@dataclass
class Fault:
    fault: str
    path: str | None
    symbol: str | None
    remaining: int
    delay_s: float | None = None


class FaultQueue:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def inject(
        self, fault: str, path: str | None = None, count: int = 1, symbol: str | None = None, delay_s: float | None = None
    ) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        if count < 1:
            raise ValueError(f"fault {fault!r}: count must be >= 1, got {count}")
        with self._lock:
            self._faults.append(Fault(fault, normalize_path(path), symbol, count, delay_s))

    def take(self, path: str, symbols: list[str]) -> Fault | None:
        """The first queued fault matching this request (consuming one of its count), or None."""
        with self._lock:
            for fault in self._faults:
                if fault.path is not None and fault.path != path:
                    continue
                if fault.symbol is not None and fault.symbol not in symbols:
                    continue
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def pending(self) -> int:
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
