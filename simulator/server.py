"""`BinanceSimulator`: the simulated market served over HTTP (stdlib ThreadingHTTPServer, one thread per
connection, HTTP/1.1 keep-alive), with a virtual clock, request weights, rate limiting and faults.

Python use:
    sim = BinanceSimulator(symbols=("BTCUSDT", "ETHUSDT"), seed=1); sim.start(); sim.url ...; sim.stop()
Out-of-process control: POST /_sim/inject {fault, path, count, symbol, delay_s}, POST /_sim/advance
{seconds}, POST /_sim/reset_faults, GET /_sim/stats. Control requests are neither charged nor recorded.

The virtual clock is frozen unless `advance()` moves it (deterministic tests); `realtime=True` lets it
also follow the wall clock (the CLI's default), so a client that sleeps `Retry-After` sees a new window.

Options beyond Binance's own behaviour:
- `trades_per_minute=N`: every symbol trades about N times a minute (BTCUSDT really trades ~3500), so a
  cron interval holds thousands of trades and the extractor's historicalTrades cursor has work to do;
- `market_data_only=True`: behave like data-api.binance.vision, which serves only the market-data paths
  of binance_cdc.datasets.MARKET_DATA_ONLY_PATHS: historicalTrades answers 404 (-1000 unknown endpoint);
- `memo=True`: answer every distinct request (path, query, time unit) with the body generated the first
  time, from memory; weight, rate limits, latency and faults apply as usual. The market then stands still
  for repeated requests: a benchmark measures the client, not the simulator's market generation;
- GET /_sim/stats reports `cpuSeconds`, the simulator process's CPU time, so a benchmark can show it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

from binance_cdc.datasets import DEFAULT_SYMBOLS, MARKET_DATA_ONLY_PATHS
from simulator import api
from simulator.faults import ERROR_FAULTS, FaultQueue
from simulator.market import Market
from simulator.symbols import DEFAULT_DEAD, make_spec
from simulator.weights import MINUTE_MS, RateLimiter, request_weight

log = logging.getLogger("simulator")

TIME_UNITS = {"MILLISECOND": 1, "millisecond": 1, "MICROSECOND": 1000, "microsecond": 1000}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    sim: "BinanceSimulator"


class BinanceSimulator:
    def __init__(
        self,
        symbols: Iterable[str] = DEFAULT_SYMBOLS,
        dead_symbols: Iterable[str] = DEFAULT_DEAD,
        latency_ms: int = 0,
        seed: int = 1,
        weight_limit: int = 6000,
        host: str = "127.0.0.1",
        port: int = 0,
        start_ms: int | None = None,
        realtime: bool = False,
        history_hours: float = 25,
        timeout_s: float = 3.0,
        ban_after: int = 3,
        ban_seconds: int = 120,
        warm: bool = True,
        trades_per_minute: int | dict[str, int] | None = None,
        market_data_only: bool = False,
        memo: bool = False,
    ) -> None:
        dead = tuple(dead_symbols)
        names = list(dict.fromkeys(list(symbols) + list(dead)))
        bad = [n for n in names if not api._SYMBOL_RE.match(n)]
        if bad:
            raise ValueError(f"symbol names must match {api.SYMBOL_RANGE}: {bad}")
        self._start_ms = int(time.time() * 1000) if start_ms is None else int(start_ms)
        specs = {n: make_spec(n, seed, n in dead, trades_per_minute) for n in names}
        history_ms = int(history_hours * 3_600_000)
        self.market = Market(specs, self._start_ms - history_ms, history_ms)
        self.latency_ms = latency_ms
        self.weight_limit = weight_limit
        self.timeout_s = timeout_s
        self.realtime = realtime
        self.host, self.port = host, port
        self.limiter = RateLimiter(weight_limit, ban_after, ban_seconds)
        self.faults = FaultQueue()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._offset_ms = 0
        self._t0 = time.monotonic()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._warm = warm
        self.market_data_only = market_data_only
        self.memo = memo
        self._memo: dict[tuple[str, str, int], bytes] = {}

    # ---- clock ---------------------------------------------------------------------------------------
    def now_ms(self) -> int:
        elapsed = int((time.monotonic() - self._t0) * 1000) if self.realtime else 0
        with self._lock:
            return self._start_ms + self._offset_ms + elapsed

    def advance(self, seconds: float) -> int:
        """Move the virtual clock forward; returns the new server time (ms)."""
        if seconds < 0:
            raise ValueError(f"advance: seconds must be >= 0, got {seconds}")
        with self._lock:
            self._offset_ms += round(seconds * 1000)
        now = self.now_ms()
        log.info("virtual clock advanced by %ss to %s", seconds, now)
        return now

    # ---- observation / faults ------------------------------------------------------------------------
    @property
    def weight_used(self) -> int:
        return self.limiter.used(self.now_ms())

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self.market.specs)

    def inject(
        self, fault: str, path: str | None = None, count: int = 1, symbol: str | None = None, delay_s: float | None = None
    ) -> None:
        self.faults.inject(fault, path, count, symbol, delay_s)

    def reset_faults(self) -> None:
        self.faults.clear()

    def stats(self) -> dict[str, Any]:
        now = self.now_ms()
        return {
            "weight": self.limiter.used(now),
            "requests": len(self.requests),
            "serverTime": now,
            "bannedUntil": self.limiter.banned_until_ms,
            "faultsPending": self.faults.pending(),
            "cpuSeconds": round(time.process_time(), 3),
            "memoAnswers": len(self._memo),
        }

    # ---- lifecycle -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "BinanceSimulator":
        server = _Server((self.host, self.port), _Handler)
        server.sim = self
        self._server = server
        self.port = server.server_address[1]
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="binance-sim", daemon=True
        )
        self._thread.start()
        if self._warm:
            threading.Thread(target=self._warm_up, name="binance-sim-warm", daemon=True).start()
        log.info("simulator serving %d symbols at %s (clock %s)", len(self.market.specs), self.url, self.now_ms())
        return self

    def _warm_up(self) -> None:
        """Precompute the 24 h of per-minute aggregates the first ticker call needs (lazy otherwise)."""
        now = self.now_ms()
        for spec in self.market.specs.values():
            if self._stopping.is_set():
                return
            if not spec.dead:
                self.market.agg_between(spec, now - 86_400_000, now + 1)

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "BinanceSimulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- one API request -------------------------------------------------------------------------------
    def handle(self, path: str, query: str, headers: Any) -> tuple[int, dict[str, str], bytes]:
        """Status, extra headers and body for a GET on an API path."""
        now = self.now_ms()
        multi = parse_qs(query, keep_blank_values=True)
        params = {k: v[0] for k, v in multi.items()}
        with self._lock:
            self.requests.append((path, params))
        if self.latency_ms:
            self._stopping.wait(self.latency_ms / 1000)

        truncate = False
        fault = self.faults.take(path, _request_symbols(params)) if path in api.PATHS else None
        if fault is not None:
            log.info("injecting fault %s on %s", fault.fault, path)
            if fault.fault == "429":
                retry = max(1, -(-((now // MINUTE_MS + 1) * MINUTE_MS - now) // 1000))
                return self._error(429, -1003, self._too_much_msg(), now, retry)
            if fault.fault == "418":
                until = now + self.limiter.ban_seconds * 1000
                return self._error(418, -1003, _banned_msg(until), now, self.limiter.ban_seconds)
            if fault.fault in ERROR_FAULTS:
                status, body = ERROR_FAULTS[fault.fault]
                return status, self._weight_headers(now), _dumps(body)
            if fault.fault == "timeout":
                self._stopping.wait(fault.delay_s if fault.delay_s is not None else self.timeout_s)
            truncate = fault.fault == "truncated"

        # data-api.binance.vision answers a path it does not serve as an unknown one (404, lowest weight)
        not_served = self.market_data_only and path not in MARKET_DATA_ONLY_PATHS
        verdict = self.limiter.charge(now, 1 if not_served else request_weight(path, params))
        if verdict.status == 429:
            return self._error(429, -1003, self._too_much_msg(), now, verdict.retry_after_s)
        if verdict.status == 418:
            return self._error(418, -1003, _banned_msg(verdict.banned_until_ms), now, verdict.retry_after_s)
        try:
            if any(len(v) > 1 for v in multi.values()):
                raise api.ApiError(400, -1101, "Duplicate values for a parameter detected.")
            unit = headers.get("X-MBX-TIME-UNIT")
            if unit is not None and unit not in TIME_UNITS:
                raise api.ApiError(
                    400, -1194, "Invalid value for time unit; expected either MICROSECOND or MILLISECOND."
                )
            if not_served:
                raise api.ApiError(404, -1000, f"Unknown endpoint {path}.")
            mult = TIME_UNITS.get(unit, 1)
            key = (path, query, mult)
            body = self._memo.get(key) if self.memo else None
            if body is None:
                body = _dumps(api.answer(self.market, path, params, now, mult, self.weight_limit))
                if self.memo:
                    self._memo[key] = body
        except api.ApiError as exc:
            return exc.status, self._weight_headers(now), _dumps(exc.body())
        if truncate:
            body = body[: max(1, len(body) // 2)]
        return 200, self._weight_headers(now), body

    def _weight_headers(self, now: int) -> dict[str, str]:
        used = str(self.limiter.used(now))
        return {"X-MBX-USED-WEIGHT-1M": used, "X-MBX-USED-WEIGHT": used}

    def _error(self, status: int, code: int, msg: str, now: int, retry_s: int) -> tuple[int, dict[str, str], bytes]:
        headers = self._weight_headers(now)
        headers["Retry-After"] = str(retry_s)
        return status, headers, _dumps({"code": code, "msg": msg})

    def _too_much_msg(self) -> str:
        return (
            f"Too much request weight used; current limit is {self.weight_limit} request weight per 1 MINUTE. "
            "Please use WebSocket Streams for live updates to avoid polling the API."
        )


def _banned_msg(until_ms: int) -> str:
    return (
        f"Way too much request weight used; IP banned until {until_ms}. "
        "Please use WebSocket Streams for live updates to avoid bans."
    )


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _request_symbols(params: dict[str, str]) -> list[str]:
    names = [params["symbol"]] if "symbol" in params else []
    try:
        listed = json.loads(params.get("symbols", "[]"))
    except ValueError:
        listed = []
    return names + [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else names


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle on, a keep-alive client's delayed ACK held the body
    # back about 40 ms per request, a cost of the simulator that real Binance does not have.
    disable_nagle_algorithm = True
    server: _Server

    def date_time_string(self, timestamp: float | None = None) -> str:
        # the Date header carries the virtual server clock, as Binance's carries its own
        return formatdate(self.server.sim.now_ms() / 1000, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            log.info("client went away before the answer (%s)", self.path)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        url = urlsplit(self.path)
        sim = self.server.sim
        if url.path == "/_sim/stats":
            self._send(200, {}, _dumps(sim.stats()))
            return
        status, headers, body = sim.handle(url.path, url.query, self.headers)
        log.info(
            "GET %s -> %s weight_used=%s bytes=%s", self.path, status, headers.get("X-MBX-USED-WEIGHT-1M"), len(body)
        )
        self._send(status, headers, body)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        sim = self.server.sim
        length = int(self.headers.get("Content-Length") or 0)
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
            path = urlsplit(self.path).path
            if path == "/_sim/inject":
                sim.inject(data["fault"], data.get("path"), int(data.get("count", 1)), data.get("symbol"), data.get("delay_s"))
                result: dict[str, Any] = {"faultsPending": sim.faults.pending()}
            elif path == "/_sim/advance":
                result = {"serverTime": sim.advance(float(data["seconds"]))}
            elif path == "/_sim/reset_faults":
                sim.reset_faults()
                result = {"faultsPending": 0}
            else:
                self._send(404, {}, _dumps({"error": f"unknown control path {path}"}))
                return
        except (ValueError, KeyError, TypeError) as exc:
            self._send(400, {}, _dumps({"error": f"bad control request: {exc}"}))
            return
        self._send(200, {}, _dumps(result))
