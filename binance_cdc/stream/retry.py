"""Riding out a Cassandra restart: which failures are worth retrying, how long to wait, when to give up.

Two levels use this (both retry only network calls, and every write they repeat is idempotent: it carries
`USING TIMESTAMP <LSN>`, so a replay can neither resurrect an old value nor add a row):

- executors (binance_cdc.stream.sink): a failed write is retried with backoff for a short window
  (`executor_window`), which covers a dropped connection or a node that is back within seconds. When the
  window passes, the task fails with `SinkUnavailable` (Spark retries the task, then fails the job);
- the driver (binance_cdc.stream.job, foreachBatch): a batch whose job failed with `SinkUnavailable`, or
  whose progress record hit a transient Cassandra error, is run again with backoff, measured by one
  `Outage` per batch; past STREAM_OUTAGE_LIMIT_S it raises `StreamOutage`, whose one-line message is
  what the job logs before it exits 1.

Pure (no cassandra-driver import: errors are recognised by class name) so it is unit tested alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

# Class names (anywhere in the exception's MRO) of failures that say "not reachable now", not "wrong":
# a node down or restarting, a dropped connection, a timeout, too few replicas alive. Anything else
# (InvalidRequest, Unauthorized, a bug) is raised at once: retrying cannot fix it.
TRANSIENT = frozenset({
    "NoHostAvailable", "OperationTimedOut", "ConnectionException", "ConnectionShutdown", "ConnectionBusy",
    "WriteTimeout", "ReadTimeout", "Unavailable", "OverloadedErrorMessage", "IsBootstrappingErrorMessage",
    "ConnectionError", "TimeoutError",  # builtins (socket level)
})
# What the driver finds in a failed Spark job's error text when an executor gave up on Cassandra.
SINK_UNAVAILABLE = "SinkUnavailable"
EXECUTOR_WINDOW_MAX_S = 10.0


class SinkUnavailable(RuntimeError):
    """An executor's writes kept failing for its whole retry window (Cassandra unreachable)."""


class StreamOutage(RuntimeError):
    """The outage lasted longer than STREAM_OUTAGE_LIMIT_S: the job ends; str() is its one error line."""


def is_transient(exc: BaseException) -> bool:
    return any(cls.__name__ in TRANSIENT for cls in type(exc).__mro__)


def is_sink_outage(exc: BaseException) -> bool:
    """A failed Spark job (py4j error text carrying the executor's Python traceback) caused by an
    executor giving up on Cassandra, or a transient Cassandra error raised on the driver itself."""
    return is_transient(exc) or isinstance(exc, SinkUnavailable) or SINK_UNAVAILABLE in str(exc)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """`Class: first line of the message`, cut: what a one-line log needs (the driver's errors carry
    addresses, never credentials)."""
    text = str(exc).strip().splitlines()
    line = text[0][:limit] if text else ""
    return line if getattr(exc, "bare", False) else f"{type(exc).__name__}: {line}".rstrip(": ")


@dataclass(frozen=True)
class Backoff:
    """Exponential delays: initial, initial*multiplier, ... capped at `cap` seconds."""

    initial: float = 0.5
    cap: float = 5.0
    multiplier: float = 2.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield min(delay, self.cap)
            delay *= self.multiplier


def executor_window(outage_limit_s: float) -> float:
    """An executor retries briefly: Spark retries a failed task (3 attempts with local[2,3]) and the driver
    then retries the batch; a long executor window multiplied by those attempts would overshoot the limit."""
    return min(EXECUTOR_WINDOW_MAX_S, outage_limit_s / 3)


@dataclass
class Outage:
    """One outage as seen by a retry loop: started by the first failure, ended by the caller's success.
    `next_delay(exc)` returns how long to sleep before the next try, or raises `give_up(...)` when that
    sleep would take the outage past `limit_s`."""

    what: str
    limit_s: float
    backoff: Backoff = Backoff()
    clock: Callable[[], float] = time.monotonic
    give_up: Callable[[str], Exception] = StreamOutage
    started: float | None = None
    attempts: int = 0
    _delays: Iterator[float] | None = field(default=None, repr=False)

    def elapsed(self) -> float:
        return 0.0 if self.started is None else self.clock() - self.started

    def next_delay(self, exc: BaseException, since: float | None = None) -> float:
        """`since`: when the failed attempt began (clock()); the outage is counted from there, so time a
        failing call spent retrying on its own (an executor's window, Spark's task attempts) counts too."""
        now = self.clock()
        if self.started is None:
            self.started = now if since is None else min(since, now)
            self._delays = self.backoff.delays()
        self.attempts += 1
        assert self._delays is not None
        delay = next(self._delays)
        elapsed = now - self.started
        if elapsed + delay > self.limit_s:
            raise self.give_up(f"{self.what} unreachable for {elapsed:.0f}s ({self.attempts} attempt"
                               f"{'' if self.attempts == 1 else 's'}), the next retry would pass the "
                               f"{self.limit_s:g}s limit; last error: {first_line(exc)}")
        return delay


def retry(call: Callable[[], T], outage: Outage, sleep: Callable[[float], None] = time.sleep,
          on_retry: Callable[[Outage, BaseException, float], None] | None = None,
          transient: Callable[[BaseException], bool] = is_transient) -> T:
    """call() until it returns; transient failures are retried after outage.next_delay(), others raised."""
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                raise
            delay = outage.next_delay(exc)  # raises outage.give_up(...) past the limit
            if on_retry is not None:
                on_retry(outage, exc, delay)
            sleep(delay)
