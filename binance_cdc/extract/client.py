"""HTTP client for the public Binance Spot market-data endpoints.

One keep-alive `requests.Session` with a `urllib3` `Retry` mounted: 429 is retried after the server's
`Retry-After`, 5xx, connect errors and read timeouts are retried with bounded exponential backoff
(`BINANCE_MAX_RETRIES`), every request has a timeout (`BINANCE_TIMEOUT_S`). JSON bodies are parsed with
`parse_float=Decimal`, so no number ever passes through a float.

Request weight: every call is charged its documented weight (binance_cdc.datasets: `Dataset.weight`,
`Cursor.weight`, `GENERAL_WEIGHTS`), retries included (weight x (1 + retries)), against a budget of
`BINANCE_WEIGHT_SHARE` x 6000 per clock-aligned minute, kept in step with the server's
`X-MBX-USED-WEIGHT-1M` header and the server clock (`Date` header). Policy when a request would exceed the
budget: wait for the next minute window of the server clock (at most 60 s), then send. A cron run is far
shorter than the budget needs, so waiting is rarer and kinder than failing a dataset.

Answers that stop everything: 418 (IP banned; `BannedError` with Retry-After) and 451 (restricted location;
`RestrictedLocationError` suggesting https://data-api.binance.vision). Answers that fail one request:
-1121 unknown symbol (`UnknownSymbolError`), HTTP 404 for a path this host does not serve (`NotServedError`:
data-api.binance.vision has no historicalTrades), an unreadable body after one extra try (`BadResponseError`),
any other error status (`BinanceError`).

Needs: settings group "binance". Used by binance_cdc.extract.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping, Sequence

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from binance_cdc.datasets import (
    EXCHANGE_INFO,
    GENERAL_WEIGHTS,
    MARKET_DATA_ONLY_HOST,
    MARKET_DATA_ONLY_PATHS,
)
from binance_cdc.settings import BinanceSettings

log = logging.getLogger(__name__)

WEIGHT_LIMIT_PER_MINUTE = 6000
EXCHANGE_INFO_WEIGHT = GENERAL_WEIGHTS[EXCHANGE_INFO].one
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
MAX_SYMBOLS_PER_BATCH = 100  # 24hr ticker: 21-100 symbols cost 40, 101+ cost 80 (the all-symbols price)
RESTRICTED_HINT = (
    "Binance refuses this location (HTTP 451). Public market data is served from "
    "https://data-api.binance.vision: set BINANCE_BASE_URL=https://data-api.binance.vision "
    "(or pass --base-url https://data-api.binance.vision)."
)


class BinanceError(Exception):
    """A request failed; the message names the endpoint and the symbol(s)."""


class UnknownSymbolError(BinanceError):
    """Binance answered -1121 Invalid symbol."""


class BadResponseError(BinanceError):
    """The body was truncated or not JSON, twice in a row."""


class NotServedError(BinanceError):
    """HTTP 404: this host does not serve the path (e.g. historicalTrades on data-api.binance.vision)."""


class StopRun(BinanceError):
    """An answer after which no further request may be sent in this run."""


class BannedError(StopRun):
    def __init__(self, retry_after: str | None, detail: str) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"IP banned by Binance (HTTP 418, Retry-After {retry_after or '?'} s): {detail.rstrip('.')}. "
            "No request will be sent until the ban is over; do not restart before then."
        )


class RestrictedLocationError(StopRun):
    def __init__(self, url: str) -> None:
        super().__init__(f"{url}: {RESTRICTED_HINT}")


def serves(base_url: str, path: str) -> bool:
    """False when the host is known not to serve `path` (the market-data-only host's documented list)."""
    host = base_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
    return host != MARKET_DATA_ONLY_HOST or path in MARKET_DATA_ONLY_PATHS


def symbols_param(symbols: Sequence[str]) -> str:
    """The compact JSON array Binance's `symbols` regex accepts (no spaces)."""
    return json.dumps(list(symbols), separators=(",", ":"))


def chunks(items: Sequence[str], size: int = MAX_SYMBOLS_PER_BATCH) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def parse_used_weight(headers: Mapping[str, str]) -> int | None:
    raw = headers.get(USED_WEIGHT_HEADER)
    if raw is None:
        raw = headers.get("X-MBX-USED-WEIGHT")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def parse_server_time(headers: Mapping[str, str]) -> datetime | None:
    """Binance's clock from the HTTP `Date` header, tz-aware UTC (second resolution)."""
    raw = headers.get("Date")
    if not raw:
        return None
    try:
        return parsedate_to_datetime(raw).astimezone(timezone.utc)
    except (TypeError, ValueError):
        return None


class WeightBudget:
    """Request weight of the current server-clock minute, shared by the worker threads.

    `reserve(w)` blocks until `used + in_flight + w` fits under `limit` (sleeping until the next window
    when it does not); `settle(w, headers)` releases the reservation and adopts the server's count.
    """

    def __init__(
        self,
        limit: int,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit <= 0:
            raise ValueError("weight limit must be positive")
        self.limit = limit
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._offset = 0.0  # server clock - local clock, learnt from Date headers
        self._window = self._current_window()
        self.used = 0
        self.in_flight = 0
        self.waits = 0

    def _server_now(self) -> float:
        return self._clock() + self._offset

    def _current_window(self) -> int:
        return math.floor(self._server_now() / 60)

    def wait_needed(self, weight: int) -> float:
        """Seconds to wait before `weight` may be sent (0: send now). Pure given the clock."""
        if weight > self.limit:
            raise BinanceError(f"request weight {weight} exceeds the whole budget {self.limit}")
        now = self._server_now()
        if math.floor(now / 60) != self._window:
            return 0.0
        if self.used + self.in_flight + weight <= self.limit:
            return 0.0
        return (self._window + 1) * 60 - now + 0.05

    def reserve(self, weight: int) -> None:
        while True:
            with self._lock:
                window = self._current_window()
                if window != self._window:
                    self._window, self.used = window, 0
                wait = self.wait_needed(weight)
                if wait <= 0:
                    self.in_flight += weight
                    return
                self.waits += 1
            log.warning(
                "weight budget: used=%s in_flight=%s next=%s limit=%s; waiting %.1f s for the next minute",
                self.used, self.in_flight, weight, self.limit, wait,
            )
            self._sleep(wait)

    def settle(self, weight: int, headers: Mapping[str, str] | None) -> None:
        with self._lock:
            self.in_flight = max(0, self.in_flight - weight)
            if headers is None:
                self.used += weight
                return
            server_time = parse_server_time(headers)
            if server_time is not None:
                # Date has second resolution: only move the offset when it is off by more than that.
                offset = server_time.timestamp() - self._clock()
                if abs(offset - self._offset) > 1.0:
                    self._offset = offset
            window = self._current_window()
            reported = parse_used_weight(headers)
            if window != self._window:
                self._window, self.used = window, reported or 0
            elif reported is not None:
                self.used = max(self.used, reported)
            else:
                self.used += weight


@dataclass
class Answer:
    payload: Any
    server_time: datetime
    weight: int  # documented weight charged, retries included


class BinanceClient:
    """Thread-safe: one pooled session shared by `max_workers` threads."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        max_retries: int = 4,
        weight_share: float = 0.5,
        max_workers: int = 8,
        backoff_factor: float = 0.5,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.budget = WeightBudget(int(WEIGHT_LIMIT_PER_MINUTE * weight_share), clock, sleep)
        self.stopped: StopRun | None = None
        self.session = requests.Session()
        retry = Retry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            other=0,
            allowed_methods=frozenset({"GET"}),
            status_forcelist=(429, 500, 502, 503, 504),
            backoff_factor=backoff_factor,
            backoff_max=30,
            respect_retry_after_header=True,
            raise_on_status=False,  # the final 4xx/5xx answer reaches us and becomes a clear error
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=max(1, max_workers))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = "binance-cdc-extractor/1.0"

    @classmethod
    def from_settings(cls, binance: BinanceSettings, base_url: str | None = None) -> "BinanceClient":
        return cls(
            base_url or binance.base_url,
            timeout_s=binance.timeout_s,
            max_retries=binance.max_retries,
            weight_share=binance.weight_share,
            max_workers=binance.max_workers,
        )

    def close(self) -> None:
        self.session.close()

    def get(self, path: str, params: Mapping[str, Any], weight: int, what: str) -> Answer:
        """GET `path`; `what` names the dataset/symbol in every error. An unreadable body is tried twice."""
        charged = 0
        for attempt in (1, 2):
            if self.stopped is not None:
                raise self.stopped
            response = None
            try:
                response, retries = self._send(path, params, weight, what)
                charged += weight * (1 + retries)
                payload = self.decode(response, what)
            except BadResponseError as exc:
                if response is None:  # cut short inside the send: charged but not yet counted
                    charged += weight
                if attempt == 2:
                    raise
                log.warning("%s: %s; trying once more", what, exc)
                continue
            server_time = parse_server_time(response.headers) or datetime.now(timezone.utc)
            return Answer(payload, server_time, charged)
        raise AssertionError("unreachable")

    def _send(self, path: str, params: Mapping[str, Any], weight: int, what: str) -> tuple[requests.Response, int]:
        url = self.base_url + path
        self.budget.reserve(weight)
        headers = None
        try:
            response = self.session.get(url, params=params, timeout=self.timeout_s)
            headers = response.headers
        except requests.exceptions.ChunkedEncodingError as exc:
            raise BadResponseError(f"{what}: body cut short ({exc.__class__.__name__})") from exc
        except requests.exceptions.RetryError as exc:
            raise BinanceError(f"{what}: GET {path} still failing after retries: {exc}") from exc
        except requests.exceptions.RequestException as exc:
            raise BinanceError(f"{what}: GET {path} failed after retries: {exc.__class__.__name__}: {exc}") from exc
        finally:
            self.budget.settle(weight, headers)
        retry_state = getattr(response.raw, "retries", None)
        retries = len(retry_state.history) if retry_state is not None else 0
        return response, retries

    def decode(self, response: requests.Response, what: str) -> Any:
        """The JSON of an answer (numbers exact), or the error it stands for (see the module docstring)."""
        status = response.status_code
        if status == 418:
            self.stopped = BannedError(response.headers.get("Retry-After"), _error_text(response))
            raise self.stopped
        if status == 451:
            self.stopped = RestrictedLocationError(response.url.split("?")[0])
            raise self.stopped
        try:
            body = response.content
        except requests.exceptions.ChunkedEncodingError as exc:
            raise BadResponseError(f"{what}: body cut short") from exc
        if status >= 400:
            error = _error_body(body)
            if error.get("code") == -1121:
                raise UnknownSymbolError(f"{what}: Binance says invalid symbol (-1121)")
            if status == 404:
                raise NotServedError(f"{what}: HTTP 404, {response.url.split('?')[0]} is not served by this host")
            raise BinanceError(f"{what}: HTTP {status} {error or body[:200]!r}")
        try:
            return json.loads(body, parse_float=Decimal)
        except ValueError as exc:
            raise BadResponseError(f"{what}: invalid JSON body ({len(body)} bytes): {exc}") from exc


def _error_body(body: bytes) -> dict:
    try:
        parsed = json.loads(body, parse_float=Decimal)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _error_text(response: requests.Response) -> str:
    try:
        return str(_error_body(response.content).get("msg") or response.reason)
    except requests.exceptions.RequestException:
        return response.reason or ""
