"""Request weights and the IP rate limiter on the virtual clock.

Weights are not restated here: `request_weight` charges what binance_cdc.datasets declares for each
endpoint (`ENDPOINT_WEIGHTS`, as Binance documents them), the same description the extractor budgets with.

Windows are fixed and clock-aligned (one per virtual minute). A request that takes the minute's weight
over the limit is answered 429 with `Retry-After` = seconds to the next window; after `ban_after`
such refusals in the same window the IP is banned (418) for `ban_seconds`, doubling on each new ban up
to 3 days (Binance documents "2 minutes to 3 days"). Refused requests are charged too, as on Binance,
so the weight header can exceed the limit. Pure apart from the limiter's own state.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from binance_cdc.datasets import ENDPOINT_WEIGHTS, Weight

MINUTE_MS = 60_000
MAX_BAN_S = 3 * 86_400

_UNKNOWN_PATH = Weight(1)


def request_weight(path: str, params: dict[str, str]) -> int:
    """Documented weight of a request; malformed parameters are charged the endpoint's lowest tier."""
    return ENDPOINT_WEIGHTS.get(path, _UNKNOWN_PATH).charge(params)


@dataclass(frozen=True)
class Verdict:
    status: int  # 200 (go on), 429 or 418
    used: int  # weight used in the current window after this request
    retry_after_s: int = 0
    banned_until_ms: int = 0


class RateLimiter:
    def __init__(self, limit: int, ban_after: int = 3, ban_seconds: int = 120) -> None:
        self.limit = limit
        self.ban_after = ban_after
        self.ban_seconds = ban_seconds
        self._lock = threading.Lock()
        self._window = -1
        self._used = 0
        self._refused = 0
        self._bans = 0
        self.banned_until_ms = 0

    def used(self, now_ms: int) -> int:
        with self._lock:
            return self._used if now_ms // MINUTE_MS == self._window else 0

    def charge(self, now_ms: int, weight: int) -> Verdict:
        with self._lock:
            if now_ms < self.banned_until_ms:
                used = self._used if now_ms // MINUTE_MS == self._window else 0
                return Verdict(418, used, math.ceil((self.banned_until_ms - now_ms) / 1000), self.banned_until_ms)
            window = now_ms // MINUTE_MS
            if window != self._window:
                self._window, self._used, self._refused = window, 0, 0
            limited = self._refused > 0 or self._used + weight > self.limit
            self._used += weight
            if not limited:
                return Verdict(200, self._used)
            self._refused += 1
            if self._refused > self.ban_after:
                duration = min(self.ban_seconds * 2**self._bans, MAX_BAN_S)
                self._bans += 1
                self.banned_until_ms = now_ms + duration * 1000
                return Verdict(418, self._used, duration, self.banned_until_ms)
            retry = max(1, math.ceil(((window + 1) * MINUTE_MS - now_ms) / 1000))
            return Verdict(429, self._used, retry)
